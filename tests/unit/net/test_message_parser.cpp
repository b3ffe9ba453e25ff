#include <boost/beast/http.hpp>
#include <boost/test/unit_test.hpp>

#include <string>

#include "proxy/message_parser.hpp"

using namespace sidekey;
using proxy::MessageParser;
namespace http = boost::beast::http;

BOOST_AUTO_TEST_SUITE(message_parser)

namespace {
// Feeds `bytes` in pieces of `step` bytes, as reads would deliver them; returns the body read
// through a window of `window` bytes at a time.
template <bool isRequest>
std::string feed(MessageParser<isRequest>& p, const std::string& bytes, std::size_t step, std::size_t window = 7) {
  std::string body, pending;
  char buf[64];
  std::size_t at = 0;
  while (!p.is_done()) {
    if (at < bytes.size()) {
      pending.append(bytes, at, step);
      at += step;
    }
    for (;;) {
      p.body.data = buf;
      p.body.size = window;
      boost::system::error_code ec;
      std::size_t used = p.put(boost::asio::buffer(pending), ec);
      pending.erase(0, used);
      body.append(buf, window - p.body.size);
      if (ec == http::error::need_more) break;
      if (ec == http::error::need_buffer) continue;  // the window was full: a fresh one
      BOOST_REQUIRE_MESSAGE(!ec, ec.message());
      if (p.is_done() || used == 0) break;
    }
    BOOST_REQUIRE_MESSAGE(at < bytes.size() + step || p.is_done(), "the parser wants more than the message");
  }
  return body;
}
}  // namespace

BOOST_AUTO_TEST_CASE(request_head_lands_in_policy_fields) {
  const std::string msg =
      "POST /v1/x?q=1 HTTP/1.1\r\nHost: api.example\r\nAuthorization: Bearer {{secrets.k}}\r\n"
      "Content-Length: 5\r\nX-Empty:\r\n\r\nhello";
  for (std::size_t step : {1u, 3u, 1000u}) {
    MessageParser<true> q;
    q.eager(true);
    BOOST_TEST(feed(q, msg, step) == "hello");
    BOOST_TEST(q.method_string == "POST");
    BOOST_TEST((q.method == http::verb::post));
    BOOST_TEST(q.target == "/v1/x?q=1");
    BOOST_TEST(q.version == 11u);
    BOOST_TEST(q.keep_alive());
    BOOST_REQUIRE(q.fields.size() == 4u);
    BOOST_TEST(q.fields[0].name == "Host");
    BOOST_TEST(q.fields[1].value == "Bearer {{secrets.k}}");
    BOOST_TEST(q.fields[2].name == "Content-Length");
    BOOST_TEST(q.fields[3].name == "X-Empty");
    BOOST_TEST(q.fields[3].value == "");
    BOOST_TEST(*q.content_length() == 5u);
  }
}

BOOST_AUTO_TEST_CASE(response_chunked_body_through_small_windows_and_no_trailers) {
  const std::string msg =
      "HTTP/1.1 200 Fine Thanks\r\nTransfer-Encoding: chunked\r\nServer: s\r\n\r\n"
      "4\r\nwiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-Trailer: secret-echo\r\n\r\n";
  for (std::size_t step : {1u, 5u, 1000u}) {
    MessageParser<false> p;
    BOOST_TEST(feed(p, msg, step, 5) == "wikipedia in \r\n\r\nchunks.");
    BOOST_TEST(p.status == 200);
    BOOST_TEST(p.reason == "Fine Thanks");
    BOOST_TEST(p.chunked());
    BOOST_REQUIRE(p.fields.size() == 2u);  // the trailer is not kept
    BOOST_TEST(p.fields[1].name == "Server");
  }
}

BOOST_AUTO_TEST_CASE(no_window_asks_for_a_buffer) {
  MessageParser<false> p;
  const std::string msg = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
  boost::system::error_code ec;
  std::size_t used = p.put(boost::asio::buffer(msg), ec);
  BOOST_TEST(!ec);  // the head (eager off: the head alone)
  used += p.put(boost::asio::buffer(msg.data() + used, msg.size() - used), ec);
  BOOST_TEST((ec == http::error::need_buffer));
  BOOST_TEST(!p.is_done());
}

BOOST_AUTO_TEST_CASE(many_fields_grow_and_keep_their_order) {
  std::string head = "HTTP/1.1 204 No Content\r\n";
  for (int i = 0; i < 40; ++i) head += "X-F" + std::to_string(i) + ": v" + std::to_string(i) + "\r\n";
  head += "\r\n";
  MessageParser<false> p;
  boost::system::error_code ec;
  p.put(boost::asio::buffer(head), ec);
  BOOST_REQUIRE_MESSAGE(!ec, ec.message());
  BOOST_REQUIRE(p.fields.size() == 40u);
  for (int i = 0; i < 40; ++i) {
    BOOST_TEST(p.fields[i].name == "X-F" + std::to_string(i));
    BOOST_TEST(p.fields[i].value == "v" + std::to_string(i));
  }
  const std::size_t before = p.fields.capacity();
  p.make_room(before - p.fields.size() + 1);
  BOOST_TEST(p.fields.capacity() >= before + 1);
  BOOST_TEST(p.fields.size() == 40u);
  BOOST_TEST(p.fields[39].value == "v39");
}

