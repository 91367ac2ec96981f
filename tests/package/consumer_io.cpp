// SPDX-License-Identifier: Apache-2.0
// Consumer of the optional fp8moe::io component: writes a safetensors file with a BF16 and an F32
// tensor, reads it back through io::checkpoint, and checks every element.
#include <fp8moe/io/io.hpp>

#include <cstdio>
#include <filesystem>
#include <vector>

namespace io = fp8moe::io;

int main(int argc, char** argv) {
  auto const path = std::filesystem::path(argc > 1 ? argv[1] : ".") / "consumer_io.safetensors";
  std::vector<fp8moe::bfloat16_t> w{fp8moe::bfloat16_t(1.5f), fp8moe::bfloat16_t(-2.0f),
                                    fp8moe::bfloat16_t(0.25f), fp8moe::bfloat16_t(8.0f)};
  std::vector<float> s{0.5f, 3.0f};
  std::vector<io::tensor_entry> t{io::make_tensor_entry<fp8moe::bfloat16_t>("w", w, {2, 2}),
                                  io::make_tensor_entry<float>("w_scale_inv", s, {2})};
  io::write_safetensors(path, t);
  io::checkpoint ck(path);
  auto const wr = ck.tensor("w").matrix<fp8moe::bfloat16_t>(2, 2);
  auto const sr = ck.tensor("w_scale_inv").vector<float>(2);
  bool const ok =
      ck.size() == 2 && wr(1, 0).to_float() == 0.25f && wr(1, 1).to_float() == 8.0f && sr[1] == 3.0f;
  std::printf("fp8moe::io consumer: %s\n", ok ? "OK" : "FAILED");
  return ok ? 0 : 1;
}
