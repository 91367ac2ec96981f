// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// One DeepSeek-V3-style MoE layer on one rank, end to end on the host: FP32 gate (nn::matmul), sigmoid
// group-limited router with the aux-loss-free bias, FP8 (1x128 / 128x128) grouped SwiGLU experts plus a
// shared expert, forward and full backward, checked against a float64 model of the same layer without FP8;
// then the bias update and the DualPipe schedule such layers train under. Prints one screen; exit 0 = checks
// pass.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "../common/example_util.hpp"
#include "fp8moe/fp8moe.hpp"
#include "fp8moe/nn/matmul.hpp"

namespace fm = fp8moe;
namespace moe = fp8moe::moe;
namespace fs = fp8moe::scaling;
namespace pp = fp8moe::pipeline;

namespace {

using fp8moe::examples::clock_type;
using fp8moe::examples::ms_since;
using fp8moe::examples::normal;
using fp8moe::examples::quantized_stack;

double rel_l2(std::vector<float> const& got, std::vector<double> const& ref) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    num += (got[i] - ref[i]) * (got[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / den);
}

double silu(double x) {
  return x / (1.0 + std::exp(-x));
}

/// float64 model of the layer (no FP8): out = sum_j w_tj * E_{id_tj}(x_t) + shared(x_t).
std::vector<double> reference_forward(std::vector<float> const& x, moe::route_result const& r,
                                      std::vector<float> const& w13, std::vector<float> const& w2,
                                      std::vector<float> const& s13, std::vector<float> const& s2,
                                      std::int64_t T, std::int64_t H, std::int64_t I, std::int64_t Is) {
  std::vector<double> out(static_cast<std::size_t>(T * H), 0.0);
  auto mlp = [&](float const* a13, float const* a2, std::int64_t inter, std::int64_t t, double scale) {
    std::vector<double> act(static_cast<std::size_t>(inter));
    for (std::int64_t i = 0; i < inter; ++i) {
      double g = 0, u = 0;
      for (std::int64_t h = 0; h < H; ++h) {
        g += static_cast<double>(a13[i * H + h]) * x[t * H + h];
        u += static_cast<double>(a13[(inter + i) * H + h]) * x[t * H + h];
      }
      act[i] = silu(g) * u;
    }
    for (std::int64_t h = 0; h < H; ++h) {
      double y = 0;
      for (std::int64_t i = 0; i < inter; ++i) y += static_cast<double>(a2[h * inter + i]) * act[i];
      out[t * H + h] += scale * y;
    }
  };
#pragma omp parallel for schedule(dynamic)
  for (std::int64_t t = 0; t < T; ++t) {
    for (std::int64_t j = 0; j < r.ids.cols(); ++j) {
      std::int64_t const e = r.ids(t, j);
      mlp(w13.data() + e * 2 * I * H, w2.data() + e * H * I, I, t, r.weights(t, j));
    }
    mlp(s13.data(), s2.data(), Is, t, 1.0);
  }
  return out;
}

/// float64 model of the layer's backward (no FP8), for dout: dx, d(routing weights), dW13, dW2 and the
/// shared expert's dS13, dS2. Per slot: act = silu(g) u, y = W2 act; dy = w dout, dw = <dout, y>,
/// da = W2^T dy, dg = da u s (1 + g (1 - s)), du = da silu(g); dW13 += [dg; du] x^T, dW2 += dy act^T,
/// dx += W13^T [dg; du].
struct reference_grads {
  std::vector<double> dx, dw, dw13, dw2, ds13, ds2;
};
reference_grads reference_backward(std::vector<float> const& x, moe::route_result const& r,
                                   std::vector<float> const& w13, std::vector<float> const& w2,
                                   std::vector<float> const& s13, std::vector<float> const& s2,
                                   std::vector<float> const& dout, std::int64_t T, std::int64_t H,
                                   std::int64_t I, std::int64_t Is, std::int64_t E) {
  std::int64_t const k = r.ids.cols();
  reference_grads g;
  g.dx.assign(static_cast<std::size_t>(T * H), 0.0);
  g.dw.assign(static_cast<std::size_t>(T * k), 0.0);
  g.dw13.assign(w13.size(), 0.0);
  g.dw2.assign(w2.size(), 0.0);
  g.ds13.assign(s13.size(), 0.0);
  g.ds2.assign(s2.size(), 0.0);
  // Slot j of token t (j = k: the shared expert, weight 1): its act (inter) and [dg; du] (2 inter).
  std::int64_t const slots = k + 1, width = std::max(I, Is);
  std::vector<double> act(static_cast<std::size_t>(T * slots * width)),
      dh(static_cast<std::size_t>(T * slots * 2 * width));
  auto weights_of = [&](std::int64_t j, std::int64_t e) {
    return j < k ? std::tuple{w13.data() + e * 2 * I * H, w2.data() + e * H * I, I}
                 : std::tuple{s13.data(), s2.data(), Is};
  };
#pragma omp parallel for schedule(dynamic)
  for (std::int64_t t = 0; t < T; ++t) {
    std::vector<double> gu(static_cast<std::size_t>(2 * width)), da(static_cast<std::size_t>(width));
    for (std::int64_t j = 0; j < slots; ++j) {
      std::int64_t const e = j < k ? r.ids(t, j) : 0;
      double const w = j < k ? r.weights(t, j) : 1.0;
      auto const [a13, a2, inter] = weights_of(j, e);
      double* const ac = &act[(t * slots + j) * width];
      double* const d = &dh[(t * slots + j) * 2 * width];
      for (std::int64_t c = 0; c < 2 * inter; ++c) {
        double v = 0;
        for (std::int64_t h = 0; h < H; ++h) v += static_cast<double>(a13[c * H + h]) * x[t * H + h];
        gu[c] = v;
      }
      for (std::int64_t i = 0; i < inter; ++i) ac[i] = silu(gu[i]) * gu[inter + i], da[i] = 0;
      double dwt = 0;
      for (std::int64_t h = 0; h < H; ++h) {
        double y = 0;
        for (std::int64_t i = 0; i < inter; ++i) y += static_cast<double>(a2[h * inter + i]) * ac[i];
        dwt += static_cast<double>(dout[t * H + h]) * y;
        double const dy = w * dout[t * H + h];
        for (std::int64_t i = 0; i < inter; ++i) da[i] += static_cast<double>(a2[h * inter + i]) * dy;
      }
      if (j < k) g.dw[t * k + j] = dwt;
      for (std::int64_t i = 0; i < inter; ++i) {
        double const gi = gu[i], sg = 1.0 / (1.0 + std::exp(-gi));
        d[i] = da[i] * gu[inter + i] * sg * (1 + gi * (1 - sg));
        d[inter + i] = da[i] * silu(gi);
      }
      for (std::int64_t h = 0; h < H; ++h) {
        double v = 0;
        for (std::int64_t c = 0; c < 2 * inter; ++c) v += static_cast<double>(a13[c * H + h]) * d[c];
        g.dx[t * H + h] += v;
      }
    }
  }
  // Weight gradients: expert e (index E = the shared expert) sums over its slots; experts in parallel.
#pragma omp parallel for schedule(dynamic)
  for (std::int64_t e = 0; e <= E; ++e) {
    bool const sh = e == E;
    std::int64_t const inter = sh ? Is : I;
    double* const d13 = sh ? g.ds13.data() : &g.dw13[e * 2 * I * H];
    double* const d2 = sh ? g.ds2.data() : &g.dw2[e * H * I];
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t j = 0; j < slots; ++j) {
        if (sh != (j == k) || (!sh && r.ids(t, j) != e)) continue;
        double const w = sh ? 1.0 : r.weights(t, j);
        double const* const ac = &act[(t * slots + j) * width];
        double const* const d = &dh[(t * slots + j) * 2 * width];
        for (std::int64_t h = 0; h < H; ++h) {
          double const dy = w * dout[t * H + h];
          for (std::int64_t i = 0; i < inter; ++i) d2[h * inter + i] += dy * ac[i];
        }
        for (std::int64_t c = 0; c < 2 * inter; ++c)
          for (std::int64_t h = 0; h < H; ++h) d13[c * H + h] += d[c] * x[t * H + h];
      }
  }
  return g;
}

}  // namespace

