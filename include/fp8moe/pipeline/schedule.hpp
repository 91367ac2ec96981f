// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Pipeline schedules as data: per rank an ordered list of actions (F, B, I, W, FB, SEND/RECV) naming a
// chunk (one model stage placed on one rank) and a micro-batch, plus the placement of chunks on ranks.
// Printable as JSON and as a compact text table (PyTorch `_Action` spelling: `3F1`, `(0F7;7B3)OVERLAP_F_B`).
// Plain values: no threads, no allocation beyond the vectors they own.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "fp8moe/core/error.hpp"

namespace fp8moe::pipeline {

/// What an action does. I = backward for inputs only (its W is deferred to a FIFO);
/// B = full backward (input and weight gradients); fb = an overlapped forward/backward pair.
enum class op : std::uint8_t { f, b, i, w, fb, send_f, recv_f, send_b, recv_b };

constexpr std::string_view to_string(op o) noexcept {
  switch (o) {
    case op::f:
      return "F";
    case op::b:
      return "B";
    case op::i:
      return "I";
    case op::w:
      return "W";
    case op::fb:
      return "FB";
    case op::send_f:
      return "SEND_F";
    case op::recv_f:
      return "RECV_F";
    case op::send_b:
      return "SEND_B";
    case op::recv_b:
      return "RECV_B";
  }
  return "?";
}

constexpr bool is_compute(op o) noexcept {
  return o <= op::fb;
}
constexpr bool is_send(op o) noexcept {
  return o == op::send_f || o == op::send_b;
}
constexpr bool is_recv(op o) noexcept {
  return o == op::recv_f || o == op::recv_b;
}

/// One step of one rank. For F/B/I/W and the transfers, (chunk, mb) name the work; for fb, (chunk, mb)
/// is the forward half and (chunk2, mb2) the backward half (always a full backward). A send names the
/// chunk that produced the tensor, a receive the chunk that consumes it; `peer` is the other rank.
/// Micro-batch numbers count within the chunk's chain (DualPipe: per direction).
struct action {
  op kind = op::f;
  int chunk = 0;
  int mb = 0;
  int chunk2 = -1;
  int mb2 = -1;
  int peer = -1;

  friend bool operator==(action const&, action const&) = default;
};

/// PyTorch `_Action` spelling: `2F0`, `7I3`, `0SEND_F4`, and `(0F7;7B3)OVERLAP_F_B` for a pair.
inline std::string to_string(action const& a) {
  if (a.kind == op::fb)
    return fp8moe::detail::concat('(', a.chunk, 'F', a.mb, ';', a.chunk2, 'B', a.mb2, ")OVERLAP_F_B");
  return fp8moe::detail::concat(a.chunk, to_string(a.kind), a.mb);
}

/// A chain is the path a micro-batch takes: chunks in forward order. GPipe/1F1B/ZB/DualPipeV have one
/// chain; DualPipe has two (direction 0 enters at rank 0, direction 1 at rank PP-1). Micro-batch j of
/// chain c is global micro-batch `first_microbatch + j`.
struct chain {
  std::vector<int> chunks;
  int microbatches = 0;
  int first_microbatch = 0;
};

/// A complete schedule. Chunk k runs model stage `chunk_stage[k]` on rank `chunk_rank[k]`; the same
/// model stage can be placed twice (DualPipe), then its gradients must be summed across the copies.
struct schedule {
  std::string name;
  int ranks = 0;
  int microbatches = 0;          ///< total over all chains
  int stages = 0;                ///< distinct model stages
  std::vector<int> chunk_rank;   ///< (chunks)
  std::vector<int> chunk_stage;  ///< (chunks)
  std::vector<chain> chains;
  std::vector<std::vector<action>> actions;  ///< (ranks) ordered lists

  int chunks() const { return static_cast<int>(chunk_rank.size()); }

