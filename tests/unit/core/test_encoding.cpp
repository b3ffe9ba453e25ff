#include <boost/test/unit_test.hpp>

#include <random>
#include <set>
#include <thread>
#include <vector>

#include "core/duration.hpp"
#include "core/encoding.hpp"
#include "core/ip.hpp"
#include "core/random.hpp"

using namespace sidekey;

BOOST_AUTO_TEST_SUITE(encoding)

BOOST_AUTO_TEST_CASE(base64_round_trips_every_length) {
  std::string bytes;
  for (int i = 0; i < 64; ++i) {
    auto enc = base64_encode(bytes);
    BOOST_TEST(enc.size() % 4 == 0u);
    BOOST_TEST(*base64_decode(enc) == bytes);
    bytes.push_back(static_cast<char>(i * 37));
  }
  BOOST_TEST(base64_encode("user:pass") == "dXNlcjpwYXNz");
  BOOST_TEST(!base64_decode("abc"));
  BOOST_TEST(!base64_decode("ab=c"));
  BOOST_TEST(!base64_decode("a*cd"));
  BOOST_TEST(base64url_encode_nopad("\xfb\xff") == "-_8");
}

BOOST_AUTO_TEST_CASE(percent_coding) {
  BOOST_TEST(percent_encode("{{secrets.a}} b/c") == "%7B%7Bsecrets.a%7D%7D%20b%2Fc");
  BOOST_TEST(*percent_decode("%7b%7Bx%7D%7d") == "{{x}}");
  BOOST_TEST(!percent_decode("%"));
  BOOST_TEST(!percent_decode("%4"));
  BOOST_TEST(!percent_decode("%zz"));
  BOOST_TEST(*percent_decode("a+b") == "a+b");
}

BOOST_AUTO_TEST_CASE(comparisons) {
  BOOST_TEST(iequals("Content-Length", "content-length"));
  BOOST_TEST(!iequals("a", "ab"));
  BOOST_TEST(constant_time_equals("abc", "abc"));
  BOOST_TEST(!constant_time_equals("abc", "abd"));
  BOOST_TEST(!constant_time_equals("abc", "ab"));
}

// iequals compares a word at a time: it must say what a byte-by-byte ASCII fold says, for every
// byte value (letters, the bytes next to them, '@' '[' '`' '{', and bytes of 0x80 and up).
BOOST_AUTO_TEST_CASE(iequals_matches_a_byte_by_byte_fold) {
  auto fold = [](unsigned char c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; };
  auto reference = [&](std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
      if (fold(static_cast<unsigned char>(a[i])) != fold(static_cast<unsigned char>(b[i]))) return false;
    return true;
  };
  for (int x = 0; x < 256; ++x)
    for (int y = 0; y < 256; ++y) {
      std::string a(11, 'k'), b(11, 'K');  // one word and an overlapping tail
      a[x % 11] = static_cast<char>(x);
      b[x % 11] = static_cast<char>(y);
      BOOST_TEST_REQUIRE(iequals(a, b) == reference(a, b), x << " vs " << y);
      BOOST_TEST_REQUIRE(iequals(a.substr(0, 3), b.substr(0, 3)) == reference(a.substr(0, 3), b.substr(0, 3)));
    }
  std::mt19937 rng(9);
  const std::string alphabet = "aAzZ@[`{-_\x80\xC1\xE1\xDA";
  for (int round = 0; round < 50000; ++round) {
    std::string a(rng() % 40, 'a');
    for (auto& c : a) c = alphabet[rng() % alphabet.size()];
    std::string b = a;
    for (auto& c : b)
      if (rng() % 3 == 0) c = alphabet[rng() % alphabet.size()];
    BOOST_TEST_REQUIRE(iequals(a, b) == reference(a, b), "input of " << a.size());
  }
}

