#include <boost/beast/http.hpp>
#include <boost/test/unit_test.hpp>

#include <string>

#include "proxy/framing.hpp"
#include "proxy/request_parser.hpp"

using namespace sidekey;
using proxy::RequestParser;
namespace http = boost::beast::http;

BOOST_AUTO_TEST_SUITE(request_parser)

namespace {
// Parses the head of `message` (the part find_head_end finds); returns the error.
boost::system::error_code head(RequestParser& p, std::string_view message, std::size_t* end_out = nullptr) {
  const std::size_t end = proxy::find_head_end(message);
  BOOST_REQUIRE(end != std::string_view::npos);
  if (end_out) *end_out = end;
  return p.put_head(message.substr(0, end));
}

// The body after the head, fed `step` bytes at a time through a window of `window` bytes.
std::string body(RequestParser& p, std::string rest, std::size_t step, std::size_t window) {
  std::string out;
  std::vector<char> win(window);
  boost::system::error_code ec;
  while (!p.is_done()) {
    p.body.data = win.data();
    p.body.size = window;
    if (rest.empty()) {
      p.put_eof(ec);
      break;
    }
    const std::size_t n = std::min(step, rest.size());
    std::size_t used = p.put(boost::asio::buffer(rest.data(), n), ec);
    if (ec == http::error::need_more && used == 0) used = p.put(boost::asio::buffer(rest), ec);
    out.append(win.data(), window - p.body.size);
    if (ec == http::error::need_buffer || ec == http::error::need_more) ec = {};
    BOOST_REQUIRE_MESSAGE(!ec, ec.message());
    rest.erase(0, used);
  }
  BOOST_TEST(!ec);
  return out;
}
}  // namespace

BOOST_AUTO_TEST_CASE(head_lands_in_policy_fields) {
  const std::string msg =
      "POST /v1/x?q=1 HTTP/1.1\r\nHost: api.example\r\nAuthorization:  Bearer {{secrets.k}} \r\n"
      "Content-Length: 5\r\nX-Empty:\r\n\r\nhello";
  RequestParser p;
  std::size_t end = 0;
  BOOST_REQUIRE(!head(p, msg, &end));
  BOOST_TEST(p.method_string == "POST");
  BOOST_TEST((p.method == http::verb::post));
  BOOST_TEST(p.target == "/v1/x?q=1");
  BOOST_TEST(p.version == 11u);
  BOOST_TEST(p.keep_alive());
  BOOST_REQUIRE(p.fields.size() == 4u);
  BOOST_TEST(p.fields[1].value == "Bearer {{secrets.k}}");  // OWS around the value is not the value
  BOOST_TEST(p.fields[3].value == "");
  BOOST_TEST(*p.content_length() == 5u);
  BOOST_TEST(!p.is_done());
  for (std::size_t step : {1u, 2u, 100u}) {
    RequestParser q;
    BOOST_REQUIRE(!head(q, msg));
    BOOST_TEST(body(q, msg.substr(end), step, 3) == "hello");
    BOOST_TEST(q.is_done());
  }
}

