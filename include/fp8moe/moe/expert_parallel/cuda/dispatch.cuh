// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Expert-parallel dispatch / combine over a comm::device_communicator (nccl_communicator):
// expert_parallel_dispatch<cuda_executor>, the device path of the entry points of
// moe/expert_parallel/{dispatch,combine}.hpp. The same handle, orders and results as the host path,
// with device gather / pack / unpack kernels and the device moe::combine. Everything after the
// handle is stream-ordered on exec.stream, which must be the communicator's stream; building the
// handle synchronizes it.
#pragma once

#include <cuda_runtime_api.h>

#include <concepts>
#include <cstdint>
#include <cub/device/device_scan.cuh>
#include <span>
#include <vector>

#include "fp8moe/core/cuda/device_buffer.hpp"
#include "fp8moe/core/cuda/executor.hpp"
#include "fp8moe/moe/cuda/permute.cuh"
#include "fp8moe/moe/expert_parallel/expert_parallel.hpp"

namespace fp8moe::moe {

namespace cuda_detail {

/// dst row i (row_bytes) = src row idx[i]; one block per row; 16-byte vectors when aligned.
__global__ void gather_rows_kernel(std::byte const* src, std::int64_t src_stride_bytes,
                                   std::int64_t row_bytes, std::int32_t const* idx, std::byte* dst,
                                   std::int64_t dst_stride_bytes) {
  std::int64_t const i = blockIdx.x;
  std::byte const* s = src + static_cast<std::int64_t>(idx[i]) * src_stride_bytes;
  std::byte* d = dst + i * dst_stride_bytes;
  bool const vec = ((reinterpret_cast<std::uintptr_t>(s) | reinterpret_cast<std::uintptr_t>(d) |
                     static_cast<std::uintptr_t>(row_bytes)) &
                    15u) == 0;
  if (vec) {
    auto const* s4 = reinterpret_cast<uint4 const*>(s);
    auto* d4 = reinterpret_cast<uint4*>(d);
    for (std::int64_t c = threadIdx.x; c < row_bytes / 16; c += blockDim.x) d4[c] = s4[c];
  } else {
    for (std::int64_t c = threadIdx.x; c < row_bytes; c += blockDim.x) d[c] = s[c];
  }
}

/// Routing words of every sent row: [localized ids (k) | source token | weights (k) | scales (S)].
__global__ void pack_meta_kernel(std::int32_t const* send_token, std::int32_t const* send_dest,
                                 std::int32_t const* rank_of, std::int32_t const* local_of,
                                 matrix_view<std::int32_t const> ids, matrix_view<float const> weights,
                                 matrix_view<float const> scales, std::int64_t S_, std::uint32_t* words) {
  std::int64_t const row = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (row >= S_) return;
  std::int64_t const k = ids.cols, Sc = scales.cols, W = 2 * k + 1 + Sc;
  std::int32_t const t = send_token[row], r = send_dest[row];
  std::uint32_t* w = words + row * W;
  for (std::int64_t j = 0; j < k; ++j) {
    std::int32_t const e = ids(t, j);
    w[j] = static_cast<std::uint32_t>((e >= 0 && rank_of[e] == r) ? local_of[e] : -1);
    w[k + 1 + j] = __float_as_uint(weights(t, j));
  }
  w[k] = static_cast<std::uint32_t>(t);
  for (std::int64_t c = 0; c < Sc; ++c) w[2 * k + 1 + c] = __float_as_uint(scales(t, c));
}

__global__ void unpack_meta_kernel(std::uint32_t const* words, std::int64_t N, std::int64_t k,
                                   std::int64_t Sc, matrix_view<std::int32_t> ids, matrix_view<float> weights,
                                   matrix_view<float> scales, std::int32_t* src_token) {
  std::int64_t const i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= N) return;
  std::int64_t const W = 2 * k + 1 + Sc;
  std::uint32_t const* w = words + i * W;
  for (std::int64_t j = 0; j < k; ++j) {
    ids(i, j) = static_cast<std::int32_t>(w[j]);
    weights(i, j) = __uint_as_float(w[k + 1 + j]);
  }
  src_token[i] = static_cast<std::int32_t>(w[k]);
  for (std::int64_t c = 0; c < Sc; ++c) scales(i, c) = __uint_as_float(w[2 * k + 1 + c]);
}

/// Routed slots per received row (slot_row >= 0).
__global__ void count_slots_kernel(std::int32_t const* slot_row, std::int64_t N, std::int64_t k,
                                   std::int32_t* count) {
  std::int64_t const i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= N) return;
  std::int32_t c = 0;
  for (std::int64_t j = 0; j < k; ++j) c += slot_row[i * k + j] >= 0;
  count[i] = c;
}

