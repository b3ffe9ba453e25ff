#include "core/code_pages.hpp"

#include <sys/mman.h>

#include <cstdio>
#include <fstream>
#include <string>

namespace sidekey::core {

bool droppable(const MappingFacts& m) {
  // Private ("p"), not writable: its pages are the file's unless it holds copies of its own.
  if (m.perms.size() != 4 || m.perms[1] == 'w' || m.perms[3] != 'p' || m.perms[0] != 'r') return false;
  // A file: a path, not a pseudo-mapping such as [vdso], [vvar] or [stack].
  if (m.path.empty() || m.path.front() != '/') return false;
  return m.anonymous_kib == 0 && m.swap_kib == 0;
}

CodePagesReleased release_code_pages() {
  CodePagesReleased out;
#if defined(__linux__)
  std::ifstream smaps("/proc/self/smaps");
  if (!smaps) return out;
  struct Pending {
    unsigned long start = 0, end = 0;
    std::string perms, path;
    std::size_t rss_kib = 0, anonymous_kib = 0, swap_kib = 0;
    bool valid = false;
  } cur;
  auto finish = [&] {
    if (!cur.valid) return;
    if (cur.rss_kib > 0 && droppable({cur.perms, cur.path, cur.anonymous_kib, cur.swap_kib})) {
      void* addr = reinterpret_cast<void*>(cur.start);
      std::size_t len = cur.end - cur.start;
      if (::madvise(addr, len, MADV_DONTNEED) == 0) {
        ++out.mappings;
        out.kib += cur.rss_kib;
      }
    }
    cur = Pending{};
  };
  std::string line;
  while (std::getline(smaps, line)) {
    unsigned long start = 0, end = 0;
    char perms[5] = {};
    int path_at = -1;
    // "start-end perms offset dev inode   path": a new mapping; other lines are "Key:  N kB".
    if (std::sscanf(line.c_str(), "%lx-%lx %4s %*s %*s %*s %n", &start, &end, perms, &path_at) >= 3 && path_at >= 0 &&
        line.find(':') > line.find(' ')) {
      finish();
      cur.start = start;
      cur.end = end;
      cur.perms = perms;
      cur.path = line.substr(static_cast<std::size_t>(path_at));
      cur.valid = true;
      continue;
    }
    std::size_t kib = 0;
    if (std::sscanf(line.c_str(), "Rss: %zu kB", &kib) == 1) cur.rss_kib = kib;
    else if (std::sscanf(line.c_str(), "Anonymous: %zu kB", &kib) == 1) cur.anonymous_kib = kib;
    else if (std::sscanf(line.c_str(), "Swap: %zu kB", &kib) == 1) cur.swap_kib = kib;
  }
  finish();
#endif
  return out;
}

}  // namespace sidekey::core
