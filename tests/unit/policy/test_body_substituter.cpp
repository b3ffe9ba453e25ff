#include <boost/test/unit_test.hpp>

#include <map>

#include "policy/body_substituter.hpp"
#include "policy/reference.hpp"

using namespace sidekey::policy;
using sidekey::secrets::SecretValue;

namespace {

struct Values {
  std::map<std::string, std::shared_ptr<const SecretValue>, std::less<>> m;
  Values() {
    m["k"] = std::make_shared<const SecretValue>("va\"l\\ue\n/é");
    m["q"] = std::make_shared<const SecretValue>("plain");
    m["long"] = std::make_shared<const SecretValue>("L");
    m[std::string(128, 'n')] = std::make_shared<const SecretValue>("max");
  }
  BodySubstituter::Resolve resolver() const {
    return [this](std::string_view name) -> BodySubstituter::Resolved {
      auto it = m.find(name);
      if (it == m.end())
        return Refusal::make(code::unknown_secret, "no secret named '" + std::string(name) + "'").with_secret(std::string(name));
      return it->second;
    };
  }
};

struct Outcome {
  std::string out;
  std::optional<Refusal> refusal;
  std::string before_refusal;  // everything output before the refusal
};

// Feeds `body` in the pieces cut at `cuts`, then finishes.
Outcome run(BodyFormat fmt, const Values& v, std::string_view body, std::vector<std::size_t> cuts) {
  BodySubstituter sub(fmt, v.resolver());
  Outcome o;
  std::size_t at = 0;
  cuts.push_back(body.size());
  for (auto c : cuts) {
    auto r = sub.feed(body.substr(at, c - at), o.out);
    at = c;
    if (r) {
      o.refusal = r;
      o.before_refusal = o.out;
      return o;
    }
  }
  if (auto r = sub.finish(o.out)) {
    o.refusal = r;
    o.before_refusal = o.out;
  }
  return o;
}

// Every way of cutting `body` into two and three pieces gives `expected`.
void every_split(BodyFormat fmt, std::string_view body, const std::string& expected) {
  Values v;
  for (std::size_t i = 0; i <= body.size(); ++i) {
    auto two = run(fmt, v, body, {i});
    BOOST_REQUIRE_MESSAGE(!two.refusal, "split " << i << ": " << two.refusal->message);
    BOOST_REQUIRE_MESSAGE(two.out == expected, "split " << i << ": " << two.out);
    for (std::size_t j = i; j <= body.size(); ++j) {
      auto three = run(fmt, v, body, {i, j});
      BOOST_REQUIRE_MESSAGE(!three.refusal && three.out == expected, "split " << i << "," << j << ": " << three.out);
    }
  }
}

}  // namespace

BOOST_AUTO_TEST_SUITE(body_substituter)

BOOST_AUTO_TEST_CASE(content_types) {
  BOOST_TEST((body_format_for("application/json") == BodyFormat::json));
  BOOST_TEST((body_format_for("Application/JSON; charset=utf-8") == BodyFormat::json));
  BOOST_TEST((body_format_for("application/vnd.api+json") == BodyFormat::json));
  BOOST_TEST((body_format_for("application/x-www-form-urlencoded") == BodyFormat::form));
  BOOST_TEST((body_format_for(" application/x-www-form-urlencoded ;charset=x") == BodyFormat::form));
  BOOST_TEST((body_format_for("text/plain") == BodyFormat::opaque));
  BOOST_TEST((body_format_for("multipart/form-data; boundary=x") == BodyFormat::opaque));
  BOOST_TEST((body_format_for("") == BodyFormat::opaque));
}

BOOST_AUTO_TEST_CASE(json_every_split_two_and_three_chunks) {
  std::string body = R"({"a":"x{{ secrets.k }}y","b":"{{secrets.q}}","c":"{not}{{x"})";
  std::string expected = R"({"a":"xva\"l\\ue\n/éy","b":"plain","c":"{not}{{x"})";
  every_split(BodyFormat::json, body, expected);
}

BOOST_AUTO_TEST_CASE(json_escaping_of_values) {
  Values v;
  v.m["ctl"] = std::make_shared<const SecretValue>(std::string("a\x01\tb\"c\\", 7));
  auto o = run(BodyFormat::json, v, R"({"k":"{{secrets.ctl}}"})", {});
  BOOST_TEST(o.out == R"({"k":"a\u0001\tb\"c\\"})");
}

BOOST_AUTO_TEST_CASE(form_every_split_two_and_three_chunks) {
  std::string body = "a=1&t=%7B%7Bsecrets.k%7D%7D&u={{+secrets.q+}}&v=%7b%7B%20secrets.q%20}%7d&w=100%25";
  std::string expected = "a=1&t=va%22l%5Cue%0A%2F%C3%A9&u=plain&v=plain&w=100%25";
  every_split(BodyFormat::form, body, expected);
}

