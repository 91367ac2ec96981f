// SPDX-License-Identifier: Apache-2.0
// Prelude of docs/moe.md's worked example (snippet 'moe_docs'): the block is self-contained (its own
// includes and namespace aliases), so nothing is declared here. test_moe_docs also runs it.
#pragma once
