#pragma once
// Moving HTTP messages between two streams: a body relayed piece by piece from a Beast parser
// to a serializer (Beast's "HTTP Relay" shape) with a hook that may transform each piece, and
// blind byte tunnels. Shared by the proxy pipeline and the api listener's gateway.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <array>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "policy/headers.hpp"
#include "policy/refusal.hpp"
#include "secrets/secret_value.hpp"

namespace sidekey::proxy {
namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using namespace net::experimental::awaitable_operators;
inline constexpr auto tuple_awaitable = net::as_tuple(net::use_awaitable);

template <class Stream>
beast::tcp_stream& lowest(Stream& s) {
  return beast::get_lowest_layer(s);
}


template <bool isRequest>
void replace_fields(http::header<isRequest>& m, const policy::Headers& headers) {
  for (auto it = m.begin(); it != m.end();) it = m.erase(it);
  for (const auto& h : headers) m.insert(h.name, h.value);
}

// ---------------------------------------------------------------------------------------------
// Relaying a message body from a parser to a serializer (Beast's "HTTP Relay" shape), with a
// hook that may transform each piece.

enum class RelayStatus { ok, read_failed, write_failed, refused };

struct RelayResult {
  RelayStatus status = RelayStatus::ok;
  beast::error_code ec;
  std::optional<policy::Refusal> refusal;
};

// Transform: (std::string_view piece, bool last, std::string& out) -> std::optional<Refusal>;
// returns the bytes to send through `out`, or a refusal to abort the relay.
struct Passthrough {
  std::optional<policy::Refusal> operator()(std::string_view piece, bool, std::string& out) const {
    out.assign(piece.data(), piece.size());
    return std::nullopt;
  }
};

// A read error that means the peer sent something malformed (as opposed to closing or timing out).
inline bool is_parse_error(const beast::error_code& ec) {
  return ec.category() == http::make_error_code(http::error::bad_chunk).category() && ec != http::error::end_of_stream &&
         ec != http::error::partial_message && ec != http::error::need_buffer;
}

// Each piece is written as soon as it is read (async_read_some, not async_read, which would wait
// for a full buffer). The head goes out together with the first piece when that piece is at hand
// (already buffered, already read, or no body at all): one write instead of two. Otherwise it goes
// out on its own first, so that a stream whose first body byte is late (server-sent events) does
// not hold the head back. `prefetched` is a body piece read before the relay started (the
// request's first piece, read before dialing so that bad framing is refused before anything goes
// upstream). With `header_only` (HEAD, 204, 304) nothing follows the head, not even a last chunk.
template <bool isRequest, class In, class Out, class Transform>
net::awaitable<RelayResult> relay_body(In& in, beast::flat_buffer& in_buf, http::parser<isRequest, http::buffer_body>& p,
                                       Out& out, Transform& transform, std::chrono::milliseconds idle,
                                       std::uint64_t& body_bytes, bool identity,
                                       std::optional<std::string_view> prefetched = std::nullopt,
                                       bool header_only = false) {
  http::serializer<isRequest, http::buffer_body> sr{p.get()};
  RelayResult result;
  bool piece_at_hand = prefetched || p.is_done() || in_buf.size() > 0;
  if (header_only || !piece_at_hand) {
    lowest(out).expires_after(idle);
    auto [hec, hn] = co_await http::async_write_header(out, sr, tuple_awaitable);
    if (hec) {
      result.status = RelayStatus::write_failed;
      result.ec = hec;
      co_return result;
    }
    if (header_only) co_return result;
  }
  std::array<char, 16384> raw;
  std::string piece;
  while (!sr.is_done()) {
    std::optional<std::string_view> data;
    if (prefetched) {
      data = *prefetched;
      prefetched.reset();
    } else if (!p.is_done()) {
      p.get().body().data = raw.data();
      p.get().body().size = raw.size();
      lowest(in).expires_after(idle);
      auto [ec, n] = co_await http::async_read_some(in, in_buf, p, tuple_awaitable);
      if (ec == http::error::need_buffer) ec = {};
      if (ec) {
        result.status = RelayStatus::read_failed;
        result.ec = ec;
        co_return result;
      }
      data = std::string_view(raw.data(), raw.size() - p.get().body().size);
    }
    if (data) {
      body_bytes += data->size();
      if (identity) {
        p.get().body().data = const_cast<char*>(data->data());
        p.get().body().size = data->size();
      } else {
        piece.clear();
        std::optional<policy::Refusal> refusal = transform(*data, p.is_done(), piece);
        if (refusal) {
          result.status = RelayStatus::refused;
          result.refusal = std::move(refusal);
          secrets::wipe(piece);
          co_return result;
        }
        p.get().body().data = piece.data();
        p.get().body().size = piece.size();
      }
    } else {
      p.get().body().data = nullptr;
      p.get().body().size = 0;
    }
    bool last = p.is_done();
    // An empty piece must be a null buffer: Beast frames a non-null empty buffer as a zero-size
    // chunk, which the peer reads as the end of the body.
    if (p.get().body().size == 0) p.get().body().data = nullptr;
    p.get().body().more = !last;
    if (p.get().body().size == 0 && !last) continue;  // only framing was read
    lowest(out).expires_after(idle);
    auto [wec, wn] = co_await http::async_write(out, sr, tuple_awaitable);
    if (!identity) secrets::wipe(piece);
    if (wec == http::error::need_buffer) wec = {};
    if (wec) {
      result.status = RelayStatus::write_failed;
      result.ec = wec;
      co_return result;
    }
    // The write with more=false emitted the end of the message (and the last chunk): calling
    // the serializer again would emit a second last chunk.
    if (last) break;
  }
  co_return result;
}

// ---------------------------------------------------------------------------------------------
// Blind byte tunnels (CONNECT to an allow rule; protocol upgrades after the handshake).

template <class From, class To>
net::awaitable<void> pump(From& from, To& to, std::chrono::milliseconds idle, std::uint64_t& bytes) {
  std::array<char, 16384> buf;
  for (;;) {
    lowest(from).expires_after(idle);
    auto [ec, n] = co_await from.async_read_some(net::buffer(buf), tuple_awaitable);
    if (n > 0) {
      lowest(to).expires_after(idle);
      auto [wec, wn] = co_await net::async_write(to, net::buffer(buf.data(), n), tuple_awaitable);
      bytes += wn;
      if (wec) break;
    }
    if (ec) break;
  }
  beast::error_code ignored;
  lowest(to).socket().shutdown(net::ip::tcp::socket::shutdown_send, ignored);
}

// Like pump(), but every piece read goes through `transform(piece, out) -> bool` first; false
// ends the pump (and shuts down the writing side).
template <class From, class To, class Transform>
net::awaitable<void> pump_through(From& from, To& to, std::chrono::milliseconds idle, std::uint64_t& bytes,
                                  Transform& transform) {
  std::array<char, 16384> buf;
  std::string out;
  for (;;) {
    lowest(from).expires_after(idle);
    auto [ec, n] = co_await from.async_read_some(net::buffer(buf), tuple_awaitable);
    if (n > 0) {
      out.clear();
      if (!transform(std::string_view(buf.data(), n), out)) break;
      lowest(to).expires_after(idle);
      auto [wec, wn] = co_await net::async_write(to, net::buffer(out), tuple_awaitable);
      secrets::wipe(out);
      bytes += wn;
      if (wec) break;
    }
    if (ec) break;
  }
  beast::error_code ignored;
  lowest(to).socket().shutdown(net::ip::tcp::socket::shutdown_send, ignored);
  lowest(from).socket().shutdown(net::ip::tcp::socket::shutdown_receive, ignored);
}

template <class A, class B>
net::awaitable<void> tunnel(A& a, B& b, std::chrono::milliseconds idle, std::uint64_t& a_to_b, std::uint64_t& b_to_a) {
  co_await (pump(a, b, idle, a_to_b) && pump(b, a, idle, b_to_a));
}


}  // namespace sidekey::proxy
