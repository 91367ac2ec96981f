// SPDX-License-Identifier: Apache-2.0
// Prelude of docs/pipeline.md's first lines (statements in a function body).
#pragma once
#include <iostream>

#include <fp8moe/pipeline/pipeline.hpp>
#define FP8MOE_SNIPPET_PARAMS
