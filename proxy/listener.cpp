#include "proxy/listener.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fcntl.h>

#include "core/io.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"

namespace sidekey::proxy {
namespace net = boost::asio;
using tcp = net::ip::tcp;

Listener::Listener(std::string name, const config::Endpoint& where, net::io_context& accept_on, Workers& workers,
                   ConnectionTracker& tracker, ConnectionHandler handler, OverloadHandler overload)
    : name_(std::move(name)),
      workers_(workers),
      tracker_(tracker),
      handler_(std::move(handler)),
      overload_(std::move(overload)),
      acceptor_(accept_on) {
  boost::system::error_code ec;
  auto addr = net::ip::make_address(where.host, ec);
  if (ec) {
    // A host name (e.g. "localhost"): resolve it once at start-up.
    tcp::resolver resolver(accept_on);
    auto results = resolver.resolve(where.host, std::to_string(where.port), ec);
    if (ec || results.empty())
      throw std::runtime_error("listen." + name_ + ": cannot resolve " + where.host + ": " + ec.message());
    addr = results.begin()->endpoint().address();
  }
  tcp::endpoint ep(addr, where.port);
  acceptor_.open(ep.protocol(), ec);
  // Not inherited by a program sidekey starts (`sidekey exec` also closes what it holds).
  if (!ec) ::fcntl(acceptor_.native_handle(), F_SETFD, FD_CLOEXEC);
  if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
  if (ec) throw std::runtime_error("listen." + name_ + ": cannot listen on " + where.to_string() + ": " + ec.message());
}

std::string Listener::local_address() const {
  auto ep = acceptor_.local_endpoint();
  auto a = ep.address();
  std::string host = a.is_v6() ? "[" + a.to_string() + "]" : a.to_string();
  return host + ":" + std::to_string(ep.port());
}

void Listener::start() { net::co_spawn(acceptor_.get_executor(), accept_loop(), net::detached); }

void Listener::close() {
  boost::system::error_code ec;
  acceptor_.close(ec);
}

// Accepting registers the new socket with its worker's reactor, and Asio keeps that
// registration's state for reuse for the life of the process: allocated here, on the accepting
// thread, it stays out of the worker's heap, whose pages a burst of connections then gives back
// whole once the connections are gone (a worker-thread accept left one such state on each page
// the connections had used: ~4 KB per connection kept after a burst).
io::Awaitable<void> Listener::accept_loop() {
  for (;;) {
    auto& worker = workers_.next();
    auto [ec, socket] = co_await acceptor_.async_accept(worker, io::tuple_awaitable);
    if (ec) {
      if (ec == net::error::operation_aborted || !acceptor_.is_open()) co_return;
      // EMFILE and friends: log, back off briefly, keep serving what is open.
      log::warn("accept_failed", {{"listener", name_}, {"error", ec.message()}});
      net::steady_timer t(acceptor_.get_executor(), std::chrono::milliseconds(50));
      co_await t.async_wait(io::tuple_awaitable);
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    bool over = tracker_.active.load(std::memory_order_relaxed) >= tracker_.max_connections;
    net::co_spawn(worker, serve_one(std::move(socket), over), net::detached);
  }
}

}  // namespace sidekey::proxy

namespace sidekey::proxy {

// A member coroutine, not a capturing lambda: the frame must not refer to a lambda object that
// the accept loop has already destroyed.
io::Awaitable<void> Listener::serve_one(io::Socket socket, bool over) {
  static auto& active_gauge = metrics::registry().gauge("sidekey_active_connections");
  const auto now_open = tracker_.active.fetch_add(1, std::memory_order_relaxed) + 1;
  for (auto peak = tracker_.peak.load(std::memory_order_relaxed);
       now_open > peak && !tracker_.peak.compare_exchange_weak(peak, now_open, std::memory_order_relaxed);) {
  }
  active_gauge.add(1);
  try {
    if (!over) co_await handler_(std::move(socket));
    else if (overload_) co_await overload_(std::move(socket));
  } catch (const std::exception& e) {
    log::debug("connection_error", {{"listener", name_}, {"error", e.what()}});
  }
  tracker_.active.fetch_sub(1, std::memory_order_relaxed);
  active_gauge.add(-1);
}

}  // namespace sidekey::proxy
