// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// A Hugging Face checkpoint of safetensors files: one `model.safetensors`, or shards listed by
// `model.safetensors.index.json` ({"metadata": {"total_size": ...}, "weight_map": {tensor: file}}),
// where a weight's `weight_scale_inv` may sit in another shard. `checkpoint` opens every file,
// cross-checks the index against the shards, and finds any tensor by name; the writers write shards
// first and the index last, each file atomically. Errors name the file and the tensor (errc::io).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "fp8moe/core/error.hpp"
#include "fp8moe/io/file.hpp"
#include "fp8moe/io/json.hpp"
#include "fp8moe/io/safetensors.hpp"

namespace fp8moe::io {

/// File names of the Hugging Face layout.
inline constexpr std::string_view safetensors_index_name = "model.safetensors.index.json";
inline constexpr std::string_view single_safetensors_name = "model.safetensors";

/// The contents of model.safetensors.index.json.
struct safetensors_index {
  std::map<std::string, std::string, std::less<>> weight_map;  // tensor name -> shard file name
  std::optional<std::uint64_t> total_size;                     // metadata.total_size, when present
  std::map<std::string, std::string> metadata;                 // other metadata entries, as JSON text

  /// The shard file names, sorted, each once.
  std::vector<std::string> shard_files() const {
    std::set<std::string> s;
    for (auto const& [_, f] : weight_map) s.insert(f);
    return {s.begin(), s.end()};
  }
};

/// Parses an index file's text. Rejected (errc::io, naming `file_name` and the tensor): invalid
/// JSON, duplicate keys, no "weight_map" object, a shard name that is not a string naming a plain
/// file in the same directory ("x.safetensors": no '/', no "..", not empty), a "metadata" that is
/// not an object, a total_size that is not a non-negative integer.
inline safetensors_index parse_safetensors_index(std::string_view text, std::string_view file_name) {
  using detail::throw_tensor;
  nlohmann::json const j = detail::parse_json(text, file_name, "index");
  if (!j.is_object()) throw_tensor(file_name, {}, "index: expected a JSON object");
  safetensors_index idx;
  auto const wm = j.find("weight_map");
  if (wm == j.end() || !wm->is_object()) throw_tensor(file_name, {}, "index: expected a 'weight_map' object");
  for (auto const& [name, f] : wm->items()) {
    if (!f.is_string())
      throw_tensor(file_name, name,
                   "weight_map: expected a shard file name (string), got " + detail::short_json(f));
    std::string s = f.get<std::string>();
    if (s.empty() || s == "." || s == ".." || s.find('/') != std::string::npos ||
        s.find('\\') != std::string::npos || s.find('\0') != std::string::npos)
      throw_tensor(
          file_name, name,
          "weight_map: expected the name of a file in the index's directory, got " + detail::short_json(f));
    idx.weight_map.emplace(name, std::move(s));
  }
  if (auto const md = j.find("metadata"); md != j.end() && !md->is_null()) {
    if (!md->is_object()) throw_tensor(file_name, {}, "index: 'metadata' must be an object");
    for (auto const& [k, v] : md->items()) {
      if (k == "total_size") {
        if (!v.is_number_unsigned())
          throw_tensor(
              file_name, {},
              "index: metadata.total_size: expected a non-negative integer, got " + detail::short_json(v));
        idx.total_size = v.get<std::uint64_t>();
      } else {
        idx.metadata.emplace(k, detail::dump_json(v, file_name));
      }
    }
  }
  return idx;
}

/// The index as JSON text (2-space indented, as transformers writes it).
inline std::string encode_safetensors_index(safetensors_index const& idx,
                                            std::string_view file_name = "<memory>") {
  nlohmann::json md = nlohmann::json::object();
  for (auto const& [k, v] : idx.metadata)
    md[k] = detail::parse_json(v, file_name, "index metadata entry " + k);
  if (idx.total_size) md["total_size"] = *idx.total_size;
  nlohmann::json wm = nlohmann::json::object();
  for (auto const& [k, v] : idx.weight_map) wm[k] = v;
  nlohmann::json j = {{"metadata", std::move(md)}, {"weight_map", std::move(wm)}};
  return detail::dump_json(j, file_name, 2) + "\n";
}

/// Writes an index file atomically.
inline void write_safetensors_index(std::filesystem::path const& path, safetensors_index const& idx) {
  atomic_file_writer w(path);
  w.write(encode_safetensors_index(idx, path.string()));
  w.commit();
}

/// "model-00002-of-00005.safetensors" (the transformers shard name; 5 digits, more when needed).
inline std::string shard_file_name(std::size_t i, std::size_t n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", i + 1, n);
  return buf;
}

/// Writes a sharded checkpoint into `dir` (created if missing): shard i holds shards[i] and is
/// named shard_file_name(i, n); then model.safetensors.index.json (total_size = sum of tensor
/// bytes). Every file is written atomically and the index last, so an interrupted write leaves
/// no index that names a missing shard. Returns the index written.
inline safetensors_index write_sharded_safetensors(std::filesystem::path const& dir,
                                                   std::span<std::vector<tensor_entry> const> shards,
                                                   std::map<std::string, std::string> const& metadata = {}) {
  safetensors_index idx;
  idx.total_size = 0;
  for (std::size_t i = 0; i < shards.size(); ++i) {  // validate names across shards before writing
    for (auto const& t : shards[i]) {
      auto const [it, fresh] = idx.weight_map.emplace(t.name, shard_file_name(i, shards.size()));
      if (!fresh)
        detail::throw_tensor((dir / shard_file_name(i, shards.size())).string(), t.name,
                             "also given for shard '" + it->second + "': a tensor lives in one shard");
      *idx.total_size += t.data.size();
    }
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) detail::throw_file(dir, "cannot create directory: " + ec.message());
  for (std::size_t i = 0; i < shards.size(); ++i)
    write_safetensors(dir / shard_file_name(i, shards.size()), shards[i], metadata);
  write_safetensors_index(dir / safetensors_index_name, idx);
  return idx;
}

/// Splits tensors, in order, into groups of at most `max_shard_bytes` of data each (a tensor larger
/// than that gets a group of its own), for write_sharded_safetensors.
inline std::vector<std::vector<tensor_entry>> split_into_shards(std::span<tensor_entry const> tensors,
                                                                std::uint64_t max_shard_bytes) {
  std::vector<std::vector<tensor_entry>> out;
  std::uint64_t used = 0;
  for (auto const& t : tensors) {
    if (out.empty() || (used > 0 && used + t.data.size() > max_shard_bytes)) {
      out.emplace_back();
      used = 0;
    }
    out.back().push_back(t);
    used += t.data.size();
  }
  return out;
}

/// A checkpoint opened for reading: every file mapped and validated, the index cross-checked.
class checkpoint {
 public:
  /// `path`: a directory with model.safetensors.index.json (sharded) or model.safetensors; an
  /// index file; or one .safetensors file. Throws errc::io, naming the file and the tensor, when a
  /// file is missing or corrupt, an index entry names a tensor its shard lacks, or a shard holds a
  /// tensor the index does not list (or lists under another shard).
  explicit checkpoint(std::filesystem::path path) {
    namespace fs = std::filesystem;
    fs::path index_path;
    if (fs::is_directory(path)) {
      if (fs::exists(path / safetensors_index_name))
        index_path = path / safetensors_index_name;
      else if (fs::exists(path / single_safetensors_name))
        path /= single_safetensors_name;
      else
        detail::throw_file(path, fp8moe::detail::concat("no ", safetensors_index_name, " or ",
                                                        single_safetensors_name, " in this directory"));
    } else if (path.extension() == ".json") {
      index_path = path;
    }
    if (index_path.empty()) {
      root_ = path.parent_path();
      files_.emplace_back(path);
      for (std::size_t i = 0; i < files_[0].tensors().size(); ++i)
        where_.emplace(files_[0].tensors()[i].name, 0);
      return;
    }
    root_ = index_path.parent_path();
    index_file_ = index_path.string();
    index_ = parse_safetensors_index(read_text_file(index_path), index_file_);
    std::map<std::string, std::size_t> file_no;
    for (auto const& f : index_->shard_files()) {
      file_no.emplace(f, files_.size());
      files_.emplace_back(root_ / f);
    }
    for (auto const& [name, f] : index_->weight_map) {
      std::size_t const k = file_no.at(f);
      if (!files_[k].contains(name))
        detail::throw_tensor(
            files_[k].path().string(), name,
            fp8moe::detail::concat("listed in '", index_file_, "' under this shard, but missing from it"));
      where_.emplace(name, k);
    }
    for (std::size_t k = 0; k < files_.size(); ++k)
      for (auto const& t : files_[k].tensors()) {
        auto const it = index_->weight_map.find(t.name);
        if (it == index_->weight_map.end())
          detail::throw_tensor(
              files_[k].path().string(), t.name,
              fp8moe::detail::concat("unexpected tensor: not listed in '", index_file_, "'"));
        if (root_ / it->second != files_[k].path())
          detail::throw_tensor(files_[k].path().string(), t.name,
                               fp8moe::detail::concat("unexpected tensor: '", index_file_,
                                                      "' lists it under '", it->second, "'"));
      }
  }

