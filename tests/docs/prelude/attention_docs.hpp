// SPDX-License-Identifier: Apache-2.0
// Prelude of docs/attention.md's example (snippet 'attention_docs'): the block is self-contained (its
// own includes and namespace aliases), so nothing is declared here. tests/attention's
// test_attention_docs also runs it.
#pragma once
