// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// dsv3::trainer on the nano model: one step equals a float64 reference of the same update (mean of the
// batch's gradients, clip, AdamW with decay groups, the schedule's lr, the bias update); N steps equal k
// steps + a resumed N-k bit for bit; an injected NaN gradient is reported with step and tensor and the
// step skipped with weights and moments untouched; the loss falls on a fixed corpus; bf16 runs.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "config.hpp"
#include "generate.hpp"
#include "io_test_support.hpp"
#include "train.hpp"

namespace ft = fp8moe::test;

namespace {

/// A fixed token stream for nano (vocab 64): a repeating pattern with some variety, and a held-out tail.
dsv3::token_corpus nano_corpus() {
  dsv3::token_corpus c;
  std::string const text = "the quick brown fox jumps over the lazy dog; ";
  for (int i = 0; i < 40; ++i)
    for (char ch : text) c.train.push_back(static_cast<unsigned char>(ch) % 64);
  for (char ch : text + text) c.heldout.push_back(static_cast<unsigned char>(ch) % 64);
  return c;
}

dsv3::train_options nano_options(std::string const& recipe, std::int64_t steps, float lr = 1e-2f) {
  dsv3::train_options o;
  o.config = "nano";
  o.steps = steps;
  o.batch = 2;
  o.seq = 16;
  o.seed = 5;
  o.recipe = dsv3::recipe_preset(recipe).with_steps(steps, lr);
  o.log = nullptr;
  o.eval_every = 0;
  return o;
}

std::vector<float> flat(dsv3::params const& p) {
  std::vector<float> v;
  for (auto const& t : dsv3::master_tensors(p)) v.insert(v.end(), t.data.begin(), t.data.end());
  return v;
}

}  // namespace

TEST_CASE("trainer: one step equals a float64 reference of the update") {
  auto o = nano_options("fp32", 10);
  o.recipe.bias_update.gamma = 1e-2f;
  std::vector<float> g;  // the gradients the trainer saw (sum over the batch), before the update
  o.inspect_gradients = [&](std::int64_t, dsv3::params& gr) { g = flat(gr); };
  dsv3::trainer tr(o, nano_corpus());
  auto const w0 = flat(tr.master());
  auto const names = dsv3::master_tensors(tr.master());
  auto const r = tr.step();
  REQUIRE_FALSE(r.skipped);
  auto const w1 = flat(tr.master());
  REQUIRE(g.size() == w0.size());
  // float64 reference: mean gradient (B = 2), global norm, clip to 1.0, AdamW step 1 at lr(1)
  double const B = 2.0;
  double sq = 0;
  for (float x : g) sq += (x / B) * (x / B);
  double const norm = std::sqrt(sq);
  CHECK(r.grad_norm == doctest::Approx(norm).epsilon(1e-9));
  double const clip = std::min(1.0, 1.0 / (norm + 1e-6));
  double const lr = o.recipe.schedule.lr(1), b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1;
  CHECK(static_cast<double>(r.lr) == lr);
  auto const counts = tr.expert_counts();
  std::size_t off = 0, moved = 0;
  double worst = 0;
  for (auto const& t : names) {
    bool const bias = t.name.ends_with("e_score_correction_bias");
    bool const decay = t.shape.size() == 2;
    for (std::size_t j = 0; j < t.data.size(); ++j, ++off) {
      double want;
      if (bias) {
        want = w0[off];  // bias update checked below
      } else {
        double const gi = g[off] / B * clip;
        double const m = (1 - b1) * gi, v = (1 - b2) * gi * gi;
        double const mh = m / (1 - b1), vh = v / (1 - b2);
        want = w0[off] * (decay ? 1 - lr * wd : 1.0) - lr * mh / (std::sqrt(vh) + eps);
      }
      if (!bias) {
        // the float32 update rounds ~3 times on the weight's scale (decay factor, product, difference)
        // and ~8 times on the lr-sized step (lr/bc1, m, v, sqrt, scale, + eps, divide, multiply):
        // |error| <= 8 u (|w| + lr), u = 2^-24 (measured worst: ~4.1 u)
        double const tol = 8 * 0x1p-24 * (std::abs(want) + lr);
        worst = std::max(worst, std::abs(w1[off] - want) / tol);
        moved += w1[off] != w0[off];
      }
    }
  }
  CHECK(worst <= 1.0);
  CHECK(moved > w0.size() / 2);  // most weights moved
  // the bias update: gamma * sign(mean load - load) per expert of every MoE layer
  auto const& c = tr.master().cfg;
  REQUIRE(counts.size() == 2);
  for (std::size_t i = 0; i < counts.size(); ++i) {
    auto const l = static_cast<std::size_t>(tr.moe_layers()[i]);
    std::string const name = "model.layers." + std::to_string(l) + ".mlp.gate.e_score_correction_bias";
    std::size_t o2 = 0;
    for (auto const& t : names) {
      if (t.name == name) break;
      o2 += t.data.size();
    }
    std::int64_t total = 0;
    for (auto x : counts[i]) total += x;
    CHECK(total == 2 * 16 * c.num_experts_per_tok);
    for (std::int64_t e = 0; e < c.n_routed_experts; ++e) {
      std::int64_t const d = total - c.n_routed_experts * counts[i][static_cast<std::size_t>(e)];
      float const want = w0[o2 + static_cast<std::size_t>(e)] + (d > 0 ? 1e-2f : d < 0 ? -1e-2f : 0.0f);
      CHECK(w1[o2 + static_cast<std::size_t>(e)] == want);
    }
  }
}