  /// The directory the checkpoint's files are in.
  std::filesystem::path const& directory() const { return root_; }
  /// The index, when the checkpoint has one.
  std::optional<safetensors_index> const& index() const { return index_; }
  /// Every file, in the index's (sorted) shard order.
  std::vector<safetensors_file> const& files() const { return files_; }
  /// Number of tensors.
  std::size_t size() const { return where_.size(); }
  /// Every tensor name, sorted.
  std::vector<std::string> names() const {
    std::vector<std::string> v;
    v.reserve(where_.size());
    for (auto const& [n, _] : where_) v.push_back(n);
    return v;
  }
  bool contains(std::string_view name) const { return where_.find(name) != where_.end(); }
  /// The file that holds `name` (throws when none does).
  safetensors_file const& file_of(std::string_view name) const { return files_[locate(name)]; }

  /// The tensor `name`, from whichever file holds it; throws naming the checkpoint when missing.
  tensor_ref tensor(std::string_view name) const { return files_[locate(name)].tensor(name); }
  /// tensor(name) with its dtype and shape checked (throws naming the file and the tensor).
  tensor_ref tensor(std::string_view name, dtype type, std::initializer_list<std::int64_t> shape) const {
    tensor_ref r = tensor(name);
    r.expect(type, shape);
    return r;
  }

