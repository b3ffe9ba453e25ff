#include <boost/test/unit_test.hpp>

#include "policy/reference.hpp"

using namespace sidekey::policy;

namespace {
std::vector<std::string> names(const ReferenceScan& s) {
  std::vector<std::string> out;
  for (const auto& r : s.references) out.push_back(r.name);
  return out;
}
using V = std::vector<std::string>;
}  // namespace

BOOST_AUTO_TEST_SUITE(reference)

BOOST_AUTO_TEST_CASE(plain_reference) {
  auto s = scan_references("Bearer {{secrets.openai}}");
  BOOST_TEST(s.ok());
  BOOST_REQUIRE_EQUAL(s.references.size(), 1u);
  BOOST_TEST(s.references[0].name == "openai");
  BOOST_TEST(s.references[0].begin == 7u);
  BOOST_TEST(s.references[0].end == 25u);
}

BOOST_AUTO_TEST_CASE(spaces_inside_braces) {
  BOOST_TEST(names(scan_references("{{ secrets.a }}")) == V{"a"});
  BOOST_TEST(names(scan_references("{{secrets.a }}")) == V{"a"});
  BOOST_TEST(names(scan_references("{{   secrets.a}}")) == V{"a"});
  std::string pad(kMaxReferencePadding, ' ');
  BOOST_TEST(names(scan_references("{{" + pad + "secrets.a" + pad + "}}")) == V{"a"});
  // More padding than the cap before the prefix: not a reference at all.
  BOOST_TEST(scan_references("{{" + pad + " secrets.a}}").empty());
  // …after the name: began as a reference, so malformed.
  BOOST_TEST(!scan_references("{{secrets.a" + pad + " }}").ok());
}

BOOST_AUTO_TEST_CASE(several_and_adjacent) {
  auto s = scan_references("{{secrets.a}}{{secrets.b}}-{{ secrets.a }}");
  BOOST_TEST(names(s) == (V{"a", "b", "a"}));
  BOOST_TEST(s.ok());
}

BOOST_AUTO_TEST_CASE(name_characters) {
  BOOST_TEST(names(scan_references("{{secrets.A_b-c.d/e9}}")) == V{"A_b-c.d/e9"});
  BOOST_TEST(names(scan_references("{{secrets._x}}")) == V{"_x"});
  BOOST_TEST(names(scan_references("{{secrets.9}}")) == V{"9"});
  BOOST_TEST(names(scan_references("{{secrets.tasks/t-1/api_key}}")) == V{"tasks/t-1/api_key"});
}

BOOST_AUTO_TEST_CASE(max_name_length) {
  std::string n128(128, 'a');
  BOOST_TEST(names(scan_references("{{secrets." + n128 + "}}")) == V{n128});
  BOOST_TEST(!scan_references("{{secrets." + n128 + "a}}").ok());
  BOOST_TEST(kMaxReferenceLength == 2 + 32 + 8 + 128 + 32 + 2);
  std::string longest = "{{" + std::string(32, ' ') + "secrets." + n128 + std::string(32, ' ') + "}}";
  BOOST_TEST(longest.size() == kMaxReferenceLength);
  BOOST_TEST(names(scan_references(longest)) == V{n128});
}

BOOST_AUTO_TEST_CASE(malformed) {
  for (std::string bad : {"{{secrets.}}", "{{secrets.bad name}}", "{{ secrets.-x }}", "{{secrets..x}}",
                          "{{secrets.a}", "{{secrets.a", "{{secrets.", "{{secrets.a b}}", "{{secrets.a!}}",
                          "x {{ secrets.a }x}", "{{secrets.a}}{{secrets.}}"}) {
    auto s = scan_references(bad);
    BOOST_TEST(!s.ok(), bad);
  }
  auto s = scan_references("ok {{secrets.a}} then {{secrets.bad name}}");
  BOOST_TEST(*s.malformed_at == 22u);
  BOOST_TEST(names(s) == V{"a"});
}

BOOST_AUTO_TEST_CASE(not_references) {
  for (std::string text : {"", "{}", "{{}}", "{{ secret.a }}", "{{Secrets.a}}", "{{secretsX}}", "{ {secrets.a}}",
                           "{{secrets", "{{ secrets", "{{sec", "{", "{{", "{{\tsecrets.a}}", "plain text"}) {
    auto s = scan_references(text);
    BOOST_TEST(s.empty(), text);
  }
}

BOOST_AUTO_TEST_CASE(extra_braces) {
  auto s = scan_references("{{{secrets.a}}}");
  BOOST_TEST(names(s) == V{"a"});
  BOOST_TEST(s.references[0].begin == 1u);
  BOOST_TEST(s.references[0].end == 14u);
}

