#include "api/gateway.hpp"

#include <boost/asio/this_coro.hpp>

#include "core/encoding.hpp"
#include "core/io.hpp"
#include "core/json_text.hpp"
#include "core/log.hpp"
#include "proxy/relay.hpp"
#include "secrets/secret_name.hpp"

namespace sidekey::api {
namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using proxy::tuple_awaitable;

Gateway::Gateway(const std::string& upstream_url, proxy::UpstreamTls& tls, Options options) : tls_(tls), opt_(options) {
  auto url = policy::parse_absolute_url(upstream_url);
  if (!url) throw std::invalid_argument("agent.upstream is not an http(s) URL: " + upstream_url);
  dest_ = url->destination;
  base_path_ = url->target.substr(0, url->target.find('?'));
  while (!base_path_.empty() && base_path_.back() == '/') base_path_.pop_back();
}

bool Gateway::forwards(std::string_view target) {
  auto path = target.substr(0, target.find('?'));
  if (path.rfind("/ap/v1/", 0) != 0) return false;
  return true;
}

io::Awaitable<std::optional<proxy::ConnectResult>> Gateway::connect(bool ask, bool fresh) {
  if (!fresh)
    if (auto pooled = proxy::take_pooled(dest_, ask, proxy::Dialer::gateway))
      co_return proxy::ConnectResult{std::move(pooled), 0};
  proxy::VettedAddresses addrs;
  if (auto ip = IpAddress::parse(dest_.host)) {
    addrs.endpoints.emplace_back(net::ip::make_address(ip->to_string()), dest_.port);
  } else {
    io::Resolver resolver(co_await net::this_coro::executor);
    auto [ec, results] = co_await resolver.async_resolve(dest_.host, std::to_string(dest_.port), tuple_awaitable);
    if (ec) co_return std::nullopt;
    for (const auto& r : results) addrs.endpoints.push_back(r.endpoint());
  }
  auto r = co_await proxy::connect_upstream(dest_, addrs, tls_, opt_.connect_timeout, proxy::Dialer::gateway);
  if (auto* c = std::get_if<proxy::ConnectResult>(&r)) co_return std::move(*c);
  log::warn("agent_unreachable", {{"upstream", dest_.authority()}, {"error", std::get<policy::Refusal>(r).message}});
  co_return std::nullopt;
}

namespace {
template <class Stream>
io::Awaitable<bool> answer(Stream& s, http::status status, std::string_view message, unsigned version, bool keep) {
  http::response<http::string_body> res{status, version};
  res.set(http::field::content_type, "application/json");
  res.body() = json::text({{"message", std::string(message)}});
  res.keep_alive(keep);
  res.prepare_payload();
  auto [ec, n] = co_await http::async_write(s, res, tuple_awaitable);
  co_return !ec && keep;
}
}  // namespace

io::Awaitable<bool> Gateway::forward(io::TcpStream& client, io::FlatBuffer& buffer,
                                      RequestParser& header_parser) {
  http::request_parser<http::buffer_body> p{std::move(header_parser)};
  p.body_limit(boost::none);
  auto& req = p.get();
  unsigned version = req.version();
  bool client_keep = req.keep_alive();
  policy::Headers headers;
  for (const auto& f : req) {
    if (f.name() == http::field::content_length || f.name() == http::field::transfer_encoding) continue;
    if (opt_.strip_sidekey_auth && (f.name() == http::field::authorization || iequals(f.name_string(), "X-API-KEY")))
      continue;
    headers.push_back({std::string(f.name_string()), std::string(f.value())});
  }
  policy::strip_hop_by_hop(headers);
  // Like the proxy, sidekey answers 100-continue itself once the agent is connected.
  bool expect_continue = false;
  if (auto* e = policy::find_header(headers, "Expect")) {
    expect_continue = iequals(e->value, "100-continue");
    policy::remove_header(headers, "Expect");
  }
  policy::remove_header(headers, "Host");
  headers.push_back({"Host", dest_.host_header()});
  bool chunked = req.chunked();
  auto length = p.content_length();
  bool had_body = !p.is_done();
  // As the proxy does (Session::serve_one): a request that can go again is not asked about.
  const bool replayable = proxy::replayable_request(req.method(), had_body, false);

  auto connected = co_await connect(/*ask=*/!replayable);
  if (!connected) co_return co_await answer(client, http::status::bad_gateway, "the agent is not reachable", version, !had_body && client_keep);
  auto conn = std::move(connected->connection);

  // Hop-by-hop stripping left no Connection field: HTTP/1.1 keeps the agent connection alive.
  proxy::Framing up_framing;
  if (chunked) up_framing.chunked = true;
  else if (length) up_framing.length = *length;
  proxy::OutHead up_head =
      proxy::render_request_head(req.method_string(), base_path_ + std::string(req.target()), headers, up_framing);

  if (expect_continue && had_body) {
    std::string interim = version == 10 ? "HTTP/1.0 100 Continue\r\n\r\n" : "HTTP/1.1 100 Continue\r\n\r\n";
    auto [cec, cn] = co_await net::async_write(client, net::buffer(interim), tuple_awaitable);
    if (cec) {
      conn->close();
      co_return false;
    }
  }
  std::uint64_t in_bytes = 0, out_bytes = 0;
  proxy::Passthrough pass;
  auto sent = co_await std::visit(
      [&](auto& up) {
        return proxy::relay_body(client, buffer, p, up, std::move(up_head), pass, opt_.idle_timeout, in_bytes, true);
      },
      conn->stream);
  // The keep-alive race (see proxy::replayable_request): once, on a fresh connection.
  bool replayed = false;
  auto can_replay = [&] { return replayable && conn->reused && !replayed; };
  auto replay = [&]() -> io::Awaitable<bool> {
    replayed = true;
    conn->close();
    auto again = co_await connect(true, /*fresh=*/true);
    if (!again) co_return false;
    conn = std::move(again->connection);
    auto resent = co_await std::visit(
        [&](auto& up) {
          return proxy::relay_body(client, buffer, p, up,
                                   proxy::render_request_head(req.method_string(), base_path_ + std::string(req.target()),
                                                              headers, up_framing),
                                   pass, opt_.idle_timeout, in_bytes, true);
        },
        conn->stream);
    if (resent.status == proxy::RelayStatus::ok) co_return true;
    conn->close();
    co_return false;
  };
  if (sent.status == proxy::RelayStatus::write_failed && conn->closed_before_answer(sent.ec) && can_replay()) {
    bool again = co_await replay();
    if (!again) co_return co_await answer(client, http::status::bad_gateway, "the agent is not reachable", version, false);
    sent.status = proxy::RelayStatus::ok;
  }
  if (sent.status != proxy::RelayStatus::ok) {
    conn->close();
    if (sent.status == proxy::RelayStatus::read_failed) co_return false;
    co_return co_await answer(client, http::status::bad_gateway, "the agent closed the connection", version, false);
  }

  // Interim (1xx) answers are read past: the client gets the final one.
  std::optional<proxy::MessageParser<false>> slot;
  bool interim = false;
  for (;;) {
    auto& r = slot.emplace();
    r.header_limit(static_cast<std::uint32_t>(opt_.max_header_bytes));
    r.body_limit(boost::none);
    if (req.method() == http::verb::head) r.skip(true);
    conn->tcp().expires_after(opt_.request_timeout);
    auto [ec, n] = co_await io::async_visit<void(beast::error_code, std::size_t)>(
        conn->stream, [&](auto& up, auto handler) { http::async_read_header(up, conn->buffer, r, std::move(handler)); });
    // Closed before a byte of the answer, or a 408 idle-close notice that crossed the request.
    bool crossed = !ec && r.status == 408;
    if ((crossed || conn->closed_before_answer(ec)) && !interim && can_replay()) {
      bool again = co_await replay();
      if (!again) co_return co_await answer(client, http::status::bad_gateway, "the agent did not answer", version, false);
      continue;
    }
    if (ec) {
      conn->close();
      co_return co_await answer(client, http::status::bad_gateway, "the agent did not answer", version, false);
    }
    if (r.status == 101) {
      // The request's Upgrade was stripped (hop-by-hop): a switch nobody asked for. What follows
      // on that connection is no longer HTTP the client expects.
      conn->close();
      co_return co_await answer(client, http::status::bad_gateway, "the agent switched protocols, which the request did not ask for",
                                version, client_keep);
    }
    if (r.status >= 200) break;
    interim = true;
  }
  auto& rp = *slot;
  bool header_only = proxy::header_only_response(req.method(), rp.status);
  // The parser's fields, used where they are (framing is ours to set).
  policy::Headers& res_headers = rp.fields;
  std::erase_if(res_headers, [](const policy::Header& h) {
    return iequals(h.name, "content-length") || iequals(h.name, "transfer-encoding");
  });
  policy::strip_hop_by_hop(res_headers);
  bool res_chunked = rp.chunked();
  auto res_length = rp.content_length();
  bool keep = client_keep;
  proxy::Framing down_framing;
  if (version == 10 && !res_length && !header_only) keep = false;
  else if (res_chunked) down_framing.chunked = true;
  else if (res_length) down_framing.length = *res_length;
  else if (!header_only) down_framing.chunked = true;
  // A Connection field only where the version's default is not what we do.
  std::string_view connection = version == 10 ? (keep ? "keep-alive" : "") : (keep ? "" : "close");
  proxy::OutHead down_head =
      proxy::render_response_head(version, rp.status, rp.reason, res_headers, down_framing, connection);
  auto got = co_await std::visit(
      [&](auto& up) {
        return proxy::relay_body(up, conn->buffer, rp, client, std::move(down_head), pass, opt_.idle_timeout, out_bytes, true, std::nullopt,
                                 header_only);
      },
      conn->stream);
  if (got.status != proxy::RelayStatus::ok) {
    conn->close();
    co_return false;
  }
  if (rp.keep_alive() && !rp.need_eof() && conn->buffer.size() == 0)
    proxy::UpstreamPool::for_this_thread().put(std::move(conn), opt_.idle_timeout);
  else
    conn->close();
  co_return keep;
}

io::Awaitable<std::optional<int>> Gateway::task_status(const std::string& task_id) {
  if (!secrets::valid_task_id(task_id)) co_return 404;
  auto connected = co_await connect();
  if (!connected) co_return std::nullopt;
  auto conn = std::move(connected->connection);
  http::request<http::empty_body> req{http::verb::get, base_path_ + "/ap/v1/agent/tasks/" + task_id, 11};
  req.set(http::field::host, dest_.host_header());
  req.keep_alive(true);
  conn->tcp().expires_after(opt_.request_timeout);
  auto [wec, wn] = co_await io::async_visit<void(beast::error_code, std::size_t)>(
      conn->stream, [&](auto& up, auto handler) { http::async_write(up, req, std::move(handler)); });
  if (wec) co_return std::nullopt;
  http::response_parser<http::string_body> rp;
  rp.body_limit(1 << 20);
  auto [rec, rn] = co_await io::async_visit<void(beast::error_code, std::size_t)>(
      conn->stream, [&](auto& up, auto handler) { http::async_read(up, conn->buffer, rp, std::move(handler)); });
  if (rec) co_return std::nullopt;
  int status = rp.get().result_int();
  if (rp.keep_alive() && conn->buffer.size() == 0) proxy::UpstreamPool::for_this_thread().put(std::move(conn), opt_.idle_timeout);
  else conn->close();
  co_return status;
}

}  // namespace sidekey::api
