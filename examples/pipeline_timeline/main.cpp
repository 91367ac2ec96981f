// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// pipeline_timeline: generates a schedule (gpipe, 1f1b, zb-h1, zb-h2, dualpipe, dualpipev) for given PP
// and M, validates it, simulates it with the given costs, writes the SVG timeline and prints the
// per-rank action lists as JSON (stdout, or --json FILE) plus a one-line summary on stderr.
// Exit status: 0 written, 1 a library or I/O error (message on stderr), 2 a bad command line.
//   pipeline_timeline --schedule dualpipe --pp 8 --mb 20 --f 1 --b 2 --w 1 --fb 3 --svg dualpipe.svg
#include <charconv>
#include <cmath>
#include <cstdio>
#include <exception>
#include <fstream>
#include <iostream>
#include <string>
#include <system_error>

#include "fp8moe/pipeline/pipeline.hpp"

namespace fp = fp8moe::pipeline;

namespace {

/// Thrown for a bad command line: printed with the usage, exit status 2.
struct usage_error {
  std::string message;
};

/// The whole of `text` as an int / a finite double, or usage_error naming the option.
int parse_int(std::string const& option, std::string const& text) {
  int v = 0;
  auto const [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || end != text.data() + text.size() || text.empty())
    throw usage_error{option + ": expected an integer, got '" + text + "'"};
  return v;
}
double parse_double(std::string const& option, std::string const& text) {
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (std::exception const&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || !std::isfinite(v))
    throw usage_error{option + ": expected a finite number, got '" + text + "'"};
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  std::string name = "dualpipe", svg = "timeline.svg", json;
  fp::schedule_config cfg{.ranks = 8, .microbatches = 20};
  fp::costs c{.f = 1, .b = 2, .w = 1, .fb = 3};
  bool with_comm = true;
  try {
    for (int i = 1; i < argc; ++i) {
      std::string const a = argv[i];
      auto next = [&]() -> std::string {
        if (i + 1 >= argc) throw usage_error{"missing value after " + a};
        return argv[++i];
      };
      if (a == "--schedule")
        name = next();
      else if (a == "--pp")
        cfg.ranks = parse_int(a, next());
      else if (a == "--mb")
        cfg.microbatches = parse_int(a, next());
      else if (a == "--f")
        c.f = parse_double(a, next());
      else if (a == "--b")
        c.b = parse_double(a, next());
      else if (a == "--w")
        c.w = parse_double(a, next());
      else if (a == "--fb")
        c.fb = parse_double(a, next());
      else if (a == "--comm")
        c.comm = parse_double(a, next());
      else if (a == "--svg")
        svg = next();
      else if (a == "--json")
        json = next();
      else if (a == "--compute-only")
        with_comm = false;
      else
        throw usage_error{"unknown option '" + a + "'"};
    }
  } catch (usage_error const& e) {
    std::fprintf(stderr,
                 "error: %s\n"
                 "usage: %s [--schedule gpipe|1f1b|zb-h1|zb-h2|dualpipe|dualpipev] [--pp N] [--mb M]\n"
                 "          [--f F] [--b B] [--w W] [--fb FB] [--comm LAT] [--svg FILE] [--json FILE]"
                 " [--compute-only]\n",
                 e.message.c_str(), argv[0]);
    return 2;
  }
  try {
    cfg.communication = with_comm;
    auto const s = fp::make_schedule(name, cfg);
    fp::validate(s);
    auto const t = fp::simulate(s, c);
    auto const text = fp::to_json(s);
    // Checked here, beside what is printed: the timeline covers every compute action of the schedule.
    std::size_t computes = 0, boxes = 0;
    for (int r = 0; r < s.ranks; ++r) computes += fp::compute_actions(s, r).size();
    for (auto const& rank : t.ranks) boxes += rank.size();
    if (boxes != computes || !(t.makespan > 0) || !(t.bubble >= 0) || t.bubble > t.makespan) {
      std::fprintf(stderr, "error: inconsistent timeline (%zu boxes for %zu compute actions)\n", boxes,
                   computes);
      return 1;
    }
    fp::write_svg(t, svg);
    if (json.empty()) {
      std::cout << text;
      std::cout.flush();
      if (!std::cout) throw fp8moe::error(fp8moe::errc::io, "writing the JSON to stdout failed");
    } else {
      std::ofstream f(json, std::ios::binary | std::ios::trunc);
      f << text;
      f.close();
      if (!f) throw fp8moe::error(fp8moe::errc::io, "cannot write the JSON to " + json);
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
