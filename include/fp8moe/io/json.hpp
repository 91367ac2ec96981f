// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// JSON for fp8moe::io, through nlohmann/json: a strict parse (duplicate keys and nesting deeper
// than 64 refused, every nlohmann exception turned into an fp8moe::error naming the file) and a
// dump that refuses invalid UTF-8 with an fp8moe::error. Used by the safetensors, index and
// config.json readers and writers.
#pragma once

#include <cstddef>
#include <exception>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "fp8moe/core/error.hpp"

namespace fp8moe::io::detail {

/// Nesting depth allowed in the files fp8moe::io reads (they need 3).
inline constexpr std::size_t max_json_depth = 64;

/// Parses `text` as JSON. Throws errc::io "fp8moe::io: '<file>': <what>: ..." on a syntax error, a
/// NUL byte anywhere, a duplicate key in any object, or nesting deeper than max_json_depth.
inline nlohmann::json parse_json(std::string_view text, std::string_view file, std::string_view what) {
  using json = nlohmann::json;
  std::vector<std::set<std::string>> keys;  // the keys seen in each open object, innermost last
  std::size_t depth = 0;
  std::string duplicate;
  auto const cb = [&](int, json::parse_event_t ev, json& parsed) -> bool {
    switch (ev) {
      case json::parse_event_t::object_start:
        keys.emplace_back();
        [[fallthrough]];
      case json::parse_event_t::array_start:
        if (++depth > max_json_depth)
          throw error(errc::io,
                      fp8moe::detail::concat("fp8moe::io: '", file, "': ", what, ": JSON nested deeper than ",
                                             max_json_depth, " levels"));
        break;
      case json::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        [[fallthrough]];
      case json::parse_event_t::array_end:
        if (depth > 0) --depth;
        break;
      case json::parse_event_t::key:
        if (!keys.empty() && !keys.back().insert(parsed.get<std::string>()).second)
          throw error(errc::io, fp8moe::detail::concat("fp8moe::io: '", file, "': ", what,
                                                       ": duplicate key '", parsed.get<std::string>(), "'"));
        break;
      case json::parse_event_t::value:
        break;
    }
    return true;
  };
  // nlohmann stops at a NUL byte as at the end of input (what follows would go unread); JSON text
  // never holds one, so refuse it
  if (auto const nul = text.find('\0'); nul != std::string_view::npos)
    throw error(errc::io, fp8moe::detail::concat("fp8moe::io: '", file, "': ", what,
                                                 ": not valid JSON (a NUL byte at offset ", nul, ")"));
  try {
    return json::parse(text.begin(), text.end(), cb);
  } catch (json::exception const& e) {
    throw error(errc::io, fp8moe::detail::concat("fp8moe::io: '", file, "': ", what, ": not valid JSON (",
                                                 e.what(), ")"));
  }
}

/// j.dump() (compact, or indented by `indent` spaces); invalid UTF-8 in a string throws errc::io.
inline std::string dump_json(nlohmann::json const& j, std::string_view file, int indent = -1) {
  try {
    return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::strict);
  } catch (nlohmann::json::exception const& e) {
    throw error(errc::io,
                fp8moe::detail::concat("fp8moe::io: '", file, "': cannot write JSON (", e.what(), ")"));
  }
}

/// A JSON value as text for a message, cut to 40 characters.
inline std::string short_json(nlohmann::json const& j) {
  std::string s = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return s.size() > 40 ? s.substr(0, 37) + "..." : s;
}

}  // namespace fp8moe::io::detail
