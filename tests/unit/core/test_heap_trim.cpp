#include <boost/test/unit_test.hpp>

#include <cstdlib>
#include <vector>

#include "core/heap_trim.hpp"
#include "core/sanitized.hpp"

using sidekey::core::HeapTrimPolicy;

BOOST_AUTO_TEST_SUITE(heap_trim)

BOOST_AUTO_TEST_CASE(not_due_while_connections_grow_or_stay) {
  HeapTrimPolicy p(256);
  for (std::int64_t n : {0, 10, 500, 1000, 1000, 900})
    BOOST_TEST(!p.due(n), n);
}

BOOST_AUTO_TEST_CASE(due_once_after_a_large_drop) {
  HeapTrimPolicy p(256);
  BOOST_TEST(!p.due(1000));
  BOOST_TEST(!p.due(501));  // more than half still open
  BOOST_TEST(p.due(500));
  BOOST_TEST(!p.due(500));  // the peak restarted at 500
  BOOST_TEST(!p.due(250));  // a drop of 250 < 256
  BOOST_TEST(p.due(0));    // 500 from the peak of 500
}

BOOST_AUTO_TEST_CASE(small_bursts_never_trim) {
  HeapTrimPolicy p(256);
  for (int round = 0; round < 100; ++round) {
    BOOST_TEST(!p.due(200));
    BOOST_TEST(!p.due(0));
  }
}

BOOST_AUTO_TEST_CASE(a_burst_closing_across_two_checks_is_trimmed_at_the_end_too) {
  HeapTrimPolicy p;  // the default drop of 64
  BOOST_TEST(!p.due(1000));
  BOOST_TEST(p.due(200));  // most closed at the first check
  BOOST_TEST(p.due(0));    // the rest by the next: their memory is freed now
  BOOST_TEST(!p.due(0));
  BOOST_TEST(!p.due(60, 60));
  BOOST_TEST(!p.due(0));   // a drop of 60 < 64
}

BOOST_AUTO_TEST_CASE(a_burst_between_two_checks_counts) {
  // 1,000 connections opened and closed within one check interval: only the peak saw them.
  HeapTrimPolicy p(256);
  BOOST_TEST(!p.due(0, 0));
  BOOST_TEST(p.due(0, 1000));
  BOOST_TEST(!p.due(0, 0));
  BOOST_TEST(!p.due(100, 200));
}

BOOST_AUTO_TEST_CASE(a_new_burst_after_a_trim_trims_again) {
  HeapTrimPolicy p(256);
  BOOST_TEST(!p.due(10000));
  BOOST_TEST(p.due(3));
  BOOST_TEST(!p.due(2000));
  BOOST_TEST(p.due(0));
}

BOOST_AUTO_TEST_CASE(trim_heap_runs) {
  // Freed blocks in the middle of the heap: glibc has something to give back.
  std::vector<void*> blocks;
  for (int i = 0; i < 2000; ++i) blocks.push_back(std::malloc(4096));
  void* keep = std::malloc(64);  // above them, so the top of the heap cannot simply shrink
  for (void* b : blocks) std::free(b);
#if defined(__GLIBC__) && !defined(SIDEKEY_SANITIZED)
  BOOST_TEST(sidekey::core::trim_heap());
#else
  sidekey::core::trim_heap();  // a sanitizer's allocator stands in for glibc's: it only must not fail
#endif
  std::free(keep);
}

BOOST_AUTO_TEST_SUITE_END()
