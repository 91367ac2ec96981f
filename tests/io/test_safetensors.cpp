// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// fp8moe/io/safetensors.hpp and file.hpp: round trips of every dtype, the header's bounds checks
// (each corruption rejected with a message naming the file and the tensor), the dtype/shape
// expectations, and the atomic writer (an interrupted write leaves the old file and no temp file).
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "fp8moe/io/safetensors.hpp"
#include "io_test_support.hpp"

namespace io = fp8moe::io;
namespace ft = fp8moe::test;
using fp8moe::bfloat16_t;
using fp8moe::float8_e4m3_t;
using fp8moe::float8_e5m2_t;

namespace {

/// n random bytes that are not all zero.
std::vector<std::byte> random_bytes(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 g{seed};
  std::vector<std::byte> v(n);
  for (auto& b : v) b = static_cast<std::byte>(g() | 1u);
  return v;
}

template <class T>
std::vector<T> from_bits(std::vector<std::byte> const& b) {
  std::vector<T> v(b.size() / sizeof(T));
  std::memcpy(v.data(), b.data(), b.size());
  return v;
}

}  // namespace

TEST_CASE("safetensors: every dtype round-trips through a file, bytes and shapes intact") {
  ft::scratch_dir dir;
  // odd element counts so that no tensor's size is a multiple of 8 bytes: alignment must come from order
  std::vector<float> f32 = ft::random_normal(3 * 5, 1.0f, 11);
  std::vector<std::byte> f16 = random_bytes(7 * 2, 12);  // F16 has no C++ element type: raw bytes
  std::vector<bfloat16_t> bf16;
  for (float x : ft::random_normal(3 * 3, 2.0f, 13)) bf16.push_back(bfloat16_t(x));
  std::vector<float8_e4m3_t> e4m3;
  for (float x : ft::random_normal(5 * 7, 50.0f, 14)) e4m3.push_back(float8_e4m3_t(x));
  std::vector<float8_e5m2_t> e5m2;
  for (float x : ft::random_normal(9, 1000.0f, 15)) e5m2.push_back(float8_e5m2_t(x));
  std::vector<std::int32_t> i32{-7, 0, 1 << 30, 42, -1};
  std::vector<std::int64_t> i64{std::int64_t{1} << 40, -3, 9};
  float scalar = 2.5f;

  std::vector<io::tensor_entry> t{
      io::make_tensor_entry<float>("w.f32", f32, {3, 5}),
      {"w.f16", io::dtype::f16, {7}, f16},
      io::make_tensor_entry<bfloat16_t>("w.bf16", bf16, {3, 3}),
      io::make_tensor_entry<float8_e4m3_t>("w.e4m3", e4m3, {5, 7}),
      io::make_tensor_entry<float8_e5m2_t>("w.e5m2", e5m2, {9}),
      io::make_tensor_entry<std::int32_t>("ids.i32", i32, {5}),
      io::make_tensor_entry<std::int64_t>("ids.i64", i64, {1, 3}),
      io::make_tensor_entry<float>("scalar", std::span<float const>(&scalar, 1), {}),  // 0-D
      io::make_tensor_entry<float>("empty", std::span<float const>(), {0, 4}),         // no elements
  };
  std::map<std::string, std::string> const meta{{"format", "pt"}, {"note", "round trip"}};
  auto const path = dir / "all.safetensors";
  io::write_safetensors(path, t, meta);

  auto const raw = ft::read_raw(path);
  std::uint64_t n = 0;
  std::memcpy(&n, raw.data(), 8);
  CHECK(n % 8 == 0);  // header padded to 8 bytes, as the reference serializer does
  auto const mem = io::encode_safetensors(t, meta);
  CHECK(std::string(reinterpret_cast<char const*>(mem.data()), mem.size()) == raw);

  io::safetensors_file const f(path);
  CHECK(f.header().metadata == meta);
  CHECK(f.tensors().size() == t.size());
  for (auto const& e : t) {
    INFO("tensor ", e.name);
    auto const r = f.tensor(e.name);
    CHECK(r.type() == e.type);
    CHECK(std::vector<std::int64_t>(r.shape().begin(), r.shape().end()) == e.shape);
    REQUIRE(r.bytes.size() == e.data.size());
    CHECK((e.data.empty() || std::memcmp(r.bytes.data(), e.data.data(), e.data.size()) == 0));
    CHECK(reinterpret_cast<std::uintptr_t>(r.bytes.data()) % io::size_of(e.type) ==
          0);  // typed views are legal
  }
  auto const m = f.tensor("w.f32").matrix<float>(3, 5);
  CHECK(m(2, 4) == f32[14]);
  CHECK(m(1, 0) == f32[5]);
  CHECK(f.tensor("w.bf16").matrix<bfloat16_t>(3, 3)(1, 2).bits() == bf16[5].bits());
  CHECK(f.tensor("w.e4m3").as<float8_e4m3_t>({5, 7})[34].bits() == e4m3[34].bits());
  CHECK(f.tensor("w.e5m2").vector<float8_e5m2_t>(9)[8].bits() == e5m2[8].bits());
  CHECK(f.tensor("ids.i32").vector<std::int32_t>(5)[2] == (1 << 30));
  CHECK(f.tensor("ids.i64").matrix<std::int64_t>(1, 3)(0, 0) == (std::int64_t{1} << 40));
  CHECK(f.tensor("scalar").as<float>({})[0] == 2.5f);
  CHECK(f.tensor("empty").as<float>({0, 4}).empty());
  std::vector<std::byte> copy(14);
  f.tensor("w.f16").copy_to(copy);
  CHECK(copy == f16);
}

