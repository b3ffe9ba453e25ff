#include "api/http_server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>

#include "core/io.hpp"
#include "core/json_text.hpp"
#include "core/log.hpp"
#include "core/random.hpp"
#include "secrets/secret_value.hpp"

namespace sidekey::api {
namespace net = boost::asio;
namespace beast = boost::beast;

Response json_response(http::status status, const nlohmann::json& body) {
  Response res{status, 11};
  res.set(http::field::content_type, "application/json");
  res.body() = json::text(body);
  return res;
}

Response message_response(http::status status, std::string_view message) {
  return json_response(status, {{"message", std::string(message)}});
}

Response text_response(http::status status, std::string body, std::string_view content_type) {
  Response res{status, 11};
  res.set(http::field::content_type, content_type);
  res.body() = std::move(body);
  return res;
}

namespace {
// Zeroes the buffer's free space, which still holds the bytes of requests already parsed.
void wipe_spare(io::FlatBuffer& buffer) {
  auto spare = buffer.prepare(buffer.capacity() - buffer.size());
  secrets::wipe(spare.data(), spare.size());
}
}  // namespace

io::Awaitable<void> serve_http(io::Socket socket, const HttpServerOptions& opt, const Handler& handler) {
  io::TcpStream stream(std::move(socket));
  io::FlatBuffer buffer;
  for (;;) {
    // A request may carry a secret (a write to the secrets API): whatever passed through this
    // thread's registers while it was served is cleared before the connection waits again.
    secrets::ClearRegistersOnExit clear_registers;
    RequestParser parser;
    parser.header_limit(static_cast<std::uint32_t>(opt.header_limit));
    parser.body_limit(boost::none);  // set below: a streamed request has no limit
    stream.expires_after(opt.idle_timeout);
    auto [ec, n] = co_await http::async_read_header(stream, buffer, parser, io::tuple_awaitable);
    if (ec) {
      if (ec == http::error::header_limit) {
        auto res = message_response(http::status::request_header_fields_too_large, "request header too large");
        res.keep_alive(false);
        res.prepare_payload();
        co_await http::async_write(stream, res, io::tuple_awaitable);
      } else if (ec != http::error::end_of_stream && ec != beast::error::timeout && ec != net::error::eof &&
                 ec != net::error::connection_reset && ec != net::error::operation_aborted) {
        auto res = message_response(http::status::bad_request, "malformed HTTP request");
        res.keep_alive(false);
        res.prepare_payload();
        co_await http::async_write(stream, res, io::tuple_awaitable);
      }
      break;
    }
    proxy::InflightGuard inflight(opt.tracker);
    if (opt.stream_handler && opt.wants_stream && opt.wants_stream(parser.get())) {
      bool keep = co_await opt.stream_handler(stream, buffer, parser);
      if (!keep || (opt.tracker && opt.tracker->draining.load())) break;
      continue;
    }
    if (auto length = parser.content_length(); length && *length > opt.body_limit) {
      auto res = message_response(http::status::payload_too_large, "request body too large");
      res.keep_alive(false);
      res.prepare_payload();
      co_await http::async_write(stream, res, io::tuple_awaitable);
      break;
    }
    parser.body_limit(opt.body_limit);
    stream.expires_after(opt.request_timeout);
    std::tie(ec, n) = co_await http::async_read(stream, buffer, parser, io::tuple_awaitable);
    if (ec) {
      secrets::wipe(parser.get().body());
      if (ec == http::error::body_limit) {
        auto res = message_response(http::status::payload_too_large, "request body too large");
        res.keep_alive(false);
        res.prepare_payload();
        co_await http::async_write(stream, res, io::tuple_awaitable);
      }
      break;
    }
    Request req = parser.release();
    Response res;
    try {
      res = co_await handler(req);
    } catch (const std::exception& e) {
      log::error("api_handler_failed", {{"path", std::string(req.target().substr(0, req.target().find('?')))},
                                        {"error", e.what()}});
      res = message_response(http::status::internal_server_error, "internal error");
    }
    secrets::wipe(req.body());
    wipe_spare(buffer);
    bool keep = req.keep_alive() && !(opt.tracker && opt.tracker->draining.load());
    res.version(req.version());
    res.keep_alive(keep);
    res.prepare_payload();
    stream.expires_after(opt.request_timeout);
    auto [wec, wn] = co_await http::async_write(stream, res, io::tuple_awaitable);
    if (wec || !keep) break;
  }
  beast::error_code ignored;
  stream.socket().shutdown(net::ip::tcp::socket::shutdown_send, ignored);
}

}  // namespace sidekey::api
