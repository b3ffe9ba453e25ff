#include "core/duration.hpp"

#include <charconv>

namespace sidekey {

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
  if (text.empty()) return std::nullopt;
  long long value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr == text.data() || value < 0) return std::nullopt;
  std::string_view unit(ptr, static_cast<size_t>(text.data() + text.size() - ptr));
  long long factor;
  if (unit.empty() || unit == "s") factor = 1000;
  else if (unit == "ms") factor = 1;
  else if (unit == "m") factor = 60'000;
  else if (unit == "h") factor = 3'600'000;
  else if (unit == "d") factor = 86'400'000;
  else return std::nullopt;
  // At most 2^40 ms (about 34 years): far from overflowing, also in the nanoseconds timers count in.
  if (value > (1LL << 40) / factor) return std::nullopt;
  return std::chrono::milliseconds(value * factor);
}

}  // namespace sidekey
