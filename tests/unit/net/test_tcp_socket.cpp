// io::Socket (core/tcp_socket.hpp) over real loopback connections. The system calls that matter
// are counted per descriptor by the recv, recvfrom, recvmsg, syscall and epoll_ctl defined below:
// an executable's definition comes before libc's (or a sanitizer's) for every caller, and
// forwards to it. (io::socket_calls reads with syscall(SYS_recvfrom) outside sanitizer builds.)
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/test/unit_test.hpp>

#include <dlfcn.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdarg>

#include <array>
#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <thread>

#include "core/io.hpp"
#include "core/socket_calls.hpp"
#include "tests/unit/net/loopback.hpp"

namespace {
std::array<std::atomic<int>, 4096> recv_calls{};
std::array<std::atomic<int>, 4096> ctl_calls{};

void count(std::array<std::atomic<int>, 4096>& calls, int fd) {
  if (fd >= 0 && fd < static_cast<int>(calls.size())) calls[fd].fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

extern "C" ssize_t recv(int fd, void* data, size_t size, int flags) {
  static auto* next = reinterpret_cast<ssize_t (*)(int, void*, size_t, int)>(dlsym(RTLD_NEXT, "recv"));
  count(recv_calls, fd);
  return next(fd, data, size, flags);
}

extern "C" ssize_t recvfrom(int fd, void* data, size_t size, int flags, sockaddr* from, socklen_t* length) {
  static auto* next =
      reinterpret_cast<ssize_t (*)(int, void*, size_t, int, sockaddr*, socklen_t*)>(dlsym(RTLD_NEXT, "recvfrom"));
  count(recv_calls, fd);
  return next(fd, data, size, flags, from, length);
}

extern "C" ssize_t recvmsg(int fd, msghdr* message, int flags) {
  static auto* next = reinterpret_cast<ssize_t (*)(int, msghdr*, int)>(dlsym(RTLD_NEXT, "recvmsg"));
  count(recv_calls, fd);
  return next(fd, message, flags);
}

#ifndef SIDEKEY_SANITIZED  // (sanitizer builds read with recv: counted above)
// As the C library's: the number and six arguments (a call passes fewer; the rest are not read
// by the kernel, and the library reads them as this does).
extern "C" long syscall(long number, ...) {
  static auto* next = reinterpret_cast<long (*)(long, ...)>(dlsym(RTLD_NEXT, "syscall"));
  va_list ap;
  va_start(ap, number);
  long a[6];
  for (auto& x : a) x = va_arg(ap, long);
  va_end(ap);
  if (number == SYS_recvfrom || number == SYS_recvmsg) count(recv_calls, static_cast<int>(a[0]));
  return next(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}
#endif

extern "C" int epoll_ctl(int epfd, int op, int fd, epoll_event* event) noexcept {
  static auto* next = reinterpret_cast<int (*)(int, int, int, epoll_event*)>(dlsym(RTLD_NEXT, "epoll_ctl"));
  count(ctl_calls, fd);
  return next(epfd, op, fd, event);
}

namespace {
namespace net = boost::asio;
using namespace sidekey;
using namespace std::chrono_literals;
using boost::system::error_code;

using Result = sidekey::test::IoResult;

// A connected pair: `server` is the socket under test, `peer` a plain blocking descriptor.
struct Pair {
  net::io_context io{1};
  io::Socket server{io.get_executor()};
  int peer = -1;
  char buf[4096];

  Pair() {
    peer = sidekey::test::connect_loopback(server);
    recvs();
    ctls();  // the registration
  }
  ~Pair() {
    if (peer >= 0) ::close(peer);
  }

  int fd() { return server.native_handle(); }
  int recvs() { return recv_calls[fd()].exchange(0); }
  int ctls() { return ctl_calls[fd()].exchange(0); }
  void send(std::string_view s, int flags = 0) {
    BOOST_REQUIRE_EQUAL(::send(peer, s.data(), s.size(), flags), static_cast<ssize_t>(s.size()));
  }
  // Loopback delivers as send returns, unless the kernel defers it: waits (bounded) until `bytes`
  // are queued at the server, and the FIN if `fin`, without touching the reactor's epoll.
  void arrived(int bytes, bool fin = false) {
    auto deadline = std::chrono::steady_clock::now() + 10s;
    for (;;) {
      int queued = 0;
      ::ioctl(fd(), FIONREAD, &queued);
      pollfd pf{fd(), POLLRDHUP, 0};
      bool fin_in = ::poll(&pf, 1, 0) == 1 && (pf.revents & POLLRDHUP);
      if ((queued >= bytes && (!fin || fin_in)) || std::chrono::steady_clock::now() > deadline) break;
      std::this_thread::sleep_for(1ms);
    }
    recvs();  // the ioctl and poll are not reads, but keep the count to the code under test
  }

  void read(std::optional<Result>& r, std::size_t size = sizeof(buf)) {
    r.reset();
    server.async_read_some(net::buffer(buf, size), [&r](error_code ec, std::size_t n) { r = Result{ec, n}; });
  }
  // Runs what is ready now: the handlers posted and one non-blocking look at epoll (which the
  // context skips when no work is outstanding, hence the guard).
  void poll() {
    io.restart();
    auto work = net::make_work_guard(io);
    io.poll();
  }
  // Runs until r is set; the bound only keeps a failing test from hanging.
  void until(const std::optional<Result>& r) {
    io.restart();
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (!r && std::chrono::steady_clock::now() < deadline) io.run_one_for(100ms);
    BOOST_REQUIRE(r);
  }
  // A read waits; the peer's last bytes and its FIN land before epoll is asked, so one report
  // carries both: the read gets the bytes, and the next read the EOF, with no further edge.
  void last_bytes_and_fin_reach_a_waiting_read() {
    std::optional<Result> r;
    read(r);
    poll();
    BOOST_REQUIRE(!r);
    send("last");
    ::shutdown(peer, SHUT_WR);
    arrived(4, true);
    until(r);
    BOOST_TEST(std::string_view(buf, r->n) == "last");
    read(r);
    poll();  // the read must be tried
    BOOST_REQUIRE(r);
    BOOST_TEST(r->ec == net::error::eof);
  }
  // Reads one piece shorter than the buffer: the socket counts as drained after it.
  void exchange(std::string_view s) {
    std::optional<Result> r;
    send(s);
    read(r);
    until(r);
    BOOST_REQUIRE(!r->ec);
    BOOST_REQUIRE_EQUAL(std::string_view(buf, r->n), s);
  }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(tcp_socket)

BOOST_AUTO_TEST_CASE(a_read_after_a_short_read_waits_for_epoll_without_a_recv) {
  Pair p;
  p.exchange("hello");
  p.recvs();
  BOOST_TEST(p.ctls() == 1);  // EPOLLRDHUP added once, at the first short read
  for (int round = 0; round < 5; ++round) {
    std::optional<Result> r;
    p.read(r);
    p.poll();
    BOOST_TEST(!r.has_value());
    BOOST_TEST(p.recvs() == 0);  // Asio's own read tries one here, which finds nothing
    p.send("request " + std::to_string(round));
    p.until(r);
    BOOST_TEST(!r->ec);
    BOOST_TEST(std::string_view(p.buf, r->n) == "request " + std::to_string(round));
    BOOST_TEST(p.recvs() == 1);
    BOOST_TEST(p.ctls() == 0);
  }
}

BOOST_AUTO_TEST_CASE(a_read_that_fills_its_buffer_is_followed_by_an_attempt) {
  Pair p;
  p.exchange("registered");  // else the re-arm that adds EPOLLRDHUP would report the rest
  p.send("0123456789abcdef");
  p.arrived(16);
  p.poll();  // epoll's report of those bytes is taken with no read queued
  std::optional<Result> r;
  p.read(r, 8);
  p.poll();
  BOOST_REQUIRE(r);
  BOOST_TEST(std::string_view(p.buf, r->n) == "01234567");
  // No further edge will come for the other eight bytes: only an attempt finds them.
  p.read(r, 8);
  p.poll();
  BOOST_REQUIRE(r);
  BOOST_TEST(!r->ec);
  BOOST_TEST(std::string_view(p.buf, r->n) == "89abcdef");
}

BOOST_AUTO_TEST_CASE(a_fin_behind_the_last_bytes_ends_the_next_read) {
  Pair p;
  p.exchange("first");
  p.last_bytes_and_fin_reach_a_waiting_read();
}

BOOST_AUTO_TEST_CASE(a_fin_before_the_first_short_read_is_reported_by_the_re_arm) {
  Pair p;
  p.send("only");
  ::shutdown(p.peer, SHUT_WR);
  p.arrived(4, true);
  p.poll();  // the bytes and the FIN are reported before EPOLLRDHUP is asked for
  std::optional<Result> r;
  p.read(r);
  p.poll();
  BOOST_REQUIRE(r);
  BOOST_TEST(std::string_view(p.buf, r->n) == "only");
  p.read(r);
  p.until(r);
  BOOST_TEST(r->ec == net::error::eof);
}

BOOST_AUTO_TEST_CASE(a_write_waiting_for_room_keeps_the_fin_in_view) {
  Pair p;
  p.exchange("registered");
  // The peer reads nothing: the write waits for room, and Asio re-arms the descriptor for
  // EPOLLOUT from the events it has on record, which must still ask for EPOLLRDHUP.
  std::string big(64u << 20, 'x');
  p.ctls();
  std::optional<Result> w;
  net::async_write(p.server, net::buffer(big), [&w](error_code ec, std::size_t n) { w = Result{ec, n}; });
  p.poll();
  BOOST_REQUIRE(!w);
  BOOST_TEST(p.ctls() == 1);  // that re-arm
  p.last_bytes_and_fin_reach_a_waiting_read();
  p.server.close();
  p.poll();
  BOOST_REQUIRE(w);
}

BOOST_AUTO_TEST_CASE(urgent_data_does_not_hide_the_bytes_behind_its_mark) {
  Pair p;
  p.exchange("registered");
  std::optional<Result> r;
  p.read(r);
  p.poll();
  BOOST_REQUIRE(!r);
  // recv stops at the urgent mark ("d" goes out of band) with "efg" queued behind it, and those
  // bytes raise no edge of their own.
  p.send("abcd", MSG_OOB);
  p.send("efg");
  p.arrived(3);  // FIONREAD counts up to the mark only
  p.until(r);
  BOOST_TEST(std::string_view(p.buf, r->n) == "abc");
  p.read(r);
  p.until(r);
  BOOST_TEST(!r->ec);
  BOOST_TEST(std::string_view(p.buf, r->n) == "efg");
}

BOOST_AUTO_TEST_CASE(quiet_after_a_short_read_until_epoll_reports_bytes) {
  Pair p;
  BOOST_TEST(!p.server.quiet_since_drained());  // never read: the reactor would try a read
  p.exchange("answer");
  p.recvs();
  BOOST_TEST(p.server.quiet_since_drained());
  p.poll();
  BOOST_TEST(p.server.quiet_since_drained());
  BOOST_TEST(p.recvs() == 0);  // told without asking the socket
  p.send("stray");
  p.arrived(5);
  BOOST_TEST(p.server.quiet_since_drained());  // not yet taken from epoll: the limit of it
  p.poll();  // reported while no read is queued
  BOOST_TEST(!p.server.quiet_since_drained());
  // The next read is tried at once and drains the socket: quiet again.
  std::optional<Result> r;
  p.read(r);
  p.poll();
  BOOST_REQUIRE(r);
  BOOST_TEST(std::string_view(p.buf, r->n) == "stray");
  BOOST_TEST(p.server.quiet_since_drained());
}

BOOST_AUTO_TEST_CASE(not_quiet_once_the_peer_closed) {
  Pair p;
  p.exchange("answer");
  BOOST_TEST(p.server.quiet_since_drained());
  ::close(p.peer);
  p.peer = -1;
  p.arrived(0, true);
  p.poll();
  BOOST_TEST(!p.server.quiet_since_drained());
  std::optional<Result> r;
  p.read(r);
  p.poll();
  BOOST_REQUIRE(r);
  BOOST_TEST(r->ec == net::error::eof);
}

BOOST_AUTO_TEST_CASE(not_quiet_after_a_read_that_filled_its_buffer) {
  Pair p;
  p.exchange("registered");
  p.send("12345678");
  p.arrived(8);
  p.poll();
  std::optional<Result> r;
  p.read(r, 8);
  p.poll();
  BOOST_REQUIRE(r);
  BOOST_TEST(!p.server.quiet_since_drained());  // more may be queued: no edge would say so
}

BOOST_AUTO_TEST_CASE(queued_operations_are_cancelled_one_by_one_and_by_close) {
  Pair p;
  p.exchange("a");
  net::cancellation_signal signal;
  std::optional<Result> r;
  p.server.async_read_some(net::buffer(p.buf),
                           net::bind_cancellation_slot(signal.slot(), [&r](error_code ec, std::size_t n) {
                             r = Result{ec, n};
                           }));
  p.poll();
  BOOST_REQUIRE(!r);
  signal.emit(net::cancellation_type::terminal);
  p.poll();
  BOOST_REQUIRE(r);
  BOOST_TEST(r->ec == net::error::operation_aborted);
  // The socket goes on: the next read gets the next bytes.
  p.read(r);
  p.send("b");
  p.until(r);
  BOOST_TEST(std::string_view(p.buf, r->n) == "b");

  p.read(r);
  p.poll();
  BOOST_REQUIRE(!r);
  p.server.close();
  p.poll();
  BOOST_REQUIRE(r);
  BOOST_TEST(r->ec == net::error::operation_aborted);
  BOOST_TEST(!p.server.quiet_since_drained());  // closed: no registration
}

BOOST_AUTO_TEST_CASE(beasts_stream_reads_through_it_and_times_out_a_queued_read) {
  Pair p;
  int fd = p.fd();
  io::TcpStream stream(std::move(p.server));
  std::optional<Result> r;
  auto read = [&] {
    r.reset();
    stream.async_read_some(net::buffer(p.buf), [&r](error_code ec, std::size_t n) { r = Result{ec, n}; });
  };
  p.send("through beast");
  read();
  p.until(r);
  BOOST_TEST(std::string_view(p.buf, r->n) == "through beast");
  BOOST_TEST(recv_calls[fd].exchange(0) == 1);
  stream.expires_after(1ms);
  read();
  p.until(r);
  BOOST_TEST((r->ec == boost::beast::error::timeout), r->ec.message());
  BOOST_TEST(recv_calls[fd].exchange(0) == 0);
}

BOOST_AUTO_TEST_SUITE_END()
