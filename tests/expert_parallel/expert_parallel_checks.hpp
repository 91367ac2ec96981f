// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Expert-parallel checks generic over a host communicator. Every token's MoE output depends only
// on its own row, so the single-rank oracle (moe::route / permute / combine and their backwards
// on this rank's tokens with the global expert ids) gives the exact expected bits for the EP path.
// Toy experts: y = W_e x (H x H, FP32, fixed loop order), deterministic on every rank.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "fp8moe/comm/communicator.hpp"
#include "fp8moe/moe/expert_parallel/expert_parallel.hpp"
#include "fp8moe/moe/permute.hpp"
#include "fp8moe/moe/router.hpp"
#include "fp8moe/numeric/numeric.hpp"
#include "test_support.hpp"
#include "worked_example.hpp"

namespace fp8moe::test {

/// Source-determined payload value, so a receiver can recompute what it must have received.
/// A host communicator that hides ialltoallv_rows (not a row_gather_communicator), so the
/// expert-parallel ops take their pack-then-all-to-all-v path; everything else is forwarded.
template <comm::host_communicator C>
class packing_only {
 public:
  using request = typename C::request;
  static constexpr comm::memory_space memory = C::memory;
  explicit packing_only(C& c) : c_(&c) {}
  int rank() const { return c_->rank(); }
  int size() const { return c_->size(); }
  void barrier() { c_->barrier(); }
  packing_only split(int color, int key) const {
    auto owned = std::make_shared<C>(c_->split(color, key));
    packing_only p(*owned);
    p.owned_ = std::move(owned);
    return p;
  }
  template <class... A>
  decltype(auto) alltoall(A&&... a) {
    return c_->alltoall(std::forward<A>(a)...);
  }
  template <class... A>
  decltype(auto) alltoallv(A&&... a) {
    return c_->alltoallv(std::forward<A>(a)...);
  }
  template <class... A>
  decltype(auto) ialltoallv(A&&... a) {
    return c_->ialltoallv(std::forward<A>(a)...);
  }
  template <class... A>
  decltype(auto) allreduce(A&&... a) {
    return c_->allreduce(std::forward<A>(a)...);
  }
  template <class... A>
  decltype(auto) iallreduce(A&&... a) {
    return c_->iallreduce(std::forward<A>(a)...);
  }
  template <class... A>
  decltype(auto) allgather(A&&... a) {
    return c_->allgather(std::forward<A>(a)...);
  }
  template <class... A>
  decltype(auto) iallgather(A&&... a) {
    return c_->iallgather(std::forward<A>(a)...);
  }
  void send_recv(std::span<comm::p2p_op const> ops) { c_->send_recv(ops); }
  request isend_recv(std::span<comm::p2p_op const> ops) { return c_->isend_recv(ops); }

