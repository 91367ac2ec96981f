// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// moe/expert_block: the FP8 grouped SwiGLU block (+ shared expert), forward and backward, against a
// float64 reference that quantizes where the FP8 path quantizes, element by element at FP32
// accumulation bounds; bitwise determinism over 1-4 threads; the unquantized float64 model (its
// backward checked by central finite differences) is reported, not asserted.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "fp8moe/moe/expert_block.hpp"
#include "fp8moe/moe/gemm_layouts.hpp"
#include "fp8moe/scaling/quantize.hpp"
#include "test_support.hpp"
#if FP8MOE_CUDA_COMPILER
#include "device_memory.hpp"
#include "fp8moe/moe/cuda/expert_block.cuh"
#endif

// Everything in a namespace instead of `using namespace fp8moe`: with CUB in the same nvcc
// translation unit, a global using-directive makes `cuda::` (libcu++ vs fp8moe::cuda) ambiguous.
namespace fp8moe::test_moe_expert_block {
using fp8 = float8_e4m3_t;

namespace {

struct problem {
  std::int64_t T = 48, H = 256, I = 128, E = 4, k = 2, Is = 128;
  scaling::quantized_matrix<fp8> w13, w2, s13, s2;  // stacked (E*2I, H), (E*H, I); shared (2Is, H), (H, Is)
  std::vector<double> w13d, w2d, s13d, s2d;         // dequantized, double
  std::vector<float> x, weights;
  std::vector<std::int32_t> ids;

  explicit problem(std::uint64_t seed, std::int64_t tokens = 48, std::int64_t inter = 128,
                   std::int64_t hidden = 256)
      : T(tokens), H(hidden), I(inter) {
    auto quant = [&](std::int64_t R, std::int64_t C, float sigma, std::uint64_t s,
                     scaling::quantized_matrix<fp8>& q, std::vector<double>& d) {
      auto const v = test::random_normal(static_cast<std::size_t>(R * C), sigma, s);
      q = scaling::quantize(host_executor{}, make_matrix(v.data(), R, C), scaling::deepseek_v3.weight);
      std::vector<float> f(v.size());
      scaling::dequantize(host_executor{}, q.view(), make_matrix(f.data(), R, C));
      d.assign(f.begin(), f.end());
    };
    quant(E * 2 * I, H, 1.0f / 16, seed + 1, w13, w13d);
    quant(E * H, I, 1.0f / 11, seed + 2, w2, w2d);
    quant(2 * Is, H, 1.0f / 16, seed + 3, s13, s13d);
    quant(H, Is, 1.0f / 11, seed + 4, s2, s2d);
    x = test::random_normal(static_cast<std::size_t>(T * H), 1.0f, seed + 5);
    weights = test::random_uniform(static_cast<std::size_t>(T * k), 0.2f, 1.5f, seed + 6);
    std::mt19937_64 g{seed + 7};
    ids.resize(static_cast<std::size_t>(T * k));
    for (std::int64_t t = 0; t < T; ++t) {
      int const a = static_cast<int>(g() % E);
      int const b = static_cast<int>((a + 1 + g() % (E - 1)) % E);
      ids[t * k] = a;
      ids[t * k + 1] = (t % 7 == 3) ? -1 : b;  // some slots routed elsewhere (expert parallelism)
    }
  }
  moe::expert_weights<fp8> ew() const {
    auto batched = [](scaling::quantized_matrix<fp8> const& q, std::int64_t G, std::int64_t R,
                      std::int64_t C) {
      std::int64_t const sr = R / 128, sc = C / 128;
      return gemm::quantized_batched_view<fp8 const>{{q.data.data(), G, R, C, R * C, C, 1},
                                                     {q.scales.data(), G, sr, sc, sr * sc, sc, 1},
                                                     scaling::block_128x128};
    };
    return {batched(w13, E, 2 * I, H), batched(w2, E, H, I)};
  }
  moe::shared_expert_weights<fp8> sw() const { return {s13.view(), s2.view()}; }
};

// ---- float64 reference ----------------------------------------------------------------------
struct ref_grads {
  std::vector<double> out, dx, dw, dw13, dw2, ds13, ds2;
};

double silu(double g) {
  return g / (1.0 + std::exp(-g));
}

// One SwiGLU expert: y = W2 (silu(Wg x) * (Wu x)); with dy: accumulates dW13, dW2, dx.
void ref_expert(problem const& P, double const* w13, double const* w2, std::int64_t I, double const* x,
                double* y, double const* dy, double* dw13, double* dw2, double* dx) {
  std::int64_t const H = P.H;
  std::vector<double> g(2 * I), a(I);
  for (std::int64_t r = 0; r < 2 * I; ++r) {
    double s = 0;
    for (std::int64_t h = 0; h < H; ++h) s += w13[r * H + h] * x[h];
    g[r] = s;
  }
  for (std::int64_t i = 0; i < I; ++i) a[i] = silu(g[i]) * g[I + i];
  for (std::int64_t h = 0; h < H; ++h) {
    double s = 0;
    for (std::int64_t i = 0; i < I; ++i) s += w2[h * I + i] * a[i];
    y[h] = s;
  }
  if (!dy) return;
  std::vector<double> da(I, 0.0), dg(2 * I);
  for (std::int64_t h = 0; h < H; ++h)
    for (std::int64_t i = 0; i < I; ++i) {
      da[i] += w2[h * I + i] * dy[h];
      dw2[h * I + i] += dy[h] * a[i];
    }
  for (std::int64_t i = 0; i < I; ++i) {
    double const s = 1.0 / (1.0 + std::exp(-g[i]));
    dg[i] = da[i] * g[I + i] * s * (1 + g[i] * (1 - s));
    dg[I + i] = da[i] * silu(g[i]);
  }
  for (std::int64_t r = 0; r < 2 * I; ++r)
    for (std::int64_t h = 0; h < H; ++h) {
      dw13[r * H + h] += dg[r] * x[h];
      dx[h] += w13[r * H + h] * dg[r];
    }
}

/// Forward (and backward when dout is given) of the whole block in float64.
ref_grads reference(problem const& P, std::vector<double> const& x, std::vector<double> const& wts,
                    std::vector<double> const& w13, std::vector<double> const& w2,
                    std::vector<double> const& s13, std::vector<double> const& s2,
                    std::vector<float> const* dout) {
  std::int64_t const T = P.T, H = P.H, I = P.I, k = P.k;
  ref_grads r;
  r.out.assign(static_cast<std::size_t>(T * H), 0.0);
  if (dout) {
    r.dx.assign(static_cast<std::size_t>(T * H), 0.0);
    r.dw.assign(static_cast<std::size_t>(T * k), 0.0);
    r.dw13.assign(w13.size(), 0.0);
    r.dw2.assign(w2.size(), 0.0);
    r.ds13.assign(s13.size(), 0.0);
    r.ds2.assign(s2.size(), 0.0);
  }
  std::vector<double> y(H), dy(H);
  for (std::int64_t t = 0; t < T; ++t) {
    for (std::int64_t j = 0; j < k; ++j) {
      int const e = P.ids[t * k + j];
      if (e < 0) continue;
      double const w = wts[t * k + j];
      double* dxt = dout ? &r.dx[t * H] : nullptr;
      if (dout)
        for (std::int64_t h = 0; h < H; ++h) dy[h] = w * (*dout)[t * H + h];
      ref_expert(P, &w13[e * 2 * I * H], &w2[e * H * I], I, &x[t * H], y.data(), dout ? dy.data() : nullptr,
                 dout ? &r.dw13[e * 2 * I * H] : nullptr, dout ? &r.dw2[e * H * I] : nullptr, dxt);
      for (std::int64_t h = 0; h < H; ++h) r.out[t * H + h] += w * y[h];
      if (dout)
        for (std::int64_t h = 0; h < H; ++h) r.dw[t * k + j] += (*dout)[t * H + h] * y[h];
    }
    std::vector<double> dys(H);
    if (dout)
      for (std::int64_t h = 0; h < H; ++h) dys[h] = (*dout)[t * H + h];
    ref_expert(P, s13.data(), s2.data(), P.Is, &x[t * H], y.data(), dout ? dys.data() : nullptr,
               dout ? r.ds13.data() : nullptr, dout ? r.ds2.data() : nullptr, dout ? &r.dx[t * H] : nullptr);
    for (std::int64_t h = 0; h < H; ++h) r.out[t * H + h] += y[h];
  }
  return r;
}

template <class A, class B>
double rel_l2(A const& got, B const& ref) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    double const d = static_cast<double>(got[i]) - static_cast<double>(ref[i]);
    num += d * d;
    den += static_cast<double>(ref[i]) * static_cast<double>(ref[i]);
  }
  return std::sqrt(num / den);
}