TEST_CASE("safetensors: the dtype strings and sizes are the format's") {
  for (auto [t, s, bytes] :
       {std::tuple{io::dtype::f32, "F32", 4}, std::tuple{io::dtype::f16, "F16", 2},
        std::tuple{io::dtype::bf16, "BF16", 2}, std::tuple{io::dtype::f8_e4m3, "F8_E4M3", 1},
        std::tuple{io::dtype::f8_e5m2, "F8_E5M2", 1}, std::tuple{io::dtype::i32, "I32", 4},
        std::tuple{io::dtype::i64, "I64", 8}}) {
    CHECK(io::to_string(t) == s);
    CHECK(io::size_of(t) == static_cast<std::size_t>(bytes));
    CHECK(io::parse_dtype(s) == t);
  }
  CHECK_FALSE(io::parse_dtype("F64"));
  CHECK_FALSE(io::parse_dtype("f32"));
  CHECK(io::dtype_of<float8_e4m3_t> == io::dtype::f8_e4m3);
  CHECK(io::dtype_of<std::int64_t const> == io::dtype::i64);
}

TEST_CASE("safetensors: a corrupt header or data buffer is rejected, naming the file and the tensor") {
  ft::scratch_dir dir;
  auto const path = dir / "bad.safetensors";
  std::string const file = path.string();
  auto const open = [&](std::string const& bytes) {
    ft::write_raw(path, bytes);
    return [&] { io::safetensors_file f(path); };
  };
  auto const hdr = [](std::string_view tensors) { return std::string("{") + std::string(tensors) + "}"; };
  // a file whose header holds one tensor, 'a', described by `entry`, followed by `data` bytes
  auto const one = [&](std::string_view entry, std::size_t data) {
    return open(ft::safetensors_bytes(hdr("\"a\":" + std::string(entry)), data));
  };

  SUBCASE("a good file opens") {
    ft::write_raw(path, ft::safetensors_bytes(hdr(R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                                  R"("b":{"dtype":"I64","shape":[],"data_offsets":[8,16]})"),
                                              16));
    io::safetensors_file f(path);
    CHECK(f.tensors().size() == 2);
    CHECK(f.header().data_size == 16);
  }
  SUBCASE("shorter than the 8-byte length") {
    ft::check_error(open("abc"), {file, "truncated", "3 bytes"});
  }
  SUBCASE("header length beyond the end of the file") {
    std::string b = ft::safetensors_bytes("{}", 0);
    b[0] = 100;
    ft::check_error(open(b), {file, "truncated", "header length says 100 bytes but only 2 follow"});
  }
  SUBCASE("header length over the format's limit") {
    std::string b(16, '\0');
    std::uint64_t const huge = std::uint64_t{1} << 40;
    std::memcpy(b.data(), &huge, 8);
    ft::check_error(open(b), {file, "exceeds the format's limit of 100000000"});
  }
  SUBCASE("the data buffer cut short") {
    std::string b =
        ft::safetensors_bytes(hdr(R"("w":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]})"), 12);
    b.pop_back();
    ft::check_error(open(b), {file, "tensor 'w'", "out of range", "11 bytes"});
  }
  SUBCASE("header not JSON, or not an object") {
    ft::check_error(open(ft::safetensors_bytes("[1, 2]", 0)), {file, "starting with '{'"});
    ft::check_error(open(ft::safetensors_bytes("{\"a\": ", 0)), {file, "not valid JSON"});
    // nlohmann/json alone would stop at the NUL and accept this header
    ft::check_error(open(ft::safetensors_bytes(std::string("{}\0\0{\"x\"", 8), 0)),
                    {file, "a NUL byte at offset 2"});
  }
  SUBCASE("duplicate tensor names") {
    ft::check_error(open(ft::safetensors_bytes(hdr(R"("w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                                   R"("w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]})"),
                                               8)),
                    {file, "duplicate key 'w'"});
  }
  SUBCASE("overlapping offsets") {
    ft::check_error(
        open(ft::safetensors_bytes(hdr(R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]})"),
                                   12)),
        {file, "tensor 'b'", "overlap tensor 'a'"});
  }
  SUBCASE("a hole between tensors") {
    ft::check_error(
        open(ft::safetensors_bytes(hdr(R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                       R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]})"),
                                   12)),
        {file, "tensor 'b'", "bytes [4, 8) of the data buffer belong to no tensor"});
  }
  SUBCASE("trailing bytes after the last tensor") {
    ft::check_error(one(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4]})", 9),
                    {file, "the data buffer has 9 bytes but its tensors cover 4"});
  }
  SUBCASE("offsets out of range or reversed") {
    ft::check_error(one(R"({"dtype":"F32","shape":[4],"data_offsets":[0,16]})", 8),
                    {file, "tensor 'a'", "out of range"});
    ft::check_error(one(R"({"dtype":"F32","shape":[0],"data_offsets":[8,4]})", 8),
                    {file, "tensor 'a'", "begin after end"});
    ft::check_error(one(R"({"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551615]})", 4),
                    {file, "tensor 'a'", "out of range"});
    ft::check_error(one(R"({"dtype":"F32","shape":[1],"data_offsets":[-4,0]})", 4),
                    {file, "tensor 'a'", "data_offsets"});
    ft::check_error(one(R"({"dtype":"F32","shape":[1],"data_offsets":[0]})", 4),
                    {file, "tensor 'a'", "data_offsets"});
  }
  SUBCASE("unknown dtypes") {
    ft::check_error(one(R"({"dtype":"F64","shape":[1],"data_offsets":[0,8]})", 8),
                    {file, "tensor 'a'", "unknown dtype \"F64\"", "F8_E4M3"});
    ft::check_error(one(R"({"dtype":7,"shape":[1],"data_offsets":[0,8]})", 8), {file, "tensor 'a'", "dtype"});
  }
  SUBCASE("byte count does not match shape x dtype") {
    ft::check_error(one(R"({"dtype":"BF16","shape":[3],"data_offsets":[0,8]})", 8),
                    {file, "tensor 'a'", "hold 8 bytes", "needs 3 x 2"});
  }
  SUBCASE("shape entries that are not non-negative integers, or overflow") {
    ft::check_error(one(R"({"dtype":"F32","shape":[-1],"data_offsets":[0,4]})", 4),
                    {file, "tensor 'a'", "shape"});
    ft::check_error(one(R"({"dtype":"F32","shape":[1.0],"data_offsets":[0,4]})", 4),
                    {file, "tensor 'a'", "shape"});
    ft::check_error(one(R"({"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]})", 4),
                    {file, "tensor 'a'", "more than 2^63 elements"});
  }
  SUBCASE("metadata that is not an object of strings; entries that are not objects") {
    ft::check_error(open(ft::safetensors_bytes(hdr(R"("__metadata__":{"n":1})"), 0)),
                    {file, "'__metadata__'"});
    ft::check_error(open(ft::safetensors_bytes(hdr(R"("a":[1,2])"), 0)),
                    {file, "tensor 'a'", "expected an object"});
  }
  SUBCASE("nesting deeper than 64 levels") {
    std::string deep = R"({"__metadata__":)" + std::string(100, '[') + std::string(100, ']') + "}";
    ft::check_error(open(ft::safetensors_bytes(deep, 0)), {file, "nested deeper than 64"});
  }
  SUBCASE("trailing spaces in the header are allowed") {
    std::string b =
        ft::safetensors_bytes(hdr(R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]})") + "      ", 4);
    ft::write_raw(path, b);
    CHECK(io::safetensors_file(path).tensors().size() == 1);
  }
  SUBCASE("a missing file") {
    ft::check_error([&] { io::safetensors_file f(dir / "nope.safetensors"); },
                    {"nope.safetensors", "open failed"});
  }
}

