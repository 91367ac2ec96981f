// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// NumPy .npy files (format version 1.0, C order, little-endian): write_npy for float32, float64,
// int32 and int64 arrays (written atomically), and read_npy, which checks magic, version, the
// header dictionary, the dtype and the data size against the shape. bfloat16 has no NumPy dtype:
// convert to float32 first.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "fp8moe/core/error.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/io/file.hpp"

namespace fp8moe::io {

/// Element types a .npy file holds here, with their NumPy descr.
template <class T>
concept npy_element = std::is_same_v<T, float> || std::is_same_v<T, double> ||
    std::is_same_v<T, std::int32_t> || std::is_same_v<T, std::int64_t>;

template <npy_element T>
constexpr std::string_view npy_descr() {
  if constexpr (std::is_same_v<T, float>)
    return "<f4";
  else if constexpr (std::is_same_v<T, double>)
    return "<f8";
  else if constexpr (std::is_same_v<T, std::int32_t>)
    return "<i4";
  else
    return "<i8";
}

/// The bytes of a v1.0 .npy header for `descr` and `shape` (the preamble and dictionary, padded
/// with spaces and a newline so the data starts at a multiple of 64 bytes).
inline std::string npy_header(std::string_view descr, std::span<std::int64_t const> shape) {
  std::string dict = "{'descr': '" + std::string(descr) + "', 'fortran_order': False, 'shape': (";
  for (std::size_t i = 0; i < shape.size(); ++i)
    dict += std::to_string(shape[i]) + (shape.size() == 1 ? "," : i + 1 < shape.size() ? ", " : "");
  dict += "), }";
  std::size_t const total = (10 + dict.size() + 1 + 63) / 64 * 64;  // + 1: the newline
  dict.append(total - 10 - dict.size() - 1, ' ');
  dict += '\n';
  std::string out = "\x93NUMPY";
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(dict.size() & 0xFF);
  out += static_cast<char>(dict.size() >> 8);
  return out + dict;
}

/// Writes `data` (C order, prod(shape) elements) as a .npy file, atomically.
template <npy_element T>
void write_npy(std::filesystem::path const& path, std::span<T const> data,
               std::span<std::int64_t const> shape) {
  std::int64_t n = 1;
  for (auto d : shape) {
    require(d >= 0, "fp8moe::io::write_npy", "shape", "non-negative extents", std::to_string(d));
    n *= d;
  }
  require(static_cast<std::size_t>(n) == data.size(), "fp8moe::io::write_npy", "data",
          fp8moe::detail::concat(n, " elements (the shape's product)"), std::to_string(data.size()));
  std::string const header = npy_header(npy_descr<T>(), shape);
  require(header.size() - 10 <= 0xFFFF, "fp8moe::io::write_npy", "shape",
          "a header below 64 KiB (format 1.0)");
  atomic_file_writer w(path);
  w.write(header);
  w.write(std::as_bytes(data));
  w.commit();
}
template <npy_element T>
void write_npy(std::filesystem::path const& path, std::span<T const> data,
               std::initializer_list<std::int64_t> shape) {
  write_npy(path, data, std::span<std::int64_t const>(shape.begin(), shape.size()));
}
/// A row-major matrix view as a 2-D array [rows, cols] (any row stride).
template <npy_element T>
void write_npy(std::filesystem::path const& path, matrix_view<T const> m) {
  check_matrix(m, "fp8moe::io::write_npy", "m");
  require(m.col_stride == 1, "fp8moe::io::write_npy", "m", "col_stride == 1", std::to_string(m.col_stride));
  std::vector<T> rows(static_cast<std::size_t>(m.rows * m.cols));
  for (std::int64_t r = 0; r < m.rows; ++r)
    if (m.cols) std::memcpy(rows.data() + r * m.cols, m.row(r), static_cast<std::size_t>(m.cols) * sizeof(T));
  write_npy<T>(path, std::span<T const>(rows), {m.rows, m.cols});
}

/// A .npy array read back.
template <class T>
struct npy_array {
  std::vector<std::int64_t> shape;
  std::vector<T> data;  // C order
};

namespace detail {

/// Parses the v1.0/2.0 header dictionary "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"
/// (keys in any order, Python literal syntax as NumPy writes it).
struct npy_dict_parser {
  std::string_view s;
  std::size_t i = 0;
  std::string_view file;