 private:
  C* c_;
  std::shared_ptr<C> owned_;  // set on communicators made by split
};

inline float ep_value(int src_rank, std::int64_t token, std::int64_t h) {
  auto const u = static_cast<std::uint64_t>(src_rank * 1000003 + token * 131 + h * 7919);
  return static_cast<float>(static_cast<int>((u * 2654435761u) % 2001) - 1000) / 256.0f;
}

/// E experts of size H x H, identical on every rank.
struct toy_experts {
  int E = 0;
  std::int64_t H = 0;
  std::vector<float> w;  // (E,H,H)
  toy_experts(int e, std::int64_t h)
      : E(e), H(h), w(random_normal(static_cast<std::size_t>(e * h * h), 0.3f, 77)) {}
  /// y (H) = W_e x
  void forward(int e, float const* x, float* y) const {
    float const* W = w.data() + static_cast<std::size_t>(e) * H * H;
    for (std::int64_t i = 0; i < H; ++i) {
      float acc = 0.0f;
      for (std::int64_t j = 0; j < H; ++j) acc += W[i * H + j] * x[j];
      y[i] = acc;
    }
  }
  /// dx (H) = W_e^T dy
  void backward(int e, float const* dy, float* dx) const {
    float const* W = w.data() + static_cast<std::size_t>(e) * H * H;
    for (std::int64_t j = 0; j < H; ++j) {
      float acc = 0.0f;
      for (std::int64_t i = 0; i < H; ++i) acc += W[i * H + j] * dy[i];
      dx[j] = acc;
    }
  }
};

/// moe::permute (contiguous layout) of this rank's routed rows; zero rows (an idle rank) included.
struct local_moe {
  moe::host_permute_plan owner{};
  moe::permute_plan plan{};
  host_matrix<float> x{};
};
inline std::unique_ptr<local_moe> local_permute(host_executor const& exec, host_matrix<float> const& x,
                                                moe::route_result const& r, int m_align) {
  auto out = std::make_unique<local_moe>();
  auto p = moe::permute(exec, matrix_view<float const>(x.view()), r, moe::contiguous{.m_align = m_align});
  out->owner = std::move(p.plan);
  out->plan = out->owner.view();
  out->x = std::move(p.x);
  return out;
}

/// Runs the experts over permuted rows xp (M,H): row r uses expert global(row_expert[r]); padding rows 0.
template <class Global>
host_matrix<float> run_experts(toy_experts const& ex, moe::permute_plan const& plan,
                               host_matrix<float> const& xp, Global global, bool backward = false) {
  host_matrix<float> y(xp.rows(), xp.cols(), 0.0f);
  for (std::int64_t r = 0; r < xp.rows(); ++r) {
    std::int32_t const e = plan.row_expert[r];
    if (e < 0) continue;
    if (backward)
      ex.backward(global(e), &xp(r, 0), &y(r, 0));
    else
      ex.forward(global(e), &xp(r, 0), &y(r, 0));
  }
  return y;
}

struct ep_case {
  std::string name{};
  int experts = 8;
  int k = 3;
  std::int64_t hidden = 16;
  std::vector<std::int64_t> tokens{};  // per rank (cycled)
  std::vector<int> rank_of{};          // explicit placement (empty = uniform)
  int ranks_per_node = 1;
  int groups = 1, topk_groups = 1;  // router group limiting (node-limited routing)
};

template <class M>
auto cview(M& m) {
  return matrix_view<std::remove_const_t<std::remove_reference_t<decltype(*m.data())>> const>(m.view());
}

/// Full forward + backward, EP against the single-rank MoE, bit for bit.
template <comm::host_communicator C>
void check_ep_against_single_rank(C& comm, ep_case const& cs) {
  CAPTURE(cs.name);
  host_executor exec;
  int const R = comm.size(), me = comm.rank();
  std::int64_t const T = cs.tokens[static_cast<std::size_t>(me) % cs.tokens.size()], H = cs.hidden;
  int const E = cs.experts, k = cs.k;
  auto const placement = cs.rank_of.empty()
                             ? moe::expert_placement::uniform(E, R, cs.ranks_per_node)
                             : moe::expert_placement::explicit_placement(cs.rank_of, R, cs.ranks_per_node);
  toy_experts experts(E, H);
  // this rank's tokens: x (T,H), router logits (T,E), output gradient (T,H)
  host_matrix<float> x(T, H), logits(T, E), dout(T, H);
  auto lv = random_normal(static_cast<std::size_t>(T * E), 1.0f, 1000 + me);
  auto gv = random_normal(static_cast<std::size_t>(T * H), 1.0f, 2000 + me);
  std::copy(lv.begin(), lv.end(), logits.data());
  std::copy(gv.begin(), gv.end(), dout.data());
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t h = 0; h < H; ++h) x(t, h) = ep_value(me, t, h);
  moe::router_config const rc{.experts = E,
                              .groups = cs.groups,
                              .topk_groups = cs.topk_groups,
                              .k = k,
                              .score = moe::score::sigmoid,
                              .route_scale = 2.5f};
  auto const routed = moe::route(exec, rc, cview(logits));