/// order[offset[i] + q] = the q-th routed slot row of received row i ((row, slot) ascending).
__global__ void slot_order_kernel(std::int32_t const* slot_row, std::int64_t N, std::int64_t k,
                                  std::int32_t const* offset, std::int32_t* order) {
  std::int64_t const i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= N) return;
  std::int32_t at = offset[i];
  for (std::int64_t j = 0; j < k; ++j) {
    std::int32_t const r = slot_row[i * k + j];
    if (r >= 0) order[at++] = r;
  }
}

/// Copies v (as int32) into a new device buffer on `stream` (at least one element, so every table
/// has a valid pointer). The host copy goes into `keep`, which the caller keeps alive until it
/// synchronizes the stream (a copy from pageable memory may still be in flight when
/// cudaMemcpyAsync returns, and work on other streams must not see it early).
template <class T>
device_buffer<std::int32_t> upload(std::vector<T> const& v, cudaStream_t stream,
                                   std::vector<std::vector<std::int32_t>>& keep) {
  device_buffer<std::int32_t> d(std::max<std::size_t>(v.size(), 1), cuda_executor{stream});
  keep.emplace_back(v.begin(), v.end());
  auto const& c = keep.back();
  if (!c.empty())
    FP8MOE_CUDA_CHECK(
        cudaMemcpyAsync(d.data(), c.data(), c.size() * sizeof(std::int32_t), cudaMemcpyHostToDevice, stream));
  return d;
}

}  // namespace cuda_detail

/// The handle with its tables in device memory (send order, (T,R) and (T,k) reduction tables,
/// placement, received source tokens). Owns the device arrays (device_buffer, allocated and freed
/// stream-ordered on the communicator's stream); the pointers stay valid when the handle moves.
class device_dispatch_handle {
 public:
  dispatch_handle host;                    // counts and orders (host)
  std::int32_t* send_token = nullptr;      // (S)
  std::int32_t* send_dest = nullptr;       // (S) destination rank of each sent row
  std::int32_t* token_rank_row = nullptr;  // (T,R)
  std::int32_t* slot_row = nullptr;        // (T,k)
  std::int32_t* rank_of = nullptr;         // (E)
  std::int32_t* local_of = nullptr;        // (E)
  std::int32_t* recv_src_token = nullptr;  // (N), filled by dispatch_into

  /// Takes ownership of a device table and returns its pointer (make_dispatch_handle fills the
  /// fields above this way).
  std::int32_t* own(device_buffer<std::int32_t>&& b) {
    tables_.push_back(std::move(b));
    return tables_.back().data();
  }

 private:
  std::vector<device_buffer<std::int32_t>> tables_;
};

/// Owning result of the allocating dispatch on the device: the host result's fields and orders, the
/// rows in device memory on exec.stream.
template <class T>
using device_dispatch_result = owning_dispatch_result<device_dispatch_handle, device_matrix, T>;

