// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// SVG timeline of a simulated schedule: ranks × time, one box per compute action coloured by kind
// (F orange, B dark green, I light green, W blue; an overlapped F&B is split: forward on top, backward
// below), micro-batch numbers inside, the second chain (DualPipe direction 1) in darker shades.
// write_svg writes a uniquely named temporary file, fsyncs it and renames it (then fsyncs the directory),
// so a crash never leaves a half-written picture; a failed write removes its temporary file.
#pragma once

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/types.h>
#include <unistd.h>
#define FP8MOE_PIPELINE_POSIX_FILES 1
#else
#define FP8MOE_PIPELINE_POSIX_FILES 0
#endif

#include "fp8moe/core/error.hpp"
#include "fp8moe/pipeline/schedule.hpp"
#include "fp8moe/pipeline/simulate.hpp"

namespace fp8moe::pipeline {

struct svg_options {
  double unit_px = 0;  ///< pixels per time unit; 0 = fit the timeline into ~1400 px
  int row_px = 30;     ///< height of one rank's row
  bool show_numbers = true;
  std::string title;  ///< default: "<name>  PP=<ranks>  M=<mb>  makespan .. bubble .."
};

namespace detail {
inline char const* svg_fill(op kind, bool second_chain) {
  switch (kind) {
    case op::f:
      return second_chain ? "#e08a00" : "#ffc266";
    case op::b:
      return second_chain ? "#1b5e20" : "#43a047";
    case op::i:
      return second_chain ? "#558b2f" : "#aed581";
    case op::w:
      return second_chain ? "#1565c0" : "#90caf9";
    default:
      return "#cccccc";
  }
}
inline std::string svg_num(double v) {
  std::ostringstream os;
  os.precision(6);
  os << v;
  return os.str();
}
inline std::string svg_escape(std::string const& s) {
  std::string out;
  for (char c : s) {
    if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else if (c == '&')
      out += "&amp;";
    else if (c == '"')
      out += "&quot;";
    else
      out += c;
  }
  return out;
}
}  // namespace detail

/// The picture as an SVG document.
inline std::string to_svg(timeline const& t, svg_options const& o = {}) {
  auto const& s = t.sched;
  double const span = std::max(t.makespan, 1e-9);
  double const unit = o.unit_px > 0 ? o.unit_px : std::clamp(1400.0 / span, 2.0, 40.0);
  int const left = 70, top = 46, row = o.row_px;
  double const width = left + span * unit + 20;
  int const legend_y = top + s.ranks * row + 34;
  double const height = legend_y + 30;
  auto n = detail::svg_num;
  std::ostringstream os;
  os << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << n(width) << "\" height=\"" << n(height)
     << "\" viewBox=\"0 0 " << n(width) << ' ' << n(height) << "\" font-family=\"sans-serif\">\n";
  os << "<rect x=\"0\" y=\"0\" width=\"" << n(width) << "\" height=\"" << n(height)
     << "\" fill=\"white\"/>\n";
  std::string title = o.title;
  if (title.empty())
    title =
        fp8moe::detail::concat(s.name, "  PP=", s.ranks, "  M=", s.microbatches, "  makespan ", n(t.makespan),
                               "  bubble ", n(t.bubble), "  (F=", n(t.cost.f), " B=", n(t.cost.b),
                               " W=", n(t.cost.w), " F&B=", n(t.cost.overlapped()), ")");
  os << "<text x=\"" << left << "\" y=\"20\" font-size=\"14\" font-weight=\"bold\">"
     << detail::svg_escape(title) << "</text>\n";
  // Time axis: a tick every `step` units.
  double step = 1;  // 1, 2, 5, 10, 20, 50, ...
  for (int k = 0; span / step > 40; ++k) step *= (k % 3 == 1) ? 2.5 : 2;
  for (double x = 0; x <= span + 1e-9; x += step) {
    double const px = left + x * unit;
    os << "<line x1=\"" << n(px) << "\" y1=\"" << top - 4 << "\" x2=\"" << n(px) << "\" y2=\""
       << top + s.ranks * row << "\" stroke=\"#e0e0e0\" stroke-width=\"1\"/>\n";
    os << "<text x=\"" << n(px) << "\" y=\"" << top - 8
       << "\" font-size=\"9\" text-anchor=\"middle\" fill=\"#666\">" << n(x) << "</text>\n";
  }
  for (int r = 0; r < s.ranks; ++r) {
    int const y = top + r * row;
    os << "<text x=\"" << left - 8 << "\" y=\"" << y + row / 2 + 4
       << "\" font-size=\"12\" text-anchor=\"end\">rank " << r << "</text>\n";
    for (auto const& ta : t.ranks[r]) {
      auto const& a = ta.a;
      double const x0 = left + ta.start * unit, w = (ta.end - ta.start) * unit;
      auto box = [&](op kind, int chunk, int mb, double yy, double hh) {
        bool const second = s.locate(chunk).first == 1;
        os << "<rect x=\"" << n(x0) << "\" y=\"" << n(yy) << "\" width=\"" << n(w) << "\" height=\"" << n(hh)
           << "\" fill=\"" << detail::svg_fill(kind, second)
           << "\" stroke=\"#333\" stroke-width=\"0.6\"><title>" << detail::svg_escape(to_string(a)) << " ["
           << n(ta.start) << ", " << n(ta.end) << ")</title></rect>\n";
        if (o.show_numbers && w >= 9) {
          double const fs = std::min(11.0, std::min(hh - 2, w * 0.6));
          os << "<text x=\"" << n(x0 + w / 2) << "\" y=\"" << n(yy + hh / 2 + fs * 0.35) << "\" font-size=\""
             << n(fs) << "\" text-anchor=\"middle\" fill=\"" << (second ? "white" : "black") << "\">" << mb
             << "</text>\n";
        }
      };
      if (a.kind == op::fb) {
        box(op::f, a.chunk, a.mb, y + 2, (row - 4) / 2.0);
        box(op::b, a.chunk2, a.mb2, y + 2 + (row - 4) / 2.0, (row - 4) / 2.0);
      } else {
        box(a.kind, a.chunk, a.mb, y + 2, row - 4);
      }
    }
  }
  struct item {
    op kind;
    char const* label;
  };
  item const items[] = {{op::f, "F forward"},
                        {op::b, "B full backward"},
                        {op::i, "I input-gradient backward"},
                        {op::w, "W weight-gradient backward"}};
  double lx = left;
  for (auto const& it : items) {
    os << "<rect x=\"" << n(lx) << "\" y=\"" << legend_y - 10 << "\" width=\"14\" height=\"12\" fill=\""
       << detail::svg_fill(it.kind, false) << "\" stroke=\"#333\" stroke-width=\"0.6\"/>\n";
    os << "<text x=\"" << n(lx + 18) << "\" y=\"" << legend_y << "\" font-size=\"11\">" << it.label
       << "</text>\n";
    lx += 28 + 7.0 * std::string(it.label).size();
  }
  os << "<text x=\"" << n(lx) << "\" y=\"" << legend_y
     << "\" font-size=\"11\">split box: overlapped F&amp;B pair; dark shades: second direction</text>\n";
  os << "</svg>\n";
  return os.str();
}

namespace detail {
#if FP8MOE_PIPELINE_POSIX_FILES
/// Writes all of `text` to fd and fsyncs it; false on any error (errno set).
inline bool svg_write_all(int fd, std::string const& text) {
  std::size_t done = 0;
  while (done < text.size()) {
    ssize_t const n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return ::fsync(fd) == 0;
}
#endif
}  // namespace detail

/// Writes to_svg(t, o) to `path` atomically: into a temporary file of a name unique to this call
/// (`path`.tmp.<pid>.<n>, created exclusively) in the same directory, fsync'ed, renamed over `path`,
/// then the directory fsync'ed, so readers see the old file or the whole new one, never half of it,
/// even across a crash. On any failure the temporary file is removed. An existing non-regular target
/// (a device such as /dev/null, a FIFO) is written in place, never replaced. Throws fp8moe::error (io).
inline void write_svg(timeline const& t, std::string const& path, svg_options const& o = {}) {
  constexpr char const* where = "fp8moe::pipeline::write_svg: ";
  std::string const text = to_svg(t, o);
  std::error_code ec;
  auto const st = std::filesystem::status(path, ec);
  if (!ec && std::filesystem::exists(st) && !std::filesystem::is_regular_file(st)) {
    require(!std::filesystem::is_directory(st), "fp8moe::pipeline::write_svg", "path", "a file name",
            path + " (a directory)");
    std::ofstream f(path, std::ios::binary);
    f << text;
    f.flush();
    if (!f) throw error(errc::io, std::string(where) + "write failed for " + path);
    return;
  }
#if FP8MOE_PIPELINE_POSIX_FILES
  static std::atomic<unsigned> counter{0};
  std::string tmp;
  int fd = -1;
  for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
    tmp = fp8moe::detail::concat(path, ".tmp.", ::getpid(), '.', counter.fetch_add(1));
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0)
    throw error(errc::io, std::string(where) + "cannot create " + tmp + ": " + std::strerror(errno));
  bool const written = detail::svg_write_all(fd, text);
  int const write_errno = errno;
  bool const closed = ::close(fd) == 0;
  if (!written || !closed) {
    ::unlink(tmp.c_str());
    throw error(errc::io, std::string(where) + "write failed for " + tmp + ": " +
                              std::strerror(written ? errno : write_errno));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int const e = errno;
    ::unlink(tmp.c_str());
    throw error(errc::io,
                std::string(where) + "cannot rename " + tmp + " to " + path + ": " + std::strerror(e));
  }
  // The rename is durable once the directory entry is: fsync the directory (best effort where a
  // file system does not support it, e.g. EINVAL).
  auto const parent = std::filesystem::path(path).parent_path();
  int const dfd = ::open(parent.empty() ? "." : parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    bool const synced = ::fsync(dfd) == 0 || errno == EINVAL;
    ::close(dfd);
    if (!synced) throw error(errc::io, std::string(where) + "cannot fsync the directory of " + path);
  }
#else
  std::string const tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw error(errc::io, std::string(where) + "cannot open " + tmp);
    f << text;
    f.flush();
    if (!f) {
      f.close();
      std::remove(tmp.c_str());
      throw error(errc::io, std::string(where) + "write failed for " + tmp);
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw error(errc::io, std::string(where) + "cannot rename " + tmp + " to " + path);
  }
#endif
}

}  // namespace fp8moe::pipeline
