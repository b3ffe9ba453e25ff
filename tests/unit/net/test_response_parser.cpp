#include <boost/beast/http.hpp>
#include <boost/test/unit_test.hpp>

#include <string>

#include "proxy/framing.hpp"
#include "proxy/response_parser.hpp"

using namespace sidekey;
using proxy::ResponseParser;
namespace http = boost::beast::http;

BOOST_AUTO_TEST_SUITE(response_parser)

namespace {
boost::system::error_code E(http::error e) { return http::make_error_code(e); }

// Parses the head of `message`; returns the error (the head is the part find_head_end finds).
boost::system::error_code head(ResponseParser& p, std::string_view message, std::size_t* end_out = nullptr) {
  const std::size_t end = proxy::find_head_end(message);
  BOOST_REQUIRE(end != std::string_view::npos);
  if (end_out) *end_out = end;
  return p.put_head(message.substr(0, end));
}

// The body after the head, fed `step` bytes at a time (and all that is left when a piece is too
// short for the next element, as the relay's reads accumulate), through a window of `window`
// bytes; the end of `rest` is the end of the stream.
std::string body(ResponseParser& p, std::string rest, std::size_t step, std::size_t window,
                 boost::system::error_code* error = nullptr) {
  std::string out;
  char buf[64];
  boost::system::error_code ec;
  for (int guard = 0; guard < 100000 && !p.is_done(); ++guard) {
    p.body.data = buf;
    p.body.size = window;
    if (rest.empty()) {
      p.put_eof(ec);
      break;
    }
    std::size_t used = p.put(boost::asio::buffer(rest.data(), std::min(step, rest.size())), ec);
    if (ec == http::error::need_more && used == 0) used = p.put(boost::asio::buffer(rest), ec);
    if (ec == http::error::need_more && used == 0) {
      out.append(buf, window - p.body.size);
      p.put_eof(ec);
      break;
    }
    if (ec == http::error::need_buffer || ec == http::error::need_more) ec = {};
    out.append(buf, window - p.body.size);
    if (ec) break;
    rest.erase(0, used);
  }
  if (error) *error = ec;
  else BOOST_TEST(!ec, ec.message());
  return out;
}
}  // namespace

BOOST_AUTO_TEST_CASE(a_head_with_a_length) {
  const std::string m =
      "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sat, 28 Nov 2026 05:00:00 GMT\r\nContent-Type: text/plain\r\n"
      "Content-Length: 38\r\nConnection: keep-alive\r\nX-Empty:\r\nX-Spaces: \t a b \t\r\n\r\n"
      "sidekey-bench-upstream-body-0123456\n..";
  for (std::size_t step : {1, 3, 64})
    for (std::size_t window : {1, 5, 64}) {
      ResponseParser p;
      std::size_t end = 0;
      BOOST_REQUIRE(!head(p, m, &end));
      BOOST_TEST(p.version == 11u);
      BOOST_TEST(p.status == 200);
      BOOST_TEST(p.reason == "OK");
      BOOST_REQUIRE(p.fields.size() == 7u);
      BOOST_TEST(p.fields[0].name == "Server");
      BOOST_TEST(p.fields[1].value == "Sat, 28 Nov 2026 05:00:00 GMT");
      BOOST_TEST(p.fields[5].value == "");
      BOOST_TEST(p.fields[6].value == "a b");  // OWS around the value is not the value
      BOOST_TEST(*p.content_length() == 38u);
      BOOST_TEST(!p.chunked());
      BOOST_TEST(!p.need_eof());
      BOOST_TEST(p.keep_alive());
      BOOST_TEST(!p.is_done());
      BOOST_TEST(body(p, m.substr(end), step, window) == "sidekey-bench-upstream-body-0123456\n..");
      BOOST_TEST(p.is_done());
    }
}

BOOST_AUTO_TEST_CASE(bytes_after_the_length_are_left_for_the_next_response) {
  const std::string m = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n";
  ResponseParser p;
  std::size_t end = 0;
  BOOST_REQUIRE(!head(p, m, &end));
  char buf[16];
  p.body.data = buf;
  p.body.size = sizeof buf;
  boost::system::error_code ec;
  const std::string rest = m.substr(end);
  BOOST_TEST(p.put(boost::asio::buffer(rest), ec) == 2u);
  BOOST_TEST(!ec);
  BOOST_TEST(p.is_done());
  BOOST_TEST(std::string(buf, 2) == "ok");
}

