// SPDX-License-Identifier: Apache-2.0
// A tile extent of 0 means "the whole extent" by design, so the invalid tile checked here is a
// negative one: checked() validates a constexpr recipe at compile time and names the broken rule.
// EXPECT: invalid_recipe_negative_tile
#include <fp8moe/scaling/recipe.hpp>

constexpr auto bad = fp8moe::scaling::checked(fp8moe::scaling::tensor_recipe{.tile = {1, -128}});
