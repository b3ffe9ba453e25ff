#include <boost/test/unit_test.hpp>

#include "policy/host_pattern.hpp"

using namespace sidekey::policy;

namespace {
HostPattern P(std::string_view text) {
  std::string why;
  auto p = HostPattern::parse(text, &why);
  BOOST_REQUIRE_MESSAGE(p, why);
  return *p;
}
Destination tls(const std::string& h, std::uint16_t port = 443) { return {"https", h, port, true}; }
Destination plain(const std::string& h, std::uint16_t port = 80) { return {"http", h, port, false}; }
}  // namespace

BOOST_AUTO_TEST_SUITE(host_pattern)

BOOST_AUTO_TEST_CASE(parse_forms) {
  auto a = P("API.OpenAI.com");
  BOOST_TEST(a.host() == "api.openai.com");
  BOOST_TEST(!a.port());
  BOOST_TEST(!a.wildcard());
  BOOST_TEST(!a.plain_http());
  BOOST_TEST(a.text() == "API.OpenAI.com");
  auto w = P("*.example.com:8443");
  BOOST_TEST(w.wildcard());
  BOOST_TEST(w.host() == "example.com");
  BOOST_TEST(*w.port() == 8443);
  auto h = P("http://127.0.0.1:18080");
  BOOST_TEST(h.plain_http());
  BOOST_TEST(h.host() == "127.0.0.1");
  BOOST_TEST(*h.port() == 18080);
  BOOST_TEST(P("HTTP://x.com").plain_http());
  BOOST_TEST(!P("https://x.com").plain_http());
  BOOST_TEST(P("[::1]:8080").host() == "::1");
  BOOST_TEST(P("::1").host() == "::1");
  BOOST_TEST(P("2001:DB8::1").host() == "2001:db8::1");
}

BOOST_AUTO_TEST_CASE(parse_refusals) {
  for (std::string bad : {"", "*", "*.", "*.*.com", "a*.b.com", "*b.com", "api.*.com", "ftp://a.com", "http://",
                          "a.com/path", "user@a.com", "a.com:0", "a.com:70000", "a.com:", "*.127.0.0.1",
                          "[::1", "::1:80:x", "a com", "http://a.com/", "127.1"}) {
    std::string why;
    BOOST_TEST(!HostPattern::parse(bad, &why), bad);
    BOOST_TEST(!why.empty(), bad);
  }
}

BOOST_AUTO_TEST_CASE(wildcard_matches_subdomains_not_apex) {
  auto w = P("*.example.com");
  BOOST_TEST(w.host_matches("a.example.com"));
  BOOST_TEST(w.host_matches("a.b.example.com"));
  BOOST_TEST(!w.host_matches("example.com"));
  BOOST_TEST(!w.host_matches("badexample.com"));
  BOOST_TEST(!w.host_matches("example.com.evil.net"));
  BOOST_TEST(!w.host_matches(".example.com"));
}

BOOST_AUTO_TEST_CASE(rule_matching_ports) {
  auto bare = P("api.openai.com");
  BOOST_TEST(bare.matches(tls("api.openai.com")));
  BOOST_TEST(bare.matches(tls("api.openai.com", 8443)));  // no port in a rule: every port
  BOOST_TEST(bare.matches(plain("api.openai.com")));      // and either scheme
  BOOST_TEST(!bare.matches(tls("openai.com")));
  auto ported = P("api.openai.com:8443");
  BOOST_TEST(ported.matches(tls("api.openai.com", 8443)));
  BOOST_TEST(!ported.matches(tls("api.openai.com", 443)));
  auto h = P("http://127.0.0.1:18080");
  BOOST_TEST(h.matches(plain("127.0.0.1", 18080)));
  BOOST_TEST(h.matches(tls("127.0.0.1", 18080)));
  BOOST_TEST(!h.matches(plain("127.0.0.1", 80)));
}