// ---- float64 reference that quantizes exactly where the FP8 path quantizes ----------------------
// Every FP8 operand of the path is rebuilt here from the same FP32 input with the library's quantizer
// (oracle-tested in test_scaling: bit-exact against the reference quantizers) and dequantized exactly
// in double (code * scale: a 4-bit significand times a float is exact in double). The products and
// sums are then float64, so the only differences left are the path's FP32 rounding, bounded per element:
//
//   |got - ref| <= gamma(n) * sum_k |a_k b_k|,  gamma(n) = n u / (1 - n u),  u = 2^-24,
//   n = 128 + ceil(K/128) + 3 for a block-scaled GEMM with promotion every 128 K: a 128-term FP32
//   block sum (<= 127 roundings), the scale product and the promotion multiply (2), the FP32
//   accumulation over ceil(K/128) blocks, and the store (1).
//
// Where the path computes an FP32 intermediate that is quantized again (the SwiGLU output, dY, dH13,
// the shared expert's activations), the reference quantizes the path's own FP32 value (forward: the
// state; backward: recomputed by the same deterministic ops from the same operands, after checking it
// against float64 at the same bound), never its own float64 value: a float64 value can round to the
// neighbouring FP8 code and would need a tolerance of one FP8 step (6%) instead of ~2^-17.
// A systematic error of 1e-4 or more in any output fails these bounds (see the mutation list in the
// commit that introduced them).
constexpr double u32 = 0x1p-24;

double gamma_n(double n) {
  return n * u32 / (1 - n * u32);
}
/// Bound factor of one block-scaled FP32 GEMM output reducing K terms (times sum |a b|).
double gemm_gamma(std::int64_t K) {
  return gamma_n(128.0 + static_cast<double>((K + 127) / 128) + 3);
}

/// Exact dequantization in double: code * scale.
std::vector<double> exact(scaling::quantized_matrix<fp8> const& q) {
  auto const v = q.view();
  std::vector<double> d(static_cast<std::size_t>(v.rows() * v.cols()));
  for (std::int64_t r = 0; r < v.rows(); ++r)
    for (std::int64_t c = 0; c < v.cols(); ++c)
      d[r * v.cols() + c] =
          static_cast<double>(v.data(r, c).to_float()) * static_cast<double>(v.scale_at(r, c));
  return d;
}
/// The dequantized values as the library's dequantize and transpose_requantize compute them (float).
std::vector<float> dequantized_f32(scaling::quantized_matrix<fp8> const& q) {
  auto const v = q.view();
  std::vector<float> d(static_cast<std::size_t>(v.rows() * v.cols()));
  for (std::int64_t r = 0; r < v.rows(); ++r)
    for (std::int64_t c = 0; c < v.cols(); ++c)
      d[r * v.cols() + c] = v.data(r, c).to_float() * v.scale_at(r, c);
  return d;
}
/// x (R,C) through the library quantizer with recipe `r`, dequantized exactly.
std::vector<double> qdeq(float const* x, std::int64_t R, std::int64_t C, scaling::tensor_recipe const& r) {
  if (R == 0 || C == 0) return {};
  return exact(scaling::quantize(host_executor{}, matrix_view<float const>(make_matrix(x, R, C)), r));
}
std::vector<float> transpose(float const* x, std::int64_t R, std::int64_t C) {
  std::vector<float> t(static_cast<std::size_t>(R * C));
  for (std::int64_t r = 0; r < R; ++r)
    for (std::int64_t c = 0; c < C; ++c) t[c * R + r] = x[r * C + c];
  return t;
}

struct dot_result {
  double v = 0, mag = 0;
};
/// sum_k a[k*sa] b[k*sb] and sum_k |a b| in double.
dot_result dot(double const* a, double const* b, std::int64_t K, std::int64_t sa = 1, std::int64_t sb = 1) {
  dot_result d;
  for (std::int64_t q = 0; q < K; ++q) {
    double const p = a[q * sa] * b[q * sb];
    d.v += p;
    d.mag += std::abs(p);
  }
  return d;
}

/// Counts elements outside their bound; reports the worst |got - ref| / bound.
struct bound_check {
  std::string name;
  std::int64_t checked = 0, bad = 0;
  double worst = 0;
  void operator()(double got, double ref, double bound) {
    ++checked;
    double const e = std::abs(got - ref);
    if (!(e <= bound)) ++bad;
    worst = std::max(worst, bound > 0 ? e / bound : (e > 0 ? INFINITY : 0.0));
  }
  ~bound_check() {
    MESSAGE(name << ": " << checked << " elements, " << bad << " outside the FP32 bound, worst |err|/bound "
                 << worst);
    CHECK_MESSAGE(bad == 0, name);
    CHECK_MESSAGE(checked > 0, name);
  }
};

/// The float64 SwiGLU of the path's FP32 gate/up values; float evaluates it with exp (<= 1 ulp) and
/// 5 more roundings: |err| <= 8u |ref|.
double swiglu_d(double g, double up) {
  return g / (1.0 + std::exp(-g)) * up;
}

struct block_outputs {
  std::vector<float> out, dx, dw, dw13, dw2, ds13, ds2;  // ds13/ds2 empty without a shared expert
};

