// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// A randomly initialised DeepSeek-V3 written as a Hugging Face checkpoint directory: config.json
// plus safetensors shards with HF names and model.safetensors.index.json, in float32, bfloat16 or
// FP8 (E4M3 weights + float32 128x128 `weight_scale_inv`, as DeepSeek ships them). Values depend
// only on (seed, tensor name, element index); every file is written atomically, config.json last.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config.hpp"
#include "fp8moe/core/error.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/io/checkpoint.hpp"
#include "fp8moe/io/deepseek_v3_config.hpp"
#include "fp8moe/numeric/numeric.hpp"
#include "fp8moe/scaling/quantize.hpp"
#include "hf_names.hpp"

namespace dsv3 {

/// The element type of a checkpoint's weights.
enum class checkpoint_dtype { f32, bf16, fp8 };

inline constexpr std::string_view to_string(checkpoint_dtype d) {
  return d == checkpoint_dtype::f32 ? "f32" : d == checkpoint_dtype::bf16 ? "bf16" : "fp8";
}

/// "f32" | "bf16" | "fp8"; throws fp8moe::error naming the argument otherwise.
inline checkpoint_dtype parse_checkpoint_dtype(std::string_view s) {
  for (auto d : {checkpoint_dtype::f32, checkpoint_dtype::bf16, checkpoint_dtype::fp8})
    if (s == to_string(d)) return d;
  fp8moe::detail::throw_argument("dsv3", "dtype", "\"f32\", \"bf16\" or \"fp8\"",
                                 fp8moe::detail::concat('"', s, '"'));
}

/// How a tensor is stored in a checkpoint of dtype d, following DeepSeek's checkpoint (§2.2): the
/// router bias is always F32; in an fp8 checkpoint the fp8-marked linear weights are F8_E4M3 (with
/// an F32 scale_inv) and everything else BF16; otherwise every tensor is F32 or BF16.
inline fp8moe::io::dtype stored_dtype(hf_tensor const& t, checkpoint_dtype d) {
  using fp8moe::io::dtype;
  if (t.is_router_bias() || d == checkpoint_dtype::f32) return dtype::f32;
  return d == checkpoint_dtype::fp8 && t.fp8 ? dtype::f8_e4m3 : dtype::bf16;
}

/// Bytes of tensor data in a checkpoint of `c` in dtype d (scale_inv included; headers not).
inline std::uint64_t checkpoint_bytes(config const& c, checkpoint_dtype d) {
  std::uint64_t n = 0;
  for (auto const& t : hf_inventory(c)) {
    fp8moe::io::dtype const s = stored_dtype(t, d);
    n += static_cast<std::uint64_t>(t.numel()) * fp8moe::io::size_of(s);
    if (s == fp8moe::io::dtype::f8_e4m3)
      n += static_cast<std::uint64_t>(t.scale_inv_shape()[0] * t.scale_inv_shape()[1]) * 4u;
  }
  return n;
}

/// The config.json of a checkpoint in dtype d: quantization_config (fp8, e4m3, dynamic, 128x128)
/// when d is fp8 and absent otherwise; torch_dtype "float32" for f32, else "bfloat16" (as DeepSeek).
inline config checkpoint_config(config c, checkpoint_dtype d) {
  c.quantization_config.reset();
  if (d == checkpoint_dtype::fp8) c.quantization_config = fp8moe::io::quantization_params{};
  c.extra["torch_dtype"] = d == checkpoint_dtype::f32 ? R"("float32")" : R"("bfloat16")";
  return c;
}

/// The standard deviation of a matrix [out, in]: 0.006 (DeepSeek-V3's init, arXiv 2412.19437 §4.2)
/// at its hidden size 7168, scaled by sqrt(7168 / in) so that every product of a narrower model
/// gets the output scale the published width gets (0.006 x sqrt(7168) ~ 0.51 per unit-RMS input).
inline double init_std(hf_tensor const& t) {
  return 0.006 * std::sqrt(7168.0 / static_cast<double>(t.shape.back()));
}

namespace detail {

/// The splitmix64 finalizer: a bijective 64-bit mix.
constexpr std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
/// FNV-1a of a tensor name: each tensor gets its own stream, whatever the order or sharding.
constexpr std::uint64_t name_hash(std::string_view s) {
  std::uint64_t h = 0xCBF29CE484222325ull;
  for (char ch : s) h = (h ^ static_cast<unsigned char>(ch)) * 0x100000001B3ull;
  return h;
}
/// Uniform in (0, 1] from draw i of a stream.
constexpr double uniform(std::uint64_t key, std::uint64_t i) {
  return (static_cast<double>(mix64(key + (i + 1) * 0x9E3779B97F4A7C15ull) >> 11) + 1.0) * 0x1p-53;
}

}  // namespace detail

/// The initial values of tensor t (t.numel() of them): norms 1; the router bias uniform in
/// [0, 0.01) (>= 0 keeps biased sigmoid scores positive, where HF's 0-filled group mask and
/// DeepSeek's -inf mask agree); every matrix N(0, init_std(t)^2) by Box-Muller. Deterministic.
inline void random_values(hf_tensor const& t, std::uint64_t seed, std::span<float> out) {
  fp8moe::require(out.size() == static_cast<std::size_t>(t.numel()), "dsv3::random_values", "out",
                  fp8moe::detail::concat(t.numel(), " floats (", t.name, ")"), std::to_string(out.size()));
  std::uint64_t const key = detail::mix64(seed ^ detail::name_hash(t.name));
  std::int64_t const n = t.numel();
  if (t.is_norm()) {
    std::fill(out.begin(), out.end(), 1.0f);
  } else if (t.is_router_bias()) {
    for (std::int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(0.01 * (1.0 - detail::uniform(key, i)));
  } else {
    double const sd = init_std(t);
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < n; ++i) {
      double const u1 = detail::uniform(key, 2 * static_cast<std::uint64_t>(i));
      double const u2 = detail::uniform(key, 2 * static_cast<std::uint64_t>(i) + 1);
      out[i] = static_cast<float>(sd * std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
    }
  }
}

/// The weight recipe of the FP8 checkpoints: 128x128 blocks, s = max(amax, 1e-4) / 448, q = x / s
/// (DeepSeek's op order, fp8moe::scaling::scale_formula::deepseek_v3_inference).
inline constexpr fp8moe::scaling::tensor_recipe checkpoint_weight_recipe{
    .tile = fp8moe::scaling::block_128x128, .formula = fp8moe::scaling::scale_formula::deepseek_v3_inference};

/// The largest checkpoint write_random_checkpoint builds (it holds every tensor in memory).
inline constexpr std::uint64_t max_random_checkpoint_bytes = 16ull << 30;

/// Writes a random model of `c` (validated) into `dir` (created; must be new or empty) as a HF
/// checkpoint in `dtype` ("f32" | "bf16" | "fp8"): at least 2 safetensors shards (more when over
/// 4 GiB each) + model.safetensors.index.json, then config.json (checkpoint_config). In an fp8
/// checkpoint the first shard boundary falls between a weight and its weight_scale_inv, so readers
/// meet a scale in another shard. Throws fp8moe::error before writing anything on a bad argument.
inline void write_random_checkpoint(config const& c, std::filesystem::path const& dir, std::string_view dtype,
                                    std::uint64_t seed) {
  namespace io = fp8moe::io;
  checkpoint_dtype const d = parse_checkpoint_dtype(dtype);
  config const cc = checkpoint_config(c, d);
  io::validate(cc, "dsv3::write_random_checkpoint config");
  std::uint64_t const total = checkpoint_bytes(cc, d);
  fp8moe::require(total <= max_random_checkpoint_bytes, "dsv3::write_random_checkpoint", "config",
                  "a model of at most 16 GiB (this writer holds it in memory)",
                  fp8moe::detail::concat(total, " bytes"));
  std::error_code ec;
  bool const exists = std::filesystem::exists(dir, ec);
  bool const is_dir = exists && std::filesystem::is_directory(dir, ec);
  fp8moe::require(
      !exists || (is_dir && std::filesystem::is_empty(dir, ec)), "dsv3::write_random_checkpoint", "dir",
      "a new or empty directory",
      fp8moe::detail::concat('"', dir.string(), is_dir ? "\" (not empty)" : "\" (not a directory)"));

  // every tensor's bytes, in inventory order, each weight followed by its scale_inv
  std::vector<std::vector<std::byte>> storage;
  std::vector<io::tensor_entry> entries;
  auto add = [&](std::string name, io::dtype type, std::vector<std::int64_t> shape, auto const& values) {
    auto const bytes = std::as_bytes(std::span(values));
    storage.emplace_back(bytes.begin(), bytes.end());
    entries.push_back({std::move(name), type, std::move(shape), storage.back()});
  };
  std::vector<hf_tensor> const inv = hf_inventory(cc);
  storage.reserve(2 * inv.size());
  std::vector<float> x;
  for (auto const& t : inv) {
    x.resize(static_cast<std::size_t>(t.numel()));
    random_values(t, seed, x);
    switch (stored_dtype(t, d)) {
      case io::dtype::f8_e4m3: {
        auto const q = fp8moe::scaling::quantize(fp8moe::host_executor{},
                                                 fp8moe::make_matrix(x.data(), t.shape[0], t.shape[1]),
                                                 checkpoint_weight_recipe);
        add(t.name, io::dtype::f8_e4m3, t.shape, q.data.storage());
        add(t.scale_inv_name(), io::dtype::f32, t.scale_inv_shape(), q.scales.storage());
        break;
      }
      case io::dtype::bf16: {
        std::vector<fp8moe::bfloat16_t> b(x.size());
        for (std::size_t i = 0; i < x.size(); ++i) b[i] = fp8moe::bfloat16_t(x[i]);
        add(t.name, io::dtype::bf16, t.shape, b);
        break;
      }
      default:
        add(t.name, io::dtype::f32, t.shape, x);
    }
  }

  // shards of ~total/n bytes, n = max(2, ceil(total / 4 GiB)); in fp8, each cut moves forward to
  // the next weight_scale_inv, so that scale lands in the shard after its weight
  std::uint64_t const n_shards = std::max<std::uint64_t>(2, (total + (4ull << 30) - 1) / (4ull << 30));
  std::vector<std::vector<io::tensor_entry>> shards(1);
  std::uint64_t done = 0;
  for (auto const& e : entries) {
    bool const cut_here = d != checkpoint_dtype::fp8 || e.name.ends_with("_scale_inv");
    if (shards.size() < n_shards && !shards.back().empty() && cut_here &&
        done >= shards.size() * total / n_shards)
      shards.emplace_back();
    shards.back().push_back(e);
    done += e.data.size();
  }
  std::filesystem::create_directories(dir, ec);
  io::write_sharded_safetensors(dir, shards, {{"format", "pt"}});
  io::write_deepseek_v3_config(dir / "config.json", cc);
}

}  // namespace dsv3