BOOST_AUTO_TEST_CASE(binding_without_scheme_is_tls_443) {
  auto b = P("api.openai.com");
  BOOST_TEST(b.allows(tls("api.openai.com")));
  BOOST_TEST(!b.allows(plain("api.openai.com", 80)));
  BOOST_TEST(!b.allows(plain("api.openai.com", 443)));
  BOOST_TEST(!b.allows(tls("api.openai.com", 8443)));
  BOOST_TEST(!b.allows(tls("evil.com")));
  auto p = P("api.example.com:8443");
  BOOST_TEST(p.allows(tls("api.example.com", 8443)));
  BOOST_TEST(!p.allows(tls("api.example.com", 443)));
  BOOST_TEST(!p.allows(plain("api.example.com", 8443)));
}

BOOST_AUTO_TEST_CASE(binding_with_http_scheme) {
  auto h = P("http://svc.local");
  BOOST_TEST(h.allows(plain("svc.local", 80)));
  BOOST_TEST(h.allows(tls("svc.local", 443)));
  BOOST_TEST(!h.allows(plain("svc.local", 443)));
  BOOST_TEST(!h.allows(plain("svc.local", 8080)));
  auto hp = P("http://127.0.0.1:18080");
  BOOST_TEST(hp.allows(plain("127.0.0.1", 18080)));
  BOOST_TEST(hp.allows(tls("127.0.0.1", 18080)));
  BOOST_TEST(!hp.allows(plain("127.0.0.1", 80)));
  BOOST_TEST(!hp.allows(plain("127.0.0.2", 18080)));
}

BOOST_AUTO_TEST_CASE(binding_wildcards_and_ips) {
  auto w = P("*.googleapis.com");
  BOOST_TEST(w.allows(tls("maps.googleapis.com")));
  BOOST_TEST(!w.allows(tls("googleapis.com")));
  BOOST_TEST(!w.allows(plain("maps.googleapis.com")));
  auto v6 = P("[2001:db8::1]:8443");
  BOOST_TEST(v6.allows(tls("2001:db8::1", 8443)));
  BOOST_TEST(!v6.allows(tls("2001:db8::2", 8443)));
  auto v4 = P("10.0.0.5");
  BOOST_TEST(v4.allows(tls("10.0.0.5")));
  BOOST_TEST(v4.allows(tls("::ffff:10.0.0.5")));  // the IPv4-mapped spelling is the same address
  BOOST_TEST(v4.matches(plain("::ffff:10.0.0.5", 8080)));
  BOOST_TEST(!v4.allows(tls("::10.0.0.5")));      // IPv4-compatible is another address
  BOOST_TEST(!v4.allows(tls("10.0.0.6")));
  BOOST_TEST(P("::ffff:10.0.0.5").allows(tls("10.0.0.5")));
}

BOOST_AUTO_TEST_CASE(binding_cover) {
  BOOST_TEST(P("api.openai.com").covers(P("api.openai.com")));
  BOOST_TEST(P("api.openai.com").covers(P("api.openai.com:443")));
  BOOST_TEST(!P("api.openai.com").covers(P("api.openai.com:8443")));
  BOOST_TEST(!P("api.openai.com").covers(P("http://api.openai.com")));
  BOOST_TEST(P("http://api.openai.com").covers(P("api.openai.com")));
  BOOST_TEST(P("http://api.openai.com").covers(P("http://api.openai.com")));
  BOOST_TEST(P("*.openai.com").covers(P("api.openai.com")));
  BOOST_TEST(P("*.openai.com").covers(P("*.eu.openai.com")));
  BOOST_TEST(P("*.openai.com").covers(P("*.openai.com")));
  BOOST_TEST(!P("*.openai.com").covers(P("openai.com")));
  BOOST_TEST(!P("api.openai.com").covers(P("*.openai.com")));
  BOOST_TEST(P("http://127.0.0.1:18080").covers(P("http://127.0.0.1:18080")));
  BOOST_TEST(!P("127.0.0.1:18080").covers(P("http://127.0.0.1:18080")));
}

BOOST_AUTO_TEST_CASE(match_cover) {
  BOOST_TEST(P("a.com").match_covers(P("a.com:8443")));
  BOOST_TEST(!P("a.com:8443").match_covers(P("a.com")));
  BOOST_TEST(P("a.com:8443").match_covers(P("http://a.com:8443")));
  BOOST_TEST(P("*.a.com").match_covers(P("x.a.com")));
  BOOST_TEST(!P("*.a.com").match_covers(P("a.com")));
}

BOOST_AUTO_TEST_SUITE_END()
