// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// dsv3::write_random_checkpoint: the directory it writes reads back through fp8moe::io with every
// tensor of the inventory at its shape and dtype, 2 shards + index, a scale in another shard than
// its weight (fp8), values within the stored type's rounding of random_values(), FP8 blocks with
// scale = amax / 448; deterministic in the seed; bad arguments rejected before anything is written.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "config.hpp"
#include "fp8moe/io/checkpoint.hpp"
#include "fp8moe/io/deepseek_v3_config.hpp"
#include "hf_names.hpp"
#include "init.hpp"
#include "io_test_support.hpp"

namespace io = fp8moe::io;
namespace ft = fp8moe::test;

namespace {

/// The scale_inv multiplier of element i (row-major) of fp8 tensor t; sc: its scale_inv.
double block_scale(std::span<float const> sc, dsv3::hf_tensor const& t, std::int64_t i) {
  return sc[(i / t.shape[1]) / 128 * t.scale_inv_shape()[1] + (i % t.shape[1]) / 128];
}

/// The values of tensor t of `ck` as float, whatever its dtype (fp8: times its scale_inv block).
std::vector<float> read_as_float(io::checkpoint const& ck, dsv3::hf_tensor const& t) {
  auto const r = ck.tensor(t.name);
  std::vector<float> v(static_cast<std::size_t>(t.numel()));
  switch (r.type()) {
    case io::dtype::f32: {
      auto const s = r.as<float>();
      std::copy(s.begin(), s.end(), v.begin());
      break;
    }
    case io::dtype::bf16: {
      auto const s = r.as<fp8moe::bfloat16_t>();
      for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(s[i]);
      break;
    }
    case io::dtype::f8_e4m3: {
      auto const q = r.as<fp8moe::float8_e4m3_t>();
      auto const sc = ck.tensor(t.scale_inv_name()).as<float>();
      for (std::int64_t i = 0; i < t.numel(); ++i)
        v[i] = static_cast<float>(q[i]) * static_cast<float>(block_scale(sc, t, i));
      break;
    }
    default:
      FAIL("unexpected dtype ", io::to_string(r.type()), " of ", t.name);
  }
  return v;
}

}  // namespace

TEST_CASE("random_values: norms 1, bias in [0, 0.01), matrices N(0, init_std^2), deterministic") {
  auto const inv = dsv3::hf_inventory(dsv3::preset("tiny"));
  for (auto const& t : inv) {
    std::vector<float> a(static_cast<std::size_t>(t.numel())), b(a.size()), c(a.size());
    dsv3::random_values(t, 7, a);
    dsv3::random_values(t, 7, b);
    dsv3::random_values(t, 8, c);
    CHECK(a == b);
    if (t.is_norm()) {
      CHECK(std::all_of(a.begin(), a.end(), [](float x) { return x == 1.0f; }));
      continue;
    }
    CHECK(a != c);
    if (t.is_router_bias()) {
      CHECK(std::all_of(a.begin(), a.end(), [](float x) { return x >= 0.0f && x < 0.01f; }));
      continue;
    }
    double s1 = 0, s2 = 0;
    for (float x : a) s1 += x, s2 += double(x) * x;
    double const n = static_cast<double>(a.size()), sd = dsv3::init_std(t);
    double const mean = s1 / n, std = std::sqrt(s2 / n - mean * mean);
    INFO(t.name, ": mean ", mean, " std ", std, " expected ", sd);
    // 5 standard errors (sample std: sd/sqrt(2n); mean: sd/sqrt(n)): a false alarm over tiny's 241
    // matrices has probability < 1e-3, while a std off by 6% (n >= 4096) or a bias is caught
    CHECK(std::abs(std - sd) <= 5.0 * sd / std::sqrt(2.0 * n));
    CHECK(std::abs(mean) <= 5.0 * sd / std::sqrt(n));
  }
  // 0.006 at the published width: the std of a matrix [out, 7168]
  CHECK(dsv3::init_std({"w", {2048, 7168}, true}) == doctest::Approx(0.006));
  std::vector<float> small(3);
  ft::check_error([&] { dsv3::random_values(inv[0], 1, small); }, {"random_values", "'out'", "floats"});
}