/// Checks the forward (state intermediates and out) and, when dout is given, the backward against
/// the quantized float64 reference.
void check_quantized_reference(problem const& P, bool shared, moe::expert_block_config const& cfg,
                               moe::expert_block_state const& st, block_outputs const& o,
                               std::vector<float> const* dout) {
  std::int64_t const T = P.T, H = P.H, I = P.I, E = P.E, k = P.k, Is = shared ? P.Is : 0;
  auto const& p = st.plan;
  std::int64_t const M = p.rows;
  auto const W13 = exact(P.w13), W2 = exact(P.w2), S13 = exact(P.s13), S2 = exact(P.s2);
  auto const xq_lib = scaling::quantize(
      host_executor{}, matrix_view<float const>(make_matrix(P.x.data(), T, H)), cfg.activation);
  auto const xq = exact(xq_lib);
  auto slot_row = [&](std::int64_t t, std::int64_t j) {
    return static_cast<std::int64_t>(p.slot_row[t * k + j]);
  };
  // f(t, j, expert, permuted row) for every slot routed to a local expert
  auto for_each_slot = [&](auto&& f) {
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t j = 0; j < k; ++j)
        if (P.ids[t * k + j] >= 0) f(t, j, static_cast<std::int64_t>(P.ids[t * k + j]), slot_row(t, j));
  };
  // ---- forward
  std::vector<double> yref(static_cast<std::size_t>(M * H), 0.0), ybound(yref.size(), 0.0);
  {
    bound_check h13c{"forward h13 = xq W13^T"}, actc{"forward act = swiglu(h13)"},
        yc{"forward y = actq W2^T"};
    for (std::int64_t r = 0; r < M; ++r)
      if (p.row_token[r] < 0)
        for (std::int64_t c = 0; c < 2 * I; ++c) h13c(st.h13(r, c), 0.0, 0.0);  // padding rows are 0
    for_each_slot([&](std::int64_t t, std::int64_t, std::int64_t e, std::int64_t row) {
      for (std::int64_t c = 0; c < 2 * I; ++c) {
        auto const d = dot(&xq[t * H], &W13[(e * 2 * I + c) * H], H);
        h13c(st.h13(row, c), d.v, gemm_gamma(H) * d.mag);
      }
      for (std::int64_t i = 0; i < I; ++i) {
        double const ref = swiglu_d(st.h13(row, i), st.h13(row, I + i));
        actc(st.act(row, i), ref, 8 * u32 * std::abs(ref));
      }
    });
    auto const actq = qdeq(st.act.data, M, I, cfg.activation);  // the path's FP32 SwiGLU output
    for_each_slot([&](std::int64_t, std::int64_t, std::int64_t e, std::int64_t row) {
      for (std::int64_t h = 0; h < H; ++h) {
        auto const d = dot(&actq[row * I], &W2[(e * H + h) * I], I);
        yref[row * H + h] = d.v;
        ybound[row * H + h] = gemm_gamma(I) * d.mag;
        yc(st.y(row, h), d.v, ybound[row * H + h]);
      }
    });
  }
  std::vector<double> sref(static_cast<std::size_t>(T * H), 0.0), sbound(sref.size(), 0.0);
  if (Is > 0) {
    bound_check shc{"forward shared h13"}, sac{"forward shared act"};
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t c = 0; c < 2 * Is; ++c) {
        auto const d = dot(&xq[t * H], &S13[c * H], H);
        shc(st.shared.h13(t, c), d.v, gemm_gamma(H) * d.mag);
        if (c < Is) {
          double const ref = swiglu_d(st.shared.h13(t, c), st.shared.h13(t, Is + c));
          sac(st.shared.act(t, c), ref, 8 * u32 * std::abs(ref));
        }
      }
    auto const sactq = qdeq(st.shared.act.data, T, Is, cfg.activation);
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t h = 0; h < H; ++h) {
        auto const d = dot(&sactq[t * Is], &S2[h * Is], Is);
        sref[t * H + h] = d.v;
        sbound[t * H + h] = gemm_gamma(Is) * d.mag;
      }
  }
  {
    // out = sum_j w_j y_j (FP32, k products and adds) + shared (one add): the y and shared bounds
    // scaled by |w|, plus (k + 2) u of the magnitudes summed.
    bound_check outc{"forward out"};
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t h = 0; h < H; ++h) {
        double ref = sref[t * H + h], mag = std::abs(sref[t * H + h]), b = sbound[t * H + h];
        for (std::int64_t j = 0; j < k; ++j) {
          if (P.ids[t * k + j] < 0) continue;
          double const w = P.weights[t * k + j];
          auto const row = slot_row(t, j);
          ref += w * yref[row * H + h];
          mag += std::abs(w * yref[row * H + h]);
          b += std::abs(w) * ybound[row * H + h];
        }
        outc(o.out[t * H + h], ref, (1 + 1e-6) * (b + gamma_n(static_cast<double>(k) + 3) * mag));
      }
  }
  if (!dout) return;
  // ---- backward
  auto const& g = *dout;
  // combine backward: dY(row) = w * dout(t) in FP32 (the same single rounding as the path)
  std::vector<float> dy(static_cast<std::size_t>(M * H), 0.0f);
  for_each_slot([&](std::int64_t t, std::int64_t j, std::int64_t, std::int64_t row) {
    for (std::int64_t h = 0; h < H; ++h) dy[row * H + h] = P.weights[t * k + j] * g[t * H + h];
  });
  auto const dyq_lib = scaling::quantize(
      host_executor{}, matrix_view<float const>(make_matrix(dy.data(), M, H)), cfg.gradient);
  auto const dyq = exact(dyq_lib);
  // dact (M,I) = dYq W2_e: the FP32 value the path quantizes next, by the same deterministic GEMM
  host_matrix<float> dact(M, I);
  vector_view<int const> const m_idx{p.row_expert, M};
  nn::workspace_arena none;  // the host's transposed weight is a view (no bytes)
  auto const w2t = nn::dispatch<host_executor>::transposed_weight(host_executor{}, P.ew().w2, none);
  gemm::grouped_gemm(
      host_executor{},
      gemm::grouped_contiguous<fp8, fp8, float>{dyq_lib.view(), w2t, m_idx, dact.view(), {}, cfg.m_align},
      cfg.gemm);
  std::vector<float> dh13(static_cast<std::size_t>(M * 2 * I), 0.0f);
  {
    bound_check dactc{"backward dact = dYq W2"};
    for (std::int64_t r = 0; r < M; ++r) {
      int const e = p.row_expert[r];
      for (std::int64_t i = 0; i < I; ++i) {
        if (e >= 0) {
          auto const d = dot(&dyq[r * H], &W2[e * H * I + i], H, 1, I);
          dactc(dact.view()(r, i), d.v, gemm_gamma(H) * d.mag);
        }
        moe::swiglu_backward(st.h13(r, i), st.h13(r, I + i), dact.view()(r, i), dh13[r * 2 * I + i],
                             dh13[r * 2 * I + I + i]);
      }
    }
  }
  auto const dh13q = qdeq(dh13.data(), M, 2 * I, cfg.gradient);
  std::vector<double> dxref(static_cast<std::size_t>(T * H), 0.0), dxbound(dxref.size(), 0.0),
      dxmag(dxref.size(), 0.0);
  for_each_slot([&](std::int64_t t, std::int64_t, std::int64_t e, std::int64_t row) {
    for (std::int64_t h = 0; h < H; ++h) {
      auto const d = dot(&dh13q[row * 2 * I], &W13[e * 2 * I * H + h], 2 * I, 1, H);
      dxref[t * H + h] += d.v;
      dxmag[t * H + h] += std::abs(d.v);
      dxbound[t * H + h] += gemm_gamma(2 * I) * d.mag;
    }
  });
  std::vector<float> dsh13(static_cast<std::size_t>(T * 2 * Is), 0.0f);
  if (Is > 0) {
    auto const doq_lib = scaling::quantize(
        host_executor{}, matrix_view<float const>(make_matrix(g.data(), T, H)), cfg.gradient);
    auto const doq = exact(doq_lib);
    host_matrix<float> dsact(T, Is);
    gemm::fp8_gemm(host_executor{}, scaling::quantized_matrix_view<fp8 const>(doq_lib.view()),
                   gemm::transposed(P.sw().w2), dsact.view(), cfg.gemm);
    bound_check dsc{"backward shared dact"};
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t i = 0; i < Is; ++i) {
        auto const d = dot(&doq[t * H], &S2[i], H, 1, Is);
        dsc(dsact.view()(t, i), d.v, gemm_gamma(H) * d.mag);
        moe::swiglu_backward(st.shared.h13(t, i), st.shared.h13(t, Is + i), dsact.view()(t, i),
                             dsh13[t * 2 * Is + i], dsh13[t * 2 * Is + Is + i]);
      }
    auto const dsh13q = qdeq(dsh13.data(), T, 2 * Is, cfg.gradient);
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t h = 0; h < H; ++h) {
        auto const d = dot(&dsh13q[t * 2 * Is], &S13[h], 2 * Is, 1, H);
        dxref[t * H + h] += d.v;
        dxmag[t * H + h] += std::abs(d.v);
        dxbound[t * H + h] += gemm_gamma(2 * Is) * d.mag;
      }
  }
  {
    bound_check dxc{"backward dx"}, dwc{"backward dweights"};
    for (std::int64_t i = 0; i < T * H; ++i)
      dxc(o.dx[i], dxref[i], (1 + 1e-6) * (dxbound[i] + gamma_n(static_cast<double>(k) + 2) * dxmag[i]));
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t j = 0; j < k; ++j) {
        if (P.ids[t * k + j] < 0) {
          dwc(o.dw[t * k + j], 0.0, 0.0);
          continue;
        }
        auto const row = slot_row(t, j);
        double ref = 0, mag = 0;  // <dout(t), y(row)> over the path's FP32 y: a plain FP32 dot of H terms
        for (std::int64_t h = 0; h < H; ++h) {
          double const q = static_cast<double>(g[t * H + h]) * st.y(row, h);
          ref += q;
          mag += std::abs(q);
        }
        dwc(o.dw[t * k + j], ref, gamma_n(static_cast<double>(H) + 1) * mag);
      }
  }
  // weight gradients: K-grouped over each expert's rows, operands transposed and quantized 1x128 along M
  {
    auto const dyT = qdeq(transpose(dy.data(), M, H).data(), H, M, cfg.gradient);
    auto const actT = qdeq(transpose(st.act.data, M, I).data(), I, M, cfg.activation);
    auto const dh13T = qdeq(transpose(dh13.data(), M, 2 * I).data(), 2 * I, M, cfg.gradient);
    std::vector<float> a(static_cast<std::size_t>(M * H), 0.0f);  // permuted dequantized xq
    auto const xf = dequantized_f32(xq_lib);
    for (std::int64_t r = 0; r < M; ++r)
      if (p.row_token[r] >= 0) std::copy_n(&xf[p.row_token[r] * H], H, &a[r * H]);
    auto const aT = qdeq(transpose(a.data(), M, H).data(), H, M, cfg.activation);
    bound_check w2c{"backward dW2"}, w13c{"backward dW13"};
    for (std::int64_t e = 0; e < E; ++e) {
      std::int64_t const m0 = p.expert_offset[e], kn = p.expert_offset[e + 1] - m0;
      for (std::int64_t h = 0; h < H; ++h)
        for (std::int64_t i = 0; i < I; ++i) {
          auto const d = dot(&dyT[h * M + m0], &actT[i * M + m0], kn);
          w2c(o.dw2[(e * H + h) * I + i], d.v, gemm_gamma(kn) * d.mag);
        }
      for (std::int64_t r = 0; r < 2 * I; ++r)
        for (std::int64_t h = 0; h < H; ++h) {
          auto const d = dot(&dh13T[r * M + m0], &aT[h * M + m0], kn);
          w13c(o.dw13[(e * 2 * I + r) * H + h], d.v, gemm_gamma(kn) * d.mag);
        }
    }
  }
  if (Is > 0) {
    auto const doT = qdeq(transpose(g.data(), T, H).data(), H, T, cfg.gradient);
    auto const sactT = qdeq(transpose(st.shared.act.data, T, Is).data(), Is, T, cfg.activation);
    auto const dsh13T = qdeq(transpose(dsh13.data(), T, 2 * Is).data(), 2 * Is, T, cfg.gradient);
    auto const xT = qdeq(transpose(dequantized_f32(xq_lib).data(), T, H).data(), H, T, cfg.activation);
    bound_check s2c{"backward shared dW2"}, s13c{"backward shared dW13"};
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t i = 0; i < Is; ++i) {
        auto const d = dot(&doT[h * T], &sactT[i * T], T);
        s2c(o.ds2[h * Is + i], d.v, gemm_gamma(T) * d.mag);
      }
    for (std::int64_t r = 0; r < 2 * Is; ++r)
      for (std::int64_t h = 0; h < H; ++h) {
        auto const d = dot(&dsh13T[r * T], &xT[h * T], T);
        s13c(o.ds13[r * H + h], d.v, gemm_gamma(T) * d.mag);
      }
  }
}

