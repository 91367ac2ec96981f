// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// attention::mla_forward / mla_backward: the whole DeepSeek-V3 MLA layer on float or bf16 weights
// stored as HF does ([out, in]): q (low rank + q_norm, or plain wq), kv_a + kv_norm + rope, the
// core (naive or absorbed over an mla_cache), wo. Written once on the core and nn entry points.
// mla_forward OVERWRITES out; mla_backward (naive form) ACCUMULATES dx and the weight gradients.
// The projections may go through a caller's callable (the example's FP8 path). Host memory cache.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <type_traits>

#include "fp8moe/attention/host/mla.hpp"
#include "fp8moe/attention/mla_cache.hpp"
#include "fp8moe/attention/mla_core.hpp"
#include "fp8moe/core/error.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/nn/matmul.hpp"
#include "fp8moe/nn/rmsnorm.hpp"
#include "fp8moe/nn/rope.hpp"
#include "fp8moe/nn/workspace.hpp"
#include "fp8moe/numeric/bfloat16.hpp"

namespace fp8moe::attention {

/// Which core form mla_forward runs.
enum class mla_form { naive, absorbed };

/// The layer's projections (HF names): q_proj, q_a_proj, q_b_proj, kv_a_proj_with_mqa, kv_b_proj, o_proj.
enum class mla_proj { q, q_a, q_b, kv_a, kv_b, o };

/// The layer's weights as HF stores them, [out, in], float or bfloat16_t (C hidden, ql q_lora_rank,
/// c kv_lora_rank). With q_lora_rank = q_norm.size() == 0, wq replaces wq_a / q_norm / wq_b.
template <class W>
struct mla_weights {
  matrix_view<W const> wq;     // (H*(dn+dr), C)    q_proj (q_lora_rank 0 only)
  matrix_view<W const> wq_a;   // (ql, C)           q_a_proj
  std::span<W const> q_norm;   // (ql)              q_a_layernorm
  matrix_view<W const> wq_b;   // (H*(dn+dr), ql)   q_b_proj
  matrix_view<W const> wkv_a;  // (c + dr, C)       kv_a_proj_with_mqa: [latent | k_rope] rows
  std::span<W const> kv_norm;  // (c)               kv_a_layernorm
  matrix_view<W const> wkv_b;  // (H*(dn+dv), c)    kv_b_proj: per head [W_UK | W_UV] rows
  matrix_view<W const> wo;     // (C, H*dv)         o_proj
  float norm_eps = 1e-6f;      // rms_norm_eps of q_norm and kv_norm