  // ---- single-rank oracle on this rank's tokens (global expert ids)
  auto const refp = local_permute(exec, x, routed, 4);
  auto const& ref = *refp;
  auto const y_ref = run_experts(experts, ref.plan, ref.x, [](int e) { return e; });
  host_matrix<float> out_ref(T, H);
  moe::combine(exec, ref.plan, cview(y_ref), cview(routed.weights), out_ref.view());
  host_matrix<float> dy_ref(y_ref.rows(), H), dw_ref(T, k), dx_ref(T, H);
  moe::combine_backward(exec, ref.plan, cview(y_ref), cview(routed.weights), cview(dout), dy_ref.view(),
                        dw_ref.view());
  auto const dxp_ref = run_experts(
      experts, ref.plan, dy_ref, [](int e) { return e; }, true);
  moe::permute_backward(exec, ref.plan, cview(dxp_ref), dx_ref.view());

  // ---- expert parallel
  auto d = moe::dispatch(exec, comm, placement, cview(x), cview(routed.ids), cview(routed.weights));
  auto& h = d.handle;
  std::int64_t const N = h.num_recv();
  CHECK(d.x.rows() == N);
  // received rows are the source rows, in (source rank, source token) order
  bool rows_ok = true;
  for (std::int64_t i = 0; i < N; ++i) {
    int const s = h.recv_src_rank[static_cast<std::size_t>(i)];
    std::int32_t const t = h.recv_src_token[static_cast<std::size_t>(i)];
    if (i > 0 && s == h.recv_src_rank[static_cast<std::size_t>(i - 1)])
      rows_ok = rows_ok && t > h.recv_src_token[static_cast<std::size_t>(i - 1)];
    for (std::int64_t c = 0; c < H; ++c) rows_ok = rows_ok && d.x(i, c) == ep_value(s, t, c);
  }
  CHECK(rows_ok);
  // local ids in {-1} u [0, E_local) and the per-expert counts match them
  int const El = placement.local_experts(me);
  std::vector<std::int64_t> cnt(static_cast<std::size_t>(El), 0);
  bool ids_ok = true;
  for (std::int64_t i = 0; i < N; ++i)
    for (int j = 0; j < k; ++j) {
      int const l = d.ids(i, j);
      ids_ok = ids_ok && l >= -1 && l < El;
      if (l >= 0) ++cnt[static_cast<std::size_t>(l)];
    }
  CHECK(ids_ok);
  CHECK(cnt == h.tokens_per_local_expert);
  // the sum over ranks of received per-expert counts equals the global count of that expert
  std::vector<std::int64_t> global_cnt(routed.counts.begin(), routed.counts.end());
  comm.allreduce(std::span<std::int64_t const>(global_cnt), std::span<std::int64_t>(global_cnt),
                 comm::reduce_op::sum);
  for (int l = 0; l < El; ++l)
    CHECK(cnt[static_cast<std::size_t>(l)] ==
          global_cnt[static_cast<std::size_t>(placement.global_id(me, l))]);

  // local experts on the received rows (the local permute plan of the MoE engineer's permute)
  auto local_route = moe::local_route(d);
  CHECK(local_route.counts.size() == static_cast<std::size_t>(El));
  for (int l = 0; l < El; ++l)
    CHECK(local_route.counts[static_cast<std::size_t>(l)] == cnt[static_cast<std::size_t>(l)]);
  if (local_route.counts.empty())
    local_route.counts.assign(1, 0);  // a rank without experts: one empty expert
  auto const lpp = local_permute(exec, d.x, local_route, 4);
  auto const& lp = *lpp;
  auto const global = [&](int l) { return placement.global_id(me, l); };
  auto const y_loc = run_experts(experts, lp.plan, lp.x, global);

  // (1) slot-exact combine: bit-identical to the single-rank MoE
  host_matrix<float> out_slots(T, H, poison_float());
  moe::combine_slots(exec, comm, h, lp.plan, cview(y_loc), cview(routed.weights), out_slots.view());
  CHECK(out_slots.storage() == out_ref.storage());

