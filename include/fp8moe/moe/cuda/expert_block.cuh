// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// CUDA path of the grouped SwiGLU expert block: the host algorithm with device quantize, the CUB
// permute plan and the device grouped FP8 GEMMs. Enqueued on exec.stream; the forward never
// synchronizes; the backward copies the E+1 segment offsets to the host once (one stream sync),
// because the K-grouped wgrad GEMM takes host k_sizes. Device GEMMs need K-major B, so the
// backward takes the expert weights transposed (transpose_expert_weights: exact for 128x128 blocks).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "fp8moe/core/cuda/executor.hpp"
#include "fp8moe/gemm/cuda/gemm.hpp"
#include "fp8moe/moe/cuda/permute.cuh"
#include "fp8moe/moe/expert_block.hpp"
#include "fp8moe/scaling/cuda/quantize.cuh"

namespace fp8moe::moe {

namespace cuda_detail {

/// Owning device array: cudaMalloc/cudaFree, or stream-ordered cudaMallocAsync/cudaFreeAsync when
/// given a stream (temporaries of one call: freeing them never waits for the device).
template <class T>
class device_array {
 public:
  device_array() = default;
  explicit device_array(std::size_t n, cudaStream_t stream = nullptr, bool stream_ordered = false) : n_(n) {
    void* p = nullptr;
    std::size_t const bytes = std::max<std::size_t>(n, 1) * sizeof(T);
    if (stream_ordered) {
      FP8MOE_CUDA_CHECK(cudaMallocAsync(&p, bytes, stream));
    } else {
      FP8MOE_CUDA_CHECK(cudaMalloc(&p, bytes));
    }
    p_ = std::unique_ptr<T, release>(static_cast<T*>(p), release{stream, stream_ordered});
  }
  T* get() const { return p_.get(); }
  std::size_t size() const { return n_; }

 private:
  struct release {
    cudaStream_t stream = nullptr;
    bool stream_ordered = false;
    void operator()(T* p) const {
      if (stream_ordered) {
        cudaFreeAsync(p, stream);
      } else {
        cudaFree(p);
      }
    }
  };
  std::unique_ptr<T, release> p_;
  std::size_t n_ = 0;
};

/// Where a temporary lives: persistent (cudaMalloc) or stream-ordered on `stream`.
struct alloc_on {
  cudaStream_t stream = nullptr;
  bool stream_ordered = false;
};

/// Device FP8 matrix with row-major data and row-major per-tile scales.
struct device_quantized {
  device_array<fp8_t> data;
  device_array<float> scales;
  std::int64_t rows = 0, cols = 0;
  scaling::tile_shape tile{};
  device_quantized() = default;
  device_quantized(std::int64_t r, std::int64_t c, scaling::tile_shape t, alloc_on a = {})
      : data(static_cast<std::size_t>(r * c), a.stream, a.stream_ordered),
        scales(static_cast<std::size_t>(scaling::scale_rows(t, r) * scaling::scale_cols(t, c)), a.stream,
               a.stream_ordered),
        rows(r),
        cols(c),
        tile(t) {}
  scaling::quantized_matrix_view<fp8_t> view() const {
    std::int64_t const sc = scaling::scale_cols(tile, cols);
    return {make_matrix(data.get(), rows, cols),
            make_matrix(scales.get(), scaling::scale_rows(tile, rows), sc), tile};
  }
  scaling::quantized_matrix_view<fp8_t const> cview() const { return view(); }
};

struct device_matrix {
  device_array<float> buf;
  std::int64_t rows = 0, cols = 0;
  device_matrix() = default;
  device_matrix(std::int64_t r, std::int64_t c, alloc_on a = {})
      : buf(static_cast<std::size_t>(r * c), a.stream, a.stream_ordered), rows(r), cols(c) {}
  matrix_view<float> view() const { return make_matrix(buf.get(), rows, cols); }
  matrix_view<float const> cview() const { return view(); }
};

__global__ void swiglu_kernel(matrix_view<float const> h, matrix_view<float> act) {
  std::int64_t const n = act.rows * act.cols;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    std::int64_t const r = i / act.cols, c = i % act.cols;
    act(r, c) = swiglu(h(r, c), h(r, act.cols + c));
  }
}

__global__ void swiglu_backward_kernel(matrix_view<float const> h, matrix_view<float const> dact,
                                       matrix_view<float> dh) {
  std::int64_t const n = dact.rows * dact.cols;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    std::int64_t const r = i / dact.cols, c = i % dact.cols;
    swiglu_backward(h(r, c), h(r, dact.cols + c), dact(r, c), dh(r, c), dh(r, dact.cols + c));
  }
}

