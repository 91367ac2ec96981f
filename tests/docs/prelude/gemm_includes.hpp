// SPDX-License-Identifier: Apache-2.0
// Prelude of docs/gemm.md's include lines (namespace scope: the block is self-contained). The block
// is also a region of tests/gemm/test_gemm_docs.cpp, which checks the page against it.
#pragma once