BOOST_AUTO_TEST_CASE(no_length_no_body_and_keep_alive_by_version) {
  RequestParser get;
  BOOST_REQUIRE(!head(get, "GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
  BOOST_TEST(get.is_done());  // no Content-Length, no Transfer-Encoding: no body (RFC 9112 6.3)
  BOOST_TEST(get.keep_alive());
  RequestParser close;
  BOOST_REQUIRE(!head(close, "GET / HTTP/1.1\r\nConnection: x, Close\r\n\r\n"));
  BOOST_TEST(!close.keep_alive());
  RequestParser old;
  BOOST_REQUIRE(!head(old, "GET http://h/ HTTP/1.0\r\n\r\n"));
  BOOST_TEST(old.version == 10u);
  BOOST_TEST(!old.keep_alive());
  RequestParser old_kept;
  BOOST_REQUIRE(!head(old_kept, "GET http://h/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  BOOST_TEST(old_kept.keep_alive());
  RequestParser connect;
  BOOST_REQUIRE(!head(connect, "CONNECT api.example:443 HTTP/1.1\r\nHost: api.example:443\r\n\r\n"));
  BOOST_TEST((connect.method == http::verb::connect));
  BOOST_TEST(connect.target == "api.example:443");
}

BOOST_AUTO_TEST_CASE(chunked_body_through_small_windows) {
  const std::string msg =
      "PUT /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
  for (std::size_t step : {2u, 5u, 1000u})
    for (std::size_t window : {1u, 4u, 64u}) {
      RequestParser p;
      std::size_t end = 0;
      BOOST_REQUIRE(!head(p, msg, &end));
      BOOST_TEST(p.chunked());
      BOOST_TEST(body(p, msg.substr(end, msg.size() - end - 4), step, window) == "hello world");
    }
}

// Each shape the proxy refuses (SPEC invariant 10), with the reason the client is told.
BOOST_AUTO_TEST_CASE(ambiguous_or_malformed_heads_are_refused_with_a_reason) {
  struct Case {
    std::string head;
    std::string reason;
  };
  const Case cases[] = {
      {"GET / HTTP/1.1\nHost: h\r\n\r\n", "bare LF"},
      {"GET / HTTP/1.1\r\nHost: h\n\r\n", "bare LF"},
      {"GET / HTTP/1.1\r\nHost: h\rx\r\n\r\n", "CR inside"},
      {std::string("GET / HTTP/1.1\r\nHost: h") + '\0' + "x\r\n\r\n", "NUL"},
      {"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n", "obs-fold"},
      {"GET / HTTP/1.1\r\n folded: x\r\n\r\n", "obs-fold"},
      {"GET / HTTP/1.1\r\nHost : h\r\n\r\n", "whitespace between a header name and its colon"},
      {"GET / HTTP/1.1\r\n: x\r\n\r\n", "without a name"},
      {"GET / HTTP/1.1\r\nNoColonHere\r\n\r\n", "bad header name"},
      {"GET / HTTP/1.1\r\nX\x01Y: 1\r\n\r\n", "bad header name"},
      {"GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", "control character"},
      {"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", "more than one Content-Length"},
      {"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", "both Content-Length and Transfer-Encoding"},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", "both Content-Length and Transfer-Encoding"},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", "more than one Transfer-Encoding"},
      {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", "Transfer-Encoding in an HTTP/1.0 request"},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "only chunked is accepted"},
      {"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n", "bad Content-Length"},
      {"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"},
      {"POST / HTTP/1.1\r\nContent-Length: 123456789012345678901\r\n\r\n", "bad Content-Length"},
      {"GET / HTTP/1.1\r\nConnection: a b\r\n\r\n", "bad Connection"},
      {"G(T / HTTP/1.1\r\n\r\n", "bad method"},
      {" GET / HTTP/1.1\r\n\r\n", "bad method"},
      {"GET  / HTTP/1.1\r\n\r\n", "bad request target"},
      {"GET /a\x7f HTTP/1.1\r\n\r\n", "bad request target"},
      {"GET / HTTP/1.2\r\n\r\n", "unsupported HTTP version"},
      {"GET / HTTP/2.0\r\n\r\n", "unsupported HTTP version"},
      {"GET / HTTPS/1.1\r\n\r\n", "bad HTTP version"},
      {"GET / HTTP/1.1 \r\n\r\n", "bad HTTP version"},
  };
  for (const auto& c : cases) {
    RequestParser p;
    const auto end = proxy::find_head_end(c.head);
    BOOST_REQUIRE_MESSAGE(end != std::string_view::npos, c.head);
    BOOST_TEST(static_cast<bool>(p.put_head(std::string_view(c.head).substr(0, end))), c.head);
    BOOST_TEST(p.problem().find(c.reason) != std::string::npos, c.head << " -> " << p.problem());
  }
}

// token_run skips letters, digits and '-' 16 bytes at a time: it must stop where a byte-by-byte
// tchar scan stops, for every byte value at every position of runs longer and shorter than 16.
BOOST_AUTO_TEST_CASE(token_run_stops_where_a_byte_by_byte_scan_stops) {
  auto reference = [](const char* p, const char* end) {
    const char* q = p;
    while (q < end && is_tchar(*q)) ++q;
    return static_cast<std::size_t>(q - p);
  };
  const std::string names = "Content-Length:x-Custom_Header.v2~!#$%&'*+^`|AZaz09";
  for (std::size_t len = 0; len <= 40; ++len)
    for (std::size_t at = 0; at <= len; ++at)
      for (int c = 0; c < 256; ++c) {
        std::string s;
        for (std::size_t i = 0; i < len; ++i) s += names[(i * 7 + len) % names.size()];
        if (at < len) s[at] = static_cast<char>(c);
        s += "0123456789abcdef";  // bytes after the end: never read past it
        const char* end = s.data() + len;
        BOOST_TEST_REQUIRE(proxy::head_syntax::token_run(s.data(), end) == reference(s.data(), end),
                           "length " << len << ", byte " << c << " at " << at);
      }
}

BOOST_AUTO_TEST_SUITE_END()
