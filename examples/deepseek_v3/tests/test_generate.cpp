// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Generation (decode.hpp, mtp_layer.hpp, speculative_decode.hpp, generate.hpp) on random tiny
// checkpoints: incremental decoding over the compressed cache == the full forward at every position;
// rollback leaves the caches bit-identical to never having drafted; the MTP layer against href's
// float64 MTP logits; greedy speculative decoding == plain greedy for several prompts and depths 1..3;
// seeded sampling is reproducible; EOS stops; bad arguments are rejected naming the argument.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "config.hpp"
#include "decode.hpp"
#include "generate.hpp"
#include "init.hpp"
#include "io_test_support.hpp"
#include "model.hpp"
#include "mtp_layer.hpp"
#include "reference_forward.hpp"
#include "speculative_decode.hpp"
#include "test_util.hpp"

namespace {

using fp8moe::test::check_error;

/// A random checkpoint of a preset in a scratch directory, loaded in fp32.
struct fixture {
  fp8moe::test::scratch_dir dir;
  dsv3::params p;
  explicit fixture(std::string const& preset = "tiny", std::uint64_t seed = 3) {
    dsv3::write_random_checkpoint(dsv3::preset(preset), dir / "ck", "f32", seed);
    p = dsv3::load_params(dir / "ck", dsv3::precision::fp32);
  }
};

fixture& tiny() {
  static fixture f;
  return f;
}

using dsv3::test::max_rel;
using dsv3::test::tokens_for;

void append_rows(std::vector<double>& out, fp8moe::matrix_view<float const> m) {
  for (std::int64_t r = 0; r < m.rows; ++r)
    for (std::int64_t c = 0; c < m.cols; ++c) out.push_back(m(r, c));
}

bool same_storage(fp8moe::attention::mla_cache const& a, fp8moe::attention::mla_cache const& b) {
  auto const eq = [](std::span<float const> x, std::span<float const> y) {
    return x.size() == y.size() && std::equal(x.begin(), x.end(), y.begin(), [](float u, float v) {
             return std::bit_cast<std::uint32_t>(u) == std::bit_cast<std::uint32_t>(v);
           });
  };
  return a.length() == b.length() && eq(a.latent_storage(), b.latent_storage()) &&
         eq(a.k_rope_storage(), b.k_rope_storage());
}

bool same_caches(dsv3::decoder const& a, dsv3::decoder const& b) {
  if (a.caches().size() != b.caches().size()) return false;
  for (std::size_t l = 0; l < a.caches().size(); ++l)
    if (!same_storage(a.caches()[l], b.caches()[l])) return false;
  return true;
}

dsv3::generate_result run(dsv3::params const& p, std::vector<std::int32_t> const& prompt,
                          dsv3::generate_options const& o) {
  return dsv3::generate(p, prompt, o);
}

}  // namespace

TEST_CASE("cache footprint: 576 values per token per layer for V3 against 40,960 for multi-head K/V") {
  auto const v3 = dsv3::cache_footprint_of(dsv3::preset("671b"));
  CHECK(v3.latent_values == 576);
  CHECK(v3.mha_values == 40960);
  CHECK(v3.layers == 61);
  CHECK(v3.latent_bytes(2) == 576 * 61 * 2);
  auto const t = dsv3::cache_footprint_of(dsv3::preset("tiny"));
  auto const& c = dsv3::preset("tiny");
  CHECK(t.latent_values == c.kv_lora_rank + c.qk_rope_head_dim);
  CHECK(t.mha_values == c.num_attention_heads * (c.qk_nope_head_dim + c.qk_rope_head_dim + c.v_head_dim));
  // the decoder's caches hold exactly that per token
  dsv3::decoder dec(tiny().p, 8);
  CHECK(dec.caches().size() == static_cast<std::size_t>(c.num_hidden_layers));
  CHECK(dec.caches()[0].values_per_token() == t.latent_values);
}