/// Forward + backward of the block on `exec`, outputs poisoned first.
/// With a workspace, through the caller-workspace overload (else the allocating one).
block_outputs run_block(host_executor const& exec, problem const& P, bool shared,
                        moe::expert_block_config const& cfg, moe::expert_block_state& st,
                        std::vector<float> const& dout, std::span<std::byte> workspace = {}) {
  block_outputs o;
  o.out.resize(static_cast<std::size_t>(P.T * P.H));
  o.dx.resize(o.out.size());
  o.dw.resize(P.weights.size());
  o.dw13.resize(static_cast<std::size_t>(P.E * 2 * P.I * P.H));
  o.dw2.resize(static_cast<std::size_t>(P.E * P.H * P.I));
  if (shared) {
    o.ds13.resize(static_cast<std::size_t>(2 * P.Is * P.H));
    o.ds2.resize(static_cast<std::size_t>(P.H * P.Is));
  }
  for (auto* v : {&o.out, &o.dx, &o.dw, &o.dw13, &o.dw2, &o.ds13, &o.ds2}) test::poison(*v);
  auto const ids = matrix_view<std::int32_t const>(make_matrix(P.ids.data(), P.T, P.k));
  auto const wts = matrix_view<float const>(make_matrix(P.weights.data(), P.T, P.k));
  auto const sw = shared ? P.sw() : moe::shared_expert_weights<fp8>{};
  if (workspace.empty()) {
    moe::expert_block(exec, cfg, make_matrix(P.x.data(), P.T, P.H), ids, wts, P.ew(), sw,
                      make_matrix(o.out.data(), P.T, P.H), st);
  } else {
    moe::expert_block(exec, cfg, make_matrix(P.x.data(), P.T, P.H), ids, wts, P.ew(), sw,
                      make_matrix(o.out.data(), P.T, P.H), st, workspace);
  }
  moe::expert_block_grads const gr{{o.dw13.data(), P.E, 2 * P.I, P.H, 2 * P.I * P.H, P.H, 1},
                                   {o.dw2.data(), P.E, P.H, P.I, P.H * P.I, P.I, 1},
                                   shared ? make_matrix(o.ds13.data(), 2 * P.Is, P.H) : matrix_view<float>{},
                                   shared ? make_matrix(o.ds2.data(), P.H, P.Is) : matrix_view<float>{}};
  moe::expert_block_backward(exec, cfg, st, wts, P.ew(), sw,
                             matrix_view<float const>(make_matrix(dout.data(), P.T, P.H)),
                             make_matrix(o.dx.data(), P.T, P.H), make_matrix(o.dw.data(), P.T, P.k), gr);
  return o;
}