TEST_CASE("trainer: N steps == k steps + resume N-k, bit for bit (fp32 and bf16 recipes)") {
  for (std::string const recipe : {"fp32", "bf16"}) {
    CAPTURE(recipe);
    ft::scratch_dir dir;
    auto o = nano_options(recipe, 6);
    o.eval_every = 2;
    o.out = dir / "full";
    dsv3::trainer full(o, nano_corpus());
    auto const rf = full.run();
    REQUIRE(rf.size() == 6);
    auto o1 = o;
    o1.out = dir / "part";
    o1.stop_after = 4;
    dsv3::trainer first(o1, nano_corpus());
    auto const r1 = first.run();
    REQUIRE(r1.size() == 4);
    auto o2 = o;
    o2.out = dir / "part";
    o2.resume = dir / "part";
    dsv3::trainer second(o2, nano_corpus());
    CHECK(second.step_count() == 4);
    auto const r2 = second.run();
    REQUIRE(r2.size() == 2);
    for (std::size_t i = 0; i < 6; ++i) {
      auto const& x = i < 4 ? r1[i] : r2[i - 4];
      CHECK(x.step == rf[i].step);
      CHECK(x.loss == rf[i].loss);  // bit for bit
      CHECK(x.mtp_loss == rf[i].mtp_loss);
      CHECK(x.grad_norm == rf[i].grad_norm);
    }
    auto const a = flat(full.master()), b = flat(second.master());
    CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
    CHECK(fp8moe::io::read_text_file(dir / "full" / "loss.csv") ==
          fp8moe::io::read_text_file(dir / "part" / "loss.csv"));
    CHECK(std::filesystem::exists(dir / "part" / "loss.svg"));
    // the saved weights are a HF checkpoint the model loads
    dsv3::model m(dsv3::resolve_train_checkpoint(dir / "full"), dsv3::precision::fp32);
    std::vector<std::int32_t> const ids{1, 2, 3};
    CHECK(m.forward(ids).rows == 3);
  }
}

