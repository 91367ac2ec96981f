// SPDX-License-Identifier: Apache-2.0
// Prelude of docs/optim.md's example (snippet 'optim_docs'): the block is self-contained (its own
// includes and namespace aliases), so nothing is declared here. test_optim_docs also runs it.
#pragma once