BOOST_AUTO_TEST_CASE(percent_encoded) {
  BOOST_TEST(names(scan_references("%7B%7Bsecrets.openai%7D%7D", Encoding::percent)) == V{"openai"});
  BOOST_TEST(names(scan_references("%7b%7bsecrets.openai%7d%7d", Encoding::percent)) == V{"openai"});
  BOOST_TEST(names(scan_references("%7B%7B%20secrets.a%20%7D%7D", Encoding::percent)) == V{"a"});
  BOOST_TEST(names(scan_references("%7B%7B+secrets.a+%7D%7D", Encoding::percent)) == V{"a"});
  BOOST_TEST(names(scan_references("{{secrets%2Eweird%2Fname}}", Encoding::percent)) == V{"weird/name"});
  BOOST_TEST(names(scan_references("{%7Bsecrets.a}%7D", Encoding::percent)) == V{"a"});
  // The raw span covers the escapes.
  auto s = scan_references("x=%7B%7Bsecrets.a%7D%7D&", Encoding::percent);
  BOOST_TEST(s.references[0].begin == 2u);
  BOOST_TEST(s.references[0].end == 23u);
  // Plain scanning does not decode.
  BOOST_TEST(scan_references("%7B%7Bsecrets.a%7D%7D").empty());
  BOOST_TEST(!scan_references("%7B%7Bsecrets.%7D%7D", Encoding::percent).ok());
  // A '%' that is no escape is a literal.
  BOOST_TEST(scan_references("100%", Encoding::percent).empty());
  BOOST_TEST(scan_references("%zz{{", Encoding::percent).empty());
}

BOOST_AUTO_TEST_CASE(match_incomplete_only_when_not_final) {
  using K = ReferenceMatch::Kind;
  BOOST_TEST((match_reference_at("{{secr", Encoding::plain, false).kind == K::incomplete));
  BOOST_TEST((match_reference_at("{{secr", Encoding::plain, true).kind == K::none));
  BOOST_TEST((match_reference_at("{{secrets.ab", Encoding::plain, false).kind == K::incomplete));
  BOOST_TEST((match_reference_at("{{secrets.ab", Encoding::plain, true).kind == K::malformed));
  BOOST_TEST((match_reference_at("%7", Encoding::percent, false).kind == K::incomplete));
  BOOST_TEST((match_reference_at("%", Encoding::percent, false).kind == K::incomplete));
  BOOST_TEST((match_reference_at("%7", Encoding::percent, true).kind == K::none));
  BOOST_TEST((match_reference_at("{x", Encoding::plain, false).kind == K::none));
  auto m = match_reference_at("{{secrets.a}}tail", Encoding::plain, false);
  BOOST_TEST((m.kind == K::reference));
  BOOST_TEST(m.length == 13u);
}

BOOST_AUTO_TEST_CASE(replace_references_keeps_the_rest) {
  std::string text = "a {{secrets.x}} b {{ secrets.y }} c";
  auto s = scan_references(text);
  auto out = replace_references(text, s.references, [](std::string_view n, std::string& o) { o += "<" + std::string(n) + ">"; });
  BOOST_TEST(out == "a <x> b <y> c");
}

BOOST_AUTO_TEST_CASE(encoders) {
  std::string out;
  append_percent_encoded(out, "a b&c=d/é~");
  BOOST_TEST(out == "a%20b%26c%3Dd%2F%C3%A9~");
  out.clear();
  append_json_escaped(out, "q\"b\\s/\n\r\t\b\f\x01\x7f" "é");
  BOOST_TEST(out == "q\\\"b\\\\s/\\n\\r\\t\\b\\f\\u0001\\u007f" "é");
}

BOOST_AUTO_TEST_CASE(template_parse_and_render) {
  auto t = Template::parse("Bearer {{secrets.openai}} and {{ secrets.org }} {{secrets.openai}}");
  BOOST_REQUIRE(std::holds_alternative<Template>(t));
  const auto& tpl = std::get<Template>(t);
  BOOST_TEST(tpl.secret_names() == (V{"openai", "org"}));
  BOOST_TEST(!tpl.is_single_reference());
  std::string out;
  tpl.render([](std::string_view n) -> std::string_view { return n == "openai" ? "sk-1" : "o-2"; }, out);
  BOOST_TEST(out == "Bearer sk-1 and o-2 sk-1");

  auto single = Template::parse("{{secrets.k}}");
  BOOST_TEST(std::get<Template>(single).is_single_reference());
  auto literal = Template::parse("static");
  BOOST_TEST(std::get<Template>(literal).secret_names().empty());
}

BOOST_AUTO_TEST_CASE(template_malformed) {
  for (std::string bad : {"Bearer {{secrets.}}", "{{secrets.bad name}}", "{{ secrets.x }", "x {{secrets."}) {
    auto t = Template::parse(bad);
    BOOST_REQUIRE(std::holds_alternative<std::string>(t));
    BOOST_TEST(std::get<std::string>(t).find("malformed secret reference") != std::string::npos);
  }
}

BOOST_AUTO_TEST_SUITE_END()
