#pragma once
// memcpy for the short pieces heads and log lines are made of (names, values, separators): a
// size up to 32 bytes is copied as two overlapping constant-size moves, inline, rather than by a
// call into the C library.
#include <cstddef>
#include <cstring>

namespace sidekey {

inline void copy_short(char* to, const char* from, std::size_t n) {
  if (n >= 16 && n <= 32) {
    std::memcpy(to, from, 16);
    std::memcpy(to + n - 16, from + n - 16, 16);
  } else if (n >= 8 && n < 16) {
    std::memcpy(to, from, 8);
    std::memcpy(to + n - 8, from + n - 8, 8);
  } else if (n >= 4 && n < 8) {
    std::memcpy(to, from, 4);
    std::memcpy(to + n - 4, from + n - 4, 4);
  } else if (n > 32) {
    std::memcpy(to, from, n);
  } else {
    for (std::size_t i = 0; i < n; ++i) to[i] = from[i];
  }
}

}  // namespace sidekey
