// wipe_written (core/wiping_allocator.hpp): every byte that held data is zero afterwards, and
// lines that were zero already are not written (a page nothing was written to stays untouched).
#include <boost/test/unit_test.hpp>

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/wiping_allocator.hpp"

using sidekey::wipe_written;

BOOST_AUTO_TEST_SUITE(wiping_allocator)

BOOST_AUTO_TEST_CASE(every_byte_that_held_data_is_zero_afterwards) {
  // Sizes around the 64-byte line, offsets that are not aligned, data in single bytes.
  for (std::size_t size : {0u, 1u, 7u, 63u, 64u, 65u, 127u, 128u, 129u, 1000u, 4099u}) {
    for (std::size_t offset : {0u, 1u, 5u, 8u}) {
      std::vector<unsigned char> block(size + offset + 16, 0xAB);
      std::fill(block.begin() + static_cast<long>(offset), block.begin() + static_cast<long>(offset + size), 0);
      for (std::size_t i = 0; i < size; i += 37) block[offset + i] = static_cast<unsigned char>(1 + i % 250);
      if (size) block[offset + size - 1] = 0x5A;  // the last byte, in a partial line
      wipe_written(block.data() + offset, size);
      BOOST_TEST(std::all_of(block.begin() + static_cast<long>(offset), block.begin() + static_cast<long>(offset + size),
                             [](unsigned char c) { return c == 0; }),
                 "size " << size << " offset " << offset);
      // Nothing outside the range.
      BOOST_TEST(std::all_of(block.begin(), block.begin() + static_cast<long>(offset), [](unsigned char c) { return c == 0xAB; }));
      BOOST_TEST(std::all_of(block.begin() + static_cast<long>(offset + size), block.end(),
                             [](unsigned char c) { return c == 0xAB; }));
    }
  }
}

BOOST_AUTO_TEST_CASE(a_page_nothing_was_written_to_is_not_written) {
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  void* m = ::mmap(nullptr, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  BOOST_REQUIRE(m != MAP_FAILED);
  auto* b = static_cast<unsigned char*>(m);
  std::memset(b, 0x11, page);
  std::memset(b + 2 * page, 0x22, page);
  // The middle page holds zeroes and may not be written: a write would fault.
  BOOST_REQUIRE(::mprotect(b + page, page, PROT_READ) == 0);
  wipe_written(b, 3 * page);
  BOOST_TEST(std::all_of(b, b + 3 * page, [](unsigned char c) { return c == 0; }));
  ::munmap(m, 3 * page);
}

BOOST_AUTO_TEST_SUITE_END()
