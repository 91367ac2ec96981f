// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// pipeline_timeline: generates a schedule (gpipe, 1f1b, zb-h1, zb-h2, dualpipe, dualpipev) for given PP
// and M, validates it, simulates it with the given costs, writes the SVG timeline and prints the
// per-rank action lists as JSON (stdout, or --json FILE) plus a one-line summary on stderr.
//   pipeline_timeline --schedule dualpipe --pp 8 --mb 20 --f 1 --b 2 --w 1 --fb 3 --svg dualpipe.svg
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>

#include "fp8moe/pipeline/pipeline.hpp"

namespace fp = fp8moe::pipeline;

int main(int argc, char** argv) {
  std::string name = "dualpipe", svg = "timeline.svg", json;
  fp::schedule_config cfg{.ranks = 8, .microbatches = 20};
  fp::costs c{.f = 1, .b = 2, .w = 1, .fb = 3};
  bool with_comm = true;
  for (int i = 1; i < argc; ++i) {
    std::string const a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "missing value after %s\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--schedule")
      name = next();
    else if (a == "--pp")
      cfg.ranks = std::stoi(next());
    else if (a == "--mb")
      cfg.microbatches = std::stoi(next());
    else if (a == "--f")
      c.f = std::stod(next());
    else if (a == "--b")
      c.b = std::stod(next());
    else if (a == "--w")
      c.w = std::stod(next());
    else if (a == "--fb")
      c.fb = std::stod(next());
    else if (a == "--comm")
      c.comm = std::stod(next());
    else if (a == "--svg")
      svg = next();
    else if (a == "--json")
      json = next();
    else if (a == "--compute-only")
      with_comm = false;
    else {
      std::fprintf(stderr,
                   "usage: %s [--schedule gpipe|1f1b|zb-h1|zb-h2|dualpipe|dualpipev] [--pp N] [--mb M]\n"
                   "          [--f F] [--b B] [--w W] [--fb FB] [--comm LAT] [--svg FILE] [--json FILE]"
                   " [--compute-only]\n",
                   argv[0]);
      return 2;
    }
  }
  try {
    cfg.communication = with_comm;
    auto const s = fp::make_schedule(name, cfg);
    fp::validate(s);
    auto const t = fp::simulate(s, c);
    fp::write_svg(t, svg);
    auto const text = fp::to_json(s);
    if (json.empty()) {
      std::cout << text;
    } else {
      std::ofstream(json) << text;
    }
    std::fprintf(stderr,
                 "%s PP=%d M=%d: makespan %.4g, bubble %.4g (per-rank span %.4g), peak activations %d, "
                 "parameter copies %d -> %s\n",
                 s.name.c_str(), s.ranks, s.microbatches, t.makespan, t.bubble, t.span_bubble,
                 t.max_peak_activations, t.parameter_copies, svg.c_str());
  } catch (fp8moe::error const& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