  // (2) DeepEP combine of per-rank partials: fixed order (ranks ascending); bitwise against an
  // independent loop in that order over the oracle's expert outputs
  host_matrix<float> partial(N, H), out_rank(T, H, poison_float());
  moe::combine(exec, lp.plan, cview(y_loc), cview(d.weights), partial.view());
  moe::combine(exec, comm, h, cview(partial), out_rank.view());
  bool grouped_ok = true;
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t c = 0; c < H; ++c) {
      float total = 0.0f;
      bool any = false;
      for (int r = 0; r < R; ++r) {
        float acc = 0.0f;
        bool hit = false;
        for (int j = 0; j < k; ++j) {
          int const e = routed.ids(t, j);
          if (placement.rank_of(e) != r) continue;
          acc = std::fma(routed.weights(t, j), y_ref(ref.plan.slot_row[t * k + j], c), acc);
          hit = true;
        }
        if (hit) total += acc, any = true;
      }
      grouped_ok = grouped_ok && out_rank(t, c) == (any ? total : 0.0f);
    }
  CHECK(grouped_ok);

  // ---- backward, slot-exact: equal to the single-rank gradients bit for bit
  host_matrix<float> dout_recv(N, H, poison_float());
  moe::combine_backward(exec, comm, h, cview(dout), dout_recv.view());  // cached dispatch
  host_matrix<float> dy_loc(y_loc.rows(), H), dw_recv(N, k);
  moe::combine_backward(exec, lp.plan, cview(y_loc), cview(d.weights), cview(dout_recv), dy_loc.view(),
                        dw_recv.view());
  auto const dxp_loc = run_experts(experts, lp.plan, dy_loc, global, true);
  host_matrix<float> dx(T, H, poison_float()), dw(T, k, poison_float());
  moe::dispatch_backward_slots(exec, comm, h, lp.plan, cview(dxp_loc), dx.view());
  moe::dispatch_backward(exec, comm, h, matrix_view<float const>{}, cview(dw_recv), matrix_view<float>{},
                         dw.view());
  CHECK(dx.storage() == dx_ref.storage());
  CHECK(dw.storage() == dw_ref.storage());
}

/// Adjoint identities in float64 (the exact oracle for linear maps; dispatch and combine are
/// linear): sum_ranks <dispatch(x), g> == sum_ranks <x, combine(g)>, with integer-valued data so
/// every FP32 sum is exact.
template <comm::host_communicator C>
void check_ep_adjoint(C& comm, int experts, int k, std::int64_t T, std::int64_t H) {
  host_executor exec;
  int const R = comm.size(), me = comm.rank();
  auto const placement = moe::expert_placement::uniform(experts, R);
  host_matrix<std::int32_t> ids(T, k);
  host_matrix<float> w(T, k, 1.0f), x(T, H);
  std::mt19937_64 g(4242 + me);
  for (std::int64_t t = 0; t < T; ++t) {
    for (int j = 0; j < k; ++j) ids(t, j) = static_cast<std::int32_t>((t * 5 + j * 3 + me) % experts);
    for (std::int64_t c = 0; c < H; ++c) x(t, c) = static_cast<float>(static_cast<int>(g() % 17) - 8);
  }
  auto d = moe::dispatch(exec, comm, placement, cview(x), cview(ids), cview(w));
  host_matrix<float> gr(d.handle.num_recv(), H), back(T, H);
  for (std::int64_t i = 0; i < gr.rows(); ++i)
    for (std::int64_t c = 0; c < H; ++c) gr(i, c) = static_cast<float>(static_cast<int>(g() % 9) - 4);
  moe::dispatch_backward(exec, comm, d.handle, cview(gr), matrix_view<float const>{}, back.view(),
                         matrix_view<float>{});
  double lhs = 0, rhs = 0;
  for (std::int64_t i = 0; i < gr.rows(); ++i)
    for (std::int64_t c = 0; c < H; ++c) lhs += static_cast<double>(d.x(i, c)) * gr(i, c);
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t c = 0; c < H; ++c) rhs += static_cast<double>(x(t, c)) * back(t, c);
  double sums[2] = {lhs, rhs};
  comm.allreduce(std::span<double const>(sums), std::span<double>(sums), comm::reduce_op::sum);
  CHECK(sums[0] == sums[1]);
  CHECK(sums[0] != 0.0);
}