bool same(std::vector<float> const& x, std::vector<float> const& y) {
  return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
}

/// Every output of two runs, bit for bit.
void check_same_bits(block_outputs const& o, block_outputs const& ref) {
  CHECK(same(o.out, ref.out));
  CHECK(same(o.dx, ref.dx));
  CHECK(same(o.dw, ref.dw));
  CHECK(same(o.dw13, ref.dw13));
  CHECK(same(o.dw2, ref.dw2));
  CHECK(same(o.ds13, ref.ds13));
  CHECK(same(o.ds2, ref.ds2));
}

}  // namespace

TEST_CASE("expert_block: forward and backward against the quantized float64 reference (with shared expert)") {
  problem const P(100);
  moe::expert_block_config const cfg{};
  moe::expert_block_state st;
  auto const dout = test::random_normal(static_cast<std::size_t>(P.T * P.H), 1.0f, 200);
  auto const o = run_block(host_executor{}, P, true, cfg, st, dout);
  check_quantized_reference(P, true, cfg, st, o, &dout);
  // Report only: the distance to the unquantized float64 model is FP8's own rounding (about
  // 2^-4/sqrt(3) = 0.036 relative RMS per quantized operand), not an error of the implementation.
  std::vector<double> const xd(P.x.begin(), P.x.end()), wd(P.weights.begin(), P.weights.end());
  auto const ref = reference(P, xd, wd, P.w13d, P.w2d, P.s13d, P.s2d, &dout);
  struct {
    char const* name;
    std::vector<float> const* got;
    std::vector<double> const* ref;
  } const reports[] = {{"out", &o.out, &ref.out},     {"dx", &o.dx, &ref.dx},
                       {"dweights", &o.dw, &ref.dw},  {"dw13", &o.dw13, &ref.dw13},
                       {"dw2", &o.dw2, &ref.dw2},     {"dshared13", &o.ds13, &ref.ds13},
                       {"dshared2", &o.ds2, &ref.ds2}};
  for (auto const& c : reports)
    MESSAGE("vs the unquantized float64 model (report): " << std::string(c.name) << " rel L2 "
                                                          << rel_l2(*c.got, *c.ref));
}

TEST_CASE("expert_block: forward and backward are bitwise identical on 1, 2, 3 and 4 threads") {
  // Multi-tile GEMMs (host tiles 192 x 256): T = 304 tokens, k = 2 -> ~600 permuted rows (4 M tiles),
  // 2I = 768 gate/up columns (3 N tiles), wgrad K segments of several 128-row blocks.
  problem const P(900, 304, 384, 256);
  moe::expert_block_config const cfg{};
  auto const dout = test::random_normal(static_cast<std::size_t>(P.T * P.H), 1.0f, 901);
  block_outputs first;
  for (int threads : {1, 2, 3, 4}) {
    CAPTURE(threads);
    moe::expert_block_state st;
    host_executor const ex{threads};
    REQUIRE(ex.num_threads() == threads);
    auto o = run_block(ex, P, true, cfg, st, dout);
    if (threads == 1) {
      first = std::move(o);
      CHECK(st.plan.rows >= 512);
      continue;
    }
    check_same_bits(o, first);
  }
}

TEST_CASE("expert_block: the float64 reference backward matches central finite differences") {
  problem const P(300);
  std::vector<double> x(P.x.begin(), P.x.end()), w(P.weights.begin(), P.weights.end());
  auto w13 = P.w13d, w2 = P.w2d, s13 = P.s13d, s2 = P.s2d;
  auto const dout = test::random_normal(static_cast<std::size_t>(P.T * P.H), 1.0f, 301);
  auto const r = reference(P, x, w, w13, w2, s13, s2, &dout);
  auto loss = [&]() {
    auto const f = reference(P, x, w, w13, w2, s13, s2, nullptr);
    double l = 0;
    for (std::size_t i = 0; i < f.out.size(); ++i) l += dout[i] * f.out[i];
    return l;
  };
  std::mt19937_64 gen{302};
  // h = 1e-4: truncation h^2 |f'''| ~ 1e-8 relative; double rounding of L (~1e3) ~ 1e-13 / h ~ 1e-9.
  auto fd_check = [&](std::vector<double>& v, std::vector<double> const& grad, char const* name) {
    for (int n = 0; n < 6; ++n) {
      std::size_t i = gen() % v.size();
      if (&v == &w && P.ids[i] < 0) i = 0;
      double const v0 = v[i], h = 1e-4;
      v[i] = v0 + h;
      double const lp = loss();
      v[i] = v0 - h;
      double const lm = loss();
      v[i] = v0;
      double const fd = (lp - lm) / (2 * h);
      INFO(name << "[" << i << "]");
      CHECK(std::abs(grad[i] - fd) <= 1e-6 * (1 + std::abs(fd)));
    }
  };
  fd_check(x, r.dx, "dx");
  fd_check(w, r.dw, "dweights");
  fd_check(w13, r.dw13, "dw13");
  fd_check(w2, r.dw2, "dw2");
  fd_check(s13, r.ds13, "ds13");
  fd_check(s2, r.ds2, "ds2");
}