template <class Out>
__global__ void add_kernel(matrix_view<float const> a, matrix_view<float const> b, matrix_view<Out> out) {
  std::int64_t const n = out.rows * out.cols;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    std::int64_t const r = i / out.cols, c = i % out.cols;
    out(r, c) = static_cast<Out>(a(r, c) + b(r, c));
  }
}

/// dst (E, C, R) = src (E, R, C) transposed, element by element (data and scales alike).
template <class T>
__global__ void transpose_batched_kernel(batched_matrix_view<T const> src, batched_matrix_view<T> dst) {
  std::int64_t const n = src.batches * src.rows * src.cols;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    std::int64_t const c = i % src.cols, r = (i / src.cols) % src.rows, b = i / (src.cols * src.rows);
    dst(b, c, r) = src(b, r, c);
  }
}

inline unsigned grid_for(std::int64_t n) {
  return static_cast<unsigned>(
      std::min<std::int64_t>(std::max<std::int64_t>(ceil_div<std::int64_t>(n, 256), 1), 65535));
}

}  // namespace cuda_detail

/// Exact K-major transpose of FP8 expert weights with square (128x128) blocks: dst (E, C, R) from
/// src (E, R, C), data and scales. dst must own row-major storage of the transposed shapes.
template <class W>
void transpose_expert_weights(cuda_executor const& exec, gemm::quantized_batched_view<W const> src,
                              gemm::quantized_batched_view<W> dst) {
  constexpr char const* where = "fp8moe::moe::transpose_expert_weights";
  require(src.tile.rows == src.tile.cols, where, "src.tile", "square blocks (the transpose is then exact)");
  require(dst.batches() == src.batches() && dst.rows() == src.cols() && dst.cols() == src.rows(), where,
          "dst", "(E, C, R) for src (E, R, C)");
  require(dst.scales.rows == src.scales.cols && dst.scales.cols == src.scales.rows, where, "dst.scales",
          "the transposed scale shape");
  cuda_detail::transpose_batched_kernel<W>
      <<<cuda_detail::grid_for(src.data.batches * src.data.rows * src.data.cols), 256, 0, exec.stream>>>(
          src.data, dst.data);
  FP8MOE_CUDA_CHECK_LAUNCH();
  cuda_detail::transpose_batched_kernel<float>
      <<<cuda_detail::grid_for(src.scales.batches * src.scales.rows * src.scales.cols), 256, 0,
         exec.stream>>>(src.scales, dst.scales);
  FP8MOE_CUDA_CHECK_LAUNCH();
}

/// Forward activations of the CUDA expert block (device memory, allocated on first use).
struct cuda_expert_block_state {
  std::unique_ptr<cuda_permute_plan> plan;
  cuda_detail::device_quantized xq, a, actq, sactq;
  cuda_detail::device_matrix h13, act, y, sh13, sact, routed, shared;
  std::int64_t tokens = 0, k = 0, experts = 0, hidden = 0, inter = 0, shared_inter = 0, m_align = 0;
  std::int64_t tile_rows = 0, tile_cols = 0;  // the activation tile the scale buffers are sized for
};

