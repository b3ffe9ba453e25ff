#include <boost/test/unit_test.hpp>

#include <fstream>
#include <string>

#include "core/code_pages.hpp"

using sidekey::core::droppable;
using sidekey::core::MappingFacts;

namespace {

// RssFile of this process, in KiB (file pages mapped); -1 when /proc cannot say.
long rss_file_kib() {
  std::ifstream status("/proc/self/status");
  std::string key;
  long value = -1;
  while (status >> key) {
    if (key == "RssFile:") {
      status >> value;
      return value;
    }
    status.ignore(4096, '\n');
  }
  return -1;
}

int work(int n) {  // code run after the release: its pages come back from the page cache
  int s = 0;
  for (int i = 0; i < n; ++i) s += i % 7;
  return s;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(code_pages)

BOOST_AUTO_TEST_CASE(only_unwritten_private_file_mappings_are_dropped) {
  BOOST_TEST(droppable({"r-xp", "/usr/lib/x86_64-linux-gnu/libcrypto.so.3", 0}));
  BOOST_TEST(droppable({"r--p", "/usr/lib/x86_64-linux-gnu/libc.so.6", 0}));
  BOOST_TEST(droppable({"r-xp", "/usr/lib/libfoo.so (deleted)", 0}));  // upgraded underneath: the old inode stays
  // Relocated data made read-only (RELRO) holds copy-on-write pages of its own: dropping them
  // would bring back the unrelocated file bytes.
  BOOST_TEST(!droppable({"r--p", "/usr/lib/x86_64-linux-gnu/libc.so.6", 8}));
  BOOST_TEST(!droppable({"r--p", "/usr/lib/x86_64-linux-gnu/libc.so.6", 0, 4}));  // those copies, swapped out
  BOOST_TEST(!droppable({"rw-p", "/usr/lib/x86_64-linux-gnu/libc.so.6", 0}));  // writable
  BOOST_TEST(!droppable({"r--s", "/dev/shm/x", 0}));                           // shared
  BOOST_TEST(!droppable({"r-xp", "", 0}));                                     // anonymous
  for (const char* pseudo : {"[vdso]", "[vvar]", "[heap]", "[stack]", "[vsyscall]"})
    BOOST_TEST(!droppable({"r-xp", pseudo, 0}), pseudo);
  BOOST_TEST(!droppable({"---p", "/usr/lib/x86_64-linux-gnu/libc.so.6", 0}));  // a guard gap: nothing to drop
  BOOST_TEST(!droppable({"r-x", "/usr/lib/libfoo.so", 0}));                     // malformed
}

// On this very process: file pages go away, and the code keeps running (each page used again is
// mapped back from the page cache).
BOOST_AUTO_TEST_CASE(releases_file_pages_of_the_running_process) {
  long before = rss_file_kib();
  if (before < 0) return;  // no /proc: nothing to measure (release_code_pages does nothing there)
  auto released = sidekey::core::release_code_pages();
  long after = rss_file_kib();
  BOOST_TEST(released.mappings > 0u);
  BOOST_TEST(released.kib > 0u);
  BOOST_TEST(after < before, "RssFile " << before << " KiB -> " << after << " KiB");
  BOOST_TEST(work(1000) == work(1000));
  BOOST_TEST(!std::string("still running").empty());
}

BOOST_AUTO_TEST_SUITE_END()
