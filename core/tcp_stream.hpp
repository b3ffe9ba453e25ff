#pragma once
// io::TcpStream: an io::Socket with Beast basic_stream's timeouts, kept by one sweep timer per
// io_context instead of a timer wait per operation.
//
// basic_stream arms a timer wait when each read or write starts and cancels it when the
// operation ends: a timer-queue insert and removal under the reactor's lock, and a completion of
// the cancelled wait through the scheduler, per operation (~1.5 k instructions of a proxied
// request's ~34 k, bench/instructions). Here an operation that starts with a deadline set
// records it in the stream's state and lists the state with its io_context's Sweeper (a few
// stores); one timer, armed for the earliest deadline listed and moved only when an earlier
// one comes, closes the sockets whose operations ran past theirs. Those operations complete
// with beast::error::timeout, as basic_stream's do.
//
// Semantics kept from basic_stream (the code above it was written for them): expires_after()
// sets an absolute deadline for the operations started after it, until changed or
// expires_never(); a deadline counts only while an operation is pending (a stream left idle
// past it is not touched); a timeout closes the socket; destroying the stream closes the socket
// and cancels what is pending, and the state lives on until those operations have completed.
//
// The sweep timer's wait is not counted as the io_context's work (a worker never runs out of
// work; a test's or a command's run() returns once its operations are done, not at the next
// wake): it stays armed while operations come and go, and moves only for an earlier deadline or
// after a sweep, so a stream's operations cost no timer operation of their own.
//
// One thread per io_context (as io::Socket already requires): the state's counts and the
// sweeper's list are not locked. As with any Asio I/O object, an operation is started while the
// stream exists (the state it runs with is then kept until it completes); a moved-from stream is
// an empty handle that may only be destroyed or assigned to.
#include <boost/asio/associator.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/handler_continuation_hook.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/error.hpp>

#include <array>
#include <chrono>
#include <utility>

#include "core/tcp_socket.hpp"

namespace sidekey::io {

namespace timed {
using Clock = std::chrono::steady_clock;
using Socket = boost::asio::basic_stream_socket<Tcp, boost::asio::io_context::executor_type>;
enum Direction { kRead = 0, kWrite = 1 };
class Sweeper;

// What a stream and its pending operations share.
struct State {
  explicit State(Socket&& s);
  Socket socket;
  Sweeper* sweeper;                                      // its io_context's
  Clock::time_point expiry = Clock::time_point::max();   // for operations started from now on
  std::array<Clock::time_point, 2> deadline{Clock::time_point::max(), Clock::time_point::max()};
  std::array<unsigned, 2> pending{};                     // operations in flight, by direction
  std::array<bool, 2> timed_out{};                       // the sweep closed the socket over one
  unsigned refs = 1;                                     // the stream, and each operation
  State* prev = nullptr;                                 // in the sweeper's list, while listed
  State* next = nullptr;
  bool listed = false;
};

// One per io_context: the states whose pending operations have a deadline, and the timer.
class Sweeper final : public boost::asio::execution_context::service {
 public:
  static boost::asio::execution_context::id id;

  explicit Sweeper(boost::asio::execution_context& ctx);

  // Lists `s` (pending operations with a deadline) and makes sure the timer wakes by `at`.
  // Never throws: it runs after the socket has taken the operation, which will complete.
  void watch(State& s, Clock::time_point at) noexcept;
  void unwatch(State& s) noexcept;

 private:
  void shutdown() override;
  void arm(Clock::time_point at) noexcept;
  void sweep();

  boost::asio::basic_waitable_timer<Clock, boost::asio::wait_traits<Clock>, boost::asio::io_context::executor_type> timer_;
  Clock::time_point wake_ = Clock::time_point::max();  // when the timer fires (max: not armed)
  State* head_ = nullptr;
  bool down_ = false;
};

// An operation starts: counted, with the stream's expiry as its deadline; listed (watched())
// once the socket has taken it, so that the operation's own work is counted by then.
void begin(State& s, Direction d);
void watch(State& s, Direction d) noexcept;
// It completes: uncounted; a timeout the sweep caused is reported as beast::error::timeout.
void end(State& s, Direction d, boost::system::error_code& ec) noexcept;
void release(State* s) noexcept;

// The completion handler of an operation: the caller's handler, with the state's bookkeeping
// before it is called (or when it is destroyed uncalled, at the io_context's shutdown).
template <class Handler>
class Completion {
 public:
  Completion(Handler&& h, State& s, Direction d) : handler_(std::move(h)), state_(&s), direction_(d) {
    ++s.refs;
    begin(s, d);
  }
  Completion(Completion&& o) noexcept
      : handler_(std::move(o.handler_)), state_(std::exchange(o.state_, nullptr)), direction_(o.direction_) {}
  Completion(const Completion&) = delete;
  Completion& operator=(const Completion&) = delete;
  Completion& operator=(Completion&&) = delete;
  ~Completion() {
    if (!state_) return;
    boost::system::error_code ignored;
    end(*state_, direction_, ignored);
    release(state_);
  }