TEST_CASE("write_random_checkpoint: tiny in f32, bf16 and fp8 reads back through fp8moe::io") {
  dsv3::config const tiny = dsv3::preset("tiny");
  auto const inv = dsv3::hf_inventory(tiny);
  for (auto const d :
       {dsv3::checkpoint_dtype::f32, dsv3::checkpoint_dtype::bf16, dsv3::checkpoint_dtype::fp8}) {
    INFO("dtype ", dsv3::to_string(d));
    ft::scratch_dir dir;
    auto const out = dir / "tiny";
    dsv3::write_random_checkpoint(tiny, out, dsv3::to_string(d), 42);

    // config.json: the preset, with quantization_config only for fp8
    io::deepseek_v3_config const cfg = io::read_deepseek_v3_config(out);
    CHECK(cfg == dsv3::checkpoint_config(tiny, d));
    CHECK(cfg.quantization_config.has_value() == (d == dsv3::checkpoint_dtype::fp8));

    // 2 shards + index; every inventory tensor (and scale_inv) there, at its shape and dtype
    io::checkpoint const ck(out);
    REQUIRE(ck.index().has_value());
    CHECK(ck.files().size() == 2);
    auto const s = dsv3::check_checkpoint(cfg, ck);
    CHECK(s.tensors == inv.size());
    CHECK(s.bytes == dsv3::checkpoint_bytes(tiny, d));
    std::size_t n_fp8 = 0, cross_shard = 0;
    for (auto const& t : inv) {
      INFO(t.name);
      auto const r = ck.tensor(t.name);
      CHECK(r.type() == dsv3::stored_dtype(t, d));
      CHECK(std::vector<std::int64_t>(r.shape().begin(), r.shape().end()) == t.shape);
      if (r.type() == io::dtype::f8_e4m3) {
        ++n_fp8;
        cross_shard += &ck.file_of(t.name) != &ck.file_of(t.scale_inv_name());
      }
    }
    CHECK(s.fp8_weights == n_fp8);
    CHECK(ck.size() == inv.size() + n_fp8);
    if (d == dsv3::checkpoint_dtype::fp8) {
      CHECK(n_fp8 > 100);
      CHECK(cross_shard == 1);  // the shard boundary falls between one weight and its scale
    } else {
      CHECK(n_fp8 == 0);
    }

    // values: random_values(t, 42) within the rounding of the stored type
    for (auto const& t : inv) {
      INFO(t.name);
      std::vector<float> x(static_cast<std::size_t>(t.numel()));
      dsv3::random_values(t, 42, x);
      std::vector<float> const got = read_as_float(ck, t);
      auto const type = ck.tensor(t.name).type();
      std::span<float const> const sc =
          type == io::dtype::f8_e4m3 ? ck.tensor(t.scale_inv_name()).as<float>() : std::span<float const>{};
      std::size_t bad = 0;
      for (std::size_t i = 0; i < x.size(); ++i) {
        double const e = std::abs(double(got[i]) - x[i]);
        // f32: exact. bf16 (7 stored mantissa bits, RNE): |e| <= 2^-8 |x|. E4M3 (3 bits, RNE) of
        // x / s, times s: |e| <= 2^-4 |x| for normals, and half the subnormal step, 2^-10 s, below
        // 2^-6 s. The factor 1 + 1e-5 covers the fp32 roundings of x / s and q * s.
        double const tol = type == io::dtype::f32 ? 0.0
                           : type == io::dtype::bf16
                               ? 0x1p-8 * std::abs(x[i])
                               : std::max(0x1p-4 * std::abs(x[i]), 0x1p-10 * block_scale(sc, t, i));
        bad += e > tol * (1 + 1e-5);
      }
      CHECK(bad == 0);
    }
  }
}

TEST_CASE("fp8: each block's scale_inv is its amax / 448 (partial blocks included) and reconstructs") {
  dsv3::config const tiny = dsv3::preset("tiny");
  ft::scratch_dir dir;
  dsv3::write_random_checkpoint(tiny, dir / "m", "fp8", 3);
  io::checkpoint const ck(dir / "m");
  std::size_t partial = 0;
  for (auto const& t : dsv3::hf_inventory(tiny)) {
    if (!t.fp8) continue;
    INFO(t.name);
    std::vector<float> x(static_cast<std::size_t>(t.numel()));
    dsv3::random_values(t, 3, x);
    auto const sc = ck.tensor(t.scale_inv_name()).as<float>();
    auto const q = ck.tensor(t.name).as<fp8moe::float8_e4m3_t>();
    std::int64_t const R = t.shape[0], C = t.shape[1], SC = t.scale_inv_shape()[1];
    partial += R % 128 != 0;
    for (std::int64_t br = 0; br < t.scale_inv_shape()[0]; ++br)
      for (std::int64_t bc = 0; bc < SC; ++bc) {
        float amax = 0, qmax = 0;
        for (std::int64_t r = br * 128; r < std::min(R, br * 128 + 128); ++r)
          for (std::int64_t c = bc * 128; c < std::min(C, bc * 128 + 128); ++c) {
            amax = std::max(amax, std::abs(x[r * C + c]));
            qmax = std::max(qmax, std::abs(static_cast<float>(q[r * C + c])));
          }
        CHECK(sc[br * SC + bc] == amax / 448.0f);
        CHECK(qmax == 448.0f);  // the block's largest element maps to E4M3's largest finite value
      }
  }
  CHECK(partial >= 2);  // kv_a_proj_with_mqa (144 rows) and q_b_proj (192 rows) in every layer
}