TEST_CASE("trainer: an injected NaN gradient is reported and the step skipped, nothing touched") {
  auto o = nano_options("fp32", 5);
  std::string const target = "model.layers.2.self_attn.kv_b_proj.weight";
  o.inspect_gradients = [&](std::int64_t step, dsv3::params& g) {
    if (step != 3) return;
    for (auto const& t : dsv3::master_tensors(g))
      if (t.name == target) t.data[7] = NAN;
  };
  dsv3::trainer tr(o, nano_corpus());
  (void)tr.step();
  (void)tr.step();
  auto const w = flat(tr.master());
  auto const m = tr.state().m32;
  auto const r = tr.step();
  CHECK(r.skipped);
  CHECK(r.step == 3);
  CHECK(r.problem.find("'" + target + "' element 7") != std::string::npos);
  auto const w3 = flat(tr.master());
  CHECK(std::memcmp(w.data(), w3.data(), w.size() * sizeof(float)) == 0);
  CHECK(tr.state().m32 == m);
  CHECK(tr.state().updates == 2);
  auto const r4 = tr.step();  // training goes on
  CHECK_FALSE(r4.skipped);
  CHECK(std::isfinite(r4.loss));
  CHECK(tr.state().updates == 3);
  CHECK(std::isnan(tr.curve()[2].train));
}

TEST_CASE("trainer: the loss falls on a fixed corpus within 40 steps") {
  auto o = nano_options("fp32", 40, 1e-2f);
  dsv3::trainer tr(o, nano_corpus());
  double const start = tr.heldout_loss();
  auto const rs = tr.run();
  double const end = tr.heldout_loss();
  MESSAGE("nano held-out loss ", start, " -> ", end, " (train ", rs.front().loss, " -> ", rs.back().loss,
          ")");
  CHECK(start > 3.5);        // ~ln 64 = 4.16 at random init
  CHECK(end < 0.5 * start);  // the repeated sentence is learnt
  CHECK(rs.back().loss < 0.5 * rs.front().loss);
  // the MTP layer trains too (lambda 0.3): its cross-entropy (next-next token) falls as well
  MESSAGE("nano MTP loss ", rs.front().mtp_loss, " -> ", rs.back().mtp_loss);
  CHECK(rs.front().mtp_loss > 3.5);
  CHECK(rs.back().mtp_loss < 0.5 * rs.front().mtp_loss);
}

TEST_CASE("trainer + speculative decoding: once nano predicts the sentence, its MTP drafts are accepted") {
  // what the trainer trains is what speculative decoding drafts with: the MTP layer reads the main
  // model's state at t (after the final norm) and the embedding of token t+1 and predicts t+2. Once the
  // main model continues the sentence greedily, the MTP layer drafts the same tokens and depth-1
  // acceptance is near 100% (a misaligned draft, e.g. the state one position off, is at chance)
  auto o = nano_options("fp32", 200, 1e-2f);
  o.seq = 24;  // the generation below stays within the trained positions
  dsv3::trainer tr(o, nano_corpus());
  auto const rs = tr.run();
  auto const text = nano_corpus().heldout;
  std::vector<std::int32_t> const prompt(text.begin() + 3, text.begin() + 11);  // "quick br"
  dsv3::generate_options go{.max_new = 16, .speculative = true};
  auto const g = dsv3::generate(tr.master(), prompt, go);
  std::int64_t right = 0;
  for (std::size_t i = 0; i < 16; ++i) right += g.tokens.at(i) == text.at(11 + i);
  MESSAGE("nano after 200 steps: loss ", rs.back().loss, ", MTP loss ", rs.back().mtp_loss,
          "; greedy: ", right, " of 16 tokens continue the sentence; MTP acceptance ",
          g.stats.acceptance_rate(), " (", g.stats.accepted, " of ", g.stats.drafted, ")");
  CHECK(right >= 15);
  CHECK(g.stats.drafted >= 7);
  CHECK(g.stats.acceptance_rate() >= 0.85);
}