BOOST_AUTO_TEST_CASE(a_chunked_body_ends_at_its_last_chunk) {
  // What follows the last chunk and the trailer section is the next response's.
  const std::string m =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: t\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
  ResponseParser p;
  std::size_t end = 0;
  BOOST_REQUIRE(!head(p, m, &end));
  std::string rest = m.substr(end);
  const std::size_t body_bytes = std::string("2\r\nok\r\n0\r\nX-T: t\r\n\r\n").size();
  char buf[16];
  std::size_t consumed = 0;
  for (int i = 0; i < 20 && !p.is_done(); ++i) {
    p.body.data = buf;
    p.body.size = sizeof buf;
    boost::system::error_code ec;
    consumed += p.put(boost::asio::buffer(rest.data() + consumed, rest.size() - consumed), ec);
    BOOST_REQUIRE(!ec || ec == http::error::need_more);
  }
  BOOST_TEST(p.is_done());
  BOOST_TEST(consumed == body_bytes);
}

BOOST_AUTO_TEST_CASE(a_body_before_the_head_is_refused) {
  ResponseParser p;
  char buf[8];
  p.body.data = buf;
  p.body.size = sizeof buf;
  boost::system::error_code ec;
  BOOST_TEST(p.put(boost::asio::buffer("HTTP/1.1", 8), ec) == 0u);
  BOOST_TEST(ec == E(http::error::partial_message));
}

BOOST_AUTO_TEST_CASE(a_chunked_body_without_its_trailers) {
  const std::string m =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"
      "5;ext=v\r\nhello\r\n1A\r\n, a longer chunk of bytes.\r\n0\r\nX-Trailer: t\r\n\r\n";
  for (std::size_t step : {1, 2, 7, 64})
    for (std::size_t window : {1, 3, 64}) {
      ResponseParser p;
      std::size_t end = 0;
      BOOST_REQUIRE(!head(p, m, &end));
      BOOST_TEST(p.chunked());
      BOOST_TEST(!p.content_length());
      BOOST_TEST(p.keep_alive());
      BOOST_TEST(body(p, m.substr(end), step, window) == "hello, a longer chunk of bytes.");
      BOOST_TEST(p.is_done());
      BOOST_TEST(p.fields.size() == 2u);  // no trailer joined them
    }
}

BOOST_AUTO_TEST_CASE(a_malformed_chunk_is_an_error) {
  const std::string m = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n";
  ResponseParser p;
  std::size_t end = 0;
  BOOST_REQUIRE(!head(p, m, &end));
  boost::system::error_code ec;
  body(p, m.substr(end), 64, 64, &ec);
  BOOST_TEST(ec == E(http::error::bad_chunk));
}

BOOST_AUTO_TEST_CASE(a_body_to_the_end_of_the_stream) {
  const std::string m = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it, until the close";
  ResponseParser p;
  std::size_t end = 0;
  BOOST_REQUIRE(!head(p, m, &end));
  BOOST_TEST(p.need_eof());
  BOOST_TEST(!p.keep_alive());
  BOOST_TEST(body(p, m.substr(end), 4, 5) == "all of it, until the close");
  BOOST_TEST(p.is_done());
}

BOOST_AUTO_TEST_CASE(a_stream_that_ends_early_is_a_partial_message) {
  for (const std::string m : {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nfive.",
                              "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"}) {
    ResponseParser p;
    std::size_t end = 0;
    BOOST_REQUIRE(!head(p, m, &end));
    boost::system::error_code ec;
    body(p, m.substr(end), 64, 64, &ec);
    BOOST_TEST(ec == E(http::error::partial_message), m);
    BOOST_TEST(!p.is_done());
  }
}