/// expert_parallel_dispatch<cuda_executor>: the device path of the expert-parallel entry points
/// (dispatch.hpp, combine.hpp) over a comm::device_communicator. Every op is stream-ordered on
/// exec.stream (no *_start forms); dispatch_into writes into caller-owned device buffers, the
/// allocating dispatch into a device_dispatch_result. The backwards are the entry points'
/// compositions of these ops.
template <>
struct expert_parallel_dispatch<cuda_executor> {
  static constexpr bool asynchronous = false;

  /// Builds the handle from device ids (T,k) (row-major): copies them to the host, computes the
  /// layout there and exchanges the counts through the device communicator (synchronizes the stream).
  template <comm::device_communicator C>
  static device_dispatch_handle make_dispatch_handle(cuda_executor const& exec, C& comm,
                                                     expert_placement const& placement,
                                                     matrix_view<std::int32_t const> ids) {
    return make_handle(exec, comm, placement, ids, {});
  }

  /// make_dispatch_handle with the caller's argument error `local` (empty: none) joined to its own.
  template <comm::device_communicator C>
  static device_dispatch_handle make_handle(cuda_executor const& exec, C& comm,
                                            expert_placement const& placement,
                                            matrix_view<std::int32_t const> ids, std::string local) {
    constexpr char const* where = "fp8moe::moe::make_dispatch_handle";
    // argument errors go into the count exchange (build_handle's `local`), so every rank throws
    // together instead of the others waiting in NCCL for a rank that already threw
    if (local.empty() && exec.stream != comm.stream())
      local = detail::concat(where, ": exec.stream must be the communicator's stream");
    if (local.empty() && !(ids.col_stride == 1 && (ids.rows <= 1 || ids.row_stride == ids.cols)))
      local = detail::concat(where, ": ids must be row-major contiguous device ids (T,k)");
    cudaStream_t const cs = comm.stream();
    std::vector<std::int32_t> hid(local.empty() ? static_cast<std::size_t>(ids.rows * ids.cols) : 0);
    if (!hid.empty())
      FP8MOE_CUDA_CHECK(cudaMemcpyAsync(hid.data(), ids.data, hid.size() * 4, cudaMemcpyDeviceToHost, cs));
    FP8MOE_CUDA_CHECK(cudaStreamSynchronize(cs));
    int const R = comm.size();
    device_buffer<std::int64_t> dbuf(static_cast<std::size_t>(6 * R), cuda_executor{cs});
    auto exchange = [&](std::span<std::int64_t const> out, std::span<std::int64_t> in) {
      auto* d_out = dbuf.data();
      auto* d_in = d_out + 3 * R;
      FP8MOE_CUDA_CHECK(cudaMemcpyAsync(d_out, out.data(), out.size_bytes(), cudaMemcpyHostToDevice, cs));
      comm.alltoall(std::span<std::int64_t const>(d_out, out.size()),
                    std::span<std::int64_t>(d_in, in.size()), comm::size_check::trusted);
      FP8MOE_CUDA_CHECK(cudaMemcpyAsync(in.data(), d_in, in.size_bytes(), cudaMemcpyDeviceToHost, cs));
      FP8MOE_CUDA_CHECK(cudaStreamSynchronize(cs));
    };
    device_dispatch_handle d;
    d.host = detail::build_handle(
        host_executor{1}, R, comm.rank(), placement,
        make_matrix(static_cast<std::int32_t const*>(hid.data()), local.empty() ? ids.rows : 0, ids.cols),
        local, exchange);
    auto const& h = d.host;
    std::vector<std::int32_t> dest;
    for (int r = 0; r < h.ranks; ++r) dest.insert(dest.end(), static_cast<std::size_t>(h.send_tokens[r]), r);
    std::vector<std::int32_t> rank_of(static_cast<std::size_t>(placement.experts())),
        local_of(static_cast<std::size_t>(placement.experts()));
    for (int e = 0; e < placement.experts(); ++e) {
      rank_of[static_cast<std::size_t>(e)] = placement.rank_of(e);
      local_of[static_cast<std::size_t>(e)] = placement.local_of(e);
    }
    std::vector<std::vector<std::int32_t>> keep;  // host sources, alive until the stream is synchronized
    keep.reserve(7);
    cudaStream_t const st = exec.stream;
    d.send_token = d.own(cuda_detail::upload(h.send_token, st, keep));
    d.send_dest = d.own(cuda_detail::upload(dest, st, keep));
    d.token_rank_row = d.own(cuda_detail::upload(h.token_rank_row, st, keep));
    d.slot_row = d.own(cuda_detail::upload(h.slot_row, st, keep));
    d.rank_of = d.own(cuda_detail::upload(rank_of, st, keep));
    d.local_of = d.own(cuda_detail::upload(local_of, st, keep));
    d.recv_src_token = d.own(
        cuda_detail::upload(std::vector<std::int32_t>(static_cast<std::size_t>(h.num_recv()), -1), st, keep));
    FP8MOE_CUDA_CHECK(cudaStreamSynchronize(st));  // the tables are in place before any stream uses them
    return d;
  }