BOOST_AUTO_TEST_CASE(durations) {
  BOOST_TEST(parse_duration("250ms")->count() == 250);
  BOOST_TEST(parse_duration("10")->count() == 10000);
  BOOST_TEST(parse_duration("5m")->count() == 300000);
  BOOST_TEST(parse_duration("1d")->count() == 86400000);
  BOOST_TEST(!parse_duration(""));
  BOOST_TEST(!parse_duration("h"));
  BOOST_TEST(!parse_duration("-1s"));
  BOOST_TEST(!parse_duration("1 s"));
  BOOST_TEST(!parse_duration("1y"));
  // Up to 2^40 ms; beyond, nullopt rather than a product that overflows.
  BOOST_TEST(parse_duration("12725d")->count() == 12725LL * 86400000);
  BOOST_TEST(!parse_duration("12726d"));
  BOOST_TEST(!parse_duration("9223372036854775807d"));
  BOOST_TEST(!parse_duration("10000000000"));
}

BOOST_AUTO_TEST_CASE(uuids_are_v4) {
  auto a = uuid_v4(), b = uuid_v4();
  BOOST_TEST(a != b);
  BOOST_TEST(a.size() == 36u);
  BOOST_TEST(a[14] == '4');
  BOOST_TEST((a[19] == '8' || a[19] == '9' || a[19] == 'a' || a[19] == 'b'));
}

BOOST_AUTO_TEST_CASE(request_ids_are_32_hex_digits_and_unique_across_threads) {
  std::vector<std::vector<std::string>> per_thread(4);
  std::vector<std::thread> threads;
  for (auto& ids : per_thread)
    threads.emplace_back([&ids] {
      for (int i = 0; i < 20000; ++i) ids.push_back(request_id());
    });
  for (auto& t : threads) t.join();
  std::set<std::string> all;
  for (const auto& ids : per_thread)
    for (const auto& id : ids) {
      BOOST_TEST(id.size() == 32u);
      BOOST_TEST(id.find_first_not_of("0123456789abcdef") == std::string::npos);
      all.insert(id);
    }
  BOOST_TEST(all.size() == 4u * 20000u);
  // Consecutive ids of one thread do not share their varying half: not a visible counter.
  BOOST_TEST(per_thread[0][0].substr(16) != per_thread[0][1].substr(16));
  BOOST_TEST(per_thread[0][0].substr(0, 16) != per_thread[1][0].substr(0, 16));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(ip)

BOOST_AUTO_TEST_CASE(cidr_contains) {
  auto c = *Cidr::parse("10.0.0.0/8");
  BOOST_TEST(c.contains(*IpAddress::parse("10.255.1.2")));
  BOOST_TEST(!c.contains(*IpAddress::parse("11.0.0.1")));
  BOOST_TEST(!c.contains(*IpAddress::parse("::a00:1")));  // IPv4-compatible form is not the v4 address itself
  auto v6 = *Cidr::parse("fc00::/7");
  BOOST_TEST(v6.contains(*IpAddress::parse("fd12::1")));
  BOOST_TEST(!v6.contains(*IpAddress::parse("fe80::1")));
  BOOST_TEST(Cidr::parse("1.2.3.4")->prefix == 128);
  BOOST_TEST(!Cidr::parse("1.2.3.4/33"));
  BOOST_TEST(!Cidr::parse("::/129"));
  BOOST_TEST(!Cidr::parse("1.2.3.4/"));
  BOOST_TEST(!Cidr::parse("example.com/8"));
}

BOOST_AUTO_TEST_CASE(blocked_ranges_and_embeddings) {
  for (const char* a : {"127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
                        "224.0.0.1", "::1", "::", "fd00::1", "fe80::1", "ff02::1", "::ffff:127.0.0.1",
                        "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "2002:7f00:1::", "::127.0.0.2"})
    BOOST_TEST(blocked_range(*IpAddress::parse(a)) != nullptr, a);
  for (const char* a : {"8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"})
    BOOST_TEST(blocked_range(*IpAddress::parse(a)) == nullptr, a);
  BOOST_TEST(std::string(blocked_range(*IpAddress::parse("::ffff:127.0.0.1"))) == "loopback");
  BOOST_TEST(IpAddress::parse("[::1]")->to_string() == "::1");
  BOOST_TEST(IpAddress::parse("127.0.0.1")->to_string() == "127.0.0.1");
}

BOOST_AUTO_TEST_SUITE_END()