TEST_CASE("expert_block: SwiGLU backward against finite differences; bad input") {
  for (float gv : {-3.0f, -0.5f, 0.0f, 0.7f, 4.0f})
    for (float u : {-1.25f, 0.5f, 2.0f}) {
      float dg, du;
      moe::swiglu_backward(gv, u, 1.0f, dg, du);
      double const h = 1e-3;
      auto f = [](double g, double uu) { return g / (1 + std::exp(-g)) * uu; };
      CHECK(std::abs(dg - (f(gv + h, u) - f(gv - h, u)) / (2 * h)) < 1e-5);
      CHECK(std::abs(du - (f(gv, u + h) - f(gv, u - h)) / (2 * h)) < 1e-5);
    }
  problem const P(400);
  moe::expert_block_state st;
  std::vector<float> out(static_cast<std::size_t>(P.T * P.H), 3.0f);
  auto bad_ids = P.ids;
  bad_ids[5] = static_cast<std::int32_t>(P.E);
  auto const wts = matrix_view<float const>(make_matrix(P.weights.data(), P.T, P.k));
  CHECK_THROWS_WITH_AS(
      moe::expert_block(host_executor{}, moe::expert_block_config{}, make_matrix(P.x.data(), P.T, P.H),
                        matrix_view<std::int32_t const>(make_matrix(bad_ids.data(), P.T, P.k)), wts, P.ew(),
                        P.sw(), make_matrix(out.data(), P.T, P.H), st),
      doctest::Contains("ids(2, 1) = 4"), fp8moe::error);
  CHECK_THROWS_WITH_AS(moe::expert_block(host_executor{}, moe::expert_block_config{.m_align = 64},
                                         make_matrix(P.x.data(), P.T, P.H),
                                         matrix_view<std::int32_t const>(make_matrix(P.ids.data(), P.T, P.k)),
                                         wts, P.ew(), P.sw(), make_matrix(out.data(), P.T, P.H), st),
                       doctest::Contains("m_align"), fp8moe::error);
  auto ew = P.ew();
  ew.w2.data.rows = 128;
  CHECK_THROWS_WITH_AS(
      moe::expert_block(host_executor{}, moe::expert_block_config{}, make_matrix(P.x.data(), P.T, P.H),
                        matrix_view<std::int32_t const>(make_matrix(P.ids.data(), P.T, P.k)), wts, ew, P.sw(),
                        make_matrix(out.data(), P.T, P.H), st),
      doctest::Contains("weights.w2"), fp8moe::error);
  for (float v : out) CHECK(v == 3.0f);
  // no shared expert: out = routed experts only (checked against the reference without shared)
  moe::expert_block(host_executor{}, moe::expert_block_config{}, make_matrix(P.x.data(), P.T, P.H),
                    matrix_view<std::int32_t const>(make_matrix(P.ids.data(), P.T, P.k)), wts, P.ew(),
                    moe::shared_expert_weights<fp8>{}, make_matrix(out.data(), P.T, P.H), st);
  block_outputs o;
  o.out = out;
  check_quantized_reference(P, false, moe::expert_block_config{}, st, o, nullptr);
  std::vector<double> const xd(P.x.begin(), P.x.end()), wd(P.weights.begin(), P.weights.end());
  std::vector<double> zero13(P.s13d.size(), 0.0), zero2(P.s2d.size(), 0.0);
  auto const ref = reference(P, xd, wd, P.w13d, P.w2d, zero13, zero2, nullptr);
  MESSAGE("no shared expert, vs the unquantized float64 model (report): rel L2 " << rel_l2(out, ref.out));
}

TEST_CASE("expert_block: zero tokens (an idle rank) runs forward and backward, gradients zero") {
  problem const P(700);
  moe::expert_block_state st;
  std::vector<float> x, out, wts, dout, dx, dw;
  std::vector<std::int32_t> ids;
  moe::expert_block(host_executor{}, moe::expert_block_config{}, make_matrix(x.data(), 0, P.H),
                    matrix_view<std::int32_t const>(make_matrix(ids.data(), 0, P.k)),
                    matrix_view<float const>(make_matrix(wts.data(), 0, P.k)), P.ew(), P.sw(),
                    make_matrix(out.data(), 0, P.H), st);
  std::vector<float> g13(static_cast<std::size_t>(P.E * 2 * P.I * P.H), NAN),
      g2(static_cast<std::size_t>(P.E * P.H * P.I), NAN), gs13(static_cast<std::size_t>(2 * P.Is * P.H), NAN),
      gs2(static_cast<std::size_t>(P.H * P.Is), NAN);
  moe::expert_block_backward(host_executor{}, moe::expert_block_config{}, st,
                             matrix_view<float const>(make_matrix(wts.data(), 0, P.k)), P.ew(), P.sw(),
                             matrix_view<float const>(make_matrix(dout.data(), 0, P.H)),
                             make_matrix(dx.data(), 0, P.H), make_matrix(dw.data(), 0, P.k),
                             {{g13.data(), P.E, 2 * P.I, P.H, 2 * P.I * P.H, P.H, 1},
                              {g2.data(), P.E, P.H, P.I, P.H * P.I, P.I, 1},
                              make_matrix(gs13.data(), 2 * P.Is, P.H),
                              make_matrix(gs2.data(), P.H, P.Is)});
  for (auto const* v : {&g13, &g2, &gs13, &gs2})
    for (float g : *v) REQUIRE(g == 0.0f);
}

TEST_CASE(
    "expert_block: caller workspace (workspace_bytes) gives the allocating overload's bits; too small is "
    "refused") {
  problem const P(800);
  auto const dout = test::random_normal(static_cast<std::size_t>(P.T * P.H), 1.0f, 801);
  moe::expert_block_config const cfg{};
  moe::expert_block_state st_alloc;
  auto const ref = run_block(host_executor{}, P, true, cfg, st_alloc, dout);
  moe::expert_block_shape const shape{P.T, P.H, P.I, P.E, P.k, P.Is};
  std::vector<std::byte> ws(moe::workspace_bytes(host_executor{}, shape, cfg));
  CHECK(ws.size() >= st_alloc.forward_bytes);
  auto const ids = matrix_view<std::int32_t const>(make_matrix(P.ids.data(), P.T, P.k));
  auto const wts = matrix_view<float const>(make_matrix(P.weights.data(), P.T, P.k));
  std::vector<float> out(ref.out.size(), 3.0f);
  moe::expert_block_state st;
  std::vector<std::byte> small(ws.size() - 1);
  CHECK_THROWS_WITH_AS(
      moe::expert_block(host_executor{}, cfg, make_matrix(P.x.data(), P.T, P.H), ids, wts, P.ew(), P.sw(),
                        make_matrix(out.data(), P.T, P.H), st, std::span(small)),
      doctest::Contains("argument 'workspace'"), fp8moe::error);
  for (float v : out) REQUIRE(v == 3.0f);
  auto const o = run_block(host_executor{}, P, true, cfg, st, dout, std::span(ws));
  CHECK(st.storage == nullptr);  // the caller's workspace, not one of its own
  check_same_bits(o, ref);
}

