// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The DeepSeek-V3 example's backward (layers.hpp *_backward, forward.hpp backward, model::backward)
// against float64 central finite differences of href's independent float64 forward
// (reference_forward.hpp) on the nano config: each layer (LM head + cross-entropy, RMSNorm, YaRN RoPE,
// MLA, dense SwiGLU MLP, MoE with the router gradient and the sequence balance loss) and the whole
// model (a sample of every parameter tensor, plus dL/d(embedding output)), with and without the MTP
// term; routing held fixed.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "config.hpp"
#include "init.hpp"
#include "model.hpp"
#include "reference_forward.hpp"
#include "test_backward_support.hpp"

using dsv3::ref::tensor;
using fp8moe::matrix_view;

namespace {

constexpr std::int64_t T = 16;  // crosses nano's YaRN original length 8

/// T distinct token ids (5 is prime to the vocabulary 64), and their next-token targets; the last
/// target is ignore_index (-100), so the mean runs over T - 1 rows.
std::vector<std::int32_t> tokens() {
  return dsv3::test::token_ids(T, 5, 3, 64);
}
std::vector<std::int32_t> targets() {
  return dsv3::test::next_targets(tokens());
}

/// Mean cross-entropy of logits (rows x V, row-major) over the targets that are not -100, in float64.
double mean_ce(std::vector<double> const& logits, std::int64_t V, std::vector<std::int32_t> const& y) {
  double sum = 0;
  int n = 0;
  for (std::size_t t = 0; t < y.size(); ++t) {
    if (y[t] == -100) continue;
    double const* row = logits.data() + t * static_cast<std::size_t>(V);
    double const mx = *std::max_element(row, row + V);
    double z = 0;
    for (std::int64_t j = 0; j < V; ++j) z += std::exp(row[j] - mx);
    sum += std::log(z) + mx - row[y[t]];
    ++n;
  }
  return sum / n;
}

/// (f(x+h) - f(x-h)) / 2h with x a double of the oracle, restored after.
double central(std::function<double()> const& f, double& x, double h) {
  double const x0 = x;
  x = x0 + h;
  double const lp = f();
  x = x0 - h;
  double const lm = f();
  x = x0;
  return (lp - lm) / (2 * h);
}

// The finite-difference step: the nano parameters and activations are O(0.1..1) and every function
// here is smooth where the routing is fixed, so the float64 central difference has truncation error
// ~ h^2 |f'''| / 6 ~ 1e-9 and rounding error ~ 1e-16 / h ~ 1e-12: far below the float32 analytic
// gradient's own error.
constexpr double h = 1e-4;

/// Worst error of analytic float32 gradients against central differences, relative to the largest
/// analytic gradient of the same tensor (so an entry with a small gradient is judged at the scale of
/// its tensor: float32 rounding is relative to the values summed, not to the result).
// The tolerance: the float32 backward rounds every product and sum (unit roundoff 6e-8) through some
// ten chained layers and sums of up to 64 terms; measured worst 3e-5 (whole model) and 4e-6 (layers).
// 1e-3 leaves room for other BLAS summation orders while a wrong term (a missing branch, transpose,
// factor or sign) gives O(1).
constexpr double tolerance = 1e-3;

struct check {
  double worst = 0;
  int count = 0;
  void add(double got, double fd, double scale) {
    double const e = std::abs(got - fd) / std::max(scale, 1e-6);
    worst = std::max(worst, e);
    ++count;
  }
};

double max_abs(float const* p, std::int64_t n) {
  double m = 0;
  for (std::int64_t i = 0; i < n; ++i) m = std::max(m, static_cast<double>(std::abs(p[i])));
  return m;
}

tensor to_tensor(matrix_view<float const> m) {
  tensor t({m.rows, m.cols});
  for (std::int64_t r = 0; r < m.rows; ++r)
    for (std::int64_t c = 0; c < m.cols; ++c) t(r, c) = m(r, c);
  return t;
}

/// sum(y * R) in float64.
double dot(tensor const& y, std::vector<float> const& R) {
  double s = 0;
  for (std::size_t i = 0; i < y.data.size(); ++i) s += y.data[i] * R[i];
  return s;
}

std::vector<float> random_floats(std::size_t n, std::uint32_t seed, float scale = 1.0f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

/// A loaded nano model after one fp32 forward, its float64 twin, and gradients.
struct fixture {
  dsv3::test::temp_checkpoint ck{"nano", 11};
  dsv3::model m{ck.dir, dsv3::precision::fp32};
  dsv3::ref::model r = dsv3::ref::load(ck.dir);
  std::vector<dsv3::detail::slot> slots;
  dsv3::params g = dsv3::make_gradients(m.config(), &slots);
  dsv3::context ctx;
  dsv3::rope_state rope = dsv3::make_rope(m.config());
  fixture() { m.forward(tokens()); }
  dsv3::layer_acts const& layer(int l) const { return m.acts().layers[static_cast<std::size_t>(l)]; }
  /// The gradient storage of HF tensor `name`.
  float* grad(std::string const& name) const {
    for (auto const& s : slots)
      if (s.name == name) return s.linear ? s.linear->f32.data : s.floats;
    FAIL("no gradient slot " << name);
    return nullptr;
  }
};

/// Checks the gradient of weight `name` (its float64 copy in f.r) at `samples` random entries against
/// central differences of `loss`.
void check_weight(fixture& f, std::string const& name, std::function<double()> const& loss, check& c,
                  int samples = 6) {
  auto& w = f.r.weights.at(name);
  float const* gw = f.grad(name);
  auto const n = static_cast<std::int64_t>(w.data.size());
  double const scale = max_abs(gw, n);
  std::mt19937 rng(static_cast<std::uint32_t>(std::hash<std::string>{}(name)));
  for (int s = 0; s < samples; ++s) {
    auto const i = static_cast<std::size_t>(rng() % static_cast<std::uint32_t>(n));
    c.add(gw[i], central(loss, w.data[i], h), scale);
  }
}

/// Checks dx (rows x cols, float) against central differences of `loss` over every entry of X.
void check_input(tensor& X, matrix_view<float const> dx, std::function<double()> const& loss, check& c) {
  double const scale = max_abs(dx.data, dx.rows * dx.cols);
  for (std::int64_t r = 0; r < X.rows(); ++r)
    for (std::int64_t k = 0; k < X.cols(); ++k) c.add(dx(r, k), central(loss, X(r, k), h), scale);
}

}  // namespace

TEST_CASE("backward: LM head + cross-entropy, RMSNorm and YaRN RoPE against float64 central differences") {
  fixture f;
  auto const& cfg = f.m.config();
  auto const& p = f.m.parameters();
  auto const& acts = f.m.acts();
  std::int64_t const H = cfg.hidden_size, V = cfg.vocab_size;
  auto const y = targets();

  SUBCASE("cross-entropy + LM head (linear_backward)") {
    tensor X = to_tensor(acts.x_norm);
    auto const loss = [&] {
      return mean_ce(dsv3::ref::linear(X, f.r.weights.at("lm_head.weight")).data, V, y);
    };
    std::vector<float> dl(static_cast<std::size_t>(T * V)), dx(static_cast<std::size_t>(T * H), 7.0f);
    auto const dlogits = fp8moe::make_matrix(dl.data(), T, V);
    fp8moe::nn::cross_entropy_backward(f.ctx.exec, matrix_view<float const>(acts.logits), y, dlogits);
    dsv3::linear_backward(f.ctx, acts.x_norm, p.lm_head, dlogits, fp8moe::make_matrix(dx.data(), T, H), false,
                          f.g.lm_head.f32);
    check c;
    check_input(X, fp8moe::make_matrix<float const>(dx.data(), T, H), loss, c);
    check_weight(f, "lm_head.weight", loss, c, 40);
    MESSAGE("head + cross-entropy: worst relative error " << c.worst << " over " << c.count);
    CHECK(c.worst < tolerance);
  }
  SUBCASE("RMSNorm (input_layernorm of layer 1), dx accumulating") {
    auto const& a = f.layer(1);
    tensor X = to_tensor(a.x);
    std::string const wn = "model.layers.1.input_layernorm.weight";
    auto const R = random_floats(static_cast<std::size_t>(T * H), 3);
    auto const loss = [&] { return dot(dsv3::ref::rms_norm(X, f.r.weights.at(wn), cfg.rms_norm_eps), R); };
    std::vector<float> dx(static_cast<std::size_t>(T * H), 0.5f);  // accumulates onto 0.5
    dsv3::rmsnorm_backward(f.ctx, a.x, p.layers[1].attn_norm, a.attn_rstd,
                           fp8moe::make_matrix<float const>(R.data(), T, H),
                           fp8moe::make_matrix(dx.data(), T, H), f.g.layers[1].attn_norm);
    for (auto& v : dx) v -= 0.5f;
    check c;
    check_input(X, fp8moe::make_matrix<float const>(dx.data(), T, H), loss, c);
    check_weight(f, wn, loss, c, 32);
    MESSAGE("rmsnorm: worst relative error " << c.worst << " over " << c.count);
    CHECK(c.worst < tolerance);
  }
  SUBCASE("YaRN RoPE on 3 groups of [nope 8 | rope 8] columns, positions past the original length") {
    std::int64_t const dr = cfg.qk_rope_head_dim, G = 2 * dr, heads = 3;
    auto const x0 = random_floats(static_cast<std::size_t>(T * heads * G), 5);
    tensor X({T, heads * G});
    for (std::size_t i = 0; i < x0.size(); ++i) X.data[i] = x0[i];
    auto const R = random_floats(x0.size(), 6);
    auto const inv = dsv3::ref::rope_inv_freq(cfg);
    double const af = dsv3::ref::rope_attention_factor(cfg);
    auto const loss = [&] {
      tensor Y = X;
      for (std::int64_t t = 0; t < T; ++t)
        for (std::int64_t hd = 0; hd < heads; ++hd)
          dsv3::ref::rope_rotate(Y.row(t).subspan(hd * G + dr, dr), t, inv, af);
      return dot(Y, R);
    };
    std::vector<float> d = R;  // rotated-value gradient, overwritten in place
    dsv3::rope_backward(f.ctx, f.rope, acts.positions, fp8moe::make_matrix(d.data(), T, heads * G), heads, G,
                        dr);
    check c;
    check_input(X, fp8moe::make_matrix<float const>(d.data(), T, heads * G), loss, c);
    MESSAGE("rope: worst relative error " << c.worst << " over " << c.count);
    CHECK(c.worst < tolerance);
  }
}

TEST_CASE("backward: MLA, dense SwiGLU MLP and MoE layers against float64 central differences") {
  fixture f;
  auto const& cfg = f.m.config();
  auto const& p = f.m.parameters();
  std::int64_t const H = cfg.hidden_size;
  auto const R = random_floats(static_cast<std::size_t>(T * H), 9);
  auto const dout = fp8moe::make_matrix<float const>(R.data(), T, H);
  std::vector<float> dx(static_cast<std::size_t>(T * H));
  auto const dxv = fp8moe::make_matrix(dx.data(), T, H);

  SUBCASE("MLA (naive) of layer 0: q/kv low-rank projections, norms, RoPE, attention core, o_proj") {
    auto const& a = f.layer(0);
    tensor X = to_tensor(a.attn_in);
    std::string const pre = "model.layers.0.self_attn.";
    auto const loss = [&] { return dot(dsv3::ref::mla(f.r, pre, X), R); };
    std::fill(dx.begin(), dx.end(), 0.0f);  // accumulates
    dsv3::mla_backward(f.ctx, p.layers[0].attn, f.rope, f.m.acts().positions, a.attn_in, a.attn, dout, dxv,
                       f.g.layers[0].attn);
    check c;
    check_input(X, dxv, loss, c);
    for (char const* w :
         {"q_a_proj.weight", "q_a_layernorm.weight", "q_b_proj.weight", "kv_a_proj_with_mqa.weight",
          "kv_a_layernorm.weight", "kv_b_proj.weight", "o_proj.weight"})
      check_weight(f, pre + w, loss, c, 12);
    MESSAGE("mla: worst relative error " << c.worst << " over " << c.count);
    CHECK(c.worst < tolerance);
  }
  SUBCASE("dense SwiGLU MLP of layer 0, dx written over poison") {
    auto const& a = f.layer(0);
    tensor X = to_tensor(a.ffn_in);
    std::string const pre = "model.layers.0.mlp.";
    auto const loss = [&] { return dot(dsv3::ref::swiglu_mlp(f.r, pre, X, cfg.intermediate_size), R); };
    std::fill(dx.begin(), dx.end(), std::nanf(""));  // written
    dsv3::mlp_backward(f.ctx, p.layers[0].mlp, a.ffn_in, a.mlp, dout, dxv, false, f.g.layers[0].mlp);
    check c;
    check_input(X, dxv, loss, c);
    for (char const* w : {"gate_proj.weight", "up_proj.weight", "down_proj.weight"})
      check_weight(f, pre + w, loss, c, 16);
    MESSAGE("mlp: worst relative error " << c.worst << " over " << c.count);
    CHECK(c.worst < tolerance);
  }
  SUBCASE("MoE of layer 1: routed experts, router gate through the unbiased scores, shared expert") {
    auto const& a = f.layer(1);
    tensor X = to_tensor(a.ffn_in);
    std::string const pre = "model.layers.1.mlp.";
    auto const loss = [&] { return dot(dsv3::ref::moe(f.r, pre, X), R); };
    std::fill(dx.begin(), dx.end(), std::nanf(""));  // written
    dsv3::moe_backward(f.ctx, p.layers[1].moe, dsv3::router_of(cfg), a.ffn_in, a.moe, dout, dxv,
                       f.g.layers[1].moe);
    check c;
    check_input(X, dxv, loss, c);
    check_weight(f, pre + "gate.weight", loss, c, 24);
    for (int e : {0, 3, 7})
      for (char const* w : {"gate_proj.weight", "up_proj.weight", "down_proj.weight"})
        check_weight(f, pre + "experts." + std::to_string(e) + "." + w, loss, c, 8);
    for (char const* w : {"gate_proj.weight", "up_proj.weight", "down_proj.weight"})
      check_weight(f, pre + "shared_experts." + w, loss, c, 8);
    // the bias only selects: no gradient
    float const* gb = f.grad(pre + "gate.e_score_correction_bias");
    CHECK(max_abs(gb, cfg.n_routed_experts) == 0.0);
    MESSAGE("moe: worst relative error " << c.worst << " over " << c.count);
    CHECK(c.worst < tolerance);
  }
}

TEST_CASE("backward: the sequence balance loss's gradient reaches the router gate and the MoE input") {
  // dout = 0 isolates the balance term (DeepSeek-V3 Eq. 17-20): per sequence of L tokens,
  // alpha * sum_i f_i P_i with P_i = (1/L) sum_t s_ti / sum_j s_tj, s = sigmoid(x gate^T), and
  // f_i = E/(k L) * #{t : i in TopK(s_t)}, piecewise constant (held at its value at x, as the
  // gradient treats it). The oracle evaluates it in float64, independently of moe/.
  fixture f;
  auto const& cfg = f.m.config();
  auto const& p = f.m.parameters();
  std::int64_t const H = cfg.hidden_size, E = cfg.n_routed_experts, k = cfg.num_experts_per_tok, L = 8;
  auto const& a = f.layer(2);
  auto const rc = dsv3::router_of(cfg);
  fp8moe::moe::sequence_balance_config const bal{.alpha = 0.5f, .sequence_length = L};
  std::vector<float> zero(static_cast<std::size_t>(T * H), 0.0f),
      dx(static_cast<std::size_t>(T * H), std::nanf(""));
  dsv3::moe_backward(f.ctx, p.layers[2].moe, rc, a.ffn_in, a.moe,
                     fp8moe::make_matrix<float const>(zero.data(), T, H),
                     fp8moe::make_matrix(dx.data(), T, H), f.g.layers[2].moe, bal);
  tensor X = to_tensor(a.ffn_in);
  std::string const gname = "model.layers.2.mlp.gate.weight";
  auto const scores = [&] {
    tensor s = dsv3::ref::linear(X, f.r.weights.at(gname));  // (T, E)
    for (auto& v : s.data) v = dsv3::ref::sigmoid(v);
    return s;
  };
  std::vector<double> fcount(static_cast<std::size_t>((T / L) * E), 0.0);  // f at x, held fixed
  {
    tensor const s = scores();
    for (std::int64_t t = 0; t < T; ++t) {
      std::vector<std::int64_t> order(static_cast<std::size_t>(E));
      for (std::int64_t e = 0; e < E; ++e) order[static_cast<std::size_t>(e)] = e;
      std::stable_sort(order.begin(), order.end(), [&](auto i, auto j) { return s(t, i) > s(t, j); });
      for (std::int64_t j = 0; j < k; ++j)
        fcount[static_cast<std::size_t>((t / L) * E + order[static_cast<std::size_t>(j)])] += 1;
    }
  }
  auto const loss = [&] {
    tensor const s = scores();
    double total = 0;
    for (std::int64_t q = 0; q < T / L; ++q)
      for (std::int64_t t = q * L; t < (q + 1) * L; ++t) {
        double sum = 0;
        for (std::int64_t e = 0; e < E; ++e) sum += s(t, e);
        for (std::int64_t e = 0; e < E; ++e)
          total += static_cast<double>(E) / static_cast<double>(k * L) *
                   fcount[static_cast<std::size_t>(q * E + e)] * s(t, e) / sum / static_cast<double>(L);
      }
    return bal.alpha * total / static_cast<double>(T / L);
  };
  CHECK(std::abs(loss() - fp8moe::moe::sequence_balance_loss(
                              f.ctx.exec, rc, matrix_view<float const>(a.moe.logits), bal)) < 1e-5 * loss());
  check c;
  double const sx = max_abs(dx.data(), T * H);
  check_input(X, fp8moe::make_matrix<float const>(dx.data(), T, H), loss, c);
  check_weight(f, gname, loss, c, 48);
  MESSAGE("balance: worst relative error " << c.worst << " over " << c.count << " (dx scale " << sx << ")");
  CHECK(sx > 0);
  CHECK(c.worst < tolerance);
}

TEST_CASE("backward: the whole nano model against float64 central differences, every tensor kind") {
  fixture f;
  auto const& cfg = f.m.config();
  std::int64_t const H = cfg.hidden_size, V = cfg.vocab_size;
  auto const tok = tokens();
  auto const y = targets();
  std::vector<float> demb(static_cast<std::size_t>(T * H), std::nanf(""));
  auto const loss = f.m.backward(y, f.g, {}, fp8moe::make_matrix(demb.data(), T, H));
  auto const ref_loss = [&] { return mean_ce(dsv3::ref::logits(f.r, tok), V, y); };
  double const l0 = ref_loss();
  MESSAGE("loss " << loss.main << " (float64 oracle " << l0 << ")");
  CHECK(std::abs(loss.main - l0) < 1e-5 * l0);
  CHECK(loss.balance == 0.0);

  // dL/d(embedding output) row t is the embedding gradient's row tokens[t] (the tokens are distinct)
  float const* ge = f.grad("model.embed_tokens.weight");
  double demb_err = 0;
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t j = 0; j < H; ++j)
      demb_err =
          std::max(demb_err, static_cast<double>(std::abs(demb[static_cast<std::size_t>(t * H + j)] -
                                                          ge[tok[static_cast<std::size_t>(t)] * H + j])));
  CHECK(demb_err == 0.0);

