#pragma once
#include <chrono>
#include <optional>
#include <string_view>

namespace sidekey {
// Parses "250ms", "10s", "5m", "24h", "7d", or a bare number of seconds. nullopt when malformed.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);
}  // namespace sidekey
