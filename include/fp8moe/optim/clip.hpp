// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// optim::grad_norm / clip_grad_norm: the global L2 norm of many FP32 gradient tensors, summed in
// double in an order fixed by the tensor sizes alone (so it is the same for every thread count),
// the first NaN/Inf located (tensor index, element), and PyTorch's clip_grad_norm_ scaling
// (in place, only when every gradient is finite). Host path: optim/host/clip.hpp (included below);
// CUDA path: optim/cuda/clip.cuh (nvcc; the result lands in device memory, a workspace is needed).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <ranges>
#include <span>
#include <sstream>
#include <string>
#include <type_traits>

#include "fp8moe/config.hpp"
#include "fp8moe/core/dispatch.hpp"
#include "fp8moe/core/error.hpp"
#include "fp8moe/core/math.hpp"

namespace fp8moe::optim {

/// The concatenation of the gradients (in list order, N elements) is cut into this many slices
/// [s N / S, (s+1) N / S) (integer division, remainder spread over the first slices).
inline constexpr int grad_norm_slices = 256;
/// Lanes of a slice's sum on the host: element j of a tensor's piece of a slice goes to lane j % 8.
inline constexpr int grad_norm_lanes = 8;

/// What grad_norm reports. `norm` is sqrt(sum of g^2), every g^2 and every sum in double: the host
/// sums each slice's lanes in order, then the slices in order; the CUDA path sums the same slices
/// per group of tensors in a fixed tree. A NaN/Inf anywhere makes `norm` NaN or +Inf and sets
/// `nonfinite_tensor` (index into the list) and `nonfinite_element` to the first one in list order.
struct grad_norm_result {
  double norm = 0.0;
  std::int64_t nonfinite_tensor = -1;
  std::int64_t nonfinite_element = -1;
  constexpr FP8MOE_HOST_DEVICE bool finite() const { return nonfinite_tensor < 0; }
};

/// PyTorch's clip_grad_norm_ factor: min(1, max_norm / (norm + 1e-6)) (in double, rounded to float).
constexpr FP8MOE_HOST_DEVICE float clip_coefficient(double norm, float max_norm) {
  double const c = static_cast<double>(max_norm) / (norm + 1e-6);
  return c < 1.0 ? static_cast<float>(c) : 1.0f;
}

/// "gradient norm 0.5", or "non-finite gradient (NaN or Inf) in tensor 3 'name', element 17" (the
/// name when `names` has one for that index).
inline std::string to_string(grad_norm_result const& r, std::span<std::string const> names = {}) {
  std::ostringstream os;
  if (r.finite()) {
    os << "gradient norm " << r.norm;
  } else {
    os << "non-finite gradient (NaN or Inf) in tensor " << r.nonfinite_tensor;
    if (static_cast<std::size_t>(r.nonfinite_tensor) < names.size())
      os << " '" << names[static_cast<std::size_t>(r.nonfinite_tensor)] << "'";
    os << ", element " << r.nonfinite_element;
  }
  return os.str();
}

/// Undefined primary template: optim/host/clip.hpp and optim/cuda/clip.cuh specialise it.
template <class Exec>
struct clip_dispatch;

/// What grad_norm accepts: a contiguous range of std::span<float> or std::span<float const>
/// (one per gradient tensor); clip_grad_norm needs std::span<float>.
template <class R>
concept grad_list = std::ranges::contiguous_range<R const> && std::ranges::sized_range<R const> &&
    (std::same_as<std::ranges::range_value_t<R const>, std::span<float>> ||
     std::same_as<std::ranges::range_value_t<R const>, std::span<float const>>);

/// A grad_list of std::span<float> (what clip_grad_norm scales in place).
template <class R>
concept writable_grad_list =
    grad_list<R> && std::same_as<std::ranges::range_value_t<R const>, std::span<float>>;

namespace detail {
template <class R>
auto grad_span(R const& r) {
  using S = std::ranges::range_value_t<R const>;
  return std::span<S const>(std::ranges::data(r), std::ranges::size(r));
}

/// Tensors per launch of the CUDA path (their pointers travel as a kernel parameter).
inline constexpr std::size_t grad_norm_group_size = 128;

/// The CUDA path's workspace for `tensors` gradients: per group of tensors, per slice, a double sum
/// and the first bad (tensor, element); 256 bytes of room to align the start.
constexpr std::size_t grad_norm_device_bytes(std::size_t tensors) {
  return (tensors + grad_norm_group_size - 1) / grad_norm_group_size * grad_norm_slices *
             (sizeof(double) + 2 * sizeof(std::int64_t)) +
         256;
}
}  // namespace detail

/// The workspace query's shape of grad_norm / clip_grad_norm: the number of gradient tensors.
/// workspace_bytes(exec, grad_norm_shape{grads.size()}).
struct grad_norm_shape {
  std::size_t tensors;
};

/// Workspace bytes of grad_norm / clip_grad_norm on `exec` (0 on the host, whose path needs none).
template <executor Exec>
constexpr std::size_t workspace_bytes(Exec const&, grad_norm_shape const& s) {
  static_assert(has_dispatch<clip_dispatch<executor_t<Exec>>>,
                "fp8moe::optim::workspace_bytes: this executor has no path here; for cuda_executor include "
                "\"fp8moe/optim/cuda/clip.cuh\" (nvcc)");
  return host_executor_like<Exec> ? 0 : detail::grad_norm_device_bytes(s.tensors);
}

namespace detail {
template <class G>
void check_grad_norm_args(char const* where, std::span<std::span<G> const> grads, void const* out,
                          std::size_t workspace, std::size_t need) {
  std::size_t total = 0;
  for (std::size_t i = 0; i < grads.size(); ++i) {
    require(grads[i].data() != nullptr || grads[i].empty(), where, "grads[" + std::to_string(i) + "]",
            "a non-null pointer for a non-empty tensor");
    total += grads[i].size();
  }
  require(total < (std::size_t{1} << 62), where, "grads", "fewer than 2^62 elements in all");
  require(out != nullptr, where, "out", "a pointer to a grad_norm_result");
  if (workspace < need)  // message built on failure only
    require(false, where, "workspace",
            "at least workspace_bytes(exec, grad_norm_shape{" + std::to_string(grads.size()) +
                "}) = " + std::to_string(need) + " bytes",
            std::to_string(workspace) + " bytes");
}
}  // namespace detail

/// Writes the global L2 norm of `grads` and the location of the first NaN/Inf to *out (device
/// memory on a device executor, whose `workspace` must hold workspace_bytes(exec,
/// grad_norm_shape{grads.size()}); the host path ignores it). Gradients are not modified.
template <executor Exec, class Grads>
void grad_norm(Exec const& exec, Grads const& grads, grad_norm_result* out,
               std::span<std::byte> workspace = {}) {
  static_assert(
      grad_list<Grads>,
      "fp8moe::optim::grad_norm: pass a contiguous range (std::vector, std::span) of std::span<float> "
      "or std::span<float const>, one per gradient tensor");
  static_assert(has_dispatch<clip_dispatch<executor_t<Exec>>>,
                "fp8moe::optim::grad_norm: this executor has no path here; for cuda_executor include "
                "\"fp8moe/optim/cuda/clip.cuh\" (nvcc)");
  if constexpr (grad_list<Grads> && has_dispatch<clip_dispatch<executor_t<Exec>>>) {
    auto const gs = detail::grad_span(grads);
    detail::check_grad_norm_args("fp8moe::optim::grad_norm", gs, out, workspace.size(),
                                 workspace_bytes(exec, grad_norm_shape{gs.size()}));
    clip_dispatch<executor_t<Exec>>::grad_norm(exec, gs, out, workspace);
  }
}

/// The host form: returns the result (host executor only).
template <executor Exec, class Grads>
grad_norm_result grad_norm(Exec const& exec, Grads const& grads) {
  static_assert(host_executor_like<Exec>,
                "fp8moe::optim::grad_norm: the returning form runs on the host only; on a device executor "
                "call grad_norm(exec, grads, out, workspace)");
  grad_norm_result r;
  if constexpr (host_executor_like<Exec>) grad_norm(exec, grads, &r);
  return r;
}

/// clip_grad_norm_ as PyTorch: computes grad_norm into *out and, when every gradient is finite,
/// multiplies every gradient in place by clip_coefficient(norm, max_norm) (nothing changes when it is
/// 1); when one is NaN/Inf the gradients are left untouched, so the caller can skip the step.
/// Throws fp8moe::error for max_norm not finite or <= 0 (and as grad_norm) before touching anything.
/// The tensors must not overlap each other.
template <executor Exec, class Grads>
void clip_grad_norm(Exec const& exec, Grads const& grads, float max_norm, grad_norm_result* out,
                    std::span<std::byte> workspace = {}) {
  constexpr bool writable = writable_grad_list<Grads>;
  static_assert(writable,
                "fp8moe::optim::clip_grad_norm: pass a contiguous range (std::vector, std::span) of "
                "std::span<float> (writable), one per gradient tensor");
  static_assert(has_dispatch<clip_dispatch<executor_t<Exec>>>,
                "fp8moe::optim::clip_grad_norm: this executor has no path here; for cuda_executor include "
                "\"fp8moe/optim/cuda/clip.cuh\" (nvcc)");
  if constexpr (writable && has_dispatch<clip_dispatch<executor_t<Exec>>>) {
    constexpr char const* where = "fp8moe::optim::clip_grad_norm";
    require(std::isfinite(max_norm) && max_norm > 0.0f, where, "max_norm", "a finite value > 0",
            std::to_string(max_norm));
    auto const gs = detail::grad_span(grads);
    detail::check_grad_norm_args(where, gs, out, workspace.size(),
                                 workspace_bytes(exec, grad_norm_shape{gs.size()}));
    clip_dispatch<executor_t<Exec>>::grad_norm(exec, gs, out, workspace);
    clip_dispatch<executor_t<Exec>>::clip(exec, gs, max_norm, out);
  }
}

}  // namespace fp8moe::optim

#include "fp8moe/optim/host/clip.hpp"  // clip_dispatch<host_executor>
