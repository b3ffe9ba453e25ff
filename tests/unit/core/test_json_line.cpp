#include <boost/test/unit_test.hpp>
#include <nlohmann/json.hpp>

#include "core/copy_short.hpp"
#include "core/json_line.hpp"

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

using sidekey::json::ObjectWriter;

BOOST_AUTO_TEST_SUITE(json_line)

namespace {
nlohmann::json parse(const std::string& s) { return nlohmann::json::parse(s); }  // throws when not JSON
std::string json_quoted(std::string_view text) {
  std::string out;
  sidekey::json::append_quoted(out, text);
  return out;
}
}  // namespace

BOOST_AUTO_TEST_CASE(fields_round_trip_through_a_json_parser) {
  std::string line;
  ObjectWriter w(line);
  w.str("s", "plain").num("i", -42).num("u", std::uint64_t{18446744073709551615ULL}).num("d", 1.25)
      .num("third", 0.001).null("n").strings("a", {"x", "y\"z"}).strings("empty", {}).str_or_null("e", "")
      .str_or_null("f", "set").close();
  auto j = parse(line);
  BOOST_TEST(j["s"] == "plain");
  BOOST_TEST(j["i"] == -42);
  BOOST_TEST(j["u"].get<std::uint64_t>() == 18446744073709551615ULL);
  BOOST_TEST(j["d"].get<double>() == 1.25);
  BOOST_TEST(j["third"].get<double>() == 0.001);
  BOOST_TEST(j["n"].is_null());
  BOOST_TEST(j["a"] == nlohmann::json({"x", "y\"z"}));
  BOOST_TEST(j["empty"].is_array());
  BOOST_TEST(j["empty"].empty());
  BOOST_TEST(j["e"].is_null());
  BOOST_TEST(j["f"] == "set");
  BOOST_TEST(j.size() == 10u);
}

// The word-at-a-time scan must escape exactly what a byte-by-byte escaper does.
BOOST_AUTO_TEST_CASE(quoting_matches_a_byte_by_byte_escaper) {
  auto reference = [](std::string_view text) {
    std::string out = "\"";
    for (std::size_t i = 0; i < text.size(); ++i) {
      unsigned char c = static_cast<unsigned char>(text[i]);
      if (c == '"') out += "\\\"";
      else if (c == '\\') out += "\\\\";
      else if (c == '\n') out += "\\n";
      else if (c == '\r') out += "\\r";
      else if (c == '\t') out += "\\t";
      else if (c == '\b') out += "\\b";
      else if (c == '\f') out += "\\f";
      else if (c < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        out += buf;
      } else if (c < 0x80) out += static_cast<char>(c);
      else {
        // Non-ASCII: whatever append_quoted does with it one byte at a time from here (its
        // UTF-8 handling has its own tests); the point is the ASCII runs around it.
        std::string tail;
        sidekey::json::append_quoted(tail, text.substr(i, 1));
        out += tail.substr(1, tail.size() - 2);
        if (c >= 0xC2 && c <= 0xF4) return std::string();  // sequences: not comparable byte-wise
      }
    }
    return out + "\"";
  };
  std::mt19937_64 rng(11);
  const std::string alphabet = "abcXYZ019 {}:,./-_~\"\\\n\r\t\b\f\x01\x1f\x7f\x80";
  for (int round = 0; round < 20000; ++round) {
    std::string text(rng() % 40, 'a');
    for (auto& ch : text) ch = alphabet[rng() % alphabet.size()];
    std::string expected = reference(text);
    if (expected.empty()) continue;
    BOOST_TEST(json_quoted(text) == expected, "input of " << text.size() << " bytes");
  }
  // Printable runs of every length (copied whole, in overlapping words), and the same with one
  // byte to escape at each position: the last partial word is checked too.
  for (std::size_t n = 0; n <= 40; ++n) {
    std::string text(n, 'k');
    for (std::size_t i = 0; i < n; ++i) text[i] = static_cast<char>('!' + (i * 7) % 90 == '"' ? 'q' : '!' + (i * 7) % 90);
    for (auto& ch : text)
      if (ch == '\\') ch = 'b';
    BOOST_TEST(json_quoted(text) == reference(text), "run of " << n);
    for (std::size_t at = 0; at < n; ++at)
      for (char special : {'"', '\n', '\\', '\x80', '\x7f'}) {
        std::string t = text;
        t[at] = special;
        BOOST_TEST(json_quoted(t) == reference(t), "run of " << n << ", byte " << at);
      }
  }
}