TEST_CASE("safetensors: dtype and shape expectations name the file and the tensor") {
  ft::scratch_dir dir;
  std::vector<float> w(6, 1.5f);
  std::vector<io::tensor_entry> t{io::make_tensor_entry<float>("layer.w", w, {2, 3})};
  auto const path = dir / "x.safetensors";
  io::write_safetensors(path, t);
  io::safetensors_file const f(path);
  std::string const file = path.string();
  auto const r = f.tensor("layer.w");
  CHECK_NOTHROW(r.expect(io::dtype::f32, {2, 3}));
  ft::check_error(
      [&] {
        r.expect(io::dtype::bf16, {2, 3});
      },
      {file, "tensor 'layer.w'", "expected dtype BF16, got F32"});
  ft::check_error(
      [&] {
        r.expect(io::dtype::f32, {3, 2});
      },
      {file, "tensor 'layer.w'", "expected shape [3, 2], got [2, 3]"});
  ft::check_error([&] { (void)r.as<bfloat16_t>(); }, {file, "tensor 'layer.w'", "expected dtype BF16"});
  ft::check_error([&] { (void)r.matrix<float>(2, 2); }, {file, "tensor 'layer.w'", "expected shape [2, 2]"});
  ft::check_error([&] { (void)r.vector<float>(6); }, {file, "tensor 'layer.w'", "expected shape [6]"});
  ft::check_error([&] { (void)f.tensor("layer.b"); }, {file, "tensor 'layer.b'", "no such tensor"});
  std::vector<std::byte> small(5);
  ft::check_error([&] { r.copy_to(small); }, {file, "tensor 'layer.w'", "expected 24"});
}