  std::string const mtp_prefix = "model.layers." + std::to_string(cfg.num_hidden_layers) + ".";
  check c;
  int tensors = 0;
  std::mt19937 rng(5);
  for (auto const& s : f.slots) {
    std::int64_t n = 1;
    for (auto d : s.shape) n *= d;
    float const* gw = s.linear ? s.linear->f32.data : s.floats;
    if (s.name.starts_with(mtp_prefix)) {  // the MTP module is not in this loss: untouched
      CHECK_MESSAGE(max_abs(gw, n) == 0.0, s.name);
      continue;
    }
    auto& w = f.r.weights.at(s.name);
    double const scale = max_abs(gw, n);
    for (int k = 0; k < 3; ++k) {
      std::size_t i = rng() % static_cast<std::uint32_t>(n);
      if (s.name == "model.embed_tokens.weight")  // a row the tokens read
        i = static_cast<std::size_t>(tok[rng() % T] * H + static_cast<std::int32_t>(rng() % H));
      double const fd = central(ref_loss, w.data[i], h);
      double const e = std::abs(gw[i] - fd) / std::max(scale, 1e-6);
      if (e >= tolerance)
        MESSAGE(s.name << "[" << i << "]: analytic " << gw[i] << ", central difference " << fd);
      c.add(gw[i], fd, scale);
    }
    ++tensors;
  }
  MESSAGE("whole model: worst relative error " << c.worst << " over " << c.count << " entries of " << tensors
                                               << " tensors");
  CHECK(tensors > 60);
  CHECK(c.worst < tolerance);
  // the loss is d-weighted over T-1 valid rows: the ignored last target adds nothing
  CHECK(std::isfinite(loss.total()));
}

