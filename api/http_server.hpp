#pragma once
// A small HTTP/1.1 server loop for the api and admin listeners: keep-alive, size limits,
// idle and request timeouts, graceful drain. Handlers see a whole (bounded) request.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <functional>

#include "core/io.hpp"
#include "proxy/listener.hpp"

namespace sidekey::api {

namespace http = boost::beast::http;
// A request body may carry a secret value: its blocks are zeroed when freed, also those it
// leaves behind as it grows (a chunked body).
using RequestBody = http::basic_string_body<char, std::char_traits<char>, WipingAllocator<char>>;
using Request = http::request<RequestBody>;
using RequestParser = http::request_parser<RequestBody>;
using Response = http::response<http::string_body>;

// Takes over a request whose head has been read (the body has not): streams it somewhere and
// answers. Returns whether the connection may serve another request.
using StreamHandler = std::function<io::Awaitable<bool>(io::TcpStream&, io::FlatBuffer&, RequestParser&)>;

struct HttpServerOptions {
  std::size_t header_limit = 65536;
  std::size_t body_limit = 1 << 20;
  std::chrono::milliseconds idle_timeout{60000};
  std::chrono::milliseconds request_timeout{300000};
  proxy::ConnectionTracker* tracker = nullptr;
  // Requests for which wants_stream() is true go to stream_handler instead of the Handler.
  std::function<bool(const http::request_header<>&)> wants_stream;
  StreamHandler stream_handler;
};

// The handler may run asynchronously. The request body is wiped after the handler returns
// (it may hold a secret value).
using Handler = std::function<io::Awaitable<Response>(Request&)>;

io::Awaitable<void> serve_http(io::Socket socket, const HttpServerOptions& options,
                                        const Handler& handler);

Response json_response(http::status status, const nlohmann::json& body);
Response message_response(http::status status, std::string_view message);  // {"message": …}
Response text_response(http::status status, std::string body, std::string_view content_type = "text/plain");

}  // namespace sidekey::api
