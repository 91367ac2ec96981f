// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// fp8moe/io/checkpoint.hpp: sharded checkpoints through model.safetensors.index.json (an FP8
// weight whose weight_scale_inv sits in another shard), the index parser, and every inconsistency
// between index and shards, missing and unexpected tensors, each named with its file.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "fp8moe/io/checkpoint.hpp"
#include "io_test_support.hpp"

namespace io = fp8moe::io;
namespace ft = fp8moe::test;
using fp8moe::bfloat16_t;
using fp8moe::float8_e4m3_t;

namespace {

/// A small FP8 layer split over two shards: the weight (E4M3, 200 x 256: a partial 128-row
/// block) in shard 1, its weight_scale_inv [2, 2] and a BF16 norm in shard 2.
struct fp8_layer {
  std::vector<float8_e4m3_t> w;
  std::vector<float> scale_inv{0.5f, 0.25f, 2.0f, 4.0f};
  std::vector<bfloat16_t> norm;
  fp8_layer() {
    for (float x : ft::random_normal(200 * 256, 100.0f, 21)) w.push_back(float8_e4m3_t(x));
    for (float x : ft::random_normal(256, 1.0f, 22)) norm.push_back(bfloat16_t(x));
  }
  std::vector<std::vector<io::tensor_entry>> shards() const {
    return {{io::make_tensor_entry<float8_e4m3_t>("model.layers.0.mlp.down_proj.weight", w, {200, 256})},
            {io::make_tensor_entry<float>("model.layers.0.mlp.down_proj.weight_scale_inv", scale_inv, {2, 2}),
             io::make_tensor_entry<bfloat16_t>("model.layers.0.input_layernorm.weight", norm, {256})}};
  }
};

std::vector<std::string> const layer_names{"model.layers.0.input_layernorm.weight",
                                           "model.layers.0.mlp.down_proj.weight",
                                           "model.layers.0.mlp.down_proj.weight_scale_inv"};

}  // namespace

TEST_CASE("checkpoint: a sharded checkpoint loads, the scale from another shard than its weight") {
  ft::scratch_dir dir;
  fp8_layer const layer;
  auto const shards = layer.shards();
  auto const idx = io::write_sharded_safetensors(dir.path(), shards, {{"format", "pt"}});
  CHECK(idx.total_size == 200 * 256 + 4 * 4 + 256 * 2);
  auto entries = dir.entries();
  std::sort(entries.begin(), entries.end());
  CHECK(entries == std::vector<std::string>{"model-00001-of-00002.safetensors",
                                            "model-00002-of-00002.safetensors",
                                            "model.safetensors.index.json"});

  io::checkpoint const ck(dir.path());
  CHECK(ck.size() == 3);
  CHECK(ck.names() == layer_names);
  CHECK(ck.index().has_value());
  CHECK(ck.index()->weight_map == idx.weight_map);
  auto const w = ck.tensor("model.layers.0.mlp.down_proj.weight", io::dtype::f8_e4m3, {200, 256});
  auto const s = ck.tensor("model.layers.0.mlp.down_proj.weight_scale_inv", io::dtype::f32, {2, 2});
  CHECK(ck.file_of("model.layers.0.mlp.down_proj.weight").path().filename() ==
        "model-00001-of-00002.safetensors");
  CHECK(ck.file_of("model.layers.0.mlp.down_proj.weight_scale_inv").path().filename() ==
        "model-00002-of-00002.safetensors");
  // dequantize one element of the partial last row block: W[199, 130] * scale_inv[1, 1]
  auto const wm = w.matrix<float8_e4m3_t>(200, 256);
  auto const sm = s.matrix<float>(2, 2);
  CHECK(wm(199, 130).to_float() * sm(199 / 128, 130 / 128) == layer.w[199 * 256 + 130].to_float() * 4.0f);
  CHECK(ck.tensor("model.layers.0.input_layernorm.weight").vector<bfloat16_t>(256)[255].bits() ==
        layer.norm[255].bits());
  CHECK_NOTHROW(ck.expect_tensors(layer_names));

  // the index file alone opens the same checkpoint
  io::checkpoint const by_index(dir / "model.safetensors.index.json");
  CHECK(by_index.size() == 3);
}