/// Identity experts: combine_slots(dispatch(x)) with weights = x * sum(w), within the FP32 bound
/// |err| <= k * 2^-24 * |x| * sum|w| (k roundings of a sequential sum of k products).
/// Also the FP8 (+1x128 scales) and BF16 payloads arrive bit-exact.
template <comm::host_communicator C>
void check_ep_round_trip(C& comm, std::int64_t T, std::int64_t H, int E, int k) {
  host_executor exec;
  int const R = comm.size(), me = comm.rank();
  auto const placement = moe::expert_placement::uniform(E, R);
  host_matrix<float> logits(T, E);
  auto lv = random_normal(static_cast<std::size_t>(T * E), 1.0f, 3000 + me);
  std::copy(lv.begin(), lv.end(), logits.data());
  auto const routed =
      moe::route(exec, moe::router_config{.experts = E, .k = k, .route_scale = 2.5f}, cview(logits));
  // FP8 payload with per-row 1x128 scales
  std::int64_t const S = (H + 127) / 128;
  scaling::quantized_matrix<float8_e4m3_t> xq(T, H, scaling::tile_1x128);
  for (std::int64_t t = 0; t < T; ++t) {
    for (std::int64_t c = 0; c < H; ++c) xq.data(t, c) = float8_e4m3_t(ep_value(me, t, c));
    for (std::int64_t s = 0; s < S; ++s)
      xq.scales(t, s) = std::ldexp(1.0f, static_cast<int>((t + s + me) % 7) - 3);
  }
  auto pending = moe::dispatch_start(exec, comm, placement,
                                     scaling::quantized_matrix_view<float8_e4m3_t const>(xq.view()),
                                     cview(routed.ids), cview(routed.weights));
  double overlap = 0;  // independent host work while the transfers are in flight
  for (int i = 0; i < 10000; ++i) overlap += std::sqrt(static_cast<double>(i));
  CHECK(overlap > 0);
  auto d = pending.wait();
  auto const& h = d.handle;
  std::int64_t const N = h.num_recv();
  CHECK(d.scales.rows() == N);
  CHECK(d.scales.cols() == S);
  bool bits_ok = true;
  for (std::int64_t i = 0; i < N; ++i) {
    int const s = h.recv_src_rank[static_cast<std::size_t>(i)];
    std::int32_t const t = h.recv_src_token[static_cast<std::size_t>(i)];
    for (std::int64_t c = 0; c < H; ++c)
      bits_ok = bits_ok && d.x(i, c).bits() == float8_e4m3_t(ep_value(s, t, c)).bits();
    for (std::int64_t q = 0; q < S; ++q)
      bits_ok = bits_ok && d.scales(i, q) == std::ldexp(1.0f, static_cast<int>((t + q + s) % 7) - 3);
  }
  CHECK(bits_ok);
  // identity experts on the dequantized rows (one row per received (row, local slot))
  moe::route_result lr{
      d.ids, d.weights,
      std::vector<std::int32_t>(static_cast<std::size_t>(std::max(1, placement.local_experts(me))))};
  for (std::int64_t i = 0; i < N; ++i)
    for (int j = 0; j < k; ++j)
      if (d.ids(i, j) >= 0) ++lr.counts[static_cast<std::size_t>(d.ids(i, j))];
  host_matrix<float> deq(N, H);
  for (std::int64_t i = 0; i < N; ++i)
    for (std::int64_t c = 0; c < H; ++c) deq(i, c) = d.x(i, c).to_float() * d.scales(i, c / 128);
  auto const lpp = local_permute(exec, deq, lr, 1);
  auto const& lp = *lpp;
  host_matrix<bfloat16_t> out(T, H);
  for (auto& v : out.storage()) v = bfloat16_t::from_bits(0xFFFF);
  auto cp = moe::combine_slots_start(exec, comm, h, lp.plan, cview(lp.x), cview(routed.weights), out.view());
  cp.wait();
  host_matrix<float> outf(T, H, poison_float());
  moe::combine_slots(exec, comm, h, lp.plan, cview(lp.x), cview(routed.weights), outf.view());
  bool rt_ok = true;
  for (std::int64_t t = 0; t < T; ++t) {
    double sw = 0, saw = 0;
    for (int j = 0; j < k; ++j) sw += routed.weights(t, j), saw += std::fabs(routed.weights(t, j));
    for (std::int64_t c = 0; c < H; ++c) {
      double const xv = static_cast<double>(xq.data(t, c).to_float()) * xq.scales(t, c / 128);
      double const bound = k * 0x1p-24 * std::fabs(xv) * saw;
      rt_ok = rt_ok && std::fabs(outf(t, c) - xv * sw) <= bound;
      // BF16 output = the FP32 result rounded once
      rt_ok = rt_ok && out(t, c).bits() == bfloat16_t(outf(t, c)).bits();
    }
  }
  CHECK(rt_ok);
  // BF16 payload arrives bit-exact too
  host_matrix<bfloat16_t> xb(T, H);
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t c = 0; c < H; ++c) xb(t, c) = bfloat16_t(ep_value(me, t, c) * 1.001f);
  auto db = moe::dispatch(exec, comm, placement, cview(xb), cview(routed.ids), cview(routed.weights));
  bool bf_ok = db.handle.num_recv() == N;
  for (std::int64_t i = 0; i < db.handle.num_recv() && bf_ok; ++i)
    for (std::int64_t c = 0; c < H; ++c)
      bf_ok = bf_ok && db.x(i, c).bits() ==
                           bfloat16_t(ep_value(db.handle.recv_src_rank[static_cast<std::size_t>(i)],
                                               db.handle.recv_src_token[static_cast<std::size_t>(i)], c) *
                                      1.001f)
                               .bits();
  CHECK(bf_ok);
}

