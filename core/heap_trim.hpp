#pragma once
// Giving freed heap back to the system after a burst of connections. glibc keeps the pages of
// freed chunks mapped (a sidecar that once held 10,000 connections would keep their RSS for
// good); malloc_trim(0) returns them. Trimming walks and locks every arena, so it is done
// rarely: only when the open connections have fallen well below the peak since the last trim.
#include <algorithm>
#include <cstdint>

namespace sidekey::core {

class HeapTrimPolicy {
 public:
  // A trim is due when at least `min_drop` connections closed since the peak and at most half
  // of the peak remain open. The peak restarts at each trim, so a burst that closes across two
  // checks is trimmed again once the rest has closed (1,000 -> 200: trim; 200 -> 0: trim).
  explicit HeapTrimPolicy(std::int64_t min_drop = 64) : min_drop_(min_drop) {}

  // Called periodically with the open connections now and the most that were open at once since
  // the last call (a burst may come and go between two calls); true when a trim is due now (the
  // peak then restarts from `active`).
  bool due(std::int64_t active, std::int64_t recent_peak = 0) {
    peak_ = std::max({peak_, active, recent_peak});
    if (peak_ - active < min_drop_ || active > peak_ / 2) return false;
    peak_ = active;
    return true;
  }

 private:
  std::int64_t min_drop_;
  std::int64_t peak_ = 0;
};

// malloc_trim(0) where the C library has it; false when it gave nothing back or is not glibc.
bool trim_heap();

}  // namespace sidekey::core