TEST_CASE("fp8: the shard boundary moves to the next weight_scale_inv when the midpoint is elsewhere") {
  // nano with vocab 200: half of the bytes are reached right after lm_head (BF16), and a plain cut
  // there would leave every scale beside its weight
  dsv3::config c = dsv3::preset("nano");
  c.vocab_size = 200;
  ft::scratch_dir dir;
  dsv3::write_random_checkpoint(c, dir / "m", "fp8", 1);
  io::checkpoint const ck(dir / "m");
  REQUIRE(ck.files().size() == 2);
  std::size_t cross_shard = 0;
  for (auto const& t : dsv3::hf_inventory(c))
    if (t.fp8) cross_shard += &ck.file_of(t.name) != &ck.file_of(t.scale_inv_name());
  CHECK(cross_shard == 1);
  CHECK(&ck.file_of("lm_head.weight") == &ck.files()[0]);
}

TEST_CASE("the same seed writes the same bytes; another seed other values") {
  dsv3::config const nano = dsv3::preset("nano");
  ft::scratch_dir dir;
  dsv3::write_random_checkpoint(nano, dir / "a", "bf16", 5);
  dsv3::write_random_checkpoint(nano, dir / "b", "bf16", 5);
  dsv3::write_random_checkpoint(nano, dir / "c", "bf16", 6);
  for (auto const& f : std::filesystem::directory_iterator(dir / "a")) {
    auto const name = f.path().filename();
    INFO(name.string());
    CHECK(ft::read_raw(dir / "a" / name) == ft::read_raw(dir / "b" / name));
    if (name.extension() == ".safetensors")
      CHECK(ft::read_raw(dir / "a" / name) != ft::read_raw(dir / "c" / name));
  }
}

TEST_CASE("bad arguments are rejected before anything is written") {
  dsv3::config const nano = dsv3::preset("nano");
  ft::scratch_dir dir;
  ft::check_error([&] { dsv3::write_random_checkpoint(nano, dir / "x", "fp16", 1); },
                  {"'dtype'", "\"f32\", \"bf16\" or \"fp8\"", "\"fp16\""});
  CHECK_FALSE(std::filesystem::exists(dir / "x"));
  std::filesystem::create_directories(dir / "full");
  ft::write_raw(dir / "keep.txt", "x");
  ft::write_raw(dir / "full" / "keep.txt", "x");
  ft::check_error([&] { dsv3::write_random_checkpoint(nano, dir / "full", "f32", 1); },
                  {"'dir'", "a new or empty directory", "not empty"});
  CHECK(dir.entries().size() == 2);  // full/ and keep.txt, nothing else
  CHECK(std::distance(std::filesystem::directory_iterator(dir / "full"), {}) == 1);
  ft::check_error([&] { dsv3::write_random_checkpoint(nano, dir / "keep.txt", "f32", 1); },
                  {"'dir'", "not a directory"});
  dsv3::config bad = nano;
  bad.topk_group = 5;
  ft::check_error([&] { dsv3::write_random_checkpoint(bad, dir / "y", "f32", 1); }, {"topk_group"});
  CHECK_FALSE(std::filesystem::exists(dir / "y"));
  ft::check_error([&] { dsv3::write_random_checkpoint(dsv3::preset("671b"), dir / "z", "fp8", 1); },
                  {"'config'", "at most 16 GiB"});
  CHECK_FALSE(std::filesystem::exists(dir / "z"));
}

TEST_CASE("check_checkpoint rejects a checkpoint of another config, naming the tensors") {
  ft::scratch_dir dir;
  dsv3::write_random_checkpoint(dsv3::preset("nano"), dir / "m", "f32", 1);
  io::checkpoint const ck(dir / "m");
  dsv3::config other = dsv3::preset("nano");
  other.topk_method = "greedy";  // a config without e_score_correction_bias
  ft::check_error([&] { (void)dsv3::check_checkpoint(other, ck); },
                  {"unexpected tensor", "model.layers.1.mlp.gate.e_score_correction_bias"});
  other = dsv3::preset("nano");
  other.vocab_size = 65;
  ft::check_error([&] { (void)dsv3::check_checkpoint(other, ck); },
                  {"model.embed_tokens.weight", "expected shape [65, 32]", "got [64, 32]"});
  other = dsv3::preset("nano");
  other.num_nextn_predict_layers = 2;
  ft::check_error([&] { (void)dsv3::check_checkpoint(other, ck); }, {"model.layers.4.", "missing"});
}
