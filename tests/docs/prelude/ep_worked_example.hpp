// SPDX-License-Identifier: Apache-2.0
// Prelude of docs/expert_parallel.md's worked example (namespace scope: the block is
// tests/expert_parallel/worked_example.hpp's region, with its own includes).
// ep_worked_example.post.hpp instantiates it over the single-rank communicator.
#pragma once
