// io::TcpStream (core/tcp_stream.hpp): basic_stream's timeouts kept by one sweep timer per
// io_context, over real loopback connections. Deadlines here are either short (the operation
// is meant to time out) or an hour (it must not): no assertion depends on how long anything took.
#include <boost/asio.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/test/unit_test.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/io.hpp"
#include "tests/unit/net/loopback.hpp"

namespace {
namespace net = boost::asio;
using namespace sidekey;
using namespace std::chrono_literals;
using boost::system::error_code;

using Result = sidekey::test::IoResult;

// A connected loopback pair: `stream` under test, `peer` a plain blocking descriptor.
struct Pair {
  explicit Pair(net::io_context& io) : stream(io.get_executor()), peer(sidekey::test::connect_loopback(stream.socket())) {}
  ~Pair() {
    if (peer >= 0) ::close(peer);
  }
  void send(std::string_view s) { BOOST_REQUIRE_EQUAL(::send(peer, s.data(), s.size(), 0), static_cast<ssize_t>(s.size())); }
  void read(std::optional<Result>& r) {
    r.reset();
    stream.async_read_some(net::buffer(buf), [&r](error_code ec, std::size_t n) { r = Result{ec, n}; });
  }

  io::TcpStream stream;
  int peer = -1;
  char buf[4096];
};

// Runs handlers until `done` (bounded by the test's CTest timeout, not by a clock here).
template <class Done>
void run_until(net::io_context& io, Done done) {
  io.restart();
  while (!done()) io.run_one();
}

BOOST_AUTO_TEST_SUITE(tcp_stream)

BOOST_AUTO_TEST_CASE(a_read_past_its_deadline_times_out_and_closes_the_socket) {
  net::io_context io{1};
  Pair p(io);
  std::optional<Result> r;
  p.stream.expires_after(20ms);
  p.read(r);
  run_until(io, [&] { return r.has_value(); });
  BOOST_TEST((r->ec == boost::beast::error::timeout), r->ec.message());
  BOOST_TEST(!p.stream.socket().is_open());
}

BOOST_AUTO_TEST_CASE(a_read_within_its_deadline_completes) {
  net::io_context io{1};
  Pair p(io);
  std::optional<Result> r;
  p.stream.expires_after(1h);
  p.read(r);
  p.send("hello");
  run_until(io, [&] { return r.has_value(); });
  BOOST_TEST(!r->ec, r->ec.message());
  BOOST_TEST(std::string_view(p.buf, r->n) == "hello");
  // Nothing is pending any more: run() returns (the sweep timer does not hold the context for
  // the hour; if it did, this test would hang until CTest's timeout).
  io.restart();
  io.run();
  BOOST_TEST(p.stream.socket().is_open());
}

BOOST_AUTO_TEST_CASE(a_deadline_counts_only_while_an_operation_is_pending) {
  net::io_context io{1};
  Pair p(io);
  std::optional<Result> r;
  p.stream.expires_after(1h);
  p.read(r);
  p.send("one");
  run_until(io, [&] { return r.has_value(); });
  BOOST_REQUIRE(!r->ec);
  // A short deadline passes while nothing is pending, and a second stream's sweep runs: the
  // idle stream is left alone.
  p.stream.expires_after(1ms);
  Pair other(io);
  std::optional<Result> o;
  other.stream.expires_after(30ms);
  other.read(o);
  run_until(io, [&] { return o.has_value(); });
  BOOST_TEST((o->ec == boost::beast::error::timeout));
  BOOST_TEST(p.stream.socket().is_open());
  // An operation started after its deadline has passed times out (as basic_stream's does).
  p.read(r);
  run_until(io, [&] { return r.has_value(); });
  BOOST_TEST((r->ec == boost::beast::error::timeout), r->ec.message());
}

BOOST_AUTO_TEST_CASE(an_earlier_deadline_wakes_the_sweep_sooner_and_later_ones_wait) {
  net::io_context io{1};
  Pair late(io), soon(io), never(io);
  std::optional<Result> l, s, n;
  late.stream.expires_after(1h);
  late.read(l);
  never.stream.expires_never();
  never.read(n);
  soon.stream.expires_after(20ms);  // listed after the hour's: the timer must be moved earlier
  soon.read(s);
  run_until(io, [&] { return s.has_value(); });
  BOOST_TEST((s->ec == boost::beast::error::timeout));
  BOOST_TEST(!l.has_value());
  BOOST_TEST(!n.has_value());
  // The others still read what comes.
  late.send("late");
  never.send("never");
  run_until(io, [&] { return l.has_value() && n.has_value(); });
  BOOST_TEST(!l->ec);
  BOOST_TEST(std::string_view(late.buf, l->n) == "late");
  BOOST_TEST(!n->ec);
  BOOST_TEST(std::string_view(never.buf, n->n) == "never");
}

BOOST_AUTO_TEST_CASE(an_operation_started_from_a_handler_times_out_and_run_returns) {
  // Started inside a completion handler the operation's work is counted privately by the
  // running thread until the handler returns: the sweep's timer, which is not counted as work,
  // must not stop the context in between.
  net::io_context io{1};
  Pair p(io);
  std::optional<Result> first, second;
  p.stream.expires_after(1h);
  p.stream.async_read_some(net::buffer(p.buf), [&](error_code ec, std::size_t n) {
    first = Result{ec, n};
    p.stream.expires_after(20ms);
    p.read(second);
  });
  p.send("x");
  io.run();  // returns once both are done
  BOOST_REQUIRE(first && second);
  BOOST_TEST(!first->ec);
  BOOST_TEST((second->ec == boost::beast::error::timeout), second->ec.message());
}

BOOST_AUTO_TEST_CASE(an_empty_read_completes_at_once_under_a_deadline) {
  net::io_context io{1};
  Pair p(io);
  std::optional<Result> r;
  p.stream.expires_after(1h);
  p.stream.async_read_some(net::buffer(p.buf, 0), [&r](error_code ec, std::size_t n) { r = Result{ec, n}; });
  io.run();  // nothing to wait for: returns, the hour's timer notwithstanding
  BOOST_REQUIRE(r.has_value());
  BOOST_TEST(!r->ec, r->ec.message());
  BOOST_TEST(r->n == 0u);
  BOOST_TEST(p.stream.socket().is_open());
}

BOOST_AUTO_TEST_CASE(a_write_the_peer_never_reads_times_out) {
  net::io_context io{1};
  Pair p(io);
  int small = 4096;
  ::setsockopt(p.stream.socket().native_handle(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  ::setsockopt(p.peer, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  std::vector<char> lots(8 << 20, 'x');
  std::optional<Result> w;
  p.stream.expires_after(50ms);
  net::async_write(p.stream, net::buffer(lots), [&w](error_code ec, std::size_t n) { w = Result{ec, n}; });
  run_until(io, [&] { return w.has_value(); });
  BOOST_TEST((w->ec == boost::beast::error::timeout), w->ec.message());
  BOOST_TEST(w->n < lots.size());
}

BOOST_AUTO_TEST_CASE(a_timeout_in_one_direction_aborts_the_other) {
  net::io_context io{1};
  Pair p(io);
  int small = 4096;
  ::setsockopt(p.stream.socket().native_handle(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  std::vector<char> lots(8 << 20, 'x');
  std::optional<Result> w, r;
  p.stream.expires_after(1h);
  p.read(r);
  p.stream.expires_after(30ms);
  net::async_write(p.stream, net::buffer(lots), [&w](error_code ec, std::size_t n) { w = Result{ec, n}; });
  run_until(io, [&] { return w.has_value() && r.has_value(); });
  BOOST_TEST((w->ec == boost::beast::error::timeout), w->ec.message());
  // The read's own deadline had not passed: it ends with the closed socket, not as a timeout.
  BOOST_TEST((r->ec == net::error::operation_aborted), r->ec.message());
}

BOOST_AUTO_TEST_CASE(destroying_the_stream_ends_its_pending_operation) {
  net::io_context io{1};
  auto p = std::make_unique<Pair>(io);
  std::optional<Result> r;
  p->stream.expires_after(1h);
  p->read(r);
  p.reset();  // the state lives on in the operation until it completes
  run_until(io, [&] { return r.has_value(); });
  BOOST_TEST((r->ec == net::error::operation_aborted), r->ec.message());
  io.restart();
  io.run();  // nothing left: returns
}

BOOST_AUTO_TEST_CASE(a_context_destroyed_with_operations_pending) {
  // The operations (and their handlers) are destroyed with the context, the sweep's list
  // first: nothing is left to touch freed memory (the sanitizer builds check).
  std::optional<Result> r;
  {
    net::io_context io{1};
    Pair p(io);
    p.stream.expires_after(1h);
    p.read(r);
    io.poll();
  }
  BOOST_TEST(!r.has_value());
}

BOOST_AUTO_TEST_CASE(a_moved_stream_keeps_its_deadline_and_its_operation) {
  net::io_context io{1};
  Pair p(io);
  std::optional<Result> r;
  p.stream.expires_after(20ms);
  io::TcpStream moved(std::move(p.stream));
  moved.async_read_some(net::buffer(p.buf), [&r](error_code ec, std::size_t n) { r = Result{ec, n}; });
  run_until(io, [&] { return r.has_value(); });
  BOOST_TEST((r->ec == boost::beast::error::timeout), r->ec.message());
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace
