#pragma once
// The types every coroutine and socket of the server is written with.
//
// Every connection lives on one worker's io_context, so its coroutines, sockets and timers name
// that executor type outright rather than Asio's default, the type-erased any_io_executor: each
// operation copies, tracks and dispatches through its executor several times, and the erased
// one pays an indirect call and a wrapper object for each (measured with bench/instructions).

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>

#include <variant>

#include "core/tcp_socket.hpp"
#include "core/tcp_stream.hpp"
#include "core/wiping_allocator.hpp"

namespace sidekey::io {

using Executor = boost::asio::io_context::executor_type;

template <class T = void>
using Awaitable = boost::asio::awaitable<T, Executor>;

// Reads that remember a drained socket (core/tcp_socket.hpp).
using Socket = boost::asio::basic_stream_socket<Tcp, Executor>;
using Acceptor = boost::asio::basic_socket_acceptor<boost::asio::ip::tcp, Executor>;
using Resolver = boost::asio::ip::basic_resolver<boost::asio::ip::tcp, Executor>;
using Timer = boost::asio::basic_waitable_timer<std::chrono::steady_clock,
                                                boost::asio::wait_traits<std::chrono::steady_clock>, Executor>;
// io::TcpStream (core/tcp_stream.hpp): the socket with basic_stream's timeouts, swept per io_context.

// The read buffer of a client or upstream connection: it may hold a secret (an upstream's echo,
// a value sent to the secrets API), so a block it leaves behind as it grows, or at its end, is
// zeroed first.
using FlatBuffer = boost::beast::basic_flat_buffer<WipingAllocator<char>>;

inline constexpr boost::asio::use_awaitable_t<Executor> use_awaitable;
// Completion as a tuple (error first): failures are values to branch on, not exceptions.
// Deferred, to be awaited at once (`co_await s.async_read_some(b, tuple_awaitable)`): the
// coroutine's co_await then starts the operation itself and resumes from its handler. With
// use_awaitable each operation started a coroutine of its own (a frame allocated, pushed on and
// popped off the awaitable thread's stack): 0.4 k instructions per proxied request, which awaits
// two reads.
inline constexpr auto tuple_awaitable = boost::asio::as_tuple(boost::asio::deferred);

// One asynchronous operation on whichever stream a std::variant of streams holds, as one
// deferred operation to await (each alternative's own operation is a type of its own):
// start(stream, handler) starts it. Completes with Signature, as a tuple.
template <class Signature, class Variant, class Start>
auto async_visit(Variant& streams, Start start) {
  return boost::asio::async_initiate<const decltype(tuple_awaitable)&, Signature>(
      [&streams](auto handler, Start s) { std::visit([&](auto& stream) { s(stream, std::move(handler)); }, streams); },
      tuple_awaitable, std::move(start));
}

}  // namespace sidekey::io