  /// The cached dispatch on the device: recv (N,C) row i = x (T,C) row of its source token. Rows this
  /// rank keeps are gathered straight into recv; the others are packed and sent. Unit column strides.
  template <comm::device_communicator C, class S, class T>
  requires std::same_as<std::remove_const_t<S>, T> && comm::transferable<T>
  static void dispatch_rows(cuda_executor const& exec, C& comm, device_dispatch_handle const& d,
                            matrix_view<S> x, matrix_view<T> recv) {
    constexpr char const* where = "fp8moe::moe::dispatch_rows";
    auto const& h = d.host;
    require(exec.stream == comm.stream(), where, "exec.stream", "the communicator's stream");
    require(x.rows == h.tokens && x.col_stride == 1, where, "x", "(T,C) device rows with unit column stride");
    check_shape(recv, h.num_recv(), x.cols, where, "recv");
    require(recv.col_stride == 1 && (recv.rows <= 1 || recv.row_stride == recv.cols), where, "recv",
            "packed row-major device rows");
    std::int64_t const Cn = x.cols, S_ = h.num_send(), N = h.num_recv();
    auto const e = detail::plan_rows_exchange(h, Cn);
    std::int64_t const packed = e.packed, self_src = e.self_src, self_dst = e.self_dst, n_self = e.n_self;
    std::int64_t const rb = Cn * static_cast<std::int64_t>(sizeof(T));
    device_buffer<std::byte> send(static_cast<std::size_t>(packed * rb), exec);
    auto const* src = reinterpret_cast<std::byte const*>(x.data);
    std::int64_t const src_stride = x.row_stride * static_cast<std::int64_t>(sizeof(T));
    auto launch = [&](std::int64_t first, std::int64_t n, std::byte* dst) {
      if (n <= 0 || rb == 0) return;
      cuda_detail::gather_rows_kernel<<<static_cast<unsigned>(n), 128, 0, exec.stream>>>(
          src, src_stride, rb, d.send_token + first, dst, rb);
      FP8MOE_CUDA_CHECK_LAUNCH();
    };
    launch(0, self_src, send.data());
    launch(self_src + n_self, S_ - self_src - n_self, send.data() + self_src * rb);
    launch(self_src, n_self, reinterpret_cast<std::byte*>(recv.data) + self_dst * rb);
    comm.alltoallv(
        std::span<T const>(reinterpret_cast<T const*>(send.data()), static_cast<std::size_t>(packed * Cn)),
        comm::blocks{std::span<std::int64_t const>(e.sc), std::span<std::int64_t const>(e.sd)},
        std::span<T>(recv.data, static_cast<std::size_t>(N * Cn)),
        comm::blocks{std::span<std::int64_t const>(e.rc), std::span<std::int64_t const>(e.rd)},
        comm::size_check::trusted);
  }