/// CUDA forward: same contract as the host expert_block; x, ids, weights, out and all weights are
/// device memory. The plan uses the row capacity plan_rows(contiguous, T, k, E).
template <class In, class Out, class W>
void expert_block(cuda_executor const& exec, expert_block_config const& cfg, matrix_view<In> x,
                  matrix_view<std::int32_t const> ids, matrix_view<float const> weights,
                  expert_weights<W> const& w, shared_expert_weights<W> const& sw, matrix_view<Out> out,
                  cuda_expert_block_state& st) {
  static_assert(std::is_same_v<W, fp8_t>, "fp8moe::moe::expert_block: weights must be float8_e4m3_t");
  detail::check_block_args(cfg, x, ids, weights, w, sw, out);
  std::int64_t const T = x.rows, H = x.cols, k = ids.cols, E = w.w13.batches(), I = w.w13.rows() / 2;
  std::int64_t const Is = sw.present() ? sw.w13.rows() / 2 : 0;
  contiguous const layout{cfg.m_align};
  std::int64_t const M = plan_rows(layout, T, k, E);
  auto const tile = cfg.activation.tile;
  bool const same = st.plan && st.tokens == T && st.k == k && st.experts == E && st.hidden == H &&
                    st.inter == I && st.shared_inter == Is && st.m_align == cfg.m_align &&
                    st.tile_rows == tile.rows && st.tile_cols == tile.cols;
  if (!same) {
    st = cuda_expert_block_state{};
    st.plan = std::make_unique<cuda_permute_plan>(exec, layout, T, k, E);
    st.xq = {T, H, tile};
    st.a = {M, H, tile};
    st.h13 = {M, 2 * I};
    st.act = {M, I};
    st.actq = {M, I, tile};
    st.y = {M, H};
    if (Is > 0) {
      st.sh13 = {T, 2 * Is};
      st.sact = {T, Is};
      st.sactq = {T, Is, tile};
      st.routed = {T, H};
      st.shared = {T, H};
    }
    st.tokens = T, st.k = k, st.experts = E, st.hidden = H, st.inter = I, st.shared_inter = Is;
    st.m_align = cfg.m_align;
    st.tile_rows = tile.rows;
    st.tile_cols = tile.cols;
  }
  auto const& p = st.plan->view();
  scaling::quantize(exec, x, cfg.activation, st.xq.view());
  build_permute_plan(exec, ids, p, st.plan->workspace());
  permute(exec, p, st.xq.cview(), st.a.view());
  vector_view<int const> const m_idx{p.row_expert, M};
  gemm::grouped_gemm(exec,
                     gemm::grouped_contiguous<fp8_t, fp8_t, float>{
                         st.a.cview(), w.w13, m_idx, st.h13.view(), {}, cfg.m_align},
                     cfg.gemm);
  cuda_detail::swiglu_kernel<<<cuda_detail::grid_for(M * I), 256, 0, exec.stream>>>(st.h13.cview(),
                                                                                    st.act.view());
  FP8MOE_CUDA_CHECK_LAUNCH();
  scaling::quantize(exec, st.act.cview(), cfg.activation, st.actq.view());
  gemm::grouped_gemm(exec,
                     gemm::grouped_contiguous<fp8_t, fp8_t, float>{
                         st.actq.cview(), w.w2, m_idx, st.y.view(), {}, cfg.m_align},
                     cfg.gemm);
  if (Is == 0) {
    combine(exec, p, st.y.cview(), weights, out);
    return;
  }
  gemm::fp8_gemm(exec, st.xq.cview(), sw.w13, st.sh13.view(), cfg.gemm);
  cuda_detail::swiglu_kernel<<<cuda_detail::grid_for(T * Is), 256, 0, exec.stream>>>(st.sh13.cview(),
                                                                                     st.sact.view());
  FP8MOE_CUDA_CHECK_LAUNCH();
  scaling::quantize(exec, st.sact.cview(), cfg.activation, st.sactq.view());
  combine(exec, p, st.y.cview(), weights, st.routed.view());
  gemm::fp8_gemm(exec, st.sactq.cview(), sw.w2, st.shared.view(), cfg.gemm);
  cuda_detail::add_kernel<Out>
      <<<cuda_detail::grid_for(T * H), 256, 0, exec.stream>>>(st.routed.cview(), st.shared.cview(), out);
  FP8MOE_CUDA_CHECK_LAUNCH();
}