BOOST_AUTO_TEST_CASE(longest_reference_split_everywhere) {
  std::string name(128, 'n');
  std::string ref = "{{" + std::string(32, ' ') + "secrets." + name + std::string(32, ' ') + "}}";
  BOOST_REQUIRE_EQUAL(ref.size(), kMaxReferenceLength);
  Values v;
  std::string body = "[\"" + ref + "\"]";
  for (std::size_t i = 0; i <= body.size(); ++i) {
    auto o = run(BodyFormat::json, v, body, {i});
    BOOST_REQUIRE_MESSAGE(o.out == "[\"max\"]", "split " << i);
  }
  // Percent-encoded, the longest form a form body can carry.
  std::string enc;
  for (char c : ref) {
    char buf[4];
    std::snprintf(buf, sizeof buf, "%%%02X", static_cast<unsigned char>(c));
    enc += buf;
  }
  BOOST_REQUIRE_EQUAL(enc.size(), kMaxEncodedReferenceLength);
  std::string form = "x=" + enc + "&y=1";
  for (std::size_t i = 0; i <= form.size(); i += 7) {
    auto o = run(BodyFormat::form, v, form, {i});
    BOOST_REQUIRE_MESSAGE(o.out == "x=max&y=1", "split " << i);
  }
}

BOOST_AUTO_TEST_CASE(output_not_held_back_needlessly) {
  Values v;
  BodySubstituter sub(BodyFormat::json, v.resolver());
  std::string out;
  BOOST_TEST(!sub.feed("hello {{secr", out));
  BOOST_TEST(out == "hello ");  // the possible reference start is held back, nothing else
  BOOST_TEST(!sub.feed("et", out));
  BOOST_TEST(out == "hello ");  // "{{secret" may still become "{{secrets.…"
  BOOST_TEST(!sub.feed(std::string(1000, 'z'), out));
  BOOST_TEST(out == "hello {{secret" + std::string(1000, 'z'));
  BOOST_TEST(!sub.feed("{", out));
  BOOST_TEST(out.size() == 1014u);
  BOOST_TEST(!sub.finish(out));
  BOOST_TEST(out.back() == '{');
  BOOST_TEST(!sub.found_reference());
}

BOOST_AUTO_TEST_CASE(records_names_and_values) {
  Values v;
  BodySubstituter sub(BodyFormat::json, v.resolver());
  std::string out;
  BOOST_TEST(!sub.feed(R"({"a":"{{secrets.q}}","b":"{{secrets.q}}","c":"{{secrets.k}}"})", out));
  BOOST_TEST(!sub.finish(out));
  BOOST_TEST(sub.found_reference());
  BOOST_TEST(sub.secrets_used() == (std::vector<std::string>{"q", "k"}));
  BOOST_TEST(sub.values_used().size() == 2u);
}

BOOST_AUTO_TEST_CASE(refusal_before_any_part_of_the_reference_is_emitted) {
  std::string body = R"({"ok":"{{secrets.q}}","bad":"pre {{ secrets.missing }} post"})";
  std::size_t ref_at = body.find("{{ secrets.missing");
  Values v;
  for (std::size_t i = 0; i <= body.size(); ++i)
    for (std::size_t j = i; j <= body.size(); ++j) {
      auto o = run(BodyFormat::json, v, body, {i, j});
      BOOST_REQUIRE(o.refusal);
      BOOST_TEST(o.refusal->code == "unknown_secret");
      BOOST_TEST(o.refusal->secret == "missing");
      // What was emitted is a prefix of the substituted body that stops before the reference.
      std::string full_prefix = R"({"ok":"plain","bad":"pre )";
      BOOST_REQUIRE_MESSAGE(o.before_refusal.size() <= full_prefix.size() &&
                                full_prefix.compare(0, o.before_refusal.size(), o.before_refusal) == 0,
                            i << "," << j << ": " << o.before_refusal);
      (void)ref_at;
    }
}

BOOST_AUTO_TEST_CASE(refusal_is_sticky_and_appends_nothing) {
  Values v;
  BodySubstituter sub(BodyFormat::json, v.resolver());
  std::string out;
  auto r = sub.feed(R"(x {{secrets.q}} {{secrets.nope}} y)", out);
  BOOST_REQUIRE(r);
  BOOST_TEST(out.empty());  // the call that refuses appends nothing, not even the good part
  BOOST_TEST(sub.feed("more", out)->code == "unknown_secret");
  BOOST_TEST(sub.finish(out)->code == "unknown_secret");
  BOOST_TEST(out.empty());
}

BOOST_AUTO_TEST_CASE(malformed_reference_refused) {
  Values v;
  for (std::string body : {R"({"a":"{{secrets.bad name}}"})", R"({"a":"{{secrets.}}"})", R"({"a":"{{ secrets.x)"}) {
    auto o = run(BodyFormat::json, v, body, {body.size() / 2});
    BOOST_REQUIRE_MESSAGE(o.refusal, body);
    BOOST_TEST(o.refusal->code == "bad_request");
  }
  auto form = run(BodyFormat::form, v, "a=%7B%7Bsecrets.%7D%7D", {5});
  BOOST_TEST(form.refusal->code == "bad_request");
}

BOOST_AUTO_TEST_CASE(opaque_bodies_refuse_references) {
  Values v;
  auto o = run(BodyFormat::opaque, v, "text with {{secrets.q}} inside", {13});
  BOOST_REQUIRE(o.refusal);
  BOOST_TEST(o.refusal->code == "reference_not_allowed");
  BOOST_TEST(o.before_refusal.find("{{") == std::string::npos);
  using namespace std::string_literals;
  const std::string bin = "binary {\x00{{ secrets.bad name }} stuff"s;
  auto plain = run(BodyFormat::opaque, v, bin, {3});
  BOOST_TEST(!plain.refusal);
  BOOST_TEST(plain.out == bin);
}

BOOST_AUTO_TEST_SUITE_END()
