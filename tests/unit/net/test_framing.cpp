#include <boost/test/unit_test.hpp>

#include <random>
#include <string>

#include "proxy/framing.hpp"

using sidekey::proxy::find_head_end;

BOOST_AUTO_TEST_SUITE(framing)

namespace {
// The head's end as the definition says it, one byte at a time: just past the first "\n\n" or
// "\n\r\n", searching from `from` - 3 on (a resumed search).
std::size_t reference_end(std::string_view d, std::size_t from) {
  for (std::size_t i = from >= 3 ? from - 3 : 0; i < d.size(); ++i) {
    if (d[i] != '\n') continue;
    if (i + 1 < d.size() && d[i + 1] == '\n') return i + 2;
    if (i + 2 < d.size() && d[i + 1] == '\r' && d[i + 2] == '\n') return i + 3;
  }
  return std::string_view::npos;
}
}  // namespace

BOOST_AUTO_TEST_CASE(head_end_matches_a_byte_by_byte_search) {
  BOOST_TEST(find_head_end("GET / HTTP/1.1\r\nHost: a\r\n\r\nbody") == 27u);
  BOOST_TEST(find_head_end("GET / HTTP/1.1\nHost: a\n\nbody") == 24u);
  BOOST_TEST(find_head_end("GET / HTTP/1.1\r\nHost: a\r\n") == std::string_view::npos);
  std::mt19937 rng(5);
  const char alphabet[] = {'\r', '\n', 'a', ':'};
  // Up to 80 bytes: several 16-byte blocks and a shorter rest.
  for (int round = 0; round < 20000; ++round) {
    std::string d(rng() % 80, 'a');
    for (auto& c : d) c = alphabet[rng() % 4];
    for (std::size_t from = 0; from <= d.size(); ++from)
      BOOST_TEST_REQUIRE(find_head_end(d, from) == reference_end(d, from), "input of " << d.size() << " from " << from);
  }
}

BOOST_AUTO_TEST_SUITE_END()