// millis() must print what num() prints for the value rounded to three decimals.
BOOST_AUTO_TEST_CASE(millis_is_the_shortest_form_of_the_value_rounded_to_thousandths) {
  auto via_millis = [](double v) {
    std::string line;
    ObjectWriter(line).millis("m", v).close();
    return line;
  };
  auto via_num = [](double v) {
    std::string line;
    ObjectWriter(line).num("m", std::round(v * 1000) / 1000).close();
    return line;
  };
  std::vector<double> values = {0, 0.0004, 0.0005, 0.001, 0.01, 0.1, 0.25, 1, 1.0005, 12.3456, 99.9995,
                                999.999, 1000, 3600000.123, 123456789.5, -0.25, -12.3456, 4.2e14, 1e300};
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> ms(0, 120000);
  for (int i = 0; i < 20000; ++i) values.push_back(ms(rng));
  for (double v : values) BOOST_TEST(via_millis(v) == via_num(v), "value " << v);
  BOOST_TEST(via_millis(12.3456) == R"({"m":12.346})");
  BOOST_TEST(via_millis(2.5) == R"({"m":2.5})");
  BOOST_TEST(via_millis(7) == R"({"m":7})");
  BOOST_TEST(via_millis(std::nan("")) == R"({"m":null})");
}

BOOST_AUTO_TEST_CASE(non_finite_numbers_become_null) {
  std::string line;
  ObjectWriter w(line);
  w.num("nan", std::nan("")).num("inf", 1.0 / 0.0).close();
  auto j = parse(line);
  BOOST_TEST(j["nan"].is_null());
  BOOST_TEST(j["inf"].is_null());
}

BOOST_AUTO_TEST_CASE(control_characters_quotes_and_backslashes_are_escaped) {
  std::string raw = std::string("a\"b\\c\nd\re\tf\x01g\x1f", 15) + std::string(1, '\0') + "h";
  std::string q = json_quoted(raw);
  for (char c : q) BOOST_TEST(static_cast<unsigned char>(c) >= 0x20);  // nothing raw below space
  BOOST_TEST(parse("{\"k\":" + q + "}")["k"].get<std::string>() == raw);
}

BOOST_AUTO_TEST_CASE(valid_utf8_passes_through_and_invalid_bytes_become_replacement_characters) {
  std::string good = "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80";
  BOOST_TEST(json_quoted(good) == "\"" + good + "\"");
  const std::string fffd = "\xEF\xBF\xBD";
  BOOST_TEST(json_quoted("\xFF") == "\"" + fffd + "\"");
  BOOST_TEST(json_quoted("a\xC3") == "\"a" + fffd + "\"");                 // cut sequence
  BOOST_TEST(json_quoted("\xC0\xAF") == "\"" + fffd + fffd + "\"");        // overlong
  BOOST_TEST(json_quoted("\xED\xA0\x80") == "\"" + fffd + fffd + fffd + "\"");  // surrogate
  BOOST_TEST(json_quoted("\xF4\x90\x80\x80") == "\"" + fffd + fffd + fffd + fffd + "\"");  // > U+10FFFF
  // Whatever the bytes, the output is JSON a strict parser accepts.
  std::string all;
  for (int c = 0; c < 256; ++c) all.push_back(static_cast<char>(c));
  BOOST_CHECK_NO_THROW(parse("{\"k\":" + json_quoted(all) + "}"));
}

BOOST_AUTO_TEST_CASE(long_keys_and_long_values_take_the_general_path) {
  const std::string long_key(40, 'k'), long_value(300, 'v'), escaped = "a\"b";
  std::string line;
  ObjectWriter w(line);
  w.str(long_key, "x").str("short", long_value).str("e", escaped).num(long_key + "n", std::int64_t{-7}).num("u", std::uint64_t{7}).close();
  auto j = parse(line);
  BOOST_TEST(j[long_key].get<std::string>() == "x");
  BOOST_TEST(j["short"].get<std::string>() == long_value);
  BOOST_TEST(j["e"].get<std::string>() == escaped);
  BOOST_TEST(j[long_key + "n"].get<int>() == -7);
  BOOST_TEST(j["u"].get<int>() == 7);
}

// copy_short (head rendering and these lines): every size, byte for byte, nothing past it.
BOOST_AUTO_TEST_CASE(copy_short_copies_every_size_and_no_more) {
  std::string from(80, '\0');
  for (std::size_t i = 0; i < from.size(); ++i) from[i] = static_cast<char>('A' + i % 50);
  for (std::size_t n = 0; n <= 72; ++n) {
    std::string to(80, '#');
    sidekey::copy_short(to.data() + 3, from.data() + 1, n);
    BOOST_TEST_REQUIRE(to.substr(0, 3) == "###");
    BOOST_TEST_REQUIRE(to.substr(3, n) == from.substr(1, n), "size " << n);
    BOOST_TEST_REQUIRE(to.substr(3 + n) == std::string(77 - n, '#'), "size " << n);
  }
}

BOOST_AUTO_TEST_SUITE_END()
