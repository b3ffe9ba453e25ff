#pragma once
// TLS over a io::TcpStream, for intercepted client connections and upstream TLS.
//
// Why not asio::ssl::stream: it holds four 17 KB buffers per connection for the connection's
// whole life (two vectors of its own and OpenSSL's BIO pair) — 71 KB of the ~87 KB an idle
// intercepted connection cost. Here OpenSSL reads and writes through a BIO over two buffers that
// exist only while they hold bytes: idle, a connection keeps its SSL object and nothing else
// (SSL_MODE_RELEASE_BUFFERS frees OpenSSL's own record buffers). Ciphertext is read and written
// through the io::TcpStream, so its timeouts (expires_after on the lowest layer) apply as before.
//
// At most one read and one write may be outstanding at once (the tunnel pumps run both); the
// handshake and shutdown run alone. Errors are those asio::ssl::stream reports: OpenSSL's in
// asio's ssl category, net::error::eof for the peer's close_notify, and
// net::ssl::error::stream_truncated for a TCP close without one.
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_allocator.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ssl/error.hpp>
#include <openssl/ssl.h>

#include <array>
#include <cstdint>
#include <cstddef>
#include <exception>
#include <memory>
#include <tuple>
#include <utility>

#include "core/io.hpp"

namespace sidekey::proxy {

namespace net = boost::asio;
namespace beast = boost::beast;

class TlsStream {
 public:
  using executor_type = io::Executor;
  using next_layer_type = io::TcpStream;
  enum class Role { client, server };
  using Result = std::tuple<beast::error_code, std::size_t>;

  // The SSL object is made from `ctx` at once (std::runtime_error when OpenSSL cannot); set SNI
  // and verification on native_handle() before the handshake.
  TlsStream(io::TcpStream&& tcp, SSL_CTX* ctx);
  TlsStream(TlsStream&&) noexcept;
  TlsStream& operator=(TlsStream&&) noexcept;
  ~TlsStream();

  executor_type get_executor() noexcept;
  io::TcpStream& next_layer() noexcept;
  SSL* native_handle() noexcept;
  // Ciphertext received and not yet turned into plaintext (part of a record): the peer had
  // begun to say something when its connection ended. A close_notify, once read, is not that.
  bool holds_unread_ciphertext() const noexcept;

  // `already_read`: bytes of the peer's first flight that arrived with an earlier read (a
  // ClientHello sent right behind the CONNECT head).
  io::Awaitable<beast::error_code> handshake(Role role, net::const_buffer already_read = {});
  // Sends close_notify (unless the connection failed); does not wait for the peer's.
  io::Awaitable<beast::error_code> shutdown();

  template <class MutableBufferSequence, class Token>
  auto async_read_some(const MutableBufferSequence& buffers, Token&& token) {
    net::mutable_buffer first;
    for (auto it = net::buffer_sequence_begin(buffers); it != net::buffer_sequence_end(buffers); ++it)
      if (net::mutable_buffer b(*it); b.size() > 0) {
        first = b;
        break;
      }
    return start(read_some(s_, first), std::forward<Token>(token));
  }

  template <class ConstBufferSequence, class Token>
  auto async_write_some(const ConstBufferSequence& buffers, Token&& token) {
    Pieces pieces{};
    std::size_t n = 0;
    for (auto it = net::buffer_sequence_begin(buffers); it != net::buffer_sequence_end(buffers) && n < pieces.size(); ++it)
      if (net::const_buffer b(*it); b.size() > 0) pieces[n++] = b;
    return start(write_some(s_, pieces, n), std::forward<Token>(token));
  }

  struct State;  // (public only for the BIO callbacks in tls_stream.cpp)

 private:
  // What one write_some takes from a buffer sequence (a serializer's head and body pieces).
  using Pieces = std::array<net::const_buffer, 8>;

  // Each operation holds the state it works on, so that it stays valid if the stream is moved
  // or destroyed while the operation is pending (destroying the stream closes the socket: the
  // operation then fails).
  void close_socket() noexcept;
  static io::Awaitable<Result> read_some(std::shared_ptr<State> s, net::mutable_buffer into);
  static io::Awaitable<Result> write_some(std::shared_ptr<State> s, Pieces pieces, std::size_t count);

  // Runs `op` as an asynchronous operation with the completion signature Beast expects. The
  // handler's executor, cancellation slot and allocator are the operation's; the handler never
  // runs inside this call (co_spawn posts a completion that did not suspend).
  template <class Token>
  auto start(io::Awaitable<Result> op, Token&& token) {
    return net::async_initiate<Token, void(beast::error_code, std::size_t)>(
        [ex = get_executor()](auto handler, io::Awaitable<Result> op) {
          auto handler_ex = net::get_associated_executor(handler, ex);
          auto slot = net::get_associated_cancellation_slot(handler);
          auto alloc = net::get_associated_allocator(handler);
          net::co_spawn(
              ex, std::move(op),
              net::bind_cancellation_slot(
                  slot, net::bind_allocator(alloc, net::bind_executor(handler_ex, [h = std::move(handler)](
                                                                                       std::exception_ptr e, Result r) mutable {
                          // Only allocation failures throw in the operations: reported as such.
                          if (e) r = Result{beast::error_code(net::error::no_memory), 0};
                          std::move(h)(std::get<0>(r), std::get<1>(r));
                        }))));
        },
        token, std::move(op));
  }

  std::shared_ptr<State> s_;
};

}  // namespace sidekey::proxy