/// Caller-owned, strided views: the hot path (handle, then dispatch_into / dispatch_rows_start /
/// dispatch_routing_start / combine_start into views whose rows are padded) gives the same values
/// as the allocating dispatch, and polling test() before wait() is harmless.
template <comm::host_communicator C>
void check_ep_views(C& comm) {
  host_executor exec;
  int const R = comm.size(), me = comm.rank();
  int const E = 6, k = 2;
  std::int64_t const T = 23 + 4 * me, H = 10;
  auto const placement = moe::expert_placement::uniform(E, R);
  host_matrix<std::int32_t> ids(T, k);
  host_matrix<float> w(T, k), x(T, H);
  for (std::int64_t t = 0; t < T; ++t) {
    for (int j = 0; j < k; ++j) {
      ids(t, j) = static_cast<std::int32_t>((t * 5 + j * 7 + me) % E);
      w(t, j) = 0.5f + static_cast<float>(j);
    }
    for (std::int64_t h = 0; h < H; ++h) x(t, h) = ep_value(me, t, h);
  }
  auto ref = moe::dispatch(exec, comm, placement, cview(x), cview(ids), cview(w));
  auto h = moe::make_dispatch_handle(exec, comm, placement, cview(ids));
  std::int64_t const N = h.num_recv();
  CHECK(N == ref.handle.num_recv());
  // rows padded to 13 columns: the unpack path
  host_matrix<float> rx(N, 13, poison_float()), rw(N, 5, poison_float());
  host_matrix<std::int32_t> ri(N, 5, -99);
  auto px = moe::dispatch_rows_start(exec, comm, h, cview(x), make_matrix(rx.data(), N, H, 13));
  auto pr = moe::dispatch_routing_start(exec, comm, h, placement, cview(ids), cview(w),
                                        make_matrix(ri.data(), N, k, 5), make_matrix(rw.data(), N, k, 5));
  while (!(px.test() && pr.test())) {
  }
  px.wait();
  pr.wait();
  bool same = true;
  for (std::int64_t i = 0; i < N; ++i) {
    for (std::int64_t c = 0; c < H; ++c) same = same && rx(i, c) == ref.x(i, c);
    for (std::int64_t c = H; c < 13; ++c) same = same && std::isnan(rx(i, c));  // padding untouched
    for (int j = 0; j < k; ++j) same = same && ri(i, j) == ref.ids(i, j) && rw(i, j) == ref.weights(i, j);
    same = same && h.recv_src_token[static_cast<std::size_t>(i)] ==
                       ref.handle.recv_src_token[static_cast<std::size_t>(i)];
  }
  CHECK(same);
  CHECK(h.tokens_per_local_expert == ref.handle.tokens_per_local_expert);
  // dispatch_into with packed caller buffers
  host_matrix<float> ix(N, H, poison_float()), iw(N, k, poison_float());
  host_matrix<std::int32_t> ii(N, k, -99);
  moe::dispatch_into(exec, comm, h, placement, cview(x), matrix_view<float const>{}, cview(ids), cview(w),
                     moe::dispatch_outputs<float>{ix.view(), {}, ii.view(), iw.view()});
  CHECK(ix.storage() == ref.x.storage());
  CHECK(ii.storage() == ref.ids.storage());
  CHECK(iw.storage() == ref.weights.storage());
  // combine from a strided partial: the pack path, same bits as from a packed one
  host_matrix<float> padded(N, 13, 0.0f), out_a(T, H, poison_float()), out_b(T, H, poison_float());
  for (std::int64_t i = 0; i < N; ++i)
    for (std::int64_t c = 0; c < H; ++c) padded(i, c) = ref.x(i, c) * 0.5f + static_cast<float>(i % 3);
  host_matrix<float> packed(N, H);
  for (std::int64_t i = 0; i < N; ++i)
    for (std::int64_t c = 0; c < H; ++c) packed(i, c) = padded(i, c);
  auto pc = moe::combine_start(exec, comm, h, matrix_view<float const>(make_matrix(padded.data(), N, H, 13)),
                               out_a.view());
  pc.wait();
  moe::combine(exec, comm, h, cview(packed), out_b.view());
  CHECK(out_a.storage() == out_b.storage());
}