  /// Forward dispatch on the device into caller-owned device buffers (see the host dispatch_into).
  /// d.recv_src_token receives the source token of every received row. The host-side
  /// d.host.tokens_per_local_expert is not filled here (the device permute plan counts its experts).
  template <comm::device_communicator C, class S, class T>
  requires std::same_as<std::remove_const_t<S>, T> && comm::transferable<T>
  static void dispatch_into(cuda_executor const& exec, C& comm, device_dispatch_handle& d,
                            expert_placement const& placement, matrix_view<S> x,
                            matrix_view<float const> scales, matrix_view<std::int32_t const> ids,
                            matrix_view<float const> weights, dispatch_outputs<T> out) {
    constexpr char const* where = "fp8moe::moe::dispatch";
    auto const& h = d.host;
    check_shape(ids, h.tokens, h.k, where, "ids");
    check_shape(weights, h.tokens, h.k, where, "weights");
    check_shape(out.ids, h.num_recv(), h.k, where, "recv_ids");
    check_shape(out.weights, h.num_recv(), h.k, where, "recv_weights");
    std::int64_t const Sc = scales.cols, k = h.k, W = 2 * k + 1 + Sc, S_ = h.num_send(), N = h.num_recv();
    if (Sc > 0) {
      require(scales.rows == h.tokens, where, "scales", std::to_string(h.tokens) + " rows");
      check_shape(out.scales, N, Sc, where, "recv_scales");
    }
    require(placement.ranks() == h.ranks, where, "placement", "the placement of the handle");
    dispatch_rows(exec, comm, d, x, out.x);
    device_buffer<std::uint32_t> sw(static_cast<std::size_t>(S_ * W), exec),
        rw(static_cast<std::size_t>(N * W), exec);
    if (S_ > 0) {
      cuda_detail::pack_meta_kernel<<<static_cast<unsigned>((S_ + 127) / 128), 128, 0, exec.stream>>>(
          d.send_token, d.send_dest, d.rank_of, d.local_of, ids, weights, scales, S_, sw.data());
      FP8MOE_CUDA_CHECK_LAUNCH();
    }
    auto const sc = detail::scaled(h.send_tokens, W), rc = detail::scaled(h.recv_tokens, W);
    comm.alltoallv(std::span<std::uint32_t const>(sw.data(), static_cast<std::size_t>(S_ * W)),
                   std::span<std::int64_t const>(sc),
                   std::span<std::uint32_t>(rw.data(), static_cast<std::size_t>(N * W)),
                   std::span<std::int64_t const>(rc), comm::size_check::trusted);
    if (N > 0) {
      cuda_detail::unpack_meta_kernel<<<static_cast<unsigned>((N + 127) / 128), 128, 0, exec.stream>>>(
          rw.data(), N, k, Sc, out.ids, out.weights, out.scales, d.recv_src_token);
      FP8MOE_CUDA_CHECK_LAUNCH();
    }
  }

  /// The allocating dispatch on the device (see the host dispatch): builds the handle (its count
  /// exchange synchronizes exec.stream for the sizes, as the host one blocks), allocates the
  /// received rows as device_matrix on exec.stream, then runs dispatch_into. BF16 / FP32 (any
  /// transferable) rows x (T,H), or FP8 rows with their per-row scales; ids (T,k), weights (T,k).
  template <comm::device_communicator C, class S>
  requires comm::transferable<std::remove_const_t<S>>
  static device_dispatch_result<std::remove_const_t<S>> dispatch(cuda_executor const& exec, C& comm,
                                                                 expert_placement const& placement,
                                                                 matrix_view<S> x,
                                                                 matrix_view<std::int32_t const> ids,
                                                                 matrix_view<float const> weights) {
    return dispatch_allocating<std::remove_const_t<S>>(exec, comm, placement, matrix_view<S const>(x), {},
                                                       ids, weights, {});
  }
  template <comm::device_communicator C, class FS>
  static device_dispatch_result<std::remove_const_t<FS>> dispatch(cuda_executor const& exec, C& comm,
                                                                  expert_placement const& placement,
                                                                  scaling::quantized_matrix_view<FS> x,
                                                                  matrix_view<std::int32_t const> ids,
                                                                  matrix_view<float const> weights) {
    auto const xc = detail::checked_fp8(x);
    return dispatch_allocating<std::remove_const_t<FS>>(exec, comm, placement, xc.data, xc.scales, ids,
                                                        weights, x.tile);
  }