TEST_CASE("checkpoint: missing and unexpected tensors are named with their file") {
  ft::scratch_dir dir;
  fp8_layer const layer;
  io::write_sharded_safetensors(dir.path(), layer.shards());
  io::checkpoint const ck(dir.path());
  std::string const index = (dir / "model.safetensors.index.json").string();
  ft::check_error([&] { (void)ck.tensor("model.layers.0.mlp.up_proj.weight"); },
                  {index, "tensor 'model.layers.0.mlp.up_proj.weight'", "missing"});
  ft::check_error(
      [&] {
        (void)ck.tensor("model.layers.0.mlp.down_proj.weight", io::dtype::bf16, {200, 256});
      },
      {"model-00001-of-00002.safetensors", "tensor 'model.layers.0.mlp.down_proj.weight'",
       "expected dtype BF16, got F8_E4M3"});
  ft::check_error(
      [&] {
        (void)ck.tensor("model.layers.0.mlp.down_proj.weight_scale_inv", io::dtype::f32, {1, 2});
      },
      {"model-00002-of-00002.safetensors", "weight_scale_inv'", "expected shape [1, 2], got [2, 2]"});

  std::vector<std::string> more = layer_names;
  more.push_back("lm_head.weight");
  ft::check_error([&] { ck.expect_tensors(more); }, {index, "1 missing tensor(s): 'lm_head.weight'"});
  std::vector<std::string> fewer{layer_names[1], layer_names[2]};
  ft::check_error([&] { ck.expect_tensors(fewer); },
                  {"1 unexpected tensor(s): 'model.layers.0.input_layernorm.weight' in '",
                   "model-00002-of-00002.safetensors"});
}

TEST_CASE("checkpoint: an index that disagrees with its shards is rejected, naming shard and tensor") {
  ft::scratch_dir dir;
  fp8_layer const layer;
  auto const idx = io::write_sharded_safetensors(dir.path(), layer.shards());
  auto const index_path = dir / "model.safetensors.index.json";
  auto const shard1 = (dir / "model-00001-of-00002.safetensors").string();
  auto const shard2 = (dir / "model-00002-of-00002.safetensors").string();
  auto const with = [&](io::safetensors_index const& changed) {
    io::write_safetensors_index(index_path, changed);
    return [&] { io::checkpoint ck(dir.path()); };
  };

  SUBCASE("the index lists a tensor its shard lacks") {
    auto bad = idx;
    bad.weight_map["model.layers.0.mlp.gate_proj.weight"] = "model-00001-of-00002.safetensors";
    ft::check_error(with(bad), {shard1, "tensor 'model.layers.0.mlp.gate_proj.weight'", "missing from it"});
  }
  SUBCASE("a shard holds a tensor the index does not list") {
    auto bad = idx;
    bad.weight_map.erase("model.layers.0.input_layernorm.weight");
    ft::check_error(with(bad), {shard2, "tensor 'model.layers.0.input_layernorm.weight'", "not listed"});
  }
  SUBCASE("the index puts a tensor in the wrong shard") {
    auto bad = idx;
    bad.weight_map["model.layers.0.input_layernorm.weight"] = "model-00001-of-00002.safetensors";
    ft::check_error(with(bad), {shard1, "tensor 'model.layers.0.input_layernorm.weight'", "missing from it"});
  }
  SUBCASE("a shard file is missing") {
    std::filesystem::remove(shard2);
    ft::check_error([&] { io::checkpoint ck(dir.path()); }, {shard2, "open failed"});
  }
  SUBCASE("a shard is corrupt") {
    auto bytes = ft::read_raw(shard2);
    bytes.resize(bytes.size() - 3);
    ft::write_raw(shard2, bytes);
    ft::check_error([&] { io::checkpoint ck(dir.path()); }, {shard2, "out of range"});
  }
  SUBCASE("the same tensor in two shards") {
    std::vector<std::vector<io::tensor_entry>> s = layer.shards();
    s[1].push_back(s[0][0]);
    ft::check_error([&] { io::write_sharded_safetensors(dir.path(), s); }, {"also given for shard"});
    io::write_safetensors(shard2, s[1]);  // planted by hand
    ft::check_error([&] { io::checkpoint ck(dir.path()); },
                    {shard2, "tensor 'model.layers.0.mlp.down_proj.weight'", "lists it under"});
  }
  SUBCASE("a directory without checkpoint files") {
    ft::scratch_dir empty;
    ft::check_error([&] { io::checkpoint ck(empty.path()); },
                    {empty.path().string(), "no model.safetensors"});
  }
}