int main(int argc, char** argv) {
  std::int64_t T = 1024;  // tokens of one micro-batch
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--tokens") T = std::atoll(argv[i + 1]);
  constexpr std::int64_t H = 512, I = 256, Is = 256, E = 32;
  constexpr moe::router_config rc{.experts = E,
                                  .groups = 8,
                                  .topk_groups = 4,
                                  .k = 8,
                                  .score = moe::score_function::sigmoid,
                                  .route_scale = 2.5f};
  fm::host_executor exec;
  bool ok = true;
  std::printf(
      "moe_layer: T=%lld tokens, H=%lld, %lld routed experts (I=%lld) in %d groups, keep %d, top-%d, "
      "1 shared expert (I=%lld), %d threads\n",
      static_cast<long long>(T), static_cast<long long>(H), static_cast<long long>(E),
      static_cast<long long>(I), rc.groups, rc.topk_groups, rc.k, static_cast<long long>(Is),
      exec.num_threads());

  // ---- inputs and weights (float masters; the block quantizes x itself, weights are FP8 128x128)
  auto const x = normal(static_cast<std::size_t>(T * H), 1.0f, 1);              // (T,H)
  auto const gate = normal(static_cast<std::size_t>(E * H), 0.05f, 2);          // (E,H)
  auto const w13 = normal(static_cast<std::size_t>(E * 2 * I * H), 0.044f, 3);  // (E,2I,H)
  auto const w2 = normal(static_cast<std::size_t>(E * H * I), 0.0625f, 4);      // (E,H,I)
  auto const s13 = normal(static_cast<std::size_t>(2 * Is * H), 0.044f, 5);     // (2Is,H)
  auto const s2 = normal(static_cast<std::size_t>(H * Is), 0.0625f, 6);         // (H,Is)
  std::vector<float> bias(static_cast<std::size_t>(E), 0.0f);                   // (E)
  for (std::int64_t e = 0; e < E; ++e) bias[e] = -0.02f + 0.04f * static_cast<float>(e % 5) / 4.0f;
  quantized_stack const q13(exec, w13, E, 2 * I, H), q2(exec, w2, E, H, I), qs13(exec, s13, 1, 2 * Is, H),
      qs2(exec, s2, 1, H, Is);

  // ---- router: logits = x gate^T (FP32: DeepSeek-V3 keeps the gate out of FP8, so nn::matmul),
  // sigmoid scores, bias for selection only
  std::vector<float> logits(static_cast<std::size_t>(T * E));  // (T,E)
  fm::nn::matmul(exec, fm::make_matrix(x.data(), T, H),
                 fm::nn::transposed(fm::make_matrix(gate.data(), E, H)),
                 fm::make_matrix(logits.data(), T, E));
  auto t0 = clock_type::now();
  auto const r = moe::route(exec, rc, fm::matrix_view<float const>(fm::make_matrix(logits.data(), T, E)),
                            fm::vector_view<float const>(fm::make_vector(bias.data(), E)));
  double const route_ms = ms_since(t0);
  std::int32_t cmin = r.counts[0], cmax = r.counts[0];
  for (auto c : r.counts) cmin = std::min(cmin, c), cmax = std::max(cmax, c);
  std::printf("  route            %8.2f ms   tokens per expert: min %d, max %d, mean %.1f\n", route_ms, cmin,
              cmax, static_cast<double>(T * rc.k) / E);

  // ---- FP8 expert block forward
  moe::expert_block_config const cfg{};
  moe::expert_weights<> const ew{q13.view(), q2.view()};
  moe::shared_expert_weights<> const sw{qs13.matrix(0), qs2.matrix(0)};
  moe::expert_block_state st;
  std::vector<float> out(static_cast<std::size_t>(T * H));  // (T,H)
  t0 = clock_type::now();
  moe::expert_block(exec, cfg, fm::matrix_view<float const>(fm::make_matrix(x.data(), T, H)), r.ids.view(),
                    r.weights.view(), ew, sw, fm::make_matrix(out.data(), T, H), st);
  double const fwd_ms = ms_since(t0);
  auto const ref = reference_forward(x, r, w13, w2, s13, s2, T, H, I, Is);
  double const err = rel_l2(out, ref);
  double num = 0, den = 0;
  for (std::size_t i = 0; i < out.size(); ++i)
    num += out[i] * ref[i], den += out[i] * out[i] + ref[i] * ref[i];
  double const diff = 1 - 2 * num / den;
  double const flops = 2.0 * T * H * (3.0 * I * rc.k + 3.0 * Is);
  std::printf("  forward (FP8)    %8.2f ms   %6.1f GFLOP/s   vs float64 model: rel L2 %.4f, calc_diff %.2e\n",
              fwd_ms, flops / fwd_ms * 1e-6, err, diff);
  // Four E4M3 roundings on the path (x, W13, SwiGLU output, W2), each with relative RMS error about
  // 2^-4/sqrt(3) = 0.036, add in quadrature to ~0.072; calc_diff ~ rel_l2^2 / 2.
  ok = ok && err < 0.08 && diff < 3.5e-3;

  // ---- backward: dx, d(routing weights), expert weight gradients (dgrad + K-grouped wgrad, FP8)
  auto const dout = normal(static_cast<std::size_t>(T * H), 1.0f, 7);
  std::vector<float> dx(static_cast<std::size_t>(T * H)), dwts(static_cast<std::size_t>(T * rc.k)),
      dw13(w13.size()), dw2(w2.size()), ds13(s13.size()), ds2(s2.size()), dlogits(logits.size());
  moe::expert_block_grads const g{{dw13.data(), E, 2 * I, H, 2 * I * H, H, 1},
                                  {dw2.data(), E, H, I, H * I, I, 1},
                                  fm::make_matrix(ds13.data(), 2 * Is, H),
                                  fm::make_matrix(ds2.data(), H, Is)};
  t0 = clock_type::now();
  moe::expert_block_backward(exec, cfg, st, r.weights.view(), ew, sw,
                             fm::matrix_view<float const>(fm::make_matrix(dout.data(), T, H)),
                             fm::make_matrix(dx.data(), T, H), fm::make_matrix(dwts.data(), T, rc.k), g);
  moe::route_backward(exec, rc, fm::matrix_view<float const>(fm::make_matrix(logits.data(), T, E)),
                      r.ids.view(), fm::matrix_view<float const>(fm::make_matrix(dwts.data(), T, rc.k)),
                      fm::make_matrix(dlogits.data(), T, E));
  double const bwd_ms = ms_since(t0);
  double gn = 0;
  bool finite = true;
  for (auto const* v : {&dx, &dw13, &dw2, &ds13, &ds2, &dlogits})
    for (float f : *v) gn += static_cast<double>(f) * f, finite = finite && std::isfinite(f);
  std::printf(
      "  backward (FP8)   %8.2f ms   %6.1f GFLOP/s   |grad| = %.4g (dx, dW13, dW2, shared, dlogits)\n",
      bwd_ms, 2 * flops / bwd_ms * 1e-6, std::sqrt(gn));
  ok = ok && finite && gn > 0;
  // vs the float64 model of the same layer without FP8: the backward's products each take 3-4
  // E4M3-rounded operands (dY or dH13, W, x or act, their requantized transposes), relative RMS
  // 2^-4/sqrt(3) = 0.036 each, so relative L2 errors of ~0.06-0.08; 0.1 leaves room for the
  // SwiGLU gradient's sensitivity, and a wrong gradient (sign, factor, missing term) is O(1).
  auto const rg = reference_backward(x, r, w13, w2, s13, s2, dout, T, H, I, Is, E);
  struct {
    char const* name;
    std::vector<float> const* got;
    std::vector<double> const* ref;
  } const grads[] = {{"dx", &dx, &rg.dx},    {"dweights", &dwts, &rg.dw}, {"dW13", &dw13, &rg.dw13},
                     {"dW2", &dw2, &rg.dw2}, {"dS13", &ds13, &rg.ds13},   {"dS2", &ds2, &rg.ds2}};
  std::printf("  backward vs float64 model: rel L2");
  for (auto const& c : grads) {
    double const e = rel_l2(*c.got, *c.ref);
    std::printf(" %s %.4f", c.name, e);
    ok = ok && e < 0.1;
  }
  std::printf("\n");

  // ---- aux-loss-free balancing: b_i += 0.001 * sign(mean load - load_i)
  auto const before = bias;
  moe::update_bias(exec, fm::make_vector(bias.data(), E),
                   fm::vector_view<std::int32_t const>{r.counts.data(), E, 1}, {.gamma = 1e-3f});
  int up = 0, down = 0;
  for (std::int64_t e = 0; e < E; ++e) up += bias[e] > before[e], down += bias[e] < before[e];
  std::printf("  bias update      %d experts up, %d down (gamma 0.001)\n", up, down);
  ok = ok && up + down > 0;

  // ---- the pipeline this layer trains in: DualPipe vs 1F1B, PP=8, 20 micro-batches
  pp::costs const c{.f = 1, .b = 2, .w = 1, .fb = 3};
  auto const dual = pp::dualpipe({.ranks = 8, .microbatches = 20});
  pp::validate(dual);
  auto const td = pp::simulate(dual, c);
  auto const t1 = pp::simulate(pp::one_f_one_b({.ranks = 8, .microbatches = 20}), c);
  std::printf(
      "  DualPipe PP=8 M=20: makespan %.0f (1F1B %.0f), bubble %.1f (1F1B %.1f), peak activations %d\n",
      td.makespan, t1.makespan, td.bubble, t1.bubble, td.max_peak_activations);
  ok = ok && td.makespan < t1.makespan;

  std::printf("moe_layer: %s\n", ok ? "OK" : "CHECK FAILED");
  return ok ? 0 : 1;
}