  /// Combine on the device: partial (N,C) rows back to their sources, summed over ranks ascending in
  /// FP32 by the device moe::combine (same order and bits as the host combine).
  template <comm::device_communicator C, class Y, class Out>
  static void combine(cuda_executor const& exec, C& comm, device_dispatch_handle const& d,
                      matrix_view<Y> partial, matrix_view<Out> out) {
    using YT = std::remove_const_t<Y>;
    constexpr char const* where = "fp8moe::moe::combine";
    auto const& h = d.host;
    require(exec.stream == comm.stream(), where, "exec.stream", "the communicator's stream");
    require(partial.rows == h.num_recv() && partial.col_stride == 1 &&
                (partial.rows <= 1 || partial.row_stride == partial.cols),
            where, "partial", "packed row-major device rows (N,C)");
    check_shape(out, h.tokens, partial.cols, where, "out");
    std::int64_t const Cn = partial.cols, S_ = h.num_send(), N = h.num_recv();
    device_buffer<YT> rows(static_cast<std::size_t>(S_ * Cn), exec);
    auto const sc = detail::scaled(h.recv_tokens, Cn), rc = detail::scaled(h.send_tokens, Cn);
    comm.alltoallv(std::span<YT const>(partial.data, static_cast<std::size_t>(N * Cn)),
                   std::span<std::int64_t const>(sc),
                   std::span<YT>(rows.data(), static_cast<std::size_t>(S_ * Cn)),
                   std::span<std::int64_t const>(rc), comm::size_check::trusted);
    moe::combine(exec, detail::table_plan(h.tokens, h.ranks, S_, d.token_rank_row),
                 make_matrix(static_cast<YT const*>(rows.data()), S_, Cn), matrix_view<float const>{}, out);
  }

