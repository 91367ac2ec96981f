// SPDX-License-Identifier: Apache-2.0
// Prelude of the README's taste snippet (a function template at namespace scope).
#pragma once
#include <utility>

#include <fp8moe/fp8moe.hpp>