TEST_CASE(
    "backward: the MTP term (lambda 0.3, depth 1) of the whole nano model against float64 differences") {
  fixture f;
  auto const& cfg = f.m.config();
  std::int64_t const H = cfg.hidden_size, V = cfg.vocab_size;
  auto const tok = tokens();
  auto const y = targets();
  float const lambda = 0.3f;
  auto const loss = f.m.backward(y, f.g, {.mtp_weight = lambda});
  // href's MTP logits (T-1, V): row i (main state at i after the final norm, token i+1) predicts
  // token i+2 = y[i+1]; the last row's target is y[T-1] = ignore_index.
  std::vector<std::int32_t> ym(y.begin() + 1, y.end());
  auto const ref_loss = [&] {
    return mean_ce(dsv3::ref::logits(f.r, tok), V, y) +
           lambda * mean_ce(dsv3::ref::mtp_logits(f.r, tok, 1, dsv3::ref::mtp_input::post_final_norm), V, ym);
  };
  double const mtp_ref = lambda * mean_ce(dsv3::ref::mtp_logits(f.r, tok), V, ym);
  MESSAGE("loss " << loss.main << " + mtp " << loss.mtp << " (float64 oracle mtp " << mtp_ref << ")");
  CHECK(std::abs(loss.mtp - mtp_ref) < 1e-5 * mtp_ref);
  CHECK(loss.total() == doctest::Approx(loss.main + loss.mtp));
  check c;
  int tensors = 0;
  std::mt19937 rng(8);
  for (auto const& s : f.slots) {
    std::int64_t n = 1;
    for (auto d : s.shape) n *= d;
    float const* gw = s.linear ? s.linear->f32.data : s.floats;
    auto& w = f.r.weights.at(s.name);
    double const scale = max_abs(gw, n);
    for (int k = 0; k < 2; ++k) {
      std::size_t i = rng() % static_cast<std::uint32_t>(n);
      if (s.name.ends_with("embed_tokens.weight"))  // a row the tokens read
        i = static_cast<std::size_t>(tok[rng() % T] * H + static_cast<std::int32_t>(rng() % H));
      double const fd = central(ref_loss, w.data[i], h);
      if (std::abs(gw[i] - fd) >= tolerance * std::max(scale, 1e-6))
        MESSAGE(s.name << "[" << i << "]: analytic " << gw[i] << ", central difference " << fd);
      c.add(gw[i], fd, scale);
    }
    ++tensors;
  }
  MESSAGE("whole model + MTP: worst relative error " << c.worst << " over " << c.count << " entries of "
                                                     << tensors << " tensors");
  CHECK(c.worst < tolerance);
  // the MTP layer's tensors did get gradients
  std::string const mtp = "model.layers." + std::to_string(cfg.num_hidden_layers) + ".";
  CHECK(max_abs(f.grad(mtp + "eh_proj.weight"), H * 2 * H) > 0);
  CHECK(max_abs(f.grad(mtp + "mlp.gate.weight"), cfg.n_routed_experts * H) > 0);
}

