// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// fp8moe/io/npy.hpp: the v1.0 header byte for byte (as NumPy's format spec defines it), round
// trips of every supported element type, and the reader's rejections.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "fp8moe/io/npy.hpp"
#include "io_test_support.hpp"

namespace io = fp8moe::io;
namespace ft = fp8moe::test;

TEST_CASE("npy: a float32 [2, 3] file is NumPy format 1.0, C order, data 64-byte aligned") {
  ft::scratch_dir dir;
  std::vector<float> v = ft::random_normal(6, 1.0f, 31);
  io::write_npy<float>(dir / "x.npy", v, {2, 3});
  std::string const b = ft::read_raw(dir / "x.npy");
  REQUIRE(b.size() > 10);
  CHECK(b.substr(0, 6) == "\x93NUMPY");
  CHECK(b[6] == 1);
  CHECK(b[7] == 0);
  std::size_t const len = static_cast<unsigned char>(b[8]) | (static_cast<unsigned char>(b[9]) << 8);
  CHECK((10 + len) % 64 == 0);
  std::string const dict = b.substr(10, len);
  CHECK(dict.rfind("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 0) == 0);
  CHECK(dict.back() == '\n');
  REQUIRE(b.size() == 10 + len + 6 * 4);
  CHECK(std::memcmp(b.data() + 10 + len, v.data(), 24) == 0);

  auto const r = io::read_npy<float>(dir / "x.npy");
  CHECK(r.shape == std::vector<std::int64_t>{2, 3});
  CHECK(r.data == v);
}

TEST_CASE("npy: 1-D, 0-D and empty shapes; float64, int32, int64; strided matrix views") {
  ft::scratch_dir dir;
  std::vector<double> d{1.0 / 3.0, -2.0, 1e300};
  io::write_npy<double>(dir / "d.npy", d, {3});
  CHECK(ft::read_raw(dir / "d.npy").find("'shape': (3,), }") != std::string::npos);  // a 1-tuple has a comma
  CHECK(io::read_npy<double>(dir / "d.npy").data == d);

  std::vector<std::int32_t> i32{7};
  io::write_npy<std::int32_t>(dir / "s.npy", i32, {});
  CHECK(ft::read_raw(dir / "s.npy").find("'descr': '<i4', 'fortran_order': False, 'shape': (), }") !=
        std::string::npos);
  auto const s = io::read_npy<std::int32_t>(dir / "s.npy");
  CHECK(s.shape.empty());
  CHECK(s.data == i32);

  std::vector<std::int64_t> i64{std::int64_t{1} << 50, -1, 3, 4};
  io::write_npy<std::int64_t>(dir / "l.npy", i64, {2, 1, 2});
  auto const l = io::read_npy<std::int64_t>(dir / "l.npy");
  CHECK(l.shape == std::vector<std::int64_t>{2, 1, 2});
  CHECK(l.data == i64);

  io::write_npy<float>(dir / "e.npy", std::span<float const>(), {0, 5});
  CHECK(io::read_npy<float>(dir / "e.npy").shape == std::vector<std::int64_t>{0, 5});

  std::vector<float> m(4 * 8);
  for (std::size_t i = 0; i < m.size(); ++i) m[i] = static_cast<float>(i) + 0.5f;
  io::write_npy<float>(dir / "m.npy",
                       fp8moe::make_matrix(static_cast<float const*>(m.data()), 4, 3, 8));  // [4, 3] of 8
  auto const mr = io::read_npy<float>(dir / "m.npy");
  CHECK(mr.shape == std::vector<std::int64_t>{4, 3});
  CHECK(mr.data[0] == 0.5f);
  CHECK(mr.data[3] == 8.5f);    // row 1 starts at element 8 of the source
  CHECK(mr.data[11] == 26.5f);  // (3, 2) -> 3 * 8 + 2
}

TEST_CASE("npy: bad arguments and bad files are rejected") {
  ft::scratch_dir dir;
  std::vector<float> v(6, 1.0f);
  ft::check_error([&] { io::write_npy<float>(dir / "x.npy", v, {4, 2}); }, {"argument 'data'", "8 elements"});
  ft::check_error([&] { io::write_npy<float>(dir / "x.npy", v, {-6}); },
                  {"argument 'shape'", "non-negative"});
  CHECK(dir.entries().empty());

  io::write_npy<float>(dir / "x.npy", v, {6});
  std::string const file = (dir / "x.npy").string();
  ft::check_error([&] { (void)io::read_npy<double>(dir / "x.npy"); }, {file, "dtype '<f4': expected '<f8'"});
  std::string b = ft::read_raw(dir / "x.npy");
  auto const plant = [&](std::string const& bytes) {
    ft::write_raw(dir / "y.npy", bytes);
    return [&] { (void)io::read_npy<float>(dir / "y.npy"); };
  };
  std::string const yf = (dir / "y.npy").string();
  ft::check_error(plant(b.substr(0, b.size() - 1)), {yf, "data has 23 bytes, the shape needs 24"});
  ft::check_error(plant("NUMPY" + b), {yf, "magic"});
  ft::check_error(plant(b.substr(0, 30)), {yf, "truncated header"});
  std::string fortran = b;
  fortran.replace(fortran.find("False"), 5, "True ");
  ft::check_error(plant(fortran), {yf, "fortran_order True"});
  std::string v9 = b;
  v9[6] = 9;
  ft::check_error(plant(v9), {yf, "unsupported format version 9"});
  std::string garbled = b;
  garbled.replace(garbled.find("'shape'"), 7, "'shapf'");
  ft::check_error(plant(garbled), {yf, "unexpected key 'shapf'"});
  std::string be = b;
  be.replace(be.find("<f4"), 3, ">f4");
  ft::check_error(plant(be), {yf, "dtype '>f4'"});
}