  [[noreturn]] void fail(std::string_view what) const {
    throw_file(file, fp8moe::detail::concat("npy header: ", what, " at byte ", i, " of '", s, "'"));
  }
  void ws() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\n')) ++i;
  }
  bool eat(char c) {
    ws();
    if (i < s.size() && s[i] == c) return ++i, true;
    return false;
  }
  void expect(char c) {
    if (!eat(c)) fail(fp8moe::detail::concat("expected '", c, "'"));
  }
  std::string_view quoted() {
    ws();
    if (i >= s.size() || (s[i] != '\'' && s[i] != '"')) fail("expected a quoted string");
    char const q = s[i++];
    std::size_t const b = i;
    while (i < s.size() && s[i] != q) ++i;
    if (i >= s.size()) fail("unterminated string");
    return s.substr(b, i++ - b);
  }
  std::int64_t integer() {
    ws();
    std::size_t const b = i;
    std::int64_t v = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      if (v > (INT64_MAX - 9) / 10) fail("integer too large");
      v = v * 10 + (s[i++] - '0');
    }
    if (i == b) fail("expected a non-negative integer");
    if (i < s.size() && s[i] == 'L') ++i;  // Python 2 long suffix
    return v;
  }
};

}  // namespace detail

/// Reads a .npy file holding T (its descr must be npy_descr<T>(), or '|' / '=' byte-order
/// equivalents for the same type); C order only. Throws errc::io naming the file.
template <npy_element T>
npy_array<T> read_npy(std::filesystem::path const& path) {
  mapped_file f(path);
  auto const b = f.bytes();
  auto const fail = [&](std::string_view what) { detail::throw_file(path, what); };
  if (b.size() < 10 || std::memcmp(b.data(), "\x93NUMPY", 6) != 0)
    fail("not a .npy file (no \\x93NUMPY magic)");
  auto const u8 = [&](std::size_t k) { return static_cast<std::uint32_t>(b[k]); };
  std::uint32_t const major = u8(6);
  std::size_t len = 0, start = 0;
  if (major == 1) {
    len = u8(8) | (u8(9) << 8);
    start = 10;
  } else if (major == 2 || major == 3) {
    if (b.size() < 12) fail("truncated header");
    len = u8(8) | (u8(9) << 8) | (u8(10) << 16) | (u8(11) << 24);
    start = 12;
  } else {
    fail(fp8moe::detail::concat("unsupported format version ", major, ".", u8(7)));
  }
  if (len > b.size() - start) fail("truncated header");
  std::string const file = path.string();
  detail::npy_dict_parser p{std::string_view(reinterpret_cast<char const*>(b.data() + start), len), 0, file};
  std::string descr;
  bool fortran = false, have_descr = false, have_order = false, have_shape = false;
  npy_array<T> out;
  p.expect('{');
  while (!p.eat('}')) {
    std::string_view const key = p.quoted();
    p.expect(':');
    if (key == "descr") {
      descr = p.quoted();
      have_descr = true;
    } else if (key == "fortran_order") {
      p.ws();
      if (p.s.substr(p.i, 4) == "True") {
        fortran = true, p.i += 4;
      } else if (p.s.substr(p.i, 5) == "False") {
        p.i += 5;
      } else {
        p.fail("fortran_order: expected True or False");
      }
      have_order = true;
    } else if (key == "shape") {
      p.expect('(');
      while (!p.eat(')')) {
        out.shape.push_back(p.integer());
        if (!p.eat(',')) {
          p.expect(')');
          break;
        }
      }
      have_shape = true;
    } else {
      p.fail(fp8moe::detail::concat("unexpected key '", key, "'"));
    }
    if (!p.eat(',')) {
      p.expect('}');
      break;
    }
  }
  if (!have_descr || !have_order || !have_shape)
    fail("npy header: expected the keys descr, fortran_order and shape");
  if (fortran) fail("fortran_order True: only C-order arrays are read");
  std::string_view const want = npy_descr<T>();
  if (descr != want &&
      !(descr.size() == 3 && (descr[0] == '|' || descr[0] == '=') && descr.substr(1) == want.substr(1)))
    fail(fp8moe::detail::concat("dtype '", descr, "': expected '", want, "'"));
  std::uint64_t n = 1;
  for (auto d : out.shape) {
    if (d != 0 && n > UINT64_MAX / sizeof(T) / static_cast<std::uint64_t>(d)) fail("shape too large");
    n *= static_cast<std::uint64_t>(d);
  }
  std::size_t const data_start = start + len;
  if (b.size() - data_start != n * sizeof(T))
    fail(fp8moe::detail::concat("data has ", b.size() - data_start, " bytes, the shape needs ",
                                n * sizeof(T)));
  out.data.resize(static_cast<std::size_t>(n));
  if (n) std::memcpy(out.data.data(), b.data() + data_start, n * sizeof(T));
  return out;
}

}  // namespace fp8moe::io