  std::int64_t q_lora_rank() const { return static_cast<std::int64_t>(q_norm.size()); }
  matrix_view<W const> const& operator[](mla_proj p) const {
    switch (p) {
      case mla_proj::q:
        return wq;
      case mla_proj::q_a:
        return wq_a;
      case mla_proj::q_b:
        return wq_b;
      case mla_proj::kv_a:
        return wkv_a;
      case mla_proj::kv_b:
        return wkv_b;
      case mla_proj::o:
        break;
    }
    return wo;
  }
};

/// Float weight gradients, shaped as the weights (ACCUMULATED by mla_backward; wq or wq_a/wq_b as
/// the weights have them).
struct mla_grads {
  matrix_view<float> dwq, dwq_a;
  std::span<float> dq_norm;
  matrix_view<float> dwq_b, dwkv_a;
  std::span<float> dkv_norm;
  matrix_view<float> dwkv_b, dwo;
};

/// What mla_forward keeps for mla_backward (naive form, no cache): views into caller storage
/// (mla_saved_views), T tokens.
struct mla_saved {
  std::int64_t tokens = 0;
  matrix_view<float> cq_pre;  // (T, ql) wq_a x             (empty when q_lora_rank == 0)
  matrix_view<float> cq;      // (T, ql) q_norm(cq_pre)
  std::span<float> q_rstd;    // (T)
  matrix_view<float> q;       // (T, H*(dn+dr)) q_rope rotated
  matrix_view<float> kv_a;    // (T, c + dr) [latent before kv_norm | k_rope rotated]
  matrix_view<float> latent;  // (T, c) kv_norm(latent)
  std::span<float> kv_rstd;   // (T)
  matrix_view<float> kv;      // (T, H*(dn+dv)) latent wkv_b^T
  matrix_view<float> probs;   // (H*T, T) the core's softmax
  matrix_view<float> o;       // (T, H*dv) the core's output, the input of wo
};

namespace detail {

template <class Arena>
mla_saved carve_saved(Arena& a, mla_dims const& d, std::int64_t ql, std::int64_t T, std::int64_t S) {
  mla_saved s;
  s.tokens = T;
  s.cq_pre = a.template matrix<float>(T, ql);
  s.cq = a.template matrix<float>(T, ql);
  s.q_rstd = {a.template take<float>(T), static_cast<std::size_t>(T)};
  s.q = a.template matrix<float>(T, d.q_cols());
  s.kv_a = a.template matrix<float>(T, d.kv_lora_rank + d.qk_rope_head_dim);
  s.latent = a.template matrix<float>(T, d.kv_lora_rank);
  s.kv_rstd = {a.template take<float>(T), static_cast<std::size_t>(T)};
  s.kv = a.template matrix<float>(S, d.kv_cols());
  s.probs = a.template matrix<float>(d.heads * T, S);
  s.o = a.template matrix<float>(T, d.out_cols());
  return s;
}

template <executor Exec>
constexpr bool check_mla_dispatch() {
  static_assert(has_dispatch<mla_dispatch<executor_t<Exec>>>,
                "fp8moe::attention: this executor has no MLA path here; include "
                "\"fp8moe/attention/host/mla.hpp\" (a CUDA path is not written yet)");
  return has_dispatch<mla_dispatch<executor_t<Exec>>>;
}

}  // namespace detail

/// Bytes of the storage mla_saved_views carves for T tokens.
inline std::size_t mla_saved_bytes(mla_dims const& d, std::int64_t q_lora_rank, std::int64_t T) {
  nn::workspace_arena a;
  detail::carve_saved(a, d, q_lora_rank, T, T);
  return a.bytes();
}

/// The saved-state views over `storage` (mla_saved_bytes of them) for T tokens.
inline mla_saved mla_saved_views(std::span<std::byte> storage, mla_dims const& d, std::int64_t q_lora_rank,
                                 std::int64_t T) {
  std::size_t const need = mla_saved_bytes(d, q_lora_rank, T);
  require(storage.size() >= need && storage.data() != nullptr, "fp8moe::attention::mla_saved_views",
          "storage", ">= " + std::to_string(need) + " bytes (mla_saved_bytes)",
          std::to_string(storage.size()) + " bytes");
  nn::workspace_arena a(storage);
  return detail::carve_saved(a, d, q_lora_rank, T, T);
}

/// The default projection: out (R, N) = in (R, K) W^T with nn::matmul on the layer's float or
/// bf16 weight (bf16: `in` is rounded to bf16 first, float accumulation).
struct matmul_projection {};

namespace detail {

/// Scratch of the layer: the intermediates (unless saved), bf16 staging, a float wkv_b (absorbed
/// with bf16 weights), the core's workspace and the largest matmul scratch.
struct mla_layer_scratch {
  mla_saved st;
  matrix_view<bfloat16_t> stage;  // (1, max R*K) bf16 copy of a projection input
  matrix_view<float> wkv_b;       // (H*(dn+dv), c) float copy (absorbed, bf16 weights)
  // backward only
  matrix_view<float> d_o, dq, dkv, dkv_a, dlat, dcq, dcq_pre;
  std::span<std::byte> core, mm;
};

template <class W, class Arena, class Exec>
mla_layer_scratch carve_layer(Arena& a, Exec const& exec, mla_dims const& d, std::int64_t ql, std::int64_t C,
                              std::int64_t T, std::int64_t S, mla_form form, bool own_state, bool backward) {
  mla_layer_scratch l;
  std::int64_t const c = d.kv_lora_rank, dr = d.qk_rope_head_dim, qc = d.q_cols(), kvc = d.kv_cols();
  std::int64_t const HT = d.out_cols();
  if (own_state) l.st = carve_saved(a, d, ql, T, form == mla_form::naive ? S : 0);
  if (own_state && form == mla_form::naive) l.st.probs = {};  // the core's own scratch holds them
  constexpr bool bf16 = std::is_same_v<W, bfloat16_t>;
  if (bf16) {
    std::int64_t n = std::max({T * C, T * ql, S * c, T * HT});
    if (backward) n = std::max({n, T * qc, T * kvc, T * (c + dr), T * ql, T * C});
    l.stage = a.template matrix<bfloat16_t>(1, n);
    if (form == mla_form::absorbed) l.wkv_b = a.template matrix<float>(kvc, c);
  }
  if (backward) {
    l.d_o = a.template matrix<float>(T, HT);
    l.dq = a.template matrix<float>(T, qc);
    l.dkv = a.template matrix<float>(T, kvc);
    l.dkv_a = a.template matrix<float>(T, c + dr);
    l.dlat = a.template matrix<float>(T, c);
    l.dcq = a.template matrix<float>(T, ql);
    l.dcq_pre = a.template matrix<float>(T, ql);
    l.core = a.sub(workspace_bytes(exec, mla_naive_backward_shape{d, T, T}));
  } else {
    l.core = a.sub(form == mla_form::naive ? workspace_bytes(exec, mla_naive_shape{d, T, S})
                                           : workspace_bytes(exec, mla_absorbed_shape{d, T, S}));
  }
  std::size_t mm = 0;
  auto add = [&](std::int64_t m, std::int64_t n, std::int64_t k) {
    mm = std::max(mm, nn::workspace_bytes(exec, nn::matmul_shape{m, n, k}));
  };
  std::int64_t const in_q = ql > 0 ? ql : C;
  for (auto [n, k] : {std::pair{ql, C}, std::pair{qc, in_q}, std::pair{c + dr, C}, std::pair{C, HT}}) {
    add(T, n, k);
    if (backward) add(T, k, n), add(n, k, T);  // dgrad (T,K) and wgrad (N,K)
  }
  add(S, kvc, c);
  if (backward) add(T, c, kvc), add(kvc, c, T);
  l.mm = a.sub(mm);
  return l;
}

/// out (R, N) (+)= in (R, K) W^T (W (N, K)), or dX (R, K) += dY (R, N) W with `transpose_w` false.
template <class Exec, class W>
void weight_product(Exec const& exec, matrix_view<float const> in, matrix_view<W const> w, bool w_transposed,
                    matrix_view<float> out, float beta, mla_layer_scratch const& l) {
  matrix_view<W const> const b = w_transposed ? nn::transposed(w) : w;
  if constexpr (std::is_same_v<W, float>) {
    nn::matmul(exec, in, b, out, {1.0f, beta}, l.mm);
  } else {
    auto const st = make_matrix(l.stage.data, in.rows, in.cols);
    mla_dispatch<executor_t<Exec>>::convert(exec, in, st);
    nn::matmul(exec, matrix_view<bfloat16_t const>(st), b, out, {1.0f, beta}, l.mm);
  }
}

template <class W>
void check_weight(char const* where, char const* arg, matrix_view<W const> const& m, std::int64_t rows,
                  std::int64_t cols) {
  check_matrix(m, where, arg);
  check_shape(m, rows, cols, where, arg);
  require(m.empty() || m.col_stride == 1, where, arg, "row-major (col_stride 1), HF's [out, in]");
}

template <class W>
void check_norm(char const* where, char const* arg, std::span<W const> n, std::int64_t size) {
  require(static_cast<std::int64_t>(n.size()) == size && (size == 0 || n.data() != nullptr), where, arg,
          "size " + std::to_string(size), "size " + std::to_string(n.size()));
}

/// The weights the layer reads itself (norms; wkv_b in the absorbed form) and, with the default
/// projection, every projection's shape.
template <class W>
void check_weights(char const* where, mla_dims const& d, mla_weights<W> const& w, std::int64_t C,
                   bool projections, bool absorbed) {
  check_dims(where, d);
  std::int64_t const ql = w.q_lora_rank(), c = d.kv_lora_rank, dr = d.qk_rope_head_dim;
  check_norm(where, "weights.kv_norm", w.kv_norm, c);
  require(std::isfinite(w.norm_eps) && w.norm_eps > 0.0f, where, "weights.norm_eps", "a finite value > 0");
  if (absorbed || projections) check_weight(where, "weights.wkv_b", w.wkv_b, d.kv_cols(), c);
  if (!projections) return;
  if (ql > 0) {
    check_weight(where, "weights.wq_a", w.wq_a, ql, C);
    check_weight(where, "weights.wq_b", w.wq_b, d.q_cols(), ql);
  } else {
    check_weight(where, "weights.wq", w.wq, d.q_cols(), C);
  }
  check_weight(where, "weights.wkv_a", w.wkv_a, c + dr, C);
  check_weight(where, "weights.wo", w.wo, C, d.out_cols());
}

inline void check_positions(char const* where, std::span<std::int64_t const> pos, std::int64_t T) {
  require(static_cast<std::int64_t>(pos.size()) == T, where, "positions", "size T = " + std::to_string(T),
          "size " + std::to_string(pos.size()));
}

/// The q and k rope slots of q (T, H*(dn+dr)) and kv_a (T, c+dr) as (T, heads, dr) views.
inline batched_matrix_view<float> q_rope_slots(mla_dims const& d, matrix_view<float> q) {
  return {q.data + d.qk_nope_head_dim, q.rows, d.heads, d.qk_rope_head_dim, q.row_stride, d.qk_head_dim(), 1};
}
inline batched_matrix_view<float> k_rope_slots(mla_dims const& d, matrix_view<float> kv_a) {
  return {kv_a.data + d.kv_lora_rank, kv_a.rows, 1, d.qk_rope_head_dim, kv_a.row_stride,
          d.qk_rope_head_dim,         1};
}
inline matrix_view<float> cols(matrix_view<float> m, std::int64_t c0, std::int64_t n) {
  return {m.data + c0, m.rows, n, m.row_stride, 1};
}

}  // namespace detail

/// The workspace query's shape of mla_forward with weights of type W (float or bfloat16_t):
/// T tokens of hidden size C over S keys (S = T without a cache, else the cache length after the
/// append), weights with q_lora_rank ql (0: no q compression), in the given form.
template <class W>
struct mla_layer_shape {
  mla_dims dims;
  std::int64_t ql, C, T, S;
  mla_form form;
};

/// The workspace query's shape of mla_backward with weights of type W: T tokens of hidden size C.
template <class W>
struct mla_layer_backward_shape {
  mla_dims dims;
  std::int64_t ql, C, T;
};

namespace detail {

inline void check_layer_shape(char const* where, mla_dims const& d, std::int64_t ql, std::int64_t C,
                              std::int64_t T, std::int64_t S) {
  check_query_shape(where, d, T, S);
  require(ql >= 0, where, "shape.ql", ">= 0", std::to_string(ql));
  require(C >= 0, where, "shape.C", ">= 0", std::to_string(C));
}

}  // namespace detail

/// Scratch bytes of mla_forward (its `workspace`).
template <executor Exec, class W>
std::size_t workspace_bytes(Exec const& exec, mla_layer_shape<W> const& s) {
  detail::check_layer_shape("fp8moe::attention::workspace_bytes(mla_layer_shape)", s.dims, s.ql, s.C, s.T,
                            s.S);
  nn::workspace_arena a;
  detail::carve_layer<W>(a, exec, s.dims, s.ql, s.C, s.T, s.S, s.form, true, false);
  return a.bytes();
}

/// Scratch bytes of mla_backward (its `workspace`).
template <executor Exec, class W>
std::size_t workspace_bytes(Exec const& exec, mla_layer_backward_shape<W> const& s) {
  detail::check_layer_shape("fp8moe::attention::workspace_bytes(mla_layer_backward_shape)", s.dims, s.ql, s.C,
                            s.T, s.T);
  nn::workspace_arena a;
  detail::carve_layer<W>(a, exec, s.dims, s.ql, s.C, s.T, s.T, mla_form::naive, false, true);
  return a.bytes();
}

/// The MLA layer. x (T, C): the normed layer input; out (T, C) = wo(attention), OVERWRITTEN.
/// positions (T): the RoPE positions of the rows. With `cache`, the new latent/k_rope rows are
/// appended and the queries attend the whole cache causally (row 0 at key cache->length()); without,
/// they attend each other (q_pos0 0). `saved` (naive, no cache): keeps what mla_backward reads.
/// `proj(mla_proj, matrix_view<float const> in (R,K), matrix_view<float> out (R,N))` computes a
/// projection out = in W^T (default: nn::matmul on `weights`; a custom one must write all of out,
/// and only the norms and, for the absorbed form, a float-convertible wkv_b are read from weights).
/// `workspace`: workspace_bytes(exec, mla_layer_shape<W>{dims, ql, C, T, S, form}) (empty: allocated here).
template <executor Exec, class W, class Proj = matmul_projection>
void mla_forward(Exec const& exec, mla_dims const& dims, mla_weights<W> const& weights,
                 nn::rope_table const& rope, std::span<std::int64_t const> positions,
                 matrix_view<float const> x, matrix_view<float> out, mla_form form = mla_form::naive,
                 mla_cache* cache = nullptr, mla_saved const* saved = nullptr,
                 std::span<std::byte> workspace = {}, Proj&& proj = {}) {
  static_assert(std::is_same_v<W, float> || std::is_same_v<W, bfloat16_t>,
                "fp8moe::attention::mla_forward: weights must be float or bfloat16_t (FP8: pass a projection "
                "callable and dequantized norms / wkv_b)");
  constexpr bool default_proj = std::is_same_v<std::remove_cvref_t<Proj>, matmul_projection>;
  static_assert(
      default_proj || std::is_invocable_v<Proj&, mla_proj, matrix_view<float const>, matrix_view<float>>,
      "fp8moe::attention::mla_forward: proj must be callable as proj(mla_proj, matrix_view<float const> "
      "in, matrix_view<float> out)");
  constexpr char const* where = "fp8moe::attention::mla_forward";
  bool const absorbed = form == mla_form::absorbed;
  std::int64_t const T = x.rows, C = x.cols, ql = weights.q_lora_rank();
  std::int64_t const c = dims.kv_lora_rank, dr = dims.qk_rope_head_dim;
  detail::check_weights(where, dims, weights, C, default_proj, absorbed);
  detail::check_rm(where, "x", x, T, C);
  detail::check_rm(where, "out", matrix_view<float const>(out), T, C);
  detail::check_positions(where, positions, T);
  std::int64_t const q_pos0 = cache ? cache->length() : 0, S = q_pos0 + T;
  if (cache) {
    require(cache->kv_lora_rank() == c && cache->rope_dim() == dr, where, "cache",
            "kv_lora_rank " + std::to_string(c) + " and rope_dim " + std::to_string(dr));
    require(S <= cache->capacity(), where, "cache",
            "room for T = " + std::to_string(T) + " more tokens (capacity " +
                std::to_string(cache->capacity()) + ")",
            "length " + std::to_string(cache->length()));
  }
  if (saved) {
    require(!absorbed && !cache, where, "saved",
            "only with the naive form and no cache (mla_backward's input)");
    require(saved->tokens == T && saved->probs.rows == dims.heads * T && saved->cq.cols == ql &&
                saved->q.cols == dims.q_cols(),
            where, "saved",
            "mla_saved_views(storage, dims, q_lora_rank " + std::to_string(ql) + ", T " + std::to_string(T) +
                ")");
  }
  if constexpr (detail::check_mla_dispatch<Exec>()) {
    using D = mla_dispatch<executor_t<Exec>>;
    auto const need = workspace_bytes(exec, mla_layer_shape<W>{dims, ql, C, T, S, form});
    auto owned = workspace.empty() ? D::allocate(exec, need) : decltype(D::allocate(exec, 0)){};
    if (workspace.empty()) workspace = owned.span();
    nn::check_workspace(workspace, need, where);
    nn::workspace_arena arena(workspace);
    auto l = detail::carve_layer<W>(arena, exec, dims, ql, C, T, S, form, saved == nullptr, false);
    mla_saved st = saved ? *saved : l.st;
    auto const ew = D::elementwise(exec, T * std::max(C, dims.q_cols()));  // norms and rope
    auto project = [&](mla_proj p, matrix_view<float const> in, matrix_view<float> o) {
      if constexpr (default_proj)
        detail::weight_product(exec, in, weights[p], true, o, 0.0f, l);
      else
        proj(p, in, o);
    };
    // queries
    if (ql > 0) {
      project(mla_proj::q_a, x, st.cq_pre);
      nn::rmsnorm_forward(ew, matrix_view<float const>(st.cq_pre), weights.q_norm, st.cq, st.q_rstd,
                          weights.norm_eps);
      project(mla_proj::q_b, st.cq, st.q);
    } else {
      project(mla_proj::q, x, st.q);
    }
    nn::rope_forward(ew, rope, positions, detail::q_rope_slots(dims, st.q));
    // latent and rope key
    project(mla_proj::kv_a, x, st.kv_a);
    nn::rmsnorm_forward(ew, matrix_view<float const>(detail::cols(st.kv_a, 0, c)), weights.kv_norm, st.latent,
                        st.kv_rstd, weights.norm_eps);
    nn::rope_forward(ew, rope, positions, detail::k_rope_slots(dims, st.kv_a));
    matrix_view<float const> lat = st.latent, kr = detail::cols(st.kv_a, c, dr);
    if (cache) {
      cache->append(lat, kr);
      lat = cache->latent();
      kr = cache->k_rope();
    }
    // core
    if (absorbed) {
      matrix_view<float const> wkv_b;
      if constexpr (std::is_same_v<W, float>) {
        wkv_b = weights.wkv_b;
      } else {
        D::convert(exec, weights.wkv_b, l.wkv_b);
        wkv_b = l.wkv_b;
      }
      mla_absorbed_forward(exec, dims, st.q, wkv_b, lat, kr, q_pos0, st.o, l.core);
    } else {
      auto const kv = make_matrix(st.kv.data, S, dims.kv_cols());
      project(mla_proj::kv_b, lat, kv);
      mla_naive_forward(exec, dims, st.q, kv, kr, q_pos0, st.o, st.probs, l.core);
    }
    project(mla_proj::o, st.o, out);
  }
}

/// The backward of mla_forward (naive form, no cache) with the default projections: from x, the
/// saved state and dout (T, C), ACCUMULATES dx (T, C) += dL/dx and every weight gradient in grads.
/// `workspace`: workspace_bytes(exec, mla_layer_backward_shape<W>{dims, ql, C, T}) (empty: allocated here).
template <executor Exec, class W>
void mla_backward(Exec const& exec, mla_dims const& dims, mla_weights<W> const& weights,
                  nn::rope_table const& rope, std::span<std::int64_t const> positions,
                  matrix_view<float const> x, mla_saved const& saved, matrix_view<float const> dout,
                  matrix_view<float> dx, mla_grads const& grads, std::span<std::byte> workspace = {}) {
  static_assert(std::is_same_v<W, float> || std::is_same_v<W, bfloat16_t>,
                "fp8moe::attention::mla_backward: weights must be float or bfloat16_t");
  constexpr char const* where = "fp8moe::attention::mla_backward";
  std::int64_t const T = x.rows, C = x.cols, ql = weights.q_lora_rank();
  std::int64_t const c = dims.kv_lora_rank, dr = dims.qk_rope_head_dim;
  detail::check_weights(where, dims, weights, C, true, false);
  detail::check_rm(where, "x", x, T, C);
  detail::check_rm(where, "dout", dout, T, C);
  detail::check_rm(where, "dx", matrix_view<float const>(dx), T, C);
  detail::check_positions(where, positions, T);
  require(saved.tokens == T && saved.probs.rows == dims.heads * T && saved.cq.cols == ql, where, "saved",
          "the state mla_forward kept for these T = " + std::to_string(T) + " tokens");
  auto const gm = [&](matrix_view<float> g, matrix_view<W const> const& w, char const* name) {
    detail::check_rm(where, name, matrix_view<float const>(g), w.rows, w.cols);
  };
  if (ql > 0) {
    gm(grads.dwq_a, weights.wq_a, "grads.dwq_a");
    gm(grads.dwq_b, weights.wq_b, "grads.dwq_b");
    detail::check_norm(where, "grads.dq_norm", std::span<float const>(grads.dq_norm), ql);
  } else {
    gm(grads.dwq, weights.wq, "grads.dwq");
  }
  gm(grads.dwkv_a, weights.wkv_a, "grads.dwkv_a");
  gm(grads.dwkv_b, weights.wkv_b, "grads.dwkv_b");
  gm(grads.dwo, weights.wo, "grads.dwo");
  detail::check_norm(where, "grads.dkv_norm", std::span<float const>(grads.dkv_norm), c);
  if constexpr (detail::check_mla_dispatch<Exec>()) {
    using D = mla_dispatch<executor_t<Exec>>;
    auto const need = workspace_bytes(exec, mla_layer_backward_shape<W>{dims, ql, C, T});
    auto owned = workspace.empty() ? D::allocate(exec, need) : decltype(D::allocate(exec, 0)){};
    if (workspace.empty()) workspace = owned.span();
    nn::check_workspace(workspace, need, where);
    nn::workspace_arena arena(workspace);
    auto const l = detail::carve_layer<W>(arena, exec, dims, ql, C, T, T, mla_form::naive, false, true);
    auto const ew = D::elementwise(exec, T * std::max(C, dims.q_cols()));  // norms and rope
    auto const dgrad = [&](matrix_view<float const> dy, matrix_view<W const> const& w, matrix_view<float> d,
                           float beta) { detail::weight_product(exec, dy, w, false, d, beta, l); };
    auto const wgrad = [&](matrix_view<float const> dy, matrix_view<float const> in, matrix_view<float> dw) {
      nn::matmul(exec, nn::transposed(dy), in, dw, {1.0f, 1.0f}, l.mm);  // dW (N,K) += dY^T (N,T) X (T,K)
    };
    // out = o wo^T
    dgrad(dout, weights.wo, l.d_o, 0.0f);
    wgrad(dout, saved.o, grads.dwo);
    // core; the rope parts of dq and dk_rope (in dkv_a's rope columns) are then un-rotated
    auto const dkr = detail::cols(l.dkv_a, c, dr);
    mla_naive_backward(exec, dims, saved.q, saved.kv, detail::cols(saved.kv_a, c, dr), 0, saved.probs, l.d_o,
                       l.dq, l.dkv, dkr, l.core);
    nn::rope_backward(ew, rope, positions, detail::q_rope_slots(dims, l.dq));
    nn::rope_backward(ew, rope, positions, detail::k_rope_slots(dims, l.dkv_a));
    // kv = latent wkv_b^T; latent = kv_norm(kv_a[:, :c])
    dgrad(l.dkv, weights.wkv_b, l.dlat, 0.0f);
    wgrad(l.dkv, saved.latent, grads.dwkv_b);
    auto const dlat_pre = detail::cols(l.dkv_a, 0, c);
    D::fill_zero(exec, dlat_pre);
    nn::rmsnorm_backward(ew, matrix_view<float const>(detail::cols(saved.kv_a, 0, c)), weights.kv_norm,
                         std::span<float const>(saved.kv_rstd), matrix_view<float const>(l.dlat), dlat_pre,
                         grads.dkv_norm);
    // kv_a = x wkv_a^T
    dgrad(l.dkv_a, weights.wkv_a, dx, 1.0f);
    wgrad(l.dkv_a, x, grads.dwkv_a);
    // q
    if (ql > 0) {
      dgrad(l.dq, weights.wq_b, l.dcq, 0.0f);
      wgrad(l.dq, saved.cq, grads.dwq_b);
      D::fill_zero(exec, l.dcq_pre);
      nn::rmsnorm_backward(ew, matrix_view<float const>(saved.cq_pre), weights.q_norm,
                           std::span<float const>(saved.q_rstd), matrix_view<float const>(l.dcq), l.dcq_pre,
                           grads.dq_norm);
      dgrad(l.dcq_pre, weights.wq_a, dx, 1.0f);
      wgrad(l.dcq_pre, x, grads.dwq_a);
    } else {
      dgrad(l.dq, weights.wq, dx, 1.0f);
      wgrad(l.dq, x, grads.dwq);
    }
  }
}

}  // namespace fp8moe::attention
