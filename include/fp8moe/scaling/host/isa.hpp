// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Host SIMD instruction set of the scaling kernels, chosen by name: `set_host_isa(host_isa::avx2)`
// makes every later host quantize / dequantize / transpose_requantize run the AVX2 kernels (the
// default is the best the CPU has). Process-wide (an atomic): set it between calls, not during one.
// Also the encode-mode classification both kernel families share (simd_encode_mode).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "fp8moe/config.hpp"
#include "fp8moe/core/error.hpp"
#include "fp8moe/core/math.hpp"
#include "fp8moe/numeric/numeric.hpp"
#include "fp8moe/scaling/scale_math.hpp"

// x86-64 kernels: GCC / Clang (function-level target attributes), never in nvcc's passes
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && !FP8MOE_CUDA_COMPILER
#define FP8MOE_SCALING_X86 1
#include <immintrin.h>
#define FP8MOE_SCALING_AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
#define FP8MOE_SCALING_AVX2_TARGET __attribute__((target("avx2")))
#else
#define FP8MOE_SCALING_X86 0
#endif
#define FP8MOE_SCALING_AVX512 FP8MOE_SCALING_X86
#define FP8MOE_SCALING_AVX2 FP8MOE_SCALING_X86

namespace fp8moe::scaling {

/// Host kernel families, ordered: a CPU that runs one runs those before it.
enum class host_isa : std::uint8_t {
  portable,  ///< the plain C++ loops of quantize.hpp (auto-vectorised; the reference)
  avx2,      ///< hand-written AVX2 kernels (x86-64 with AVX2)
  avx512     ///< hand-written AVX-512 kernels (x86-64 with AVX-512 F/BW/DQ/VL)
};

/// "portable", "avx2" or "avx512".
constexpr char const* host_isa_name(host_isa i) {
  switch (i) {
    case host_isa::portable:
      return "portable";
    case host_isa::avx2:
      return "avx2";
    case host_isa::avx512:
      return "avx512";
  }
  return "unknown";
}

/// Whether this build and CPU can run kernel family `i` (portable: always).
inline bool host_isa_supported(host_isa i) {
#if FP8MOE_SCALING_X86
  static bool const avx2 = __builtin_cpu_supports("avx2");
  static bool const avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  return i == host_isa::portable || (i == host_isa::avx2 && avx2) || (i == host_isa::avx512 && avx512);
#else
  return i == host_isa::portable;
#endif
}

/// The best kernel family this build and CPU run (the default).
inline host_isa best_host_isa() {
  return host_isa_supported(host_isa::avx512) ? host_isa::avx512
         : host_isa_supported(host_isa::avx2) ? host_isa::avx2
                                              : host_isa::portable;
}

namespace detail {
inline std::atomic<host_isa>& host_isa_setting() {
  static std::atomic<host_isa> isa{best_host_isa()};
  return isa;
}
}  // namespace detail

/// The kernel family the host paths use now.
inline host_isa active_host_isa() {
  return detail::host_isa_setting().load(std::memory_order_relaxed);
}

/// Selects the kernel family by name; returns the previous one. Results are the same bits on
/// every family. Throws fp8moe::error (errc::unsupported, nothing changed) when the CPU or build
/// lacks `i` (ask host_isa_supported first), errc::invalid_argument for a value outside the enum.
inline host_isa set_host_isa(host_isa i) {
  constexpr char const* where = "fp8moe::scaling::set_host_isa";
  require(i == host_isa::portable || i == host_isa::avx2 || i == host_isa::avx512, where, "isa",
          "host_isa::portable, avx2 or avx512", std::to_string(static_cast<int>(i)));
  if (!host_isa_supported(i))
    throw error(errc::unsupported, std::string(where) + ": argument 'isa': this CPU or build cannot run " +
                                       host_isa_name(i) +
                                       " (best available: " + host_isa_name(best_host_isa()) + ")");
  return detail::host_isa_setting().exchange(i);
}

/// Name of the host kernel family in use: "avx512", "avx2" or "portable".
inline char const* host_simd_kernel() {
  return host_isa_name(active_host_isa());
}

/// true: the best family the CPU has (default); false: the portable loops. Returns whether a
/// hand-written family was in use before.
inline bool set_host_simd(bool allowed) {
  return detail::host_isa_setting().exchange(allowed ? best_host_isa() : host_isa::portable) !=
         host_isa::portable;
}

namespace detail {

/// Smallest |y| that no longer rounds to F's largest finite value: max + half an ulp (464 for
/// E4M3, 61440 for E5M2; a tie there rounds away from max for E5M2, so the bound is strict).
template <fp8_format F>
constexpr std::uint32_t overflow_threshold_bits() {
  constexpr int M = F::mantissa_bits;
  constexpr std::uint32_t e =
      static_cast<std::uint32_t>(F::max_code >> M) + 127u - static_cast<std::uint32_t>(F::bias);
  constexpr std::uint32_t m = static_cast<std::uint32_t>(F::max_code) & ((1u << M) - 1u);
  return (e << 23) | (m << (23 - M)) | (1u << (22 - M));
}

/// How a SIMD kernel may encode a tile whose |x| maximum has bits `raw_amax_bits` (NaN counted,
/// sorting above inf, as the integer amax loops produce) with scale `s`.
enum class simd_encode : std::uint8_t {  // ordered: a group of tiles takes the max of its modes
  plain,                                 ///< |x| * k stays below max + half an ulp: no overflow select needed
  clamp,    ///< finite (or infinite) inputs that may overflow: the kernel applies min(code, over)
  portable  ///< a NaN in the tile, or a scale that is not finite and positive
};
template <fp8_format F>
FP8MOE_HOST_DEVICE simd_encode simd_encode_mode(std::uint32_t raw_amax_bits, tile_scale s) {
  float const k = s.divide ? s.sf : s.multiplier;
  if (raw_amax_bits > 0x7F800000u || !(k > 0.0f) || k > 3.40282347e38f) return simd_encode::portable;
  float const amax = fp8moe::bit_cast<float>(raw_amax_bits);
  float const bound = s.divide ? amax / k : amax * k;  // |x| * k <= bound (rounding is monotonic)
  return bound < fp8moe::bit_cast<float>(overflow_threshold_bits<F>()) ? simd_encode::plain
                                                                       : simd_encode::clamp;
}

/// Scale multiplier (or divisor) of element i for the encode loops of both kernel families: the
/// tile containing i (indices only grow), or one scale for the whole span.
template <bool Divide>
struct tile_cursor {
  tile_scale const* s;
  std::int64_t tile, t = 0, next;
  float at(std::int64_t i) {
    while (i >= next) ++t, next += tile;
    return Divide ? s[t].sf : s[t].multiplier;
  }
};
struct one_scale {
  float k;
  float at(std::int64_t) const { return k; }
};

/// FP8 encode constants of the integer round-to-nearest-even used by both kernel families (the
/// formulas of float_to_fp8_bits_select): normal code = (bits + addend + odd) >> shift; below
/// min_normal, (f + magic) has the code in its low bits.
template <fp8_format F>
struct encode_constants {
  static constexpr int shift = 23 - F::mantissa_bits;
  static constexpr std::uint32_t addend =
      ((1u << (shift - 1)) - 1u) - (static_cast<std::uint32_t>(127 - F::bias) << 23);
  static constexpr std::int32_t min_normal = (127 + 1 - F::bias) << 23;
  static constexpr std::int32_t magic_bits = (127 + 1 - F::bias - F::mantissa_bits + 23) << 23;
};

/// The 16-bit encode of bf16 inputs under a power-of-two scale 2^e (both kernel families): |x| *
/// 2^e is exact, so its float bits are (|x| bits + e << 7) << 16 while it stays a normal float,
/// and the round-to-nearest-even of encode_constants works on the top 16 bits alone: normal code
/// = (y16 + addend + odd) >> shift with y16 = |x| bits + e << 7. Lanes whose y16 lies below
/// min_normal (FP8 subnormal results, bf16 subnormal inputs) go through the 32-bit encode; zero
/// inputs give code 0. max_e keeps every bf16 subnormal (|x| bits <= 0x7F) below min_normal.
template <fp8_format F>
struct pow2_encode_constants {
  static constexpr int shift = 7 - F::mantissa_bits;
  static constexpr std::int16_t addend =
      static_cast<std::int16_t>(((1 << (shift - 1)) - 1) - ((127 - F::bias) << 7));
  static constexpr std::int16_t min_normal = static_cast<std::int16_t>((127 + 1 - F::bias) << 7);
  static constexpr int max_e = 127 - F::bias;
};

/// Whether the encode of a tile with scale k (`Divide`: y = x / k, else x * k) may run the 16-bit
/// power-of-two encode: k a normal power of two whose exponent e (y = x * 2^e) is at most
/// pow2_encode_constants<F>::max_e; `e7` gets e << 7.
template <fp8_format F, bool Divide>
FP8MOE_SCALING_FORCE_INLINE inline bool pow2_encode_shift(float k, std::int16_t& e7) {
  std::uint32_t const b = fp8moe::bit_cast<std::uint32_t>(k);
  int const exp = static_cast<int>(b >> 23);
  if ((b & 0x007FFFFFu) != 0 || exp == 0 || exp >= 255) return false;  // also rejects k < 0
  int const e = Divide ? 127 - exp : exp - 127;
  if (e > pow2_encode_constants<F>::max_e) return false;
  e7 = static_cast<std::int16_t>(e * 128);
  return true;
}

/// FP8 decode constants for the arithmetic decode of both kernel families: for |code| = mag,
/// normal values are float bits (mag << shift) + rebias, subnormals mag * sub_step (exact); the
/// inf code (E5M2) and the NaN codes are selected apart, with the decode table's bits (NaN:
/// 0x7FFFFFFF, unsigned).
template <class T>
struct decode_constants {
  using F = typename T::format;
  static constexpr int shift = 23 - F::mantissa_bits;
  static constexpr std::int32_t rebias = (127 - F::bias) << 23;
  static constexpr std::int32_t min_normal_code = 1 << F::mantissa_bits;
  static constexpr float unbias =
      fp8moe::bit_cast<float>(static_cast<std::uint32_t>(127 + 127 - F::bias) << 23);  // 2^(127-bias)
  static constexpr float sub_step = fp8moe::bit_cast<float>(
      static_cast<std::uint32_t>(127 + 1 - F::bias - F::mantissa_bits) << 23);  // 2^(1-bias-M)
  static constexpr bool has_inf =
      fp8moe::bit_cast<std::uint32_t>(T::from_bits(static_cast<std::uint8_t>(F::max_code + 1)).to_float()) ==
      0x7F800000u;
  static constexpr std::int32_t inf_code = has_inf ? F::max_code + 1 : 0;
  static constexpr std::int32_t first_nan_code = F::max_code + 1 + (has_inf ? 1 : 0);
};

}  // namespace detail
}  // namespace fp8moe::scaling
