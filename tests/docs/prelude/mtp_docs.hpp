// SPDX-License-Identifier: Apache-2.0
// Prelude of docs/mtp.md's example (snippet 'mtp_docs'): the block is self-contained (its own
// includes and namespace aliases), so nothing is declared here. tests/mtp's test_mtp_docs also runs it.
#pragma once