  template <class... More>
  void operator()(boost::system::error_code ec, More&&... more) {
    State* s = std::exchange(state_, nullptr);
    end(*s, direction_, ec);
    release(s);
    std::move(handler_)(ec, std::forward<More>(more)...);
  }

  friend bool asio_handler_is_continuation(Completion* c) {
    return boost_asio_handler_cont_helpers::is_continuation(c->handler_);
  }

  Handler handler_;

 private:
  State* state_;
  Direction direction_;
};
}  // namespace timed

class TcpStream {
 public:
  using executor_type = boost::asio::io_context::executor_type;
  using socket_type = timed::Socket;
  using lowest_layer_type = socket_type;  // (what asio::ssl::stream asks of its next layer)
  using endpoint_type = boost::asio::ip::tcp::endpoint;

  explicit TcpStream(socket_type&& s);
  explicit TcpStream(const executor_type& ex);
  explicit TcpStream(boost::asio::io_context& ctx) : TcpStream(ctx.get_executor()) {}
  TcpStream(TcpStream&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  TcpStream& operator=(TcpStream&& o) noexcept {
    if (this != &o) {
      reset();
      s_ = std::exchange(o.s_, nullptr);
    }
    return *this;
  }
  TcpStream(const TcpStream&) = delete;
  TcpStream& operator=(const TcpStream&) = delete;
  ~TcpStream() { reset(); }

  executor_type get_executor() noexcept { return s_->socket.get_executor(); }
  socket_type& socket() noexcept { return s_->socket; }
  const socket_type& socket() const noexcept { return s_->socket; }
  lowest_layer_type& lowest_layer() noexcept { return s_->socket; }
  const lowest_layer_type& lowest_layer() const noexcept { return s_->socket; }

  // The deadline of the operations started from now on (while they are pending).
  void expires_after(std::chrono::nanoseconds d) { s_->expiry = timed::Clock::now() + d; }
  void expires_at(timed::Clock::time_point at) { s_->expiry = at; }
  void expires_never() { s_->expiry = timed::Clock::time_point::max(); }
  // Closes the socket: pending operations complete with operation_aborted.
  void close() noexcept;

  template <class MutableBufferSequence, class Token>
  auto async_read_some(const MutableBufferSequence& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [](auto handler, timed::State* s, const MutableBufferSequence& b) {
          s->socket.async_read_some(b, timed::Completion<decltype(handler)>(std::move(handler), *s, timed::kRead));
          timed::watch(*s, timed::kRead);
        },
        token, s_, buffers);
  }

  template <class ConstBufferSequence, class Token>
  auto async_write_some(const ConstBufferSequence& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [](auto handler, timed::State* s, const ConstBufferSequence& b) {
          s->socket.async_write_some(b, timed::Completion<decltype(handler)>(std::move(handler), *s, timed::kWrite));
          timed::watch(*s, timed::kWrite);
        },
        token, s_, buffers);
  }

  // Connects (the socket opened for the endpoint's protocol), under the deadline as a write.
  template <class Token>
  auto async_connect(const endpoint_type& ep, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
        [](auto handler, timed::State* s, const endpoint_type& e) {
          s->socket.async_connect(e, timed::Completion<decltype(handler)>(std::move(handler), *s, timed::kWrite));
          timed::watch(*s, timed::kWrite);
        },
        token, s_, ep);
  }

 private:
  void reset() noexcept;  // closes the socket (pending operations end) and lets the state go

  timed::State* s_;
};

}  // namespace sidekey::io

namespace boost::asio {
// The caller's handler decides where and with what an operation completes: its executor,
// allocator and cancellation slot are the completion's.
template <template <typename, typename> class Associator, typename Handler, typename DefaultCandidate>
struct associator<Associator, sidekey::io::timed::Completion<Handler>, DefaultCandidate>
    : Associator<Handler, DefaultCandidate> {
  static typename Associator<Handler, DefaultCandidate>::type get(
      const sidekey::io::timed::Completion<Handler>& h) noexcept {
    return Associator<Handler, DefaultCandidate>::get(h.handler_);
  }
  static auto get(const sidekey::io::timed::Completion<Handler>& h, const DefaultCandidate& c) noexcept
      -> decltype(Associator<Handler, DefaultCandidate>::get(h.handler_, c)) {
    return Associator<Handler, DefaultCandidate>::get(h.handler_, c);
  }
};
}  // namespace boost::asio
