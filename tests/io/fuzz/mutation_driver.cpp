// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The fuzz engine where libFuzzer is not available: a deterministic mutation loop over a seed
// corpus, linked with one LLVMFuzzerTestOneInput. Each seed runs as is, then iteration i mutates
// seed i mod n with a splitmix64 stream seeded by i (bit flips, interesting bytes and numbers,
// dictionary tokens, insertions, deletions, duplications, truncations, splices with another seed,
// the 8-byte length prefix set near the real one). Same arguments as libFuzzer where they overlap:
//   mutation_driver [-max_total_time=S] [-runs=N] [-dict=FILE] CORPUS_DIR...
// Exit 0 when every input ran (a finding aborts inside the target, as under libFuzzer).
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size);

namespace {

using bytes = std::vector<std::uint8_t>;

struct splitmix64 {
  std::uint64_t s;
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  std::size_t below(std::size_t n) { return n ? static_cast<std::size_t>(next() % n) : 0; }
};

/// libFuzzer dictionary lines: `"token"` or `name="token"`, with \\ \" and \xNN escapes; # comments.
std::vector<bytes> read_dict(std::filesystem::path const& p) {
  std::vector<bytes> out;
  std::ifstream f(p);
  for (std::string line; std::getline(f, line);) {
    auto const a = line.find('"');
    auto const b = line.rfind('"');
    if (line.empty() || line[0] == '#' || a == std::string::npos || b <= a) continue;
    bytes t;
    for (std::size_t i = a + 1; i < b; ++i) {
      if (line[i] == '\\' && i + 1 < b) {
        if (line[i + 1] == 'x' && i + 3 < b) {
          t.push_back(static_cast<std::uint8_t>(std::stoi(line.substr(i + 2, 2), nullptr, 16)));
          i += 3;
        } else {
          t.push_back(static_cast<std::uint8_t>(line[++i]));
        }
      } else {
        t.push_back(static_cast<std::uint8_t>(line[i]));
      }
    }
    out.push_back(std::move(t));
  }
  return out;
}

void mutate(bytes& x, splitmix64& r, std::vector<bytes> const& seeds, std::vector<bytes> const& dict) {
  static constexpr std::string_view numbers[] = {"0",
                                                 "1",
                                                 "-1",
                                                 "7",
                                                 "8",
                                                 "4294967296",
                                                 "9223372036854775807",
                                                 "18446744073709551615",
                                                 "18446744073709551616",
                                                 "1e400",
                                                 "-0.0",
                                                 "1.5",
                                                 "null",
                                                 "true",
                                                 "\"\"",
                                                 "[]",
                                                 "{}"};
  static constexpr std::uint8_t interesting[] = {0,   1,   0x7F, 0x80, 0xFF, '{',  '}',
                                                 '[', ']', '"',  ',',  ':',  '\\', ' '};
  switch (r.below(10)) {
    case 0:  // flip a bit
      if (!x.empty()) x[r.below(x.size())] ^= static_cast<std::uint8_t>(1u << r.below(8));
      break;
    case 1:  // an interesting byte
      if (!x.empty()) x[r.below(x.size())] = interesting[r.below(std::size(interesting))];
      break;
    case 2: {  // replace a run of digits (or any position) by an interesting number
      std::size_t p = r.below(x.size() + 1), e = p;
      while (e < x.size() && ((x[e] >= '0' && x[e] <= '9') || x[e] == '-')) ++e;
      auto const n = numbers[r.below(std::size(numbers))];
      x.erase(x.begin() + static_cast<std::ptrdiff_t>(p), x.begin() + static_cast<std::ptrdiff_t>(e));
      x.insert(x.begin() + static_cast<std::ptrdiff_t>(p), n.begin(), n.end());
      break;
    }
    case 3:  // a dictionary token
      if (!dict.empty()) {
        auto const& t = dict[r.below(dict.size())];
        x.insert(x.begin() + static_cast<std::ptrdiff_t>(r.below(x.size() + 1)), t.begin(), t.end());
      }
      break;
    case 4: {  // delete a range
      std::size_t const p = r.below(x.size() + 1), n = std::min(x.size() - p, r.below(16) + 1);
      x.erase(x.begin() + static_cast<std::ptrdiff_t>(p), x.begin() + static_cast<std::ptrdiff_t>(p + n));
      break;
    }
    case 5: {  // duplicate a range
      if (x.empty()) break;
      std::size_t const p = r.below(x.size()), n = std::min(x.size() - p, r.below(32) + 1);
      bytes const chunk(x.begin() + static_cast<std::ptrdiff_t>(p),
                        x.begin() + static_cast<std::ptrdiff_t>(p + n));
      x.insert(x.begin() + static_cast<std::ptrdiff_t>(r.below(x.size() + 1)), chunk.begin(), chunk.end());
      break;
    }
    case 6:  // truncate
      x.resize(r.below(x.size() + 1));
      break;
    case 7: {  // splice: our head, another seed's tail
      auto const& o = seeds[r.below(seeds.size())];
      std::size_t const p = r.below(x.size() + 1), q = r.below(o.size() + 1);
      x.resize(p);
      x.insert(x.end(), o.begin() + static_cast<std::ptrdiff_t>(q), o.end());
      break;
    }
    case 8: {  // the safetensors length prefix: near its value, or the whole rest
      if (x.size() < 8) break;
      std::uint64_t n = 0;
      for (int i = 7; i >= 0; --i) n = (n << 8) | x[static_cast<std::size_t>(i)];
      std::uint64_t const choices[] = {n + 1,        n - 1, n + 8,       x.size() - 8,
                                       x.size() - 7, 0,     100'000'001, ~0ull};
      n = choices[r.below(std::size(choices))];
      for (int i = 0; i < 8; ++i) x[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(n >> (8 * i));
      break;
    }
    default:  // a random byte
      if (!x.empty()) x[r.below(x.size())] = static_cast<std::uint8_t>(r.next());
      break;
  }
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 10;
  std::uint64_t runs = ~0ull;
  std::vector<bytes> seeds, dict;
  for (int i = 1; i < argc; ++i) {
    std::string_view const a = argv[i];
    if (a.rfind("-max_total_time=", 0) == 0) {
      seconds = std::atof(argv[i] + 16);
    } else if (a.rfind("-runs=", 0) == 0) {
      runs = std::strtoull(argv[i] + 6, nullptr, 10);
    } else if (a.rfind("-dict=", 0) == 0) {
      dict = read_dict(argv[i] + 6);
    } else if (a.rfind("-", 0) == 0) {
      continue;  // other libFuzzer flags do not apply here
    } else {
      std::vector<std::filesystem::path> files;
      for (auto const& e : std::filesystem::directory_iterator(a))
        if (e.is_regular_file()) files.push_back(e.path());
      std::sort(files.begin(), files.end());  // a fixed order: the run is deterministic
      for (auto const& p : files) {
        std::ifstream f(p, std::ios::binary);
        seeds.emplace_back(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
      }
    }
  }
  if (seeds.empty()) {
    std::fprintf(stderr, "mutation_driver: no seed files given\n");
    return 2;
  }
  for (auto const& s : seeds) LLVMFuzzerTestOneInput(s.data(), s.size());
  auto const start = std::chrono::steady_clock::now();
  std::uint64_t i = 0;
  for (; i < runs; ++i) {
    if ((i & 255) == 0 &&
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > seconds)
      break;
    splitmix64 r{i};
    bytes x = seeds[i % seeds.size()];
    for (std::size_t m = 0, k = r.below(4) + 1; m < k; ++m) mutate(x, r, seeds, dict);
    LLVMFuzzerTestOneInput(x.data(), x.size());
  }
  std::printf("mutation_driver: %zu seeds, %llu mutated inputs, no finding\n", seeds.size(),
              static_cast<unsigned long long>(i));
  return 0;
}
