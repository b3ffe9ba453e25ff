#include <boost/test/unit_test.hpp>

#include "policy/destination.hpp"

using namespace sidekey::policy;

BOOST_AUTO_TEST_SUITE(destination)

BOOST_AUTO_TEST_CASE(normalize_names) {
  BOOST_TEST(*normalize_host("API.OpenAI.com") == "api.openai.com");
  BOOST_TEST(*normalize_host("api.openai.com.") == "api.openai.com");
  BOOST_TEST(*normalize_host("my_host-1.internal") == "my_host-1.internal");
  BOOST_TEST(*normalize_host("localhost") == "localhost");
  for (std::string bad : std::vector<std::string>{"", ".", "a..b", ".a", "a.b..", "ex ample.com", "exa$mple.com",
                                                 "ü.com", std::string(64, 'a') + ".com", "a/b", "a@b"})
    BOOST_TEST(!normalize_host(bad), bad);
  std::string long_name;
  for (int i = 0; i < 64; ++i) long_name += "abc.";
  long_name += "com";
  BOOST_TEST(!normalize_host(long_name));
}

BOOST_AUTO_TEST_CASE(normalize_ip_literals) {
  BOOST_TEST(*normalize_host("127.0.0.1") == "127.0.0.1");
  BOOST_TEST(*normalize_host("169.254.169.254.") == "169.254.169.254");
  BOOST_TEST(*normalize_host("[::1]") == "::1");
  BOOST_TEST(*normalize_host("[2001:DB8:0:0::1]") == "2001:db8::1");
  BOOST_TEST(*normalize_host("[::ffff:127.0.0.1]") == "::ffff:127.0.0.1");
  BOOST_TEST(!normalize_host("::1"));  // bare IPv6 only where asked for
  BOOST_TEST(*normalize_host("::1", true) == "::1");
  BOOST_TEST(!normalize_host("[127.0.0.1]"));
  BOOST_TEST(!normalize_host("[fe80::1%25eth0]"));
  BOOST_TEST(!normalize_host("[::1"));
  // Numeric forms a resolver might read as IPv4 are refused rather than treated as names.
  for (std::string odd : {"127.1", "0x7f.0.0.1", "2130706433", "0177.0.0.1", "1.2.3.4.5", "foo.0x1", "a.123"})
    BOOST_TEST(!normalize_host(odd), odd);
  BOOST_TEST(*normalize_host("123.example.com") == "123.example.com");
  BOOST_TEST(*normalize_host("0xfoo.example") == "0xfoo.example");
}

BOOST_AUTO_TEST_CASE(split_host_port_forms) {
  auto a = split_host_port("Example.com:8080");
  BOOST_TEST(a->host == "example.com");
  BOOST_TEST(a->port == 8080);
  BOOST_TEST(split_host_port("example.com")->port == 0);
  auto v6 = split_host_port("[::1]:443");
  BOOST_TEST(v6->host == "::1");
  BOOST_TEST(v6->port == 443);
  for (std::string bad : {"example.com:", "example.com:0", "example.com:65536", "example.com:8a", "example.com:+80",
                          "[::1]x", "::1:443", ":80", "example.com:123456"})
    BOOST_TEST(!split_host_port(bad), bad);
}

BOOST_AUTO_TEST_CASE(connect_authority) {
  auto d = parse_connect_authority("API.openai.com:443");
  BOOST_REQUIRE(d);
  BOOST_TEST(d->host == "api.openai.com");
  BOOST_TEST(d->port == 443);
  BOOST_TEST(d->tls);
  BOOST_TEST(d->scheme == "https");
  BOOST_TEST(!parse_connect_authority("api.openai.com"));  // the port is required
  auto v6 = parse_connect_authority("[2001:db8::1]:8443");
  BOOST_TEST(v6->host == "2001:db8::1");
  BOOST_TEST(v6->authority() == "[2001:db8::1]:8443");
}

BOOST_AUTO_TEST_CASE(absolute_urls) {
  auto u = parse_absolute_url("http://Example.com/a/b?x=1");
  BOOST_REQUIRE(u);
  BOOST_TEST(u->destination.scheme == "http");
  BOOST_TEST(u->destination.host == "example.com");
  BOOST_TEST(u->destination.port == 80);
  BOOST_TEST(!u->destination.tls);
  BOOST_TEST(u->target == "/a/b?x=1");

  auto s = parse_absolute_url("HTTPS://api.openai.com");
  BOOST_TEST(s->destination.port == 443);
  BOOST_TEST(s->destination.tls);
  BOOST_TEST(s->target == "/");
  BOOST_TEST(parse_absolute_url("https://h.com?q=1")->target == "/?q=1");
  BOOST_TEST(parse_absolute_url("http://127.0.0.1:18080/x")->destination.port == 18080);
  BOOST_TEST(parse_absolute_url("http://[::1]:8080/")->destination.host == "::1");

  for (std::string bad : {"ftp://h.com/", "h.com/x", "http://user:pw@h.com/", "http://api.openai.com@evil.com/",
                          "http:///x", "http://h.com/a#frag", "http://h.com/a b", "http://h.com:99999/",
                          "//h.com/", "http://h.com/\x7f"})
    BOOST_TEST(!parse_absolute_url(bad), bad);
}

BOOST_AUTO_TEST_CASE(host_header_and_upgrade) {
  Destination d{"http", "example.com", 80, false};
  BOOST_TEST(d.host_header() == "example.com");
  BOOST_TEST((Destination{"http", "example.com", 8080, false}.host_header() == "example.com:8080"));
  BOOST_TEST((Destination{"https", "::1", 443, true}.host_header() == "[::1]"));
  BOOST_TEST((Destination{"https", "::1", 8443, true}.host_header() == "[::1]:8443"));
  auto up = d.upgraded_to_tls();
  BOOST_TEST(up.tls);
  BOOST_TEST(up.port == 443);
  BOOST_TEST(up.scheme == "http");  // how the agent addressed it stays recorded
  BOOST_TEST(up.host_header() == "example.com");
  auto up2 = Destination{"http", "example.com", 8080, false}.upgraded_to_tls();
  BOOST_TEST(up2.port == 8080);
  BOOST_TEST(!d.host_is_ip());
  BOOST_TEST((Destination{"https", "10.0.0.1", 443, true}.host_is_ip()));
}

BOOST_AUTO_TEST_SUITE_END()
