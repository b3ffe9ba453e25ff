// core/small_blocks.cpp: the program's operator new and sized delete keep small blocks per thread.
// These tests hold for any correct operator new (in sanitizer builds the C++ runtime's is used);
// what they catch is a cache that hands out a block too small for the request, hands one block
// out twice, or loses one between threads.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <optional>

#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "core/sanitized.hpp"
#include "core/wipe_freed.hpp"

namespace {

struct Held {
  unsigned char* p;
  std::size_t n;
};

// Each byte says which block and which offset it is, so an overlap shows as a changed byte.
unsigned char mark(std::size_t block, std::size_t offset) { return static_cast<unsigned char>(block * 31 + offset * 7 + 1); }

std::vector<Held> take(std::size_t from, std::size_t to, std::size_t copies, std::size_t step = 1) {
  std::vector<Held> held;
  for (std::size_t k = 0; k < copies; ++k)
    for (std::size_t n = from; n <= to; n += step) {
      auto* p = static_cast<unsigned char*>(::operator new(n));
      BOOST_REQUIRE(p != nullptr);
      BOOST_REQUIRE_EQUAL(reinterpret_cast<std::uintptr_t>(p) % __STDCPP_DEFAULT_NEW_ALIGNMENT__, 0u);
      for (std::size_t i = 0; i < n; ++i) p[i] = mark(held.size(), i);
      held.push_back({p, n});
    }
  return held;
}

void check_and_give_back(std::vector<Held>& held, bool sized) {
  for (std::size_t b = 0; b < held.size(); ++b)
    for (std::size_t i = 0; i < held[b].n; ++i)
      if (held[b].p[i] != mark(b, i)) BOOST_FAIL("block " << b << " of " << held[b].n << " bytes changed at " << i);
  for (auto& h : held) {
    if (sized)
      ::operator delete(h.p, h.n);
    else
      ::operator delete(h.p);
  }
  held.clear();
}

}  // namespace

BOOST_AUTO_TEST_SUITE(small_blocks)

BOOST_AUTO_TEST_CASE(blocks_of_every_small_size_are_whole_and_distinct_across_reuse) {
  // Sizes across every class boundary and past the largest class, more blocks of each than a
  // thread keeps, several rounds so that later rounds are served from what earlier ones gave back.
  for (int round = 0; round < 4; ++round) {
    auto held = take(1, 300, 40);
    check_and_give_back(held, /*sized=*/round % 2 == 0);
  }
  // Mixed sizes in one class given back and asked for in another order.
  auto a = take(25, 40, 64);
  check_and_give_back(a, true);
  auto b = take(40, 40, 200);
  check_and_give_back(b, true);
}

BOOST_AUTO_TEST_CASE(larger_blocks_up_to_and_past_the_largest_class) {
  // Every eighth-of-a-doubling class from 248 bytes to 16 KB, and past it, in rounds; given back
  // sized and unsized (coroutine frames are freed without their size).
  for (int round = 0; round < 4; ++round) {
    auto held = take(240, 17000, 2, 7);
    check_and_give_back(held, /*sized=*/round % 2 == 1);
  }
}

BOOST_AUTO_TEST_CASE(blocks_given_back_on_another_thread_serve_both_threads) {
  std::vector<Held> held = take(1, 248, 8);
  std::vector<Held> theirs;
  std::thread t([&] {
    check_and_give_back(held, true);  // freed here, kept in this thread's cache
    theirs = take(1, 248, 8);         // and handed out again here
  });
  t.join();  // the thread's cache is given back to malloc as it ends
  auto mine = take(1, 248, 8);
  check_and_give_back(theirs, true);
  check_and_give_back(mine, true);
}

BOOST_AUTO_TEST_CASE(strings_and_vectors_grow_and_shrink_through_it) {
  std::vector<std::string> strings;
  for (int i = 0; i < 5000; ++i) strings.push_back(std::string(static_cast<std::size_t>(i % 300), static_cast<char>('a' + i % 26)));
  for (int i = 0; i < 5000; ++i) BOOST_REQUIRE_EQUAL(strings[i], std::string(static_cast<std::size_t>(i % 300), static_cast<char>('a' + i % 26)));
  strings.erase(strings.begin(), strings.begin() + 2500);
  strings.shrink_to_fit();
  BOOST_CHECK_EQUAL(strings.front(), std::string(2500 % 300, static_cast<char>('a' + 2500 % 26)));
}

BOOST_AUTO_TEST_CASE(a_request_that_cannot_be_met_throws_bad_alloc) {
#ifndef SIDEKEY_SANITIZED
  // (A sanitizer's allocator reports such a request as an error and aborts, by its default.)
  BOOST_CHECK_THROW((void)::operator new(std::numeric_limits<std::size_t>::max() / 2), std::bad_alloc);
#endif
  void* p = ::operator new(0);  // a unique, freeable pointer
  BOOST_CHECK(p != nullptr);
  ::operator delete(p, std::size_t{0});
}

#ifndef SIDEKEY_SANITIZED  // (the runtime's operators there)
BOOST_AUTO_TEST_CASE(a_block_freed_in_a_wipe_scope_comes_back_zeroed) {
  for (std::size_t size : {40u, 200u, 3000u}) {
    for (bool scoped : {false, true}) {
      // Taken from the thread's cache (or malloc): the cache then has room for it again, and
      // hands the same block back next.
      char* p = static_cast<char*>(::operator new(size));
      std::memset(p, 'S', size);
      __asm__ __volatile__("" : : "r"(p) : "memory");  // the stores before a free are not dead
      {
        std::optional<sidekey::WipeFreedBlocks> wipe;
        if (scoped) wipe.emplace();
        ::operator delete(p, size);
      }
      char* q = static_cast<char*>(::operator new(size));
      BOOST_REQUIRE(q == p);
      // Past the cache's link in the first 8 bytes.
      auto left = static_cast<std::size_t>(std::count(q + 8, q + size, 'S'));
      BOOST_TEST(left == (scoped ? 0 : size - 8), "size " << size << (scoped ? ", in a scope" : ""));
      ::operator delete(q, size);
    }
  }
}
#endif

BOOST_AUTO_TEST_SUITE_END()