/// Argument errors: every rank throws (nobody hangs in the count exchange).
template <comm::host_communicator C>
void check_ep_errors(C& comm) {
  host_executor exec;
  int const R = comm.size(), me = comm.rank();
  host_matrix<std::int32_t> ids(4, 2, 0);
  host_matrix<float> w(4, 2, 0.5f), x(4, 8, 1.0f);
  // placement for the wrong number of ranks: local check, same on every rank
  auto const wrong = moe::expert_placement::uniform(4, R + 1);
  CHECK_THROWS_AS(moe::dispatch(exec, comm, wrong, cview(x), cview(ids), cview(w)), fp8moe::error);
  // an id out of range on the last rank only: it reports invalid_argument, the others communication
  auto const good = moe::expert_placement::uniform(4, R);
  if (me == R - 1) ids(2, 1) = 4;
  try {
    (void)moe::dispatch(exec, comm, good, cview(x), cview(ids), cview(w));
    FAIL("bad ids accepted");
  } catch (fp8moe::error const& e) {
    CHECK(e.code() == (me == R - 1 ? errc::invalid_argument : errc::communication));
  }
  ids(2, 1) = 1;
  // x with the wrong number of rows on the last rank only: found before the count exchange and
  // shared through it
  host_matrix<float> x_short(me == R - 1 ? 3 : 4, 8, 1.0f);
  try {
    (void)moe::dispatch(exec, comm, good, cview(x_short), cview(ids), cview(w));
    FAIL("short x accepted");
  } catch (fp8moe::error const& e) {
    CHECK(e.code() == (me == R - 1 ? errc::invalid_argument : errc::communication));
  }
  // local shape errors after a valid handle
  auto d = moe::dispatch(exec, comm, good, cview(x), cview(ids), cview(w));
  host_matrix<float> bad_out(3, 8);
  CHECK_THROWS_AS(moe::combine(exec, comm, d.handle, cview(d.x), bad_out.view()), fp8moe::error);
  CHECK_THROWS_AS(moe::expert_placement::explicit_placement({0, 5}, 2), fp8moe::error);
  CHECK_THROWS_AS(moe::expert_placement::uniform(4, 3, 2), fp8moe::error);
}