  /// Slot-exact combine on the device (see the host combine_slots): every (received row, local
  /// slot) output y(local_plan.slot_row[i,j]) (M,C) goes back to its source, where the device
  /// moe::combine sums weights(t,j) * y_tj in slot order. local_plan.slot_row is read on the device;
  /// its routed-slot counts are trusted to match the dispatched ids (no host copy).
  template <comm::device_communicator C, class Y, class Out>
  static void combine_slots(cuda_executor const& exec, C& comm, device_dispatch_handle const& d,
                            permute_plan const& local_plan, matrix_view<Y> y,
                            matrix_view<float const> weights, matrix_view<Out> out) {
    using YT = std::remove_const_t<Y>;
    constexpr char const* where = "fp8moe::moe::combine_slots";
    auto const& h = d.host;
    require(exec.stream == comm.stream(), where, "exec.stream", "the communicator's stream");
    require(local_plan.tokens == h.num_recv() && local_plan.k == h.k &&
                (local_plan.slot_row != nullptr || local_plan.tokens == 0),
            where, "local_plan", "a device permute plan of the received rows (N x k)");
    require(y.rows == local_plan.rows && y.col_stride == 1, where, "y",
            "(plan rows, C) with unit column stride");
    require(weights.rows == 0 || (weights.rows == h.tokens && weights.cols == h.k), where, "weights",
            "empty or (T,k)");
    check_shape(out, h.tokens, y.cols, where, "out");
    std::int64_t const Cn = y.cols, N = h.num_recv(), k = h.k;
    std::int64_t Sl = 0, Rl = 0;
    for (auto v : h.recv_slots) Sl += v;
    for (auto v : h.send_slots) Rl += v;
    std::int64_t const rb = Cn * static_cast<std::int64_t>(sizeof(YT));
    device_buffer<YT> send(static_cast<std::size_t>(Sl * Cn), exec),
        rows(static_cast<std::size_t>(Rl * Cn), exec);
    if (N > 0 && Sl > 0) {
      std::size_t temp = 0;
      FP8MOE_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(
          nullptr, temp, static_cast<std::int32_t const*>(nullptr), static_cast<std::int32_t*>(nullptr),
          static_cast<int>(N), exec.stream));
      device_buffer<std::int32_t> count(static_cast<std::size_t>(N), exec),
          offset(static_cast<std::size_t>(N), exec), order(static_cast<std::size_t>(Sl), exec);
      device_buffer<std::byte> scratch(temp, exec);
      unsigned const blocks = static_cast<unsigned>((N + 127) / 128);
      cuda_detail::count_slots_kernel<<<blocks, 128, 0, exec.stream>>>(local_plan.slot_row, N, k,
                                                                       count.data());
      FP8MOE_CUDA_CHECK_LAUNCH();
      FP8MOE_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(scratch.data(), temp, count.data(), offset.data(),
                                                      static_cast<int>(N), exec.stream));
      cuda_detail::slot_order_kernel<<<blocks, 128, 0, exec.stream>>>(local_plan.slot_row, N, k,
                                                                      offset.data(), order.data());
      FP8MOE_CUDA_CHECK_LAUNCH();
      if (rb > 0) {
        cuda_detail::gather_rows_kernel<<<static_cast<unsigned>(Sl), 128, 0, exec.stream>>>(
            reinterpret_cast<std::byte const*>(y.data), y.row_stride * static_cast<std::int64_t>(sizeof(YT)),
            rb, order.data(), reinterpret_cast<std::byte*>(send.data()), rb);
        FP8MOE_CUDA_CHECK_LAUNCH();
      }
    }
    auto const sc = detail::scaled(h.recv_slots, Cn), rc = detail::scaled(h.send_slots, Cn);
    comm.alltoallv(std::span<YT const>(send.data(), static_cast<std::size_t>(Sl * Cn)),
                   std::span<std::int64_t const>(sc),
                   std::span<YT>(rows.data(), static_cast<std::size_t>(Rl * Cn)),
                   std::span<std::int64_t const>(rc), comm::size_check::trusted);
    moe::combine(exec, detail::table_plan(h.tokens, h.k, Rl, d.slot_row),
                 make_matrix(static_cast<YT const*>(rows.data()), Rl, Cn), weights, out);
  }

 private:
  template <class T, comm::device_communicator C>
  static device_dispatch_result<T> dispatch_allocating(
      cuda_executor const& exec, C& comm, expert_placement const& placement, matrix_view<T const> x,
      matrix_view<float const> scales, matrix_view<std::int32_t const> ids, matrix_view<float const> weights,
      scaling::tile_shape tile) {
    device_dispatch_result<T> res;
    res.handle =
        make_handle(exec, comm, placement, ids, detail::dispatch_argument_error(x, scales, ids, weights));
    std::int64_t const N = res.handle.host.num_recv(), k = res.handle.host.k;
    res.x = device_matrix<T>(N, x.cols, exec);
    res.weights = device_matrix<float>(N, k, exec);
    res.ids = device_matrix<std::int32_t>(N, k, exec);
    if (scales.cols > 0) res.scales = device_matrix<float>(N, scales.cols, exec);
    res.tile = tile;
    dispatch_into(exec, comm, res.handle, placement, x, scales, ids, weights,
                  dispatch_outputs<T>{res.x.view(), res.scales.view(), res.ids.view(), res.weights.view()});
    return res;
  }
};

}  // namespace fp8moe::moe