BOOST_AUTO_TEST_CASE(wipe_overwrites_the_head_in_place) {
  MessageParser<false> p;
  const std::string head = "HTTP/1.1 401 sk-echo-0123456789\r\nWWW-Authenticate: Bearer sk-echo-0123456789abcdef\r\n\r\n";
  boost::system::error_code ec;
  p.skip(true);
  p.put(boost::asio::buffer(head), ec);
  BOOST_REQUIRE_MESSAGE(!ec, ec.message());
  const auto* array = p.fields.data();
  const std::size_t bytes = p.fields.capacity() * sizeof(p.fields[0]);
  p.wipe();
  // The fields are gone and their array holds nothing (the values' own buffers are zeroed by
  // secrets::wipe before the strings free them: freed memory is not read here).
  BOOST_TEST(p.fields.empty());
  BOOST_TEST(p.reason.empty());
  BOOST_TEST(std::string_view(reinterpret_cast<const char*>(array), bytes).find_first_not_of('\0') == std::string_view::npos);
}

BOOST_AUTO_TEST_CASE(wipe_reaches_the_spare_slots) {
  MessageParser<false> p;
  const std::string head =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: sk-ECHO-7, chunked\r\nX-A: 1\r\nX-B: sk-ECHO-abc12\r\n\r\n";
  boost::system::error_code ec;
  p.put(boost::asio::buffer(head), ec);
  BOOST_REQUIRE_MESSAGE(!ec, ec.message());
  p.fields.erase(p.fields.begin());  // as the proxy drops fields: the last slot keeps X-B's value
  auto raw = [&] {
    return std::string_view(reinterpret_cast<const char*>(p.fields.data()), p.fields.capacity() * sizeof(p.fields[0]));
  };
  BOOST_TEST(raw().find("ECHO-abc12") != std::string_view::npos);  // (a move clears only the first byte)
  p.wipe();
  BOOST_TEST(raw().find("ECHO-abc12") == std::string_view::npos);
}

// A field removed before a short echoed value moves a long value into that value's slot: the
// long string takes over the object, and the short value's last bytes stay in it (helper-37).
BOOST_AUTO_TEST_CASE(wipe_reaches_in_object_bytes_of_live_fields) {
  MessageParser<false> p;
  const std::string head =
      "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Key: k-7Q2mZ9pL4xW1\r\n"
      "X-Long: a value longer than a short string holds in itself\r\n\r\n";
  boost::system::error_code ec;
  p.put(boost::asio::buffer(head), ec);
  BOOST_REQUIRE_MESSAGE(!ec, ec.message());
  policy::remove_header(p.fields, "content-length");
  auto raw = [&] {
    return std::string_view(reinterpret_cast<const char*>(p.fields.data()), p.fields.capacity() * sizeof(p.fields[0]));
  };
  BOOST_TEST(raw().find("pL4xW1") != std::string_view::npos);  // inside the live X-Long string object
  const auto* array = p.fields.data();
  const std::size_t bytes = p.fields.capacity() * sizeof(p.fields[0]);
  p.wipe();
  BOOST_TEST(std::string_view(reinterpret_cast<const char*>(array), bytes).find("pL4xW1") == std::string_view::npos);
}

BOOST_AUTO_TEST_CASE(make_room_after_the_fields_moved_out) {
  MessageParser<true> p;
  const std::string head = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
  boost::system::error_code ec;
  p.put(boost::asio::buffer(head), ec);
  BOOST_REQUIRE_MESSAGE(!ec, ec.message());
  policy::Headers taken = std::move(p.fields);  // as the proxy hands them to the policy
  p.fields.clear();
  p.make_room(1);  // must return (it doubled a capacity of 0 before)
  BOOST_TEST(p.fields.capacity() >= 1u);
  BOOST_TEST(taken.size() == 1u);
}

BOOST_AUTO_TEST_CASE(malformed_heads_are_errors) {
  for (std::string bad : {"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "HTTP/1.1 2000 OK\r\n\r\n",
                          "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"}) {
    MessageParser<false> p;
    boost::system::error_code ec;
    p.put(boost::asio::buffer(bad), ec);
    BOOST_TEST(ec.failed(), bad);
  }
}

BOOST_AUTO_TEST_SUITE_END()
