// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// attention/mla.hpp: multi-head latent attention (DeepSeek-V2/V3 MLA), host paths. The core
// (mla_core.hpp: mla_dims, mla_naive_forward / mla_naive_backward, mla_absorbed_forward), the
// compressed cache (mla_cache.hpp) and the whole layer (mla_layer.hpp: mla_weights, mla_forward,
// mla_backward). See docs/attention.md.
#pragma once

#include "fp8moe/attention/host/mla.hpp"
#include "fp8moe/attention/mla_cache.hpp"
#include "fp8moe/attention/mla_core.hpp"
#include "fp8moe/attention/mla_layer.hpp"
