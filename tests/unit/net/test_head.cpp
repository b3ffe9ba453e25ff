#include <boost/beast/http.hpp>
#include <boost/test/unit_test.hpp>

#include "proxy/head.hpp"

using namespace sidekey;
using proxy::Framing;
namespace http = boost::beast::http;

BOOST_AUTO_TEST_SUITE(head)

namespace {
// Parses rendered bytes back with Beast's strict parser: what an upstream or client would see.
template <bool isRequest>
http::message<isRequest, http::empty_body> parse(const std::string& bytes) {
  http::parser<isRequest, http::empty_body> p;
  p.eager(false);
  p.body_limit(boost::none);
  if constexpr (!isRequest) p.skip(true);
  boost::system::error_code ec;
  std::size_t used = p.put(boost::asio::buffer(bytes), ec);
  BOOST_REQUIRE_MESSAGE(!ec, ec.message());
  BOOST_REQUIRE(p.is_header_done());
  BOOST_TEST(used == bytes.size());
  return p.release();
}
}  // namespace

BOOST_AUTO_TEST_CASE(request_head_keeps_field_order_and_adds_the_framing) {
  policy::Headers fields = {{"Host", "api.example.com"}, {"Authorization", "Bearer s3cret"}, {"X-A", "1"}};
  auto h = proxy::render_request_head("POST", "/v1/x?a=b", fields, Framing{true, std::nullopt});
  BOOST_TEST(h.chunked);
  BOOST_TEST(h.bytes ==
             "POST /v1/x?a=b HTTP/1.1\r\nHost: api.example.com\r\nAuthorization: Bearer s3cret\r\nX-A: 1\r\n"
             "Transfer-Encoding: chunked\r\n\r\n");
  auto m = parse<true>(h.bytes);
  BOOST_TEST(m.method_string() == "POST");
  BOOST_TEST(m.chunked());
  BOOST_TEST(m.keep_alive());  // HTTP/1.1 without Connection keeps alive

  auto l = proxy::render_request_head("PUT", "/", {{"Host", "h"}}, Framing{false, 12345678901ULL});
  BOOST_TEST(!l.chunked);
  BOOST_TEST(parse<true>(l.bytes)[http::field::content_length] == "12345678901");
  auto none = proxy::render_request_head("GET", "/", {{"Host", "h"}}, Framing{});
  BOOST_TEST(none.bytes == "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
}

BOOST_AUTO_TEST_CASE(response_head_sets_version_reason_and_connection) {
  auto h = proxy::render_response_head(11, 200, "OK", policy::Headers{{"Content-Type", "text/plain"}}, Framing{false, 5}, "close");
  BOOST_TEST(h.bytes == "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\n\r\n");
  // Views of the fields (the proxy's response path) render the same.
  auto v = proxy::render_response_head(11, 200, "OK", policy::FieldViews{{"Content-Type", "text/plain"}}, Framing{false, 5}, "close");
  BOOST_TEST(v.bytes == h.bytes);
  auto m = parse<false>(h.bytes);
  BOOST_TEST(!m.keep_alive());

  auto old = proxy::render_response_head(10, 404, "", policy::FieldViews{}, Framing{false, 0}, "keep-alive");
  auto o = parse<false>(old.bytes);
  BOOST_TEST(o.version() == 10u);
  BOOST_TEST(o.reason() == "Not Found");  // the standard reason when the upstream sent none
  BOOST_TEST(o.keep_alive());

  auto c = proxy::render_response_head(11, 299, "Custom Thing", policy::FieldViews{}, Framing{true, std::nullopt}, "");
  auto cm = parse<false>(c.bytes);
  BOOST_TEST(cm.result_int() == 299u);
  BOOST_TEST(cm.reason() == "Custom Thing");
  BOOST_TEST(cm.chunked());
  BOOST_TEST(cm.keep_alive());
}

BOOST_AUTO_TEST_SUITE_END()
