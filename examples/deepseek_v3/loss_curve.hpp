// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The loss curve of a training run: one point per step (train loss, held-out loss where evaluated,
// learning rate), written as CSV (step,train_loss,heldout_loss,lr; an empty field where there is no
// held-out value) and as an SVG line chart of both losses, each file atomically (temp + rename).
// The CSV text round-trips (parse_loss_curve), so a resumed run continues the same curve.
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fp8moe/core/error.hpp"
#include "fp8moe/io/file.hpp"

namespace dsv3 {

/// One step of the curve.
struct loss_point {
  std::int64_t step = 0;
  double train = 0;
  double heldout = NAN;  // NaN: not evaluated at this step
  double lr = 0;
  friend bool operator==(loss_point const&, loss_point const&) = default;
};

/// The CSV text: a header and one line per point, values printed with 9 significant digits (a float
/// loss round-trips exactly).
inline std::string loss_curve_csv(std::span<loss_point const> pts) {
  std::string s = "step,train_loss,heldout_loss,lr\n";
  char b[128];
  for (auto const& p : pts) {
    char h[40] = "";
    if (!std::isnan(p.heldout)) std::snprintf(h, sizeof h, "%.9g", p.heldout);
    std::snprintf(b, sizeof b, "%lld,%.9g,%s,%.9g\n", static_cast<long long>(p.step), p.train, h, p.lr);
    s += b;
  }
  return s;
}

/// Parses loss_curve_csv's text; an fp8moe::error naming the line otherwise.
inline std::vector<loss_point> parse_loss_curve(std::string_view csv) {
  std::vector<loss_point> out;
  std::size_t pos = csv.find('\n');
  fp8moe::require(pos != std::string_view::npos && csv.substr(0, pos) == "step,train_loss,heldout_loss,lr",
                  "dsv3::parse_loss_curve", "csv", "the header step,train_loss,heldout_loss,lr");
  std::int64_t line = 1;
  while (++pos < csv.size()) {
    std::size_t const end = std::min(csv.find('\n', pos), csv.size());
    std::string const l(csv.substr(pos, end - pos));
    ++line;
    loss_point p;
    long long step = 0;
    char h[40] = "";
    int n = std::sscanf(l.c_str(), "%lld,%lf,%39[^,],%lf", &step, &p.train, h, &p.lr);
    if (n == 2) n = std::sscanf(l.c_str(), "%lld,%lf,,%lf", &step, &p.train, &p.lr) + 1;  // no held-out value
    fp8moe::require(n == 4 || (n == 3 && h[0] == '\0'), "dsv3::parse_loss_curve", "csv",
                    "lines step,train,heldout,lr", "line " + std::to_string(line) + ": \"" + l + "\"");
    p.step = step;
    if (h[0]) p.heldout = std::strtod(h, nullptr);
    out.push_back(p);
    pos = end;
  }
  return out;
}

/// An SVG line chart (width x height px) of the training loss (blue) and the held-out loss (orange,
/// dots) against the step, with axes, tick labels and a legend.
inline std::string loss_curve_svg(std::span<loss_point const> pts, std::string_view title, int width = 720,
                                  int height = 400) {
  double const L = 60, R = 20, T = 36, B = 44;
  double const W = width - L - R, Hh = height - T - B;
  std::int64_t s0 = pts.empty() ? 0 : pts.front().step, s1 = pts.empty() ? 1 : pts.back().step;
  if (s1 <= s0) s1 = s0 + 1;
  double lo = 1e300, hi = -1e300;
  for (auto const& p : pts)
    for (double v : {p.train, p.heldout})
      if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  if (!(lo <= hi)) lo = 0, hi = 1;
  if (hi - lo < 1e-9) hi = lo + 1;
  double const pad = 0.05 * (hi - lo);
  lo -= pad, hi += pad;
  auto X = [&](std::int64_t s) { return L + W * static_cast<double>(s - s0) / static_cast<double>(s1 - s0); };
  auto Y = [&](double v) { return T + Hh * (hi - v) / (hi - lo); };
  std::string s;
  char b[640];
  std::snprintf(
      b, sizeof b,
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" "
      "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
      width, height);
  s += b;
  std::string t(title);
  for (auto const& [from, to] : {std::pair<char, char const*>{'&', "&amp;"}, {'<', "&lt;"}, {'>', "&gt;"}})
    for (std::size_t i = 0; (i = t.find(from, i)) != std::string::npos; i += std::string_view(to).size())
      t.replace(i, 1, to);
  std::snprintf(b, sizeof b, "<text x=\"%g\" y=\"22\" font-size=\"14\">", L);
  s += b + t + "</text>\n";
  for (int i = 0; i <= 4; ++i) {  // y ticks and grid
    double const v = lo + (hi - lo) * i / 4.0;
    std::snprintf(
        b, sizeof b,
        "<line x1=\"%g\" y1=\"%.1f\" x2=\"%g\" y2=\"%.1f\" stroke=\"#ddd\"/><text x=\"%g\" y=\"%.1f\" "
        "text-anchor=\"end\">%.3g</text>\n",
        L, Y(v), L + W, Y(v), L - 6, Y(v) + 4, v);
    s += b;
  }
  for (int i = 0; i <= 4; ++i) {  // x ticks
    auto const st = s0 + (s1 - s0) * i / 4;
    std::snprintf(b, sizeof b, "<text x=\"%.1f\" y=\"%g\" text-anchor=\"middle\">%lld</text>\n", X(st),
                  T + Hh + 18, static_cast<long long>(st));
    s += b;
  }
  std::snprintf(b, sizeof b,
                "<rect x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" fill=\"none\" stroke=\"#888\"/>\n"
                "<text x=\"%g\" y=\"%d\" text-anchor=\"middle\">step</text>\n"
                "<text x=\"14\" y=\"%g\" transform=\"rotate(-90 14 %g)\" text-anchor=\"middle\">loss "
                "(nats/token)</text>\n",
                L, T, W, Hh, L + W / 2, height - 6, T + Hh / 2, T + Hh / 2);
  s += b;
  std::string train = "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"";
  std::string held = "<polyline fill=\"none\" stroke=\"#ff7f0e\" stroke-width=\"2\" points=\"";
  std::string dots;
  for (auto const& p : pts) {
    if (std::isfinite(p.train)) {
      std::snprintf(b, sizeof b, "%.1f,%.1f ", X(p.step), Y(p.train));
      train += b;
    }
    if (std::isfinite(p.heldout)) {
      std::snprintf(b, sizeof b, "%.1f,%.1f ", X(p.step), Y(p.heldout));
      held += b;
      std::snprintf(b, sizeof b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"#ff7f0e\"/>\n", X(p.step),
                    Y(p.heldout));
      dots += b;
    }
  }
  s += train + "\"/>\n" + held + "\"/>\n" + dots;
  std::snprintf(b, sizeof b,
                "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"#1f77b4\" stroke-width=\"2\"/>"
                "<text x=\"%g\" y=\"%g\">training loss</text>\n"
                "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"#ff7f0e\" stroke-width=\"2\"/>"
                "<text x=\"%g\" y=\"%g\">held-out loss</text>\n</svg>\n",
                L + W - 210, T + 14, L + W - 190, T + 14, L + W - 185, T + 18, L + W - 100, T + 14,
                L + W - 80, T + 14, L + W - 75, T + 18);
  s += b;
  return s;
}

/// Writes `dir`/loss.csv and `dir`/loss.svg, each atomically.
inline void write_loss_curve(std::filesystem::path const& dir, std::span<loss_point const> pts,
                             std::string_view title) {
  auto put = [](std::filesystem::path const& p, std::string const& text) {
    fp8moe::io::write_file_atomically(p, std::as_bytes(std::span<char const>(text.data(), text.size())));
  };
  put(dir / "loss.csv", loss_curve_csv(pts));
  put(dir / "loss.svg", loss_curve_svg(pts, title));
}

}  // namespace dsv3
