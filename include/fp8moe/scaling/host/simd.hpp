// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Dispatch of the host quantize path to the hand-written kernel family in use (host/isa.hpp:
// `set_host_isa`, default the best the CPU has): AVX-512 (host/avx512.hpp) or AVX2 (host/avx2.hpp),
// bit-identical to the portable loops of quantize.hpp, which run for NaN tiles, other CPUs, nvcc
// and non-GCC/Clang compilers. Each helper returns false (or calls `portable`) when no kernel runs.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "fp8moe/config.hpp"
#include "fp8moe/scaling/host/avx2.hpp"
#include "fp8moe/scaling/host/avx512.hpp"
#include "fp8moe/scaling/host/isa.hpp"

namespace fp8moe::scaling::detail {

/// Whether a hand-written kernel family is in use (not the portable loops).
inline bool host_simd_active() {
  return active_host_isa() != host_isa::portable;
}

#if FP8MOE_SCALING_X86
/// encode_tiles_<isa><F, Divide, Clamp, In> of the family `isa` (avx2 or avx512).
template <fp8_format F, bool Divide, bool Clamp, class In>
inline void encode_tiles_kernel(host_isa isa, In const* src, std::uint8_t* dst, std::int64_t n,
                                std::int64_t tile, tile_scale const* s, saturation sat) {
  if (isa == host_isa::avx512)
    encode_tiles_avx512<F, Divide, Clamp, In>(src, dst, n, tile, s, sat);
  else
    encode_tiles_avx2<F, Divide, Clamp, In>(src, dst, n, tile, s, sat);
}
#endif

/// Encodes tiles [0, nt) of a contiguous span (tile t = elements [t*tile, min((t+1)*tile, n)),
/// scale s[t], raw amax bits raw_amax[t]) with the kernel family in use where the tile allows;
/// calls `portable(t)` for every other tile. A run of kernel tiles (same division) goes in one
/// call, clamped if any of its tiles needs it (the clamp leaves a plain tile's codes unchanged:
/// they are all <= max_code), so MX tiles, whose modes alternate, are not encoded call by call.
/// Forced inline, so `portable` is compiled into the caller's ISA clone.
template <fp8_format F, class In, class Portable>
FP8MOE_SCALING_FORCE_INLINE inline void encode_tiles(In const* src, std::uint8_t* dst, std::int64_t n,
                                                     std::int64_t tile, tile_scale const* s,
                                                     std::uint32_t const* raw_amax, std::int64_t nt,
                                                     saturation sat, Portable&& portable) {
#if FP8MOE_SCALING_X86
  host_isa const isa = active_host_isa();
  if (isa != host_isa::portable) {
    simd_encode next = nt > 0 ? simd_encode_mode<F>(raw_amax[0], s[0]) : simd_encode::portable;
    for (std::int64_t t = 0; t < nt;) {
      simd_encode mode = next;
      if (mode == simd_encode::portable) {
        portable(t++);
        if (t < nt) next = simd_encode_mode<F>(raw_amax[t], s[t]);
        continue;
      }
      std::int64_t u = t + 1;  // run of kernel tiles with the same division
      for (; u < nt; ++u) {
        next = simd_encode_mode<F>(raw_amax[u], s[u]);
        if (next == simd_encode::portable || s[u].divide != s[t].divide) break;
        mode = std::max(mode, next);
      }
      std::int64_t const c0 = t * tile, len = (u * tile < n ? u * tile : n) - c0;
      bool const clamp = mode == simd_encode::clamp;
      if (s[t].divide)
        (clamp ? encode_tiles_kernel<F, true, true, In>
               : encode_tiles_kernel<F, true, false, In>)(isa, src + c0, dst + c0, len, tile, s + t, sat);
      else
        (clamp ? encode_tiles_kernel<F, false, true, In>
               : encode_tiles_kernel<F, false, false, In>)(isa, src + c0, dst + c0, len, tile, s + t, sat);
      t = u;
    }
    return;
  }
#else
  (void)src, (void)dst, (void)n, (void)tile, (void)s, (void)raw_amax, (void)sat;
#endif
  for (std::int64_t t = 0; t < nt; ++t) portable(t);
}

/// Raw amax bits of each tile of `tile` contiguous elements in [0, n) (amax_tiles_<isa>); false
/// when the portable loops are in use.
template <class In>
inline bool amax_tiles(In const* src, std::int64_t n, std::int64_t tile, std::uint32_t* raw) {
#if FP8MOE_SCALING_X86
  switch (active_host_isa()) {
    case host_isa::avx512:
      amax_tiles_avx512(src, n, tile, raw);
      return true;
    case host_isa::avx2:
      amax_tiles_avx2(src, n, tile, raw);
      return true;
    case host_isa::portable:
      break;
  }
#else
  (void)src, (void)n, (void)tile, (void)raw;
#endif
  return false;
}

/// out[i] = Out(decode(q[i]) * sf) for n contiguous codes of T in tiles of `tile` (scale of tile
/// t: scales[t * scale_stride]); false when the portable loops are in use.
template <class T, class Out>
inline bool dequantize_tiles(std::uint8_t const* q, Out* out, std::int64_t n, std::int64_t tile,
                             float const* scales, std::int64_t scale_stride) {
#if FP8MOE_SCALING_X86
  switch (active_host_isa()) {
    case host_isa::avx512:
      if constexpr (std::is_same_v<Out, float>)
        dequantize_float_tiles_avx512<T>(q, out, n, tile, scales, scale_stride);
      else
        dequantize_bf16_tiles_avx512<T>(q, out, n, tile, scales, scale_stride);
      return true;
    case host_isa::avx2:
      dequantize_tiles_avx2<T>(q, out, n, tile, scales, scale_stride);
      return true;
    case host_isa::portable:
      break;
  }
#else
  (void)q, (void)out, (void)n, (void)tile, (void)scales, (void)scale_stride;
#endif
  return false;
}

#if FP8MOE_SCALING_X86
/// Encodes nc elements v (float, or bf16 in place) with per-element scales k into q with the
/// family `isa` (avx2 or avx512) in `mode` (plain or clamp). Reads exactly nc elements of v (a
/// last partial group of 16 through a zero-padded copy); k must hold ceil(nc / 16) * 16 values.
template <fp8_format F, bool Divide, class In>
inline void encode_columns(host_isa isa, simd_encode mode, In const* v, float const* k, std::uint8_t* q,
                           std::int64_t nc, saturation sat) {
  bool const clamp = mode == simd_encode::clamp;
  auto const run = [&](In const* x, float const* kk, std::uint8_t* d, std::int64_t n16) {
    if (isa == host_isa::avx512)
      (clamp ? encode_columns_avx512<F, Divide, true, In>
             : encode_columns_avx512<F, Divide, false, In>)(x, kk, d, n16, sat);
    else
      (clamp ? encode_columns_avx2<F, Divide, true, In>
             : encode_columns_avx2<F, Divide, false, In>)(x, kk, d, n16, sat);
  };
  std::int64_t const full = nc / 16 * 16;
  if (full > 0) run(v, k, q, nc / 16);
  if (full < nc) {
    In x[16] = {};
    std::uint8_t d[16];
    std::memcpy(x, v + full, static_cast<std::size_t>(nc - full) * sizeof(In));
    run(x, k + full, d, 1);
    std::memcpy(q + full, d, static_cast<std::size_t>(nc - full));
  }
}
/// Encodes the block of nr source rows x nc columns (row j at src + j * src_stride, contiguous)
/// with per-column scales k into dst (row j at dst + j * dst_stride) with the family `isa` in
/// `mode` (plain or clamp); nc <= 128, k must hold ceil(nc / 16) * 16 values.
template <fp8_format F, bool Divide, class In>
inline void encode_rows(host_isa isa, simd_encode mode, In const* src, std::int64_t src_stride,
                        std::int64_t nr, float const* k, std::int64_t nc, std::uint8_t* dst,
                        std::int64_t dst_stride, saturation sat) {
  bool const clamp = mode == simd_encode::clamp;
  if (isa == host_isa::avx2) {
    (clamp ? encode_rows_avx2<F, Divide, true, In>
           : encode_rows_avx2<F, Divide, false, In>)(src, src_stride, nr, k, nc, dst, dst_stride, sat);
    return;
  }
  std::int64_t const full = nc / 64 * 64;  // whole 64-column steps, then the rest column-wise
  if (full > 0)
    (clamp ? encode_rows_avx512<F, Divide, true, In>
           : encode_rows_avx512<F, Divide, false, In>)(src, src_stride, nr, k, nc / 64, dst, dst_stride, sat);
  if (full < nc)
    for (std::int64_t j = 0; j < nr; ++j)
      encode_columns<F, Divide>(isa, mode, src + j * src_stride + full, k + full, dst + j * dst_stride + full,
                                nc - full, sat);
}
#endif

}  // namespace fp8moe::scaling::detail
