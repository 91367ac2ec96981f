// SPDX-License-Identifier: Apache-2.0
// Prelude of the README's pipeline lines (statements in a function body).
#pragma once
#include <fp8moe/fp8moe.hpp>
namespace fm = fp8moe;
#define FP8MOE_SNIPPET_PARAMS
