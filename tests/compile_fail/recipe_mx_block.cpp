// SPDX-License-Identifier: Apache-2.0
// MX formulas need blocks of 32: checked() rejects an MX recipe with 64-element blocks.
// EXPECT: invalid_recipe_mx_block_must_be_32
#include <fp8moe/scaling/recipe.hpp>

namespace fs = fp8moe::scaling;
constexpr auto bad = fs::checked(fs::tensor_recipe{.tile = {1, 64},
                                                   .encoding = fs::scale_encoding::ue8m0,
                                                   .formula = fs::scale_formula::te_mxfp8,
                                                   .amax_floor = 0.0f});