TEST_CASE("safetensors: the writer validates every entry before creating anything") {
  ft::scratch_dir dir;
  auto const path = dir / "w.safetensors";
  std::string const file = path.string();
  std::vector<float> a(4, 1.0f);
  std::vector<io::tensor_entry> dup{io::make_tensor_entry<float>("x", a, {4}),
                                    io::make_tensor_entry<float>("x", a, {2, 2})};
  ft::check_error([&] { io::write_safetensors(path, dup); }, {file, "tensor 'x'", "given twice"});
  std::vector<io::tensor_entry> size{io::make_tensor_entry<float>("x", a, {5})};
  ft::check_error([&] { io::write_safetensors(path, size); },
                  {file, "tensor 'x'", "needs 20 bytes, the data has 16"});
  std::vector<io::tensor_entry> neg{io::make_tensor_entry<float>("x", a, {-4})};
  ft::check_error([&] { io::write_safetensors(path, neg); }, {file, "tensor 'x'", "negative"});
  std::vector<io::tensor_entry> reserved{io::make_tensor_entry<float>("__metadata__", a, {4})};
  ft::check_error([&] { io::write_safetensors(path, reserved); }, {file, "reserved"});
  CHECK(dir.entries().empty());  // nothing created, not even a temp file

  std::vector<float> m(12, 2.0f);
  auto const strided = fp8moe::make_matrix(static_cast<float const*>(m.data()), 2, 3, 6);
  ft::check_error([&] { (void)io::make_tensor_entry<float>("s", strided); }, {"argument 's'", "contiguous"});
  auto const e =
      io::make_tensor_entry<float>("s", fp8moe::make_matrix(static_cast<float const*>(m.data()), 4, 3));
  CHECK(e.shape == std::vector<std::int64_t>{4, 3});
  CHECK(e.data.size() == 48);
}