/// CUDA backward: as the host overload, plus `wt` / `swt` = the weights transposed K-major
/// (transpose_expert_weights; shared: (H, 2Is) and (Is, H)). With a shared expert, T must be a
/// multiple of 128 (its wgrad runs over the tokens as K, which the device GEMM tiles by 128).
template <class G, class W>
void expert_block_backward(cuda_executor const& exec, expert_block_config const& cfg,
                           cuda_expert_block_state const& st, matrix_view<float const> weights,
                           expert_weights<W> const& wt, shared_expert_weights<W> const& swt,
                           matrix_view<G> dout, matrix_view<float> dx, matrix_view<float> dweights,
                           expert_block_grads const& g) {
  constexpr char const* where = "fp8moe::moe::expert_block_backward";
  require(st.plan != nullptr, where, "state", "the state of a forward call");
  std::int64_t const T = st.tokens, H = st.hidden, I = st.inter, E = st.experts, k = st.k,
                     Is = st.shared_inter;
  require(wt.w13.batches() == E && wt.w13.rows() == H && wt.w13.cols() == 2 * I, where, "wt.w13",
          "(E, H, 2I): the transposed gate/up weights");
  require(wt.w2.batches() == E && wt.w2.rows() == I && wt.w2.cols() == H, where, "wt.w2",
          "(E, I, H): the transposed down weights");
  require(swt.present() == (Is > 0), where, "swt", "the (transposed) shared expert of the forward call");
  if (Is > 0) {
    require(swt.w13.rows() == H && swt.w13.cols() == 2 * Is && swt.w2.rows() == Is && swt.w2.cols() == H,
            where, "swt", "(H, 2Is) and (Is, H)");
    require(T % 128 == 0, where, "T", "a multiple of 128 with a shared expert on the device",
            std::to_string(T));
  }
  detail::check_block_grad_args(T, H, I, E, k, Is, weights, dout, dx, dweights, g, where);
  auto const& p = st.plan->view();
  std::int64_t const M = p.rows;
  auto const tile = cfg.gradient.tile;
  vector_view<int const> const m_idx{p.row_expert, M};
  // the segment sizes, needed on the host by the K-grouped GEMM
  std::vector<std::int32_t> off(static_cast<std::size_t>(E + 1));
  FP8MOE_CUDA_CHECK(
      cudaMemcpyAsync(off.data(), p.expert_offset, off.size() * 4, cudaMemcpyDeviceToHost, exec.stream));
  FP8MOE_CUDA_CHECK(cudaStreamSynchronize(exec.stream));
  std::int64_t const used = off[static_cast<std::size_t>(E)];
  std::vector<int> k_sizes(static_cast<std::size_t>(E));
  for (std::int64_t e = 0; e < E; ++e)
    k_sizes[static_cast<std::size_t>(e)] =
        off[static_cast<std::size_t>(e + 1)] - off[static_cast<std::size_t>(e)];
  cuda_detail::alloc_on const tmp{exec.stream, true};
  cuda_detail::device_matrix dy(M, H, tmp), dact(M, I, tmp), dh13(M, 2 * I, tmp), dxp(M, H, tmp);
  combine_backward(exec, p, st.y.cview(), weights, dout, dy.view(), dweights);
  cuda_detail::device_quantized dyq(M, H, tile, tmp), dh13q(M, 2 * I, tile, tmp);
  scaling::quantize(exec, dy.cview(), cfg.gradient, dyq.view());
  gemm::grouped_gemm(
      exec,
      gemm::grouped_contiguous<fp8_t, fp8_t, float>{dyq.cview(), wt.w2, m_idx, dact.view(), {}, cfg.m_align},
      cfg.gemm);
  cuda_detail::swiglu_backward_kernel<<<cuda_detail::grid_for(M * I), 256, 0, exec.stream>>>(
      st.h13.cview(), dact.cview(), dh13.view());
  FP8MOE_CUDA_CHECK_LAUNCH();
  scaling::quantize(exec, dh13.cview(), cfg.gradient, dh13q.view());
  gemm::grouped_gemm(exec,
                     gemm::grouped_contiguous<fp8_t, fp8_t, float>{
                         dh13q.cview(), wt.w13, m_idx, dxp.view(), {}, cfg.m_align},
                     cfg.gemm);
  permute_backward(exec, p, dxp.cview(), dx);
  // wgrad over the rows in use (padding rows are zero in dY, dH13 and act; a is zero there too)
  vector_view<int const> const ks{k_sizes.data(), E};
  if (used > 0) {
    cuda_detail::device_quantized dyt(H, used, tile, tmp), actt(I, used, tile, tmp),
        dh13t(2 * I, used, tile, tmp), at(H, used, tile, tmp);
    auto rows_of = [used](matrix_view<float const> m) {
      return matrix_view<float const>{m.data, used, m.cols, m.row_stride, 1};
    };
    scaling::transpose_requantize(exec, rows_of(dy.cview()), cfg.gradient, dyt.view());
    scaling::transpose_requantize(exec, rows_of(st.act.cview()), cfg.activation, actt.view());
    gemm::grouped_gemm(exec, gemm::k_grouped<fp8_t, fp8_t>{dyt.cview(), actt.cview(), ks, g.dw2, {}},
                       cfg.gemm);
    scaling::transpose_requantize(exec, rows_of(dh13.cview()), cfg.gradient, dh13t.view());
    auto ac = st.a.cview();
    ac.data.rows = used;
    ac.scales.rows = scaling::scale_rows(ac.tile, used);
    scaling::transpose_requantize(exec, ac, cfg.activation, at.view());
    gemm::grouped_gemm(exec, gemm::k_grouped<fp8_t, fp8_t>{dh13t.cview(), at.cview(), ks, g.dw13, {}},
                       cfg.gemm);
  } else {
    // no routed rows: the weight gradients are 0, cleared through the views' strides
    for (auto const& v : {g.dw13, g.dw2}) {
      require(v.col_stride == 1, detail::block_where, "grads", "unit column strides");
      for (std::int64_t e = 0; e < v.batches; ++e)
        FP8MOE_CUDA_CHECK(cudaMemset2DAsync(
            v.data + e * v.batch_stride, static_cast<std::size_t>(v.row_stride) * 4, 0,
            static_cast<std::size_t>(v.cols) * 4, static_cast<std::size_t>(v.rows), exec.stream));
    }
  }
  if (Is == 0) return;
  cuda_detail::device_quantized doq(T, H, tile, tmp), dsh13q(T, 2 * Is, tile, tmp);
  cuda_detail::device_matrix dsact(T, Is, tmp), dsh13(T, 2 * Is, tmp), dxs(T, H, tmp);
  scaling::quantize(exec, dout, cfg.gradient, doq.view());
  gemm::fp8_gemm(exec, doq.cview(), swt.w2, dsact.view(), cfg.gemm);
  cuda_detail::swiglu_backward_kernel<<<cuda_detail::grid_for(T * Is), 256, 0, exec.stream>>>(
      st.sh13.cview(), dsact.cview(), dsh13.view());
  FP8MOE_CUDA_CHECK_LAUNCH();
  scaling::quantize(exec, dsh13.cview(), cfg.gradient, dsh13q.view());
  gemm::fp8_gemm(exec, dsh13q.cview(), swt.w13, dxs.view(), cfg.gemm);
  cuda_detail::add_kernel<float>
      <<<cuda_detail::grid_for(T * H), 256, 0, exec.stream>>>(matrix_view<float const>(dx), dxs.cview(), dx);
  FP8MOE_CUDA_CHECK_LAUNCH();
  cuda_detail::device_quantized dot(H, T, tile, tmp), sactt(Is, T, tile, tmp), dsh13t(2 * Is, T, tile, tmp),
      xt(H, T, tile, tmp);
  scaling::transpose_requantize(exec, dout, cfg.gradient, dot.view());
  scaling::transpose_requantize(exec, st.sact.cview(), cfg.activation, sactt.view());
  gemm::fp8_gemm(exec, dot.cview(), sactt.cview(), g.dsw2, cfg.gemm);
  scaling::transpose_requantize(exec, dsh13.cview(), cfg.gradient, dsh13t.view());
  scaling::transpose_requantize(exec, st.xq.cview(), cfg.activation, xt.view());
  gemm::fp8_gemm(exec, dsh13t.cview(), xt.cview(), g.dsw13, cfg.gemm);
  // the temporaries above are released stream-ordered (cudaFreeAsync) when this returns
}

}  // namespace fp8moe::moe
