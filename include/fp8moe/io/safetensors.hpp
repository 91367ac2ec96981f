// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// One safetensors file (Hugging Face format: u64 LE header length N, N bytes of JSON, the data
// buffer): the header parser (every bound checked before any byte is trusted), a read-only mmap
// reader with dtype/shape expectations, and an atomic writer. Every rejection is an fp8moe::error
// (errc::io) naming the file and, where there is one, the tensor. Little-endian hosts only.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "fp8moe/core/error.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/io/dtype.hpp"
#include "fp8moe/io/file.hpp"
#include "fp8moe/io/json.hpp"

namespace fp8moe::io {

static_assert(
    std::endian::native == std::endian::little,
    "fp8moe::io reads safetensors (little-endian) by mapping it: big-endian hosts are not supported");

/// The largest header the safetensors reference implementation accepts (MAX_HEADER_SIZE).
inline constexpr std::uint64_t max_safetensors_header = 100'000'000;

/// One tensor of a safetensors header. Offsets are bytes into the data buffer, [begin, end).
struct tensor_info {
  std::string name;
  dtype type = dtype::f32;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;
  std::uint64_t end = 0;

  std::int64_t numel() const {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
  std::uint64_t nbytes() const { return end - begin; }
};

/// "[576, 7168]"
inline std::string shape_string(std::span<std::int64_t const> shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

/// A parsed, validated header: tensors in data-offset order, the "__metadata__" map, where the
/// data buffer starts in the file (8 + N) and its size.
struct safetensors_header {
  std::vector<tensor_info> tensors;
  std::map<std::string, std::string> metadata;
  std::uint64_t data_offset = 0;
  std::uint64_t data_size = 0;

  std::map<std::string, std::size_t, std::less<>> by_name;  // name -> position in `tensors`

  /// The tensor named `name`, or nullptr.
  tensor_info const* find(std::string_view name) const {
    auto it = by_name.find(name);
    return it == by_name.end() ? nullptr : &tensors[it->second];
  }
};

namespace detail {

[[noreturn]] inline void throw_tensor(std::string_view file, std::string_view tensor, std::string_view what) {
  if (tensor.empty()) throw error(errc::io, fp8moe::detail::concat("fp8moe::io: '", file, "': ", what));
  throw error(errc::io, fp8moe::detail::concat("fp8moe::io: '", file, "': tensor '", tensor, "': ", what));
}

inline std::uint64_t read_u64_le(std::byte const* p) {
  std::uint64_t v = 0;
  std::memcpy(&v, p, 8);
  return v;  // little-endian host (static_assert above)
}

}  // namespace detail

/// Parses and validates the header of a whole safetensors file held in `file` (the full file: the
/// data buffer's size is needed for the bounds checks). `file_name` is used in messages only.
/// Rejected: fewer than 8 bytes; N > 100,000,000 or beyond the file; a header that is not a JSON
/// object starting with '{' (trailing spaces allowed); duplicate keys; a "__metadata__" that is not
/// an object of strings; a tensor entry without a supported dtype, a shape of non-negative integers
/// or data_offsets [begin, end] with begin <= end <= data size; a byte count that does not match
/// shape x dtype size; overlapping tensors; bytes of the buffer that belong to no tensor.
inline safetensors_header parse_safetensors_header(std::span<std::byte const> file,
                                                   std::string_view file_name) {
  using detail::throw_tensor;
  using fp8moe::detail::concat;
  if (file.size() < 8)
    throw_tensor(file_name, {},
                 concat("truncated: ", file.size(), " bytes, less than the 8-byte header length"));
  std::uint64_t const n = detail::read_u64_le(file.data());
  if (n > max_safetensors_header)
    throw_tensor(file_name, {},
                 concat("header length ", n, " exceeds the format's limit of ", max_safetensors_header));
  if (n > file.size() - 8)
    throw_tensor(file_name, {},
                 concat("truncated: header length says ", n, " bytes but only ", file.size() - 8, " follow"));
  std::string_view const text(reinterpret_cast<char const*>(file.data() + 8), static_cast<std::size_t>(n));
  if (text.empty() || text.front() != '{')
    throw_tensor(file_name, {}, "header: expected a JSON object starting with '{'");
  nlohmann::json const j = detail::parse_json(text, file_name, "header");
  if (!j.is_object()) throw_tensor(file_name, {}, "header: expected a JSON object");

  safetensors_header h;
  h.data_offset = 8 + n;
  h.data_size = file.size() - h.data_offset;
  h.tensors.reserve(j.size());
  for (auto const& [key, v] : j.items()) {
    if (key == "__metadata__") {
      if (!v.is_object()) throw_tensor(file_name, {}, "header: '__metadata__' must be an object of strings");
      for (auto const& [mk, mv] : v.items()) {
        if (!mv.is_string())
          throw_tensor(file_name, {},
                       concat("header: '__metadata__' entry '", mk, "' must be a string, got ",
                              detail::short_json(mv)));
        h.metadata.emplace(mk, mv.get<std::string>());
      }
      continue;
    }
    if (!v.is_object())
      throw_tensor(file_name, key,
                   "expected an object with dtype, shape and data_offsets, got " + detail::short_json(v));
    tensor_info t;
    t.name = key;
    auto const dt = v.find("dtype");
    if (dt == v.end() || !dt->is_string()) throw_tensor(file_name, key, "missing string 'dtype'");
    auto const parsed = parse_dtype(dt->get<std::string>());
    if (!parsed)
      throw_tensor(file_name, key,
                   concat("unknown dtype ", detail::short_json(*dt), " (expected ", supported_dtypes, ")"));
    t.type = *parsed;
    auto const sh = v.find("shape");
    if (sh == v.end() || !sh->is_array()) throw_tensor(file_name, key, "missing array 'shape'");
    std::uint64_t numel = 1;
    for (auto const& d : *sh) {
      if (!d.is_number_unsigned())
        throw_tensor(file_name, key, "shape: expected non-negative integers, got " + detail::short_json(d));
      std::uint64_t const e = d.get<std::uint64_t>();
      if (e > static_cast<std::uint64_t>(INT64_MAX) ||
          (e != 0 && numel > static_cast<std::uint64_t>(INT64_MAX) / e))
        throw_tensor(file_name, key, "shape " + detail::short_json(*sh) + " has more than 2^63 elements");
      numel *= e;
      t.shape.push_back(static_cast<std::int64_t>(e));
    }
    auto const off = v.find("data_offsets");
    if (off == v.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
        !(*off)[1].is_number_unsigned())
      throw_tensor(file_name, key, "expected 'data_offsets' [begin, end] of non-negative integers");
    t.begin = (*off)[0].get<std::uint64_t>();
    t.end = (*off)[1].get<std::uint64_t>();
    if (t.begin > t.end)
      throw_tensor(file_name, key, concat("data_offsets [", t.begin, ", ", t.end, "]: begin after end"));
    if (t.end > h.data_size)
      throw_tensor(file_name, key,
                   concat("data_offsets [", t.begin, ", ", t.end, "] out of range: the data buffer has ",
                          h.data_size, " bytes (file truncated?)"));
    std::uint64_t const es = size_of(t.type);
    if (numel > UINT64_MAX / es || numel * es != t.end - t.begin)
      throw_tensor(
          file_name, key,
          concat("data_offsets [", t.begin, ", ", t.end, "] hold ", t.end - t.begin, " bytes, but shape ",
                 shape_string(t.shape), " of ", to_string(t.type), " needs ", numel, " x ", es));
    h.tensors.push_back(std::move(t));
  }
  std::sort(h.tensors.begin(), h.tensors.end(), [](tensor_info const& a, tensor_info const& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  std::uint64_t covered = 0;
  std::string_view prev;
  for (auto const& t : h.tensors) {
    if (t.begin < covered)
      throw_tensor(file_name, t.name,
                   concat("data_offsets [", t.begin, ", ", t.end, "] overlap tensor '", prev, "' (ends at ",
                          covered, ")"));
    if (t.begin > covered)
      throw_tensor(file_name, t.name,
                   concat("data_offsets [", t.begin, ", ", t.end, "]: bytes [", covered, ", ", t.begin,
                          ") of the data buffer belong to no tensor"));
    covered = t.end;
    prev = t.name;
  }
  if (covered != h.data_size)
    throw_tensor(file_name, {},
                 concat("the data buffer has ", h.data_size, " bytes but its tensors cover ", covered,
                        " (trailing bytes after the last tensor)"));
  for (std::size_t i = 0; i < h.tensors.size(); ++i) h.by_name.emplace(h.tensors[i].name, i);
  return h;
}

/// A tensor inside a mapped file: its header entry and bytes, with checked typed access.
struct tensor_ref {
  tensor_info const* info = nullptr;
  std::span<std::byte const> bytes;
  std::string_view file;  // for messages

  dtype type() const { return info->type; }
  std::span<std::int64_t const> shape() const { return info->shape; }
  std::string_view name() const { return info->name; }

  /// Throws, naming the file and the tensor, unless dtype and shape are exactly these.
  tensor_ref const& expect(dtype t, std::span<std::int64_t const> shape) const {
    if (t != info->type)
      detail::throw_tensor(
          file, info->name,
          fp8moe::detail::concat("expected dtype ", to_string(t), ", got ", to_string(info->type)));
    if (!std::equal(shape.begin(), shape.end(), info->shape.begin(), info->shape.end()))
      detail::throw_tensor(file, info->name,
                           fp8moe::detail::concat("expected shape ", shape_string(shape), ", got ",
                                                  shape_string(info->shape)));
    return *this;
  }
  tensor_ref const& expect(dtype t, std::initializer_list<std::int64_t> shape) const {
    return expect(t, std::span<std::int64_t const>(shape.begin(), shape.size()));
  }

  /// The elements as T (dtype must be dtype_of<T>), in place in the mapping.
  template <stored_element T>
  std::span<T const> as() const {
    if (dtype_of<T> != info->type)
      detail::throw_tensor(
          file, info->name,
          fp8moe::detail::concat("expected dtype ", to_string(dtype_of<T>), ", got ", to_string(info->type)));
    if (reinterpret_cast<std::uintptr_t>(bytes.data()) % alignof(T) != 0)
      detail::throw_tensor(
          file, info->name,
          "data not aligned for its dtype in the file (a writer that does not pad the header to 8 "
          "bytes?): read it with copy_to()");
    return {reinterpret_cast<T const*>(bytes.data()), bytes.size() / sizeof(T)};
  }
  /// as<T>() after expect(dtype_of<T>, shape).
  template <stored_element T>
  std::span<T const> as(std::initializer_list<std::int64_t> shape) const {
    expect(dtype_of<T>, shape);
    return as<T>();
  }
  /// A 2-D tensor [rows, cols] as a row-major matrix_view (dtype and shape checked).
  template <stored_element T>
  matrix_view<T const> matrix(std::int64_t rows, std::int64_t cols) const {
    return make_matrix(as<T>({rows, cols}).data(), rows, cols);
  }
  /// A 1-D tensor [n] as a vector_view (dtype and shape checked).
  template <stored_element T>
  vector_view<T const> vector(std::int64_t n) const {
    return make_vector(as<T>({n}).data(), n);
  }
  /// Copies the raw bytes into `out` (exactly nbytes() long): any dtype, any alignment.
  void copy_to(std::span<std::byte> out) const {
    if (out.size() != bytes.size())
      detail::throw_tensor(
          file, info->name,
          fp8moe::detail::concat("copy_to: output has ", out.size(), " bytes, expected ", bytes.size()));
    if (!bytes.empty()) std::memcpy(out.data(), bytes.data(), bytes.size());
  }
};

/// A safetensors file, mapped read-only and validated on open (parse_safetensors_header).
class safetensors_file {
 public:
  explicit safetensors_file(std::filesystem::path path)
      : map_(std::move(path)),
        name_(map_.path().string()),
        header_(parse_safetensors_header(map_.bytes(), name_)) {}

  std::filesystem::path const& path() const { return map_.path(); }
  safetensors_header const& header() const { return header_; }
  std::vector<tensor_info> const& tensors() const { return header_.tensors; }
  bool contains(std::string_view name) const { return header_.find(name) != nullptr; }

  /// The tensor `name`; throws naming this file when it holds no such tensor.
  tensor_ref tensor(std::string_view name) const {
    tensor_info const* t = header_.find(name);
    if (!t) detail::throw_tensor(name_, name, "no such tensor in this file");
    return ref(*t);
  }
  tensor_ref ref(tensor_info const& t) const {
    return {&t, map_.bytes().subspan(header_.data_offset + t.begin, t.nbytes()), name_};
  }

 private:
  mapped_file map_;
  std::string name_;
  safetensors_header header_;
};

/// A tensor to write: name, dtype, shape and its bytes (row-major, little-endian), not owned.
struct tensor_entry {
  std::string name;
  dtype type = dtype::f32;
  std::vector<std::int64_t> shape;
  std::span<std::byte const> data;
};

/// An entry over contiguous elements with the given shape.
template <stored_element T>
tensor_entry make_tensor_entry(std::string name, std::span<T const> data, std::vector<std::int64_t> shape) {
  return {std::move(name), dtype_of<T>, std::move(shape), std::as_bytes(data)};
}
/// An entry over a row-major matrix view [rows, cols] (rows must be contiguous: row_stride == cols).
template <stored_element T>
tensor_entry make_tensor_entry(std::string name, matrix_view<T const> m) {
  require(m.col_stride == 1 && (m.rows <= 1 || m.row_stride == m.cols), "fp8moe::io::make_tensor_entry", name,
          "a contiguous row-major matrix (row_stride == cols, col_stride == 1)",
          fp8moe::detail::concat("row_stride ", m.row_stride, ", col_stride ", m.col_stride));
  return {std::move(name),
          dtype_of<T>,
          {m.rows, m.cols},
          std::as_bytes(std::span<T const>(m.data, static_cast<std::size_t>(m.rows * m.cols)))};
}

namespace detail {

/// Validates the entries, orders them as the reference serializer does (larger elements first,
/// then by name: every tensor stays aligned to its element size) and builds the header, padded with
/// spaces to a multiple of 8. Returns the header bytes (with the u64 length) and the write order.
inline std::pair<std::string, std::vector<tensor_entry const*>> build_safetensors_header(
    std::span<tensor_entry const> tensors, std::map<std::string, std::string> const& metadata,
    std::string_view file) {
  using fp8moe::detail::concat;
  std::vector<tensor_entry const*> order;
  for (auto const& t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](tensor_entry const* a, tensor_entry const* b) {
    return size_of(a->type) != size_of(b->type) ? size_of(a->type) > size_of(b->type) : a->name < b->name;
  });
  nlohmann::json j = nlohmann::json::object();
  if (!metadata.empty()) j["__metadata__"] = metadata;
  std::uint64_t offset = 0;
  for (std::size_t i = 0; i < order.size(); ++i) {
    tensor_entry const& t = *order[i];
    if (t.name == "__metadata__")
      throw_tensor(file, t.name, "this name is reserved for the header's metadata");
    if (i > 0 && order[i - 1]->name == t.name) throw_tensor(file, t.name, "given twice");
    std::uint64_t numel = 1;
    for (auto d : t.shape) {
      if (d < 0) throw_tensor(file, t.name, "shape " + shape_string(t.shape) + " has a negative extent");
      auto const e = static_cast<std::uint64_t>(d);
      if (e != 0 && numel > UINT64_MAX / 8 / e)
        throw_tensor(file, t.name, "shape " + shape_string(t.shape) + " is too large");
      numel *= e;
    }
    if (numel * size_of(t.type) != t.data.size())
      throw_tensor(file, t.name,
                   concat("shape ", shape_string(t.shape), " of ", to_string(t.type), " needs ",
                          numel * size_of(t.type), " bytes, the data has ", t.data.size()));
    j[t.name] = {{"dtype", std::string(to_string(t.type))},
                 {"shape", t.shape},
                 {"data_offsets", {offset, offset + t.data.size()}}};
    offset += t.data.size();
  }
  std::string text = dump_json(j, file);
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  std::uint64_t const n = text.size();
  std::memcpy(out.data(), &n, 8);
  return {out + text, std::move(order)};
}

}  // namespace detail

/// Writes a safetensors file atomically (atomic_file_writer: temp file, fsync, rename). Entries
/// are validated (unique names, bytes == shape x dtype size) before anything is created.
inline void write_safetensors(std::filesystem::path const& path, std::span<tensor_entry const> tensors,
                              std::map<std::string, std::string> const& metadata = {}) {
  auto const [header, order] = detail::build_safetensors_header(tensors, metadata, path.string());
  atomic_file_writer w(path);
  w.write(header);
  for (tensor_entry const* t : order) w.write(t->data);
  w.commit();
}

/// The bytes of a safetensors file holding `tensors` (what write_safetensors writes), in memory.
inline std::vector<std::byte> encode_safetensors(std::span<tensor_entry const> tensors,
                                                 std::map<std::string, std::string> const& metadata = {}) {
  auto const [header, order] = detail::build_safetensors_header(tensors, metadata, "<memory>");
  std::vector<std::byte> out(reinterpret_cast<std::byte const*>(header.data()),
                             reinterpret_cast<std::byte const*>(header.data()) + header.size());
  for (tensor_entry const* t : order) out.insert(out.end(), t->data.begin(), t->data.end());
  return out;
}

}  // namespace fp8moe::io
