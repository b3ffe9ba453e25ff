#pragma once
// Unmapping the pages of code and read-only data that sidekey mapped and does not use.
//
// Starting up runs code that serving never runs again (configuration, YAML, OpenSSL's
// initialisation and the parsing of the CA bundle), and the kernel maps file pages around each
// one touched. Those pages count in RSS for the life of the process. Dropping them once the
// process is up leaves mapped only what serving touches again: a page is mapped back, from the
// page cache, when it is next used. Only private file mappings that are not writable and hold
// no page of their own, resident or swapped out (no copy-on-write copy, e.g. relocated data),
// are dropped: their pages are exactly the file's, so nothing is lost.
#include <cstddef>
#include <string_view>

namespace sidekey::core {

struct CodePagesReleased {
  std::size_t mappings = 0;  // mappings dropped
  std::size_t kib = 0;       // their RSS before, in KiB
};

// Reads /proc/self/smaps; {} where it cannot be read (not Linux, no /proc).
CodePagesReleased release_code_pages();

// One mapping of /proc/self/smaps, as release_code_pages() judges it (pure, for the tests).
struct MappingFacts {
  std::string_view perms;  // "r-xp"
  std::string_view path;   // "" for anonymous memory, "[heap]", "[vdso]", …
  std::size_t anonymous_kib = 0;  // resident pages of its own (copy-on-write copies)
  std::size_t swap_kib = 0;       // the same, swapped out
};
bool droppable(const MappingFacts& m);

}  // namespace sidekey::core
