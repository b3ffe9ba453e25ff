#pragma once
// An accept loop that hands each connection to the next worker, counts it, and enforces the
// connection cap (SPEC section 10 limits.max_connections).
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "config/config.hpp"
#include "core/io.hpp"
#include "proxy/workers.hpp"

namespace sidekey::proxy {

// Shared across listeners: how many connections are open and whether we are draining.
struct ConnectionTracker {
  std::atomic<std::int64_t> active{0};
  std::atomic<std::int64_t> peak{0};      // most open at once since the heap-trim check took it
  std::atomic<std::int64_t> inflight{0};  // requests being served; graceful shutdown waits for these
  std::atomic<bool> draining{false};
  std::uint32_t max_connections = 10000;
};

// Counts a request as in flight for the lifetime of the guard (graceful shutdown waits for these).
struct InflightGuard {
  explicit InflightGuard(ConnectionTracker& t) : t_(&t) { t_->inflight.fetch_add(1, std::memory_order_relaxed); }
  explicit InflightGuard(ConnectionTracker* t) : t_(t) {
    if (t_) t_->inflight.fetch_add(1, std::memory_order_relaxed);
  }
  ~InflightGuard() {
    if (t_) t_->inflight.fetch_sub(1, std::memory_order_relaxed);
  }
  InflightGuard(const InflightGuard&) = delete;
  InflightGuard& operator=(const InflightGuard&) = delete;

 private:
  ConnectionTracker* t_;
};

using ConnectionHandler = std::function<io::Awaitable<void>(io::Socket)>;
// Called (on the worker) instead of the handler when the cap is reached: answer politely and close.
using OverloadHandler = std::function<io::Awaitable<void>(io::Socket)>;

class Listener {
 public:
  // Binds at once so that port 0 is resolved before start-up is announced; throws
  // std::runtime_error naming the listener and address when the bind fails. Accepts on
  // `accept_on` (not a worker: see accept_loop) and serves each connection on a worker.
  Listener(std::string name, const config::Endpoint& where, boost::asio::io_context& accept_on, Workers& workers,
           ConnectionTracker& tracker, ConnectionHandler handler, OverloadHandler overload = {});
  std::string local_address() const;  // "host:port"
  void start();
  void close();  // stop accepting (graceful shutdown)

 private:
  io::Awaitable<void> accept_loop();
  io::Awaitable<void> serve_one(io::Socket socket, bool over);
  std::string name_;
  Workers& workers_;
  ConnectionTracker& tracker_;
  ConnectionHandler handler_;
  OverloadHandler overload_;
  io::Acceptor acceptor_;
};

}  // namespace sidekey::proxy