TEST_CASE("expert_block: E5M2 from the config's recipes is used (activations, gradients)") {
  problem const P(900);
  auto const dout = test::random_normal(static_cast<std::size_t>(P.T * P.H), 1.0f, 901);
  moe::expert_block_state s4, s5a, s5g;
  auto const e4 = run_block(host_executor{}, P, true, moe::expert_block_config{}, s4, dout);
  moe::expert_block_config act5{}, grad5{};
  act5.activation.format = scaling::element_format::e5m2;
  grad5.gradient.format = scaling::element_format::e5m2;
  auto const a5 = run_block(host_executor{}, P, true, act5, s5a, dout);
  auto const g5 = run_block(host_executor{}, P, true, grad5, s5g, dout);
  // E5M2 activations change the forward; E5M2 gradients leave it and change only the backward.
  CHECK(!same(a5.out, e4.out));
  CHECK(same(g5.out, e4.out));
  CHECK(!same(g5.dx, e4.dx));
  CHECK(!same(g5.dw13, e4.dw13));
  // E5M2 rounding is at most 2^-3 relative (RMS 2^-3/sqrt(3) = 0.072 per quantization), E4M3 2^-4
  // (0.036). Two quantizations on each path (x and act; dY and dH13): RMS <= 0.102 vs 0.051, so the
  // two results differ by at most sqrt(0.102^2 + 0.051^2) = 0.114 relative L2 (bound: 0.15).
  CHECK(rel_l2(a5.out, e4.out) < 0.15);
  CHECK(rel_l2(g5.dx, e4.dx) < 0.15);
  CHECK(rel_l2(g5.dw13, e4.dw13) < 0.15);
  CHECK(s5a.xq.format == scaling::element_format::e5m2);
}

TEST_CASE("carve_contiguous_plan: arrays carved from an arena, filled like an owning plan; bad rows") {
  problem const P(300);
  auto const ids = matrix_view<std::int32_t const>(make_matrix(P.ids.data(), P.T, P.k));
  moe::contiguous const layout{.m_align = 128};
  moe::host_permute_plan own(layout, P.T, P.k, P.E);
  moe::build_permute_plan(host_executor{}, ids, own.view());
  std::int64_t const cap = moe::plan_rows(layout, P.T, P.k, P.E), used = own.rows_in_use();
  nn::workspace_arena count;
  moe::carve_contiguous_plan(count, layout, P.T, P.k, P.E, cap, used);
  std::vector<std::byte> buf(count.bytes());
  std::fill(buf.begin(), buf.end(), std::byte{0xAB});  // poison
  nn::workspace_arena ws({buf.data(), buf.size()});
  auto const p = moe::carve_contiguous_plan(ws, layout, P.T, P.k, P.E, cap, used);
  CHECK(ws.bytes() == count.bytes());
  CHECK((p.layout == moe::layout_kind::contiguous && p.tokens == P.T && p.k == P.k && p.experts == P.E &&
         p.rows == used && p.align == 128));
  moe::build_permute_plan(host_executor{}, ids, p);
  for (std::int64_t r = 0; r < used; ++r) {
    CHECK(p.row_token[r] == own.row_token()[static_cast<std::size_t>(r)]);
    CHECK(p.row_slot[r] == own.row_slot()[static_cast<std::size_t>(r)]);
    CHECK(p.row_expert[r] == own.row_expert()[static_cast<std::size_t>(r)]);
  }
  for (std::int64_t i = 0; i < P.T * P.k; ++i)
    CHECK(p.slot_row[i] == own.slot_row()[static_cast<std::size_t>(i)]);
  for (std::int64_t e = 0; e <= P.E; ++e)
    CHECK(p.expert_offset[e] == own.expert_offset()[static_cast<std::size_t>(e)]);
  CHECK_THROWS_WITH_AS(moe::carve_contiguous_plan(count, layout, P.T, P.k, P.E, 128, 256),
                       doctest::Contains("rows"), fp8moe::error);
}

TEST_CASE("gemm layouts: contiguous and masked problems built from plans compute the same rows") {
  problem const P(600);
  auto const xq =
      scaling::quantize(host_executor{}, make_matrix(P.x.data(), P.T, P.H), scaling::deepseek_v3.activation);
  auto const ids = matrix_view<std::int32_t const>(make_matrix(P.ids.data(), P.T, P.k));
  moe::host_permute_plan cp(moe::contiguous{.m_align = 128}, P.T, P.k, P.E),
      mp(moe::masked{.max_m = P.T}, P.T, P.k, P.E);
  moe::build_permute_plan(host_executor{}, ids, cp.view());
  moe::build_permute_plan(host_executor{}, ids, mp.view());
  scaling::quantized_matrix<fp8> ac(cp.view().rows, P.H, scaling::tile_1x128),
      am(mp.view().rows, P.H, scaling::tile_1x128);
  moe::permute(host_executor{}, cp.view(), xq.view(), ac.view());
  moe::permute(host_executor{}, mp.view(), xq.view(), am.view());
  host_matrix<float> dc(cp.view().rows, 2 * P.I), dm(mp.view().rows, 2 * P.I, -7.0f);
  gemm::grouped_gemm(host_executor{},
                     moe::contiguous_problem<fp8, fp8, float>(cp.view(), ac.view(), P.ew().w13, dc.view()));
  gemm::grouped_gemm(host_executor{},
                     moe::masked_problem<fp8, fp8, float>(mp.view(), am.view(), P.ew().w13, dm.view()));
  // same FP8 operands and the same 128-K promotion; only the FP32 order inside a block may differ
  for (std::int64_t i = 0; i < P.T * P.k; ++i) {
    auto const rc = cp.slot_row()[i], rm = mp.slot_row()[i];
    REQUIRE((rc >= 0) == (rm >= 0));
    if (rc < 0) continue;
    for (std::int64_t n = 0; n < 2 * P.I; ++n)
      REQUIRE(std::abs(dc(rc, n) - dm(rm, n)) <= 1e-5f * (1 + std::abs(dc(rc, n))));
  }
  // masked rows past the counts stay untouched; contiguous padding rows are 0
  for (std::int64_t e = 0; e < P.E; ++e) {
    CHECK(dm(e * P.T + mp.counts()[e], 0) == -7.0f);
    if (cp.counts()[e] % 128) CHECK(dc(cp.expert_offset()[e] + cp.counts()[e], 0) == 0.0f);
  }
  auto wrong_layout = [&] {
    return moe::contiguous_problem<fp8, fp8, float>(mp.view(), am.view(), P.ew().w13, dm.view());
  };
  CHECK_THROWS_AS(wrong_layout(), fp8moe::error);
}