TEST_CASE("checkpoint: the index parser checks its JSON and its file names") {
  std::string const f = "model.safetensors.index.json";
  auto const idx = io::parse_safetensors_index(
      R"({"metadata": {"total_size": 688574839360, "format": "pt"}, "weight_map": {"a": "model-00001-of-000163.safetensors"}})",
      f);
  CHECK(idx.total_size == 688574839360ull);
  CHECK(idx.weight_map.at("a") == "model-00001-of-000163.safetensors");
  CHECK(idx.metadata.at("format") == "\"pt\"");
  CHECK(io::parse_safetensors_index(io::encode_safetensors_index(idx), f).weight_map == idx.weight_map);
  CHECK(io::parse_safetensors_index(io::encode_safetensors_index(idx), f).metadata == idx.metadata);
  CHECK(io::parse_safetensors_index(R"({"weight_map": {}})", f).weight_map.empty());

  ft::check_error([&] { io::parse_safetensors_index("{", f); }, {f, "not valid JSON"});
  ft::check_error([&] { io::parse_safetensors_index("[]", f); }, {f, "expected a JSON object"});
  ft::check_error([&] { io::parse_safetensors_index(R"({"metadata": {}})", f); }, {f, "'weight_map'"});
  ft::check_error([&] { io::parse_safetensors_index(R"({"weight_map": {"a": 3}})", f); },
                  {f, "tensor 'a'", "shard file name"});
  ft::check_error([&] { io::parse_safetensors_index(R"({"weight_map": {"a": "../../etc/passwd"}})", f); },
                  {f, "tensor 'a'", "a file in the index's directory"});
  ft::check_error([&] { io::parse_safetensors_index(R"({"weight_map": {"a": ""}})", f); }, {f, "tensor 'a'"});
  ft::check_error([&] { io::parse_safetensors_index(R"({"weight_map": {"a": "x", "a": "y"}})", f); },
                  {f, "duplicate key 'a'"});
  ft::check_error(
      [&] { io::parse_safetensors_index(R"({"metadata": {"total_size": -1}, "weight_map": {}})", f); },
      {f, "total_size"});
  ft::check_error([&] { io::parse_safetensors_index(R"({"metadata": [], "weight_map": {}})", f); },
                  {f, "'metadata'"});
}

TEST_CASE("checkpoint: single-file checkpoints, shard names and splitting") {
  ft::scratch_dir dir;
  std::vector<float> a(10, 1.0f), b(3, 2.0f);
  std::vector<io::tensor_entry> t{io::make_tensor_entry<float>("a", a, {10}),
                                  io::make_tensor_entry<float>("b", b, {3})};
  io::write_safetensors(dir / "model.safetensors", t);
  io::checkpoint const by_dir(dir.path());
  CHECK(by_dir.size() == 2);
  CHECK_FALSE(by_dir.index().has_value());
  CHECK(by_dir.tensor("b").vector<float>(3)[2] == 2.0f);
  ft::check_error([&] { (void)by_dir.tensor("c"); }, {"model.safetensors", "tensor 'c'", "missing"});
  io::checkpoint const by_file(dir / "model.safetensors");
  CHECK(by_file.names() == std::vector<std::string>{"a", "b"});

  CHECK(io::shard_file_name(0, 163) == "model-00001-of-00163.safetensors");
  CHECK(io::shard_file_name(162, 163) == "model-00163-of-00163.safetensors");
  // a: 40 bytes, b and c: 12 each; at most 40 per shard -> [a], [b, c]
  std::vector<io::tensor_entry> three{t[0], t[1], t[1]};
  three[2].name = "c";
  auto const g3 = io::split_into_shards(three, 40);
  REQUIRE(g3.size() == 2);
  CHECK(g3[0].size() == 1);
  CHECK(g3[1].size() == 2);
  CHECK(g3[1][1].name == "c");
  CHECK(io::split_into_shards(three, 8).size() == 3);  // each larger than the limit: one per shard
}