TEST_CASE("backward: routing held fixed to another forward gives the same gradients; errors before writes") {
  fixture f;
  auto const y = targets();
  f.m.backward(y, f.g);
  dsv3::model m2(f.m.parameters());  // the same parameter storage
  m2.forward(tokens(), &f.m.acts());
  auto g2 = dsv3::make_gradients(m2.config());
  m2.backward(y, g2);
  auto const* a = reinterpret_cast<float const*>(f.g.storage.get());
  auto const* b = reinterpret_cast<float const*>(g2.storage.get());
  auto const n = static_cast<std::int64_t>(f.g.bytes / sizeof(float));
  double const scale = max_abs(a, n);
  double err = 0;
  for (std::int64_t i = 0; i < n; ++i) err = std::max(err, static_cast<double>(std::abs(a[i] - b[i])));
  CHECK(err <= 1e-5 * scale);

  // gradient accumulation: a second backward doubles every gradient
  m2.backward(y, g2);
  double acc = 0;
  for (std::int64_t i = 0; i < n; ++i) acc = std::max(acc, static_cast<double>(std::abs(b[i] - 2 * a[i])));
  CHECK(acc <= 2e-5 * scale);
  dsv3::zero_gradients(g2);
  CHECK(max_abs(b, n) == 0.0);

  // bad targets / gradients: an fp8moe::error naming the argument, gradients untouched
  std::vector<std::int32_t> bad = y;
  bad[3] = 64;
  CHECK_THROWS_WITH_AS(m2.backward(bad, g2), doctest::Contains("targets"), fp8moe::error);
  CHECK_THROWS_WITH_AS(m2.backward(std::vector<std::int32_t>(5, 1), g2), doctest::Contains("targets"),
                       fp8moe::error);
  auto wrong = dsv3::make_gradients(dsv3::tiny_config());
  CHECK_THROWS_WITH_AS(m2.backward(y, wrong), doctest::Contains("make_gradients"), fp8moe::error);
  CHECK(max_abs(b, n) == 0.0);
  dsv3::model fresh(f.m.parameters());
  CHECK_THROWS_WITH_AS(fresh.backward(y, g2), doctest::Contains("forward"), fp8moe::error);
}

