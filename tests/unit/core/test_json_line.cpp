#include <boost/test/unit_test.hpp>
#include <nlohmann/json.hpp>

#include "core/json_line.hpp"

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

BOOST_AUTO_TEST_SUITE_END()