TEST_CASE("atomic_file_writer: the target is replaced whole on commit, untouched otherwise") {
  ft::scratch_dir dir;
  auto const path = dir / "model.safetensors";
  ft::write_raw(path, std::string("old contents"));
  {
    io::atomic_file_writer w(path);
    w.write(std::string_view("new, half written"));
    CHECK(std::filesystem::exists(w.temp_path()));
    CHECK(w.temp_path().parent_path() == path.parent_path());  // same directory: rename is atomic
    CHECK(ft::read_raw(path) == "old contents");
    // destroyed without commit(): a crash or an exception while writing
  }
  CHECK(ft::read_raw(path) == "old contents");
  CHECK(dir.entries() == std::vector<std::string>{"model.safetensors"});

  // an exception thrown by the serializer half-way through a checkpoint write
  std::vector<float> a(4, 3.0f);
  std::vector<io::tensor_entry> t{io::make_tensor_entry<float>("x", a, {4})};
  CHECK_THROWS_AS(
      [&] {
        io::atomic_file_writer w(path);
        w.write(std::string_view("partial"));
        throw std::runtime_error("serializer failed");
      }(),
      std::runtime_error);
  CHECK(ft::read_raw(path) == "old contents");
  CHECK(dir.entries().size() == 1);

  io::write_safetensors(path, t);
  CHECK(io::safetensors_file(path).tensor("x").vector<float>(4)[3] == 3.0f);
  CHECK(dir.entries().size() == 1);
  CHECK((std::filesystem::status(path).permissions() & std::filesystem::perms::others_read) !=
        std::filesystem::perms::none);

  io::atomic_file_writer w(dir / "twice");
  w.commit();
  ft::check_error([&] { w.commit(); }, {"twice", "commit after commit"});
  ft::check_error([&] { io::write_safetensors(dir / "no_such_dir" / "x.safetensors", t); },
                  {"no_such_dir", "mkstemp"});
}

TEST_CASE("file: write_file_atomically, read_text_file, mapped_file") {
  ft::scratch_dir dir;
  std::string const text = "{\"a\": 1}\n";
  io::write_file_atomically(dir / "t.json", std::as_bytes(std::span<char const>(text.data(), text.size())));
  CHECK(io::read_text_file(dir / "t.json") == text);
  CHECK(dir.entries() == std::vector<std::string>{"t.json"});
  ft::check_error([&] { (void)io::read_text_file(dir / "t.json", 4); },
                  {"t.json", "file is 9 bytes, more than the 4"});

  io::mapped_file m(dir / "t.json");
  CHECK(m.size() == text.size());
  CHECK(std::memcmp(m.bytes().data(), text.data(), text.size()) == 0);
  io::mapped_file moved = std::move(m);
  CHECK(moved.size() == text.size());
  CHECK(m.size() == 0);  // NOLINT(bugprone-use-after-move): the moved-from object is empty

  ft::write_raw(dir / "empty", std::string());
  CHECK(io::mapped_file(dir / "empty").bytes().empty());
  ft::check_error([&] { io::safetensors_file f(dir / "empty"); }, {"empty", "truncated: 0 bytes"});
  ft::check_error([&] { io::mapped_file d(dir.path()); }, {dir.path().string(), "not a regular file"});
}