TEST_CASE("backward: dsv3::decoder_block's backward needs gradients and the naive form without a cache") {
  fixture f;
  auto const& p = f.m.parameters();
  auto const& w = p.mtp.at(0).block;
  std::int64_t const n = 4, H = p.cfg.hidden_size;
  std::vector<float> x(static_cast<std::size_t>(n * H), 0.1f), y(x.size()), dx(x.size());
  std::vector<std::int32_t> const pos{0, 1, 2, 3};
  auto const X = fp8moe::make_matrix<float const>(x.data(), n, H);
  auto const Y = fp8moe::make_matrix(y.data(), n, H);
  auto const DX = fp8moe::make_matrix(dx.data(), n, H);
  fp8moe::host_executor ex;
  auto const back = [&](dsv3::decoder_block& b, dsv3::decoder_block::state st) {
    b.backward(ex, st, matrix_view<float const>(Y), DX, {});
  };
  dsv3::decoder_block inference(f.ctx, p, w, f.rope);  // no gradients to write into
  auto st = inference.forward(ex, X, pos, Y, {});
  CHECK_THROWS_WITH_AS(back(inference, st), doctest::Contains("gradients to write into"), fp8moe::error);
  dsv3::decoder_block training(f.ctx, p, w, f.rope, &f.g.mtp.at(0).block);
  st = training.forward(ex, X, pos, Y, {});
  CHECK_THROWS_WITH_AS(back(training, {n - 1}), doctest::Contains("'state'"), fp8moe::error);
  back(training, st);
  CHECK(max_abs(dx.data(), n * H) > 0);
  fp8moe::attention::mla_cache cache(f.rope.dims, 8);
  CHECK_THROWS_WITH_AS(training.attach(&cache), doctest::Contains("absorbed"), fp8moe::error);  // naive ctx
  dsv3::context absorbed;
  absorbed.attention = dsv3::mla_form::absorbed;
  dsv3::decoder_block cached(absorbed, p, w, f.rope, &f.g.mtp.at(0).block);
  cached.attach(&cache);
  st = cached.forward(ex, X, pos, Y, {});
  CHECK(cache.length() == n);
  CHECK_THROWS_WITH_AS(back(cached, st), doctest::Contains("naive MLA form"), fp8moe::error);
}