  /// Throws unless the checkpoint holds exactly `expected`: the message names the missing tensors
  /// (and the checkpoint) or the unexpected ones (and the file each sits in), the first 8 of each.
  void expect_tensors(std::span<std::string const> expected) const {
    std::set<std::string_view> want(expected.begin(), expected.end());
    std::string missing, unexpected;
    std::size_t n_missing = 0, n_unexpected = 0;
    for (auto const& n : want)
      if (!contains(n) && n_missing++ < 8)
        missing += fp8moe::detail::concat(n_missing > 1 ? ", '" : "'", n, "'");
    for (auto const& [n, k] : where_)
      if (!want.count(n) && n_unexpected++ < 8)
        unexpected += fp8moe::detail::concat(n_unexpected > 1 ? ", '" : "'", n, "' in '",
                                             files_[k].path().string(), "'");
    if (n_missing)
      detail::throw_file(source(), fp8moe::detail::concat(n_missing, " missing tensor(s): ", missing,
                                                          n_missing > 8 ? ", ..." : ""));
    if (n_unexpected)
      detail::throw_file(source(), fp8moe::detail::concat(n_unexpected, " unexpected tensor(s): ", unexpected,
                                                          n_unexpected > 8 ? ", ..." : ""));
  }

 private:
  std::filesystem::path source() const {
    return index_ ? std::filesystem::path(index_file_) : files_[0].path();
  }
  std::size_t locate(std::string_view name) const {
    auto const it = where_.find(name);
    if (it == where_.end())
      detail::throw_tensor(source().string(), name,
                           index_ ? "missing: not in the index" : "missing: no such tensor");
    return it->second;
  }

  std::filesystem::path root_;
  std::string index_file_;
  std::optional<safetensors_index> index_;
  std::vector<safetensors_file> files_;
  std::map<std::string, std::size_t, std::less<>> where_;  // tensor -> files_ position
};

}  // namespace fp8moe::io