/// The worked example of docs/expert_parallel.md (worked_example.hpp) with identity experts (y =
/// the dequantized permuted rows): its output equals, bit for bit, the same layer on one rank
/// (moe::permute of the quantized x with the global ids, the same experts, moe::combine), which
/// holds only if every received FP8 row kept its own scales through dispatch and permute. Also: a
/// BF16 dispatch result has no quantized view.
template <comm::host_communicator C>
void check_worked_example(C& ep) {
  host_executor const exec;
  int const me = ep.rank(), R = ep.size();
  std::int64_t const T = 37 + 11 * me, H = 256;
  moe::router_config const rc{.experts = 8, .groups = 1, .topk_groups = 1, .k = 3, .route_scale = 1.5f};
  auto const placement = moe::expert_placement::uniform(rc.experts, R);
  host_matrix<float> logits(T, rc.experts);
  host_matrix<bfloat16_t> x(T, H);
  std::vector<float> bias(static_cast<std::size_t>(rc.experts));
  for (int e = 0; e < rc.experts; ++e) bias[static_cast<std::size_t>(e)] = 0.01f * static_cast<float>(e % 3);
  for (std::int64_t t = 0; t < T; ++t) {
    for (int e = 0; e < rc.experts; ++e)
      logits(t, e) = static_cast<float>(((t + me) * 7 + e * 13) % 17) * 0.25f - 2.0f;
    for (std::int64_t h = 0; h < H; ++h)  // magnitudes differ per row and per 128-column block
      x(t, h) = bfloat16_t(static_cast<float>(((t * 13 + h * 7 + me) % 31) - 15) *
                           std::ldexp(0.37f, static_cast<int>((t + me) % 7) - 3 + static_cast<int>(h / 128)));
  }
  auto experts = [](auto const& p) {  // identity experts: the dequantized permuted rows (M,H)
    auto const q = p.x.view();        // FP8 rows with their scales and tile
    host_matrix<float> y(q.rows(), q.cols());
    for (std::int64_t i = 0; i < y.rows(); ++i)
      for (std::int64_t h = 0; h < y.cols(); ++h) y(i, h) = q.data(i, h).to_float() * q.scale_at(i, h);
    return y;
  };
  vector_view<float const> const bv{bias.data(), rc.experts};
  auto const out = worked_example::moe_layer(ep, placement, rc, cview(logits), bv, cview(x), experts);
  // the same layer on this rank alone
  auto const r = moe::route(exec, rc, cview(logits), bv);
  auto const xq = scaling::quantize(exec, cview(x), scaling::deepseek_v3.activation);
  auto const pr = moe::permute(exec, xq.view(), r, moe::contiguous{.m_align = 128});
  auto const yr = experts(pr);
  host_matrix<bfloat16_t> ref(T, H);
  moe::combine(exec, pr.plan.view(), cview(yr), cview(r.weights), ref.view());
  bool same = out.rows() == T && out.cols() == H;
  for (std::int64_t t = 0; same && t < T; ++t)
    for (std::int64_t h = 0; h < H; ++h) same = same && out(t, h).bits() == ref(t, h).bits();
  CHECK(same);
  // a BF16 payload carries no scales: asking for its quantized view is an error, not garbage
  auto const d = moe::dispatch(exec, ep, placement, cview(x), cview(r.ids), cview(r.weights));
  CHECK_THROWS_AS((void)d.quantized_view(), fp8moe::error);
}

}  // namespace fp8moe::test
