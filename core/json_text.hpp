#pragma once
// JSON text for the wire, the logs and the terminal. nlohmann's default throws on a string that
// is not UTF-8, and strings here often carry bytes an agent or an upstream chose (a header value
// in a refusal message, a path): those bytes become U+FFFD instead, as in the audit log.
#include <nlohmann/json.hpp>

#include <string>

namespace sidekey::json {

inline std::string text(const nlohmann::json& j, int indent = -1) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace sidekey::json