BOOST_AUTO_TEST_CASE(responses_without_a_body) {
  for (const std::string m : {"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", "HTTP/1.1 304 \r\n\r\n",
                              "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
                              "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
                              "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"}) {
    ResponseParser p;
    BOOST_REQUIRE(!head(p, m));
    BOOST_TEST(p.is_done(), m);
    BOOST_TEST(!p.need_eof(), m);
    char buf[8];
    p.body.data = buf;
    p.body.size = sizeof buf;
    boost::system::error_code ec;
    BOOST_TEST(p.put(boost::asio::buffer("next", 4), ec) == 0u, m);  // the next response's bytes stay
    BOOST_TEST(!ec);
  }
  ResponseParser head_request;  // a response to HEAD keeps its framing fields, and has no body
  head_request.skip(true);
  BOOST_REQUIRE(!head(head_request, "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"));
  BOOST_TEST(head_request.is_done());
  BOOST_TEST(*head_request.content_length() == 1234u);
  BOOST_TEST(head_request.keep_alive());
}

BOOST_AUTO_TEST_CASE(keep_alive_by_version_and_connection) {
  auto keeps = [](std::string m) {
    ResponseParser p;
    BOOST_REQUIRE(!head(p, m));
    return p.keep_alive();
  };
  BOOST_TEST(keeps("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
  BOOST_TEST(!keeps("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: x, CLOSE\r\n\r\n"));
  BOOST_TEST(!keeps("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nProxy-Connection: close\r\n\r\n"));
  BOOST_TEST(!keeps("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
  BOOST_TEST(keeps("HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: ,Keep-Alive,\r\n\r\n"));
}

BOOST_AUTO_TEST_CASE(malformed_and_ambiguous_heads_are_refused) {
  const std::pair<std::string, http::error> cases[] = {
      {"HTTP/2.0 200 OK\r\n\r\n", http::error::bad_version},
      {"HTTP/1.1200 OK\r\n\r\n", http::error::bad_version},
      {"HTTP/1.1 20 OK\r\n\r\n", http::error::bad_status},
      {"HTTP/1.1 200\r\n\r\n", http::error::bad_status},
      {"HTTP/1.1 200 O\x01K\r\n\r\n", http::error::bad_reason},
      {"HTTP/1.1 200 OK\r\nX A: b\r\n\r\n", http::error::bad_field},
      {"HTTP/1.1 200 OK\r\n: b\r\n\r\n", http::error::bad_field},
      {"HTTP/1.1 200 OK\r\nX-A: b\x7f\r\n\r\n", http::error::bad_value},
      {"HTTP/1.1 200 OK\r\nX-A: b\nX-B: c\r\n\r\n", http::error::bad_value},
      {"HTTP/1.1 200 OK\r\nX-A: b\rc\r\n\r\n", http::error::bad_line_ending},
      {"HTTP/1.1 200 OK\r\nX-A: b\r\n folded\r\n\r\n", http::error::bad_obs_fold},
      {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", http::error::multiple_content_length},
      {"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n", http::error::bad_content_length},
      {"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", http::error::bad_content_length},
      {"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", http::error::bad_content_length},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", http::error::bad_content_length},
      {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", http::error::bad_transfer_encoding},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
       http::error::bad_transfer_encoding},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", http::error::bad_transfer_encoding},
      {"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n", http::error::bad_transfer_encoding},
      {"HTTP/1.1 200 OK\r\nConnection: keep-alive close\r\n\r\n", http::error::bad_value},
  };
  for (const auto& [m, want] : cases) {
    ResponseParser p;
    BOOST_TEST(head(p, m) == E(want), m);
  }
}

BOOST_AUTO_TEST_CASE(many_fields) {
  std::string m = "HTTP/1.1 200 OK\r\n";
  for (int i = 0; i < 40; ++i) m += "X-Field-" + std::to_string(i) + ": value number " + std::to_string(i) + "\r\n";
  m += "Content-Length: 0\r\n\r\n";
  ResponseParser p;
  BOOST_REQUIRE(!head(p, m));
  BOOST_REQUIRE(p.fields.size() == 41u);
  BOOST_TEST(p.fields[39].value == "value number 39");
  // Views of the head where it lies: nothing copied (wiping those bytes wipes the fields).
  const auto inside = [&](std::string_view v) { return v.data() >= m.data() && v.data() + v.size() <= m.data() + m.size(); };
  BOOST_TEST(inside(p.fields[39].value));
  BOOST_TEST(inside(p.fields[0].name));
  BOOST_TEST(inside(p.reason));
  p.clear_head();
  BOOST_TEST(p.fields.empty());
  BOOST_TEST(p.reason.empty());
}

BOOST_AUTO_TEST_SUITE_END()