#if FP8MOE_CUDA_COMPILER
namespace {
using fp8moe::test::to_device;
using fp8moe::test::to_host;
/// Device copy of a stacked (G*R, C) quantized matrix as a batched (G, R, C) view (128x128 blocks).
gemm::quantized_batched_view<fp8> upload_batched(scaling::quantized_matrix<fp8> const& q, std::int64_t G,
                                                 std::int64_t R, std::int64_t C, std::vector<void*>& owned) {
  auto* d = to_device(q.data.data(), q.data.storage().size());
  auto* s = to_device(q.scales.data(), q.scales.storage().size());
  owned.push_back(d);
  owned.push_back(s);
  return {{d, G, R, C, R * C, C, 1},
          {s, G, R / 128, C / 128, (R / 128) * (C / 128), C / 128, 1},
          scaling::block_128x128};
}
scaling::quantized_matrix_view<fp8 const> single(gemm::quantized_batched_view<fp8> const& b) {
  return scaling::quantized_matrix_view<fp8 const>(b[0]);
}
}  // namespace

TEST_CASE("expert_block (CUDA): forward and backward match the host path") {
  if (cuda_device_count() == 0) return;
  problem const P(500, 256);  // T multiple of 128: the shared expert's device wgrad tiles tokens by 128
  cuda_executor ex{nullptr};
  std::vector<void*> owned;
  auto const w13 = upload_batched(P.w13, P.E, 2 * P.I, P.H, owned);
  auto const w2 = upload_batched(P.w2, P.E, P.H, P.I, owned);
  auto const s13 = upload_batched(P.s13, 1, 2 * P.Is, P.H, owned);
  auto const s2 = upload_batched(P.s2, 1, P.H, P.Is, owned);
  moe::expert_weights<fp8> const dw{w13, w2};
  moe::shared_expert_weights<fp8> const dsw{single(s13), single(s2)};
  auto* dxin = to_device(P.x.data(), P.x.size());
  auto* dids = to_device(P.ids.data(), P.ids.size());
  auto* dwts = to_device(P.weights.data(), P.weights.size());
  auto const dout_h = test::random_normal(static_cast<std::size_t>(P.T * P.H), 1.0f, 501);
  auto* ddout = to_device(dout_h.data(), dout_h.size());
  float* dout_fwd = to_device(std::vector<float>(dout_h.size(), NAN));
  for (void* q : {(void*)dxin, (void*)dids, (void*)dwts, (void*)ddout, (void*)dout_fwd}) owned.push_back(q);
  moe::expert_block_config const cfg{};
  moe::expert_block_state st;  // the same state type as the host
  auto const ids_v =
      matrix_view<std::int32_t const>(make_matrix(static_cast<std::int32_t const*>(dids), P.T, P.k));
  auto const w_v = matrix_view<float const>(make_matrix(static_cast<float const*>(dwts), P.T, P.k));
  moe::expert_block(ex, cfg, matrix_view<float const>(make_matrix(dxin, P.T, P.H)), ids_v, w_v, dw, dsw,
                    make_matrix(dout_fwd, P.T, P.H), st);
  FP8MOE_CUDA_CHECK(cudaDeviceSynchronize());
  // host path on the same inputs
  moe::expert_block_state hs;
  std::vector<float> out_h(dout_h.size());
  auto const ids_h = matrix_view<std::int32_t const>(make_matrix(P.ids.data(), P.T, P.k));
  auto const w_h = matrix_view<float const>(make_matrix(P.weights.data(), P.T, P.k));
  moe::expert_block(host_executor{}, cfg, make_matrix(P.x.data(), P.T, P.H), ids_h, w_h, P.ew(), P.sw(),
                    make_matrix(out_h.data(), P.T, P.H), hs);
  // Same quantizers (bit-exact by contract) but a different FP32 summation order in the GEMMs: an
  // activation may round to the neighbouring FP8 value (1 in ~1e5), so 2e-3 relative L2 is loose.
  CHECK(rel_l2(to_host(dout_fwd, out_h.size()), out_h) < 2e-3);
  // backward
  std::vector<float> dx_h(out_h.size()), dwt_h(P.weights.size()), g13(P.w13d.size()), g2(P.w2d.size()),
      gs13(P.s13d.size()), gs2(P.s2d.size());
  moe::expert_block_backward(host_executor{}, cfg, hs, w_h, P.ew(), P.sw(),
                             matrix_view<float const>(make_matrix(dout_h.data(), P.T, P.H)),
                             make_matrix(dx_h.data(), P.T, P.H), make_matrix(dwt_h.data(), P.T, P.k),
                             {{g13.data(), P.E, 2 * P.I, P.H, 2 * P.I * P.H, P.H, 1},
                              {g2.data(), P.E, P.H, P.I, P.H * P.I, P.I, 1},
                              make_matrix(gs13.data(), 2 * P.Is, P.H),
                              make_matrix(gs2.data(), P.H, P.Is)});
  float *ddx, *ddw, *dg13, *dg2, *dgs13, *dgs2;
  for (auto [ptr, n] : {std::pair{&ddx, dx_h.size()},
                        {&ddw, dwt_h.size()},
                        {&dg13, g13.size()},
                        {&dg2, g2.size()},
                        {&dgs13, gs13.size()},
                        {&dgs2, gs2.size()}}) {
    FP8MOE_CUDA_CHECK(cudaMalloc(ptr, n * 4));
    FP8MOE_CUDA_CHECK(cudaMemset(*ptr, 0xFF, n * 4));
    owned.push_back(*ptr);
  }
  moe::expert_block_backward(ex, cfg, st, w_v, dw, dsw,  // W, as on the host
                             matrix_view<float const>(make_matrix(ddout, P.T, P.H)),
                             make_matrix(ddx, P.T, P.H), make_matrix(ddw, P.T, P.k),
                             {{dg13, P.E, 2 * P.I, P.H, 2 * P.I * P.H, P.H, 1},
                              {dg2, P.E, P.H, P.I, P.H * P.I, P.I, 1},
                              make_matrix(dgs13, 2 * P.Is, P.H),
                              make_matrix(dgs2, P.H, P.Is)});
  FP8MOE_CUDA_CHECK(cudaDeviceSynchronize());
  CHECK(rel_l2(to_host(ddx, dx_h.size()), dx_h) < 5e-3);
  CHECK(rel_l2(to_host(ddw, dwt_h.size()), dwt_h) < 5e-3);
  CHECK(rel_l2(to_host(dg13, g13.size()), g13) < 5e-3);
  CHECK(rel_l2(to_host(dg2, g2.size()), g2) < 5e-3);
  CHECK(rel_l2(to_host(dgs13, gs13.size()), gs13) < 5e-3);
  CHECK(rel_l2(to_host(dgs2, gs2.size()), gs2) < 5e-3);
  for (void* q : owned) FP8MOE_CUDA_CHECK(cudaFree(q));
}
#endif

}  // namespace fp8moe::test_moe_expert_block