TEST_CASE("incremental decoding over the latent cache gives the full forward's logits at every position") {
  auto const& p = tiny().p;
  std::int64_t const T = 40, V = p.cfg.vocab_size;
  auto const tokens = tokens_for(V, T);
  dsv3::model full(tiny().dir / "ck", dsv3::precision::fp32);  // naive MLA, no cache
  std::vector<double> want;
  append_rows(want, full.forward(tokens));
  // prefill 5, then single tokens, a 3-token step in the middle (the verification shape)
  dsv3::decoder dec(p, T);
  std::vector<double> got;
  std::size_t at = 0;
  auto step = [&](std::size_t n) {
    append_rows(got, dec.step(std::span(tokens).subspan(at, n)));
    at += n;
  };
  step(5);
  while (at < 20) step(1);
  step(3);
  while (at < tokens.size()) step(1);
  CHECK(dec.length() == T);
  double const err = max_rel(got, want);
  MESSAGE("max |incremental - full| / max |logit| = ", err);
  // fp32 tolerance as test_forward's naive == absorbed: the two forms sum in another order (one
  // latent dot product of kv_lora_rank terms per score instead of dn + dr), measured ~1e-7
  CHECK(err < 1e-5);
  // positions continue the cache: a fresh decoder fed the same tokens in one prefill agrees
  dsv3::decoder once(p, T);
  std::vector<double> got1;
  append_rows(got1, once.step(tokens));
  CHECK(max_rel(got1, want) < 1e-5);
  // full caches refuse more, before anything is written
  check_error([&] { dec.step(std::span(tokens).first(1)); }, {"'tokens'", "at most capacity - length = 0"});
  CHECK(dec.length() == T);
  check_error([&] { once.truncate(T + 1); }, {"'n'"});
}

TEST_CASE("rollback leaves the caches bit-identical to never having drafted") {
  auto const& p = tiny().p;
  std::int64_t const V = p.cfg.vocab_size;
  auto const prompt = tokens_for(V, 9, 1);
  std::vector<std::int32_t> const drafts{5, 77, 901};
  std::int32_t const next = 42;
  dsv3::decoder a(p, 32), b(p, 32);
  a.step(prompt);
  b.step(prompt);
  std::int64_t const n = a.length();
  std::vector<std::int32_t> verify{next};
  verify.insert(verify.end(), drafts.begin(), drafts.end());
  a.step(verify);  // drafted, then every draft rejected
  CHECK_FALSE(same_caches(a, b));
  a.truncate(n);
  CHECK(same_caches(a, b));
  // and both continue identically
  auto const la = a.step(std::span(&next, 1));
  std::vector<float> const ra(la.row(0), la.row(0) + V);
  auto const lb = b.step(std::span(&next, 1));
  CHECK(std::equal(ra.begin(), ra.end(), lb.row(0)));
  CHECK(same_caches(a, b));

  // the MTP layer's cache: chained draft rows rolled back
  dsv3::mtp_drafter ma(p, 32), mb(p, 32);
  auto const& x = a.acts().x_final;  // (1, H)
  std::vector<std::int32_t> const t1{7};
  ma.forward(fp8moe::mtp::source::main_model, t1, x);
  mb.forward(fp8moe::mtp::source::main_model, t1, x);
  std::vector<std::int32_t> const chained{drafts[0]};
  ma.forward(fp8moe::mtp::source::previous_depth, chained, ma.hidden());
  CHECK_FALSE(same_storage(ma.cache(), mb.cache()));
  ma.truncate(1);
  CHECK(same_storage(ma.cache(), mb.cache()));
}

TEST_CASE("the MTP layer as mtp::mtp_module over the example's block matches href's float64 MTP logits") {
  auto const& p = tiny().p;
  std::int64_t const T = 12, V = p.cfg.vocab_size;
  auto const tokens = tokens_for(V, T, 2);
  dsv3::model m(tiny().dir / "ck", dsv3::precision::fp32);
  std::vector<float> const got = dsv3::mtp_logits(m, tokens);
  REQUIRE(static_cast<std::int64_t>(got.size()) == (T - 1) * V);
  std::vector<double> const want = dsv3::ref::mtp_logits(dsv3::ref::load(tiny().dir / "ck"), tokens);
  double const err = max_rel(std::vector<double>(got.begin(), got.end()), want);
  MESSAGE("max |mtp - href| / max |logit| = ", err);
  CHECK(err < 1e-5);  // fp32 against float64 through two blocks: test_forward's bound for the main model
  // the drafter over its cache, row by row, agrees with the whole-sequence logits
  dsv3::decoder dec(p, T);
  dec.step(tokens);
  dsv3::mtp_drafter d(p, T);
  std::vector<double> rows;
  auto const& x = dec.acts().x_final;
  for (std::int64_t i = 0; i + 1 < T; ++i)
    append_rows(rows, d.forward(fp8moe::mtp::source::main_model,
                                std::span(tokens).subspan(static_cast<std::size_t>(i + 1), 1),
                                fp8moe::make_matrix<float const>(x.row(i), 1, x.cols)));
  CHECK(max_rel(rows, std::vector<double>(got.begin(), got.end())) < 1e-5);
  check_error([&] { dsv3::mtp_logits(m, std::span(tokens).first(1)); }, {"'tokens'", "at least 2"});
}

TEST_CASE("greedy speculative decoding emits exactly plain greedy's tokens (prompts x depths 1..3)") {
  auto const& p = tiny().p;
  std::int64_t const V = p.cfg.vocab_size;
  for (std::int64_t salt : {0, 1, 2}) {
    auto const prompt = tokens_for(V, 3 + 4 * salt, salt);
    dsv3::generate_options o{.max_new = 24};
    auto const plain = run(p, prompt, o);
    REQUIRE(plain.tokens.size() == 24);
    CHECK(plain.stats.tokens_per_forward() == 1.0);
    for (std::int64_t depth : {1, 2, 3}) {
      CAPTURE(salt);
      CAPTURE(depth);
      o.speculative = true;
      o.draft_depth = depth;
      o.hook = {};
      auto const spec = run(p, prompt, o);  // the random MTP layer's own drafts (mostly rejected)
      CHECK(spec.tokens == plain.tokens);
      CHECK(spec.stats.drafted > 0);
      // drafts from an oracle (plain greedy's continuation, every 4th corrupted): accepted runs and
      // rejections at every depth exercise the rollback of both caches
      std::int64_t const P = static_cast<std::int64_t>(prompt.size());
      o.hook = [&](std::int64_t pos, std::span<std::int32_t> d) {
        for (std::size_t j = 0; j < d.size(); ++j) {
          std::int64_t const k = pos + static_cast<std::int64_t>(j) - P;  // index into plain.tokens
          d[j] = k < static_cast<std::int64_t>(plain.tokens.size())
                     ? plain.tokens[static_cast<std::size_t>(k)]
                     : 0;
          if ((pos + static_cast<std::int64_t>(j)) % 4 == 0) d[j] = (d[j] + 1) % static_cast<std::int32_t>(V);
        }
      };
      auto const oracle = run(p, prompt, o);
      CHECK(oracle.tokens == plain.tokens);
      CHECK(oracle.stats.accepted > 0);
      CHECK(oracle.stats.accepted < oracle.stats.drafted);
      CHECK(oracle.stats.tokens_per_forward() > 1.0);
      MESSAGE("depth ", depth, ": oracle acceptance ", oracle.stats.acceptance_rate(), ", tokens/forward ",
              oracle.stats.tokens_per_forward(), "; MTP acceptance ", spec.stats.acceptance_rate());
    }
  }
}

TEST_CASE("sampling: a seed reproduces a run, another seed changes it; EOS stops") {
  auto const& p = tiny().p;
  auto const prompt = tokens_for(p.cfg.vocab_size, 6);
  dsv3::generate_options o{
      .sampling = {.temperature = 1.0f, .top_k = 50, .top_p = 0.9f}, .seed = 7, .max_new = 16};
  for (bool spec : {false, true}) {
    CAPTURE(spec);
    o.speculative = spec;
    o.seed = 7;
    auto const a = run(p, prompt, o), b = run(p, prompt, o);
    CHECK(a.tokens.size() == 16);
    CHECK(a.tokens == b.tokens);
    o.seed = 8;
    CHECK(run(p, prompt, o).tokens != a.tokens);
  }
  // greedy stops at the EOS id it emits, EOS included
  dsv3::generate_options g{.max_new = 16};
  auto const plain = run(p, prompt, g);
  g.eos = plain.tokens[4];
  std::size_t const first = static_cast<std::size_t>(
      std::find(plain.tokens.begin(), plain.tokens.end(), *g.eos) - plain.tokens.begin());
  std::vector<std::int32_t> streamed;
  auto const r = dsv3::generate(p, prompt, g, [&](std::int32_t t) { streamed.push_back(t); });
  CHECK(r.why == dsv3::generate_result::stop::eos);
  CHECK(r.tokens == std::vector<std::int32_t>(plain.tokens.begin(), plain.tokens.begin() + first + 1));
  CHECK(streamed == r.tokens);
  g.speculative = true;
  CHECK(run(p, prompt, g).tokens == r.tokens);
  // the context ends generation: tiny's max_position_embeddings
  auto const ctx = dsv3::context_of(p.cfg);
  dsv3::generate_options l{.max_new = 8};
  auto const near = tokens_for(p.cfg.vocab_size, ctx - 2);
  auto const rl = run(p, near, l);
  CHECK(rl.why == dsv3::generate_result::stop::context);
  CHECK(rl.tokens.size() == 3);  // positions ctx-2, ctx-1 processed: 1 + 2 tokens
}

TEST_CASE("generate rejects bad arguments before any forward, naming them") {
  auto const& p = tiny().p;
  auto const V = p.cfg.vocab_size;
  std::vector<std::int32_t> const ok{1, 2, 3};
  auto const bad = [&](std::vector<std::int32_t> const& prompt, dsv3::generate_options const& o,
                       std::initializer_list<std::string_view> pieces) {
    check_error([&] { dsv3::generate(p, prompt, o); }, pieces);
  };
  bad({}, {}, {"'prompt'", "at least one token"});
  bad(tokens_for(V, dsv3::context_of(p.cfg) + 1), {}, {"'prompt'", "at most the context"});
  bad({1, static_cast<std::int32_t>(V)}, {}, {"'prompt'", "[0, vocab_size = 1024)", "at position 1"});
  bad(ok, {.max_new = 0}, {"'max_new'"});
  bad(ok, {.sampling = {.temperature = -1.0f}}, {"'temperature'"});
  bad(ok, {.sampling = {.top_k = -1}}, {"'top_k'"});
  bad(ok, {.sampling = {.top_p = 0.0f}}, {"'top_p'", "(0, 1]"});
  bad(ok, {.sampling = {.top_p = 1.5f}}, {"'top_p'", "(0, 1]"});
  bad(ok, {.eos = static_cast<std::int32_t>(V)}, {"'eos'"});
  bad(ok, {.speculative = true, .draft_depth = 0}, {"'draft_depth'"});
  dsv3::params no_mtp = tiny().p;
  no_mtp.cfg.num_nextn_predict_layers = 0;
  no_mtp.mtp.clear();
  check_error([&] { dsv3::generate(no_mtp, ok, {.speculative = true}); }, {"'speculative'", "MTP layer"});
  check_error([&] { dsv3::mtp_drafter d(no_mtp, 4); }, {"MTP layer"});
}