TEST_CASE("trainer: mtp_lambda weights the MTP term; lambda 0 leaves the MTP layer without gradient") {
  auto mtp_grad_sq = [](dsv3::params const& g) {
    double sq = 0;
    for (auto const& t : dsv3::master_tensors(g))
      if (t.name.starts_with("model.layers." + std::to_string(g.cfg.num_hidden_layers) + "."))
        for (float x : t.data) sq += static_cast<double>(x) * x;
    return sq;
  };
  double sq[2] = {0, 0};
  dsv3::step_result r[2];
  for (int i = 0; i < 2; ++i) {
    auto o = nano_options("fp32", 10);
    o.recipe.mtp_lambda = i == 0 ? 0.0f : 0.3f;
    o.inspect_gradients = [&](std::int64_t, dsv3::params& g) { sq[i] = mtp_grad_sq(g); };
    dsv3::trainer tr(o, nano_corpus());
    REQUIRE_FALSE(tr.master().mtp.empty());
    r[i] = tr.step();
  }
  CHECK(std::isnan(r[0].mtp_loss));
  CHECK(sq[0] == 0.0);
  CHECK(std::isfinite(r[1].mtp_loss));
  CHECK(r[1].mtp_loss > 3.5);  // ~ln 64 at random init
  CHECK(sq[1] > 0.0);
  CHECK(r[0].loss == r[1].loss);  // the main loss does not include the MTP term
}

TEST_CASE("trainer: bad options are named") {
  auto o = nano_options("fp32", 5);
  o.seq = 64;  // nano: max_position_embeddings 32
  ft::check_error([&] { dsv3::trainer t(o, nano_corpus()); }, {"--seq", "31"});
  o = nano_options("fp32", 5);
  auto c = nano_corpus();
  c.train[3] = 64;
  ft::check_error([&] { dsv3::trainer t(o, c); }, {"--data", "vocab_size = 64"});
  o.stop_after = 9;
  ft::check_error([&] { dsv3::trainer t(o, nano_corpus()); }, {"--stop-after"});
}

TEST_CASE("trainer: the fp8 recipe on tiny (FP8 Fprop/Dgrad/Wgrad on FP32 masters) resumes bit for bit") {
  ft::scratch_dir dir;
  dsv3::token_corpus c;
  std::string const text = "FP8 training of a tiny DeepSeek-V3 on its own words. ";
  for (int i = 0; i < 20; ++i) c.train.insert(c.train.end(), text.begin(), text.end());
  c.heldout.assign(text.begin(), text.end());
  dsv3::train_options o;
  o.config = "tiny";
  o.steps = 3;
  o.batch = 1;
  o.seq = 32;
  o.recipe = dsv3::fp8_recipe().with_steps(3, 3e-3f);
  o.log = nullptr;
  o.eval_every = 0;
  o.out = dir / "full";
  dsv3::trainer full(o, c);
  auto const rf = full.run();
  auto o1 = o;
  o1.out = dir / "part";
  o1.stop_after = 2;
  dsv3::trainer first(o1, c);
  auto const r1 = first.run();
  auto o2 = o;
  o2.out = o2.resume = dir / "part";
  dsv3::trainer second(o2, c);
  auto const r2 = second.run();
  REQUIRE(rf.size() == 3);
  REQUIRE(r1.size() == 2);
  REQUIRE(r2.size() == 1);
  CHECK(r1[0].loss == rf[0].loss);
  CHECK(r1[1].loss == rf[1].loss);
  CHECK(r2[0].loss == rf[2].loss);
  CHECK(r2[0].grad_norm == rf[2].grad_norm);
  auto const a = flat(full.master()), b = flat(second.master());
  CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
  CHECK(second.state().m16.size() == a.size());  // BF16 moments
  // the fp8 run differs from an fp32 run of the same data (the FP8 GEMMs are really used) but is close
  auto o3 = o;
  o3.out.clear();
  o3.recipe = dsv3::fp32_recipe().with_steps(3, 3e-3f);
  dsv3::trainer ref(o3, c);
  auto const r3 = ref.step();
  CHECK(r3.loss != rf[0].loss);
  CHECK(std::abs(r3.loss - rf[0].loss) < 0.01 * r3.loss);  // FP8 GEMMs: ~1e-3 relative per product
}