  /// Chain index and position of a chunk (linear scan: chains are short).
  std::pair<int, int> locate(int chunk) const {
    for (int c = 0; c < static_cast<int>(chains.size()); ++c) {
      auto const& v = chains[c].chunks;
      for (int p = 0; p < static_cast<int>(v.size()); ++p)
        if (v[p] == chunk) return {c, p};
    }
    return {-1, -1};
  }
  /// The chunk after / before `chunk` on its chain; -1 at the end.
  int next_chunk(int chunk) const {
    auto [c, p] = locate(chunk);
    if (c < 0 || p + 1 >= static_cast<int>(chains[c].chunks.size())) return -1;
    return chains[c].chunks[p + 1];
  }
  int prev_chunk(int chunk) const {
    auto [c, p] = locate(chunk);
    if (c < 0 || p == 0) return -1;
    return chains[c].chunks[p - 1];
  }
  int chain_microbatches(int chunk) const {
    auto c = locate(chunk).first;
    return c < 0 ? 0 : chains[c].microbatches;
  }
  /// Global micro-batch number of (chunk, mb).
  int global_microbatch(int chunk, int mb) const {
    auto c = locate(chunk).first;
    return c < 0 ? -1 : chains[c].first_microbatch + mb;
  }
  /// Chunks placed on `rank`, in increasing id.
  std::vector<int> rank_chunks(int rank) const {
    std::vector<int> out;
    for (int k = 0; k < chunks(); ++k)
      if (chunk_rank[k] == rank) out.push_back(k);
    return out;
  }
};

/// Anything that exposes a schedule's data: `schedule` itself, or a type that wraps one.
template <class S>
concept pipeline_schedule = requires(S const& s) {
  { s.ranks } -> std::convertible_to<int>;
  { s.chunk_rank } -> std::convertible_to<std::vector<int>>;
  { s.chains } -> std::convertible_to<std::vector<chain>>;
  { s.actions } -> std::convertible_to<std::vector<std::vector<action>>>;
};

/// The compute actions of one rank (transfers dropped), e.g. to compare with a compute-only trace.
inline std::vector<action> compute_actions(schedule const& s, int rank) {
  std::vector<action> out;
  for (auto const& a : s.actions.at(rank))
    if (is_compute(a.kind)) out.push_back(a);
  return out;
}

namespace detail {
/// The printers index actions[r] for r < ranks: one list per rank, or fp8moe::error.
inline void require_rank_lists(schedule const& s, std::string_view where) {
  require(s.ranks >= 0 && s.actions.size() == static_cast<std::size_t>(s.ranks), where, "schedule.actions",
          fp8moe::detail::concat("one action list per rank (ranks = ", s.ranks, ")"),
          fp8moe::detail::concat(s.actions.size(), " lists"));
}
}  // namespace detail

/// One line per rank, actions separated by `sep` (default ','), like PyTorch's CSV artifacts.
/// Throws fp8moe::error unless the schedule has one action list per rank.
inline std::string to_table(schedule const& s, bool with_comm = false, char sep = ',') {
  detail::require_rank_lists(s, "fp8moe::pipeline::to_table");
  std::ostringstream os;
  for (int r = 0; r < s.ranks; ++r) {
    bool first = true;
    for (auto const& a : s.actions[r]) {
      if (!with_comm && !is_compute(a.kind)) continue;
      if (!first) os << sep;
      os << to_string(a);
      if (is_send(a.kind)) os << "->" << a.peer;
      if (is_recv(a.kind)) os << "<-" << a.peer;
      first = false;
    }
    os << '\n';
  }
  return os.str();
}

namespace detail {
inline void json_action(std::ostringstream& os, action const& a) {
  os << "{\"op\":\"" << to_string(a.kind) << "\",\"chunk\":" << a.chunk << ",\"mb\":" << a.mb;
  if (a.kind == op::fb) os << ",\"chunk2\":" << a.chunk2 << ",\"mb2\":" << a.mb2;
  if (!is_compute(a.kind)) os << ",\"peer\":" << a.peer;
  os << '}';
}
template <class V>
void json_ints(std::ostringstream& os, V const& v) {
  os << '[';
  for (std::size_t i = 0; i < v.size(); ++i) os << (i ? "," : "") << v[i];
  os << ']';
}
}  // namespace detail

/// The whole schedule as JSON: {"name","ranks","microbatches","stages","chunk_rank","chunk_stage",
/// "chains":[{"chunks","microbatches","first_microbatch"}],"actions":[[{"op","chunk","mb",...}]]}.
/// Throws fp8moe::error unless the schedule has one action list per rank.
inline std::string to_json(schedule const& s) {
  detail::require_rank_lists(s, "fp8moe::pipeline::to_json");
  std::ostringstream os;
  os << "{\"name\":\"" << s.name << "\",\"ranks\":" << s.ranks << ",\"microbatches\":" << s.microbatches
     << ",\"stages\":" << s.stages << ",\"chunk_rank\":";
  detail::json_ints(os, s.chunk_rank);
  os << ",\"chunk_stage\":";
  detail::json_ints(os, s.chunk_stage);
  os << ",\"chains\":[";
  for (std::size_t c = 0; c < s.chains.size(); ++c) {
    os << (c ? "," : "") << "{\"chunks\":";
    detail::json_ints(os, s.chains[c].chunks);
    os << ",\"microbatches\":" << s.chains[c].microbatches
       << ",\"first_microbatch\":" << s.chains[c].first_microbatch << '}';
  }
  os << "],\"actions\":[";
  for (int r = 0; r < s.ranks; ++r) {
    os << (r ? ",\n" : "\n") << '[';
    for (std::size_t i = 0; i < s.actions[r].size(); ++i) {
      if (i) os << ',';
      detail::json_action(os, s.actions[r][i]);
    }
    os << ']';
  }
  os << "]}\n";
  return os.str();
}

}  // namespace fp8moe::pipeline
