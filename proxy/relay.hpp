#pragma once
// Moving HTTP messages between two streams: a body relayed piece by piece from a Beast parser
// to a serializer (Beast's "HTTP Relay" shape) with a hook that may transform each piece, and
// blind byte tunnels. Shared by the proxy pipeline and the api listener's gateway.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "core/io.hpp"
#include "core/wipe_freed.hpp"
#include "policy/headers.hpp"
#include "proxy/head.hpp"
#include "proxy/message_parser.hpp"
#include "proxy/request_parser.hpp"
#include "proxy/response_parser.hpp"
#include "policy/refusal.hpp"
#include "secrets/secret_value.hpp"

namespace sidekey::proxy {
namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using namespace net::experimental::awaitable_operators;
using io::tuple_awaitable;

template <class Stream>
io::TcpStream& lowest(Stream& s) {
  return beast::get_lowest_layer(s);
}


// Where the next body piece is read into: buffer_body's window, in Beast's parser (the api
// gateway's request) or in ours.
template <bool isRequest>
http::buffer_body::value_type& body_window(http::parser<isRequest, http::buffer_body>& p) {
  return p.get().body();
}
template <bool isRequest>
http::buffer_body::value_type& body_window(MessageParser<isRequest>& p) {
  return p.body;
}
inline http::buffer_body::value_type& body_window(BodyReader& p) { return p.body; }

// Clears a connection's read buffer, consumed bytes included, once it has carried a response
// that may echo a secret.
inline void wipe_buffer(io::FlatBuffer& b) {
  b.consume(b.size());
  auto all = b.prepare(b.capacity());
  secrets::wipe(static_cast<char*>(all.data()), all.size());
}


// ---------------------------------------------------------------------------------------------
// Body buffers: 16 KB, leased from this thread's free list. A relay then neither allocates one
// per message nor carries it in its coroutine frame (Asio recycles frames only up to about 1 KB;
// a larger frame is a large allocation and free per request).

class RelayBuffer {
 public:
  static constexpr std::size_t kSize = 16384;
  RelayBuffer() {
    auto& spare = spares();
    if (spare.empty()) {
      bytes_ = std::make_unique_for_overwrite<char[]>(kSize);
    } else {
      bytes_ = std::move(spare.back());
      spare.pop_back();
    }
  }
  ~RelayBuffer() {
    auto& spare = spares();
    if (bytes_ && spare.size() < kSparesKept) spare.push_back(std::move(bytes_));
  }
  RelayBuffer(const RelayBuffer&) = delete;
  RelayBuffer& operator=(const RelayBuffer&) = delete;
  char* data() { return bytes_.get(); }

 private:
  static constexpr std::size_t kSparesKept = 16;  // per worker thread: at most 256 KB kept idle
  static std::vector<std::unique_ptr<char[]>>& spares() {
    thread_local std::vector<std::unique_ptr<char[]>> list;
    return list;
  }
  std::unique_ptr<char[]> bytes_;
};

// ---------------------------------------------------------------------------------------------
// Relaying a message body from a parser to a serializer (Beast's "HTTP Relay" shape), with a
// hook that may transform each piece.

enum class RelayStatus { ok, read_failed, write_failed, refused };

struct RelayResult {
  RelayStatus status = RelayStatus::ok;
  beast::error_code ec;
  // On the heap: a result lives in the relay's coroutine frame twice, and a frame above about
  // 1 KB is not recycled by Asio (a large allocation per request).
  std::unique_ptr<policy::Refusal> refusal;
};

// Transform: (std::string_view piece, bool last, std::string& out) -> std::optional<Refusal>;
// returns the bytes to send through `out`, or a refusal to abort the relay.
struct Passthrough {
  std::optional<policy::Refusal> operator()(std::string_view piece, bool, std::string& out) const {
    out.assign(piece.data(), piece.size());
    return std::nullopt;
  }
};

// Writes as much of `bufs` as the socket takes right now, without suspending: a plain TCP
// stream with room in its send buffer takes a head and a small body in one sendmsg, and the write
// then costs no timer, no operation object and no turn of the event loop. Returns the bytes
// written; `ec` is set only for an error other than "would block". A TLS stream writes nothing
// here (its records go through the asynchronous path).
template <class Stream, class Buffers>
std::size_t write_now(Stream& s, const Buffers& bufs, beast::error_code& ec) {
  if constexpr (std::is_same_v<Stream, io::TcpStream>) {
    auto& socket = s.socket();
    if (!socket.non_blocking()) {  // once per socket: a synchronous write must never block
      socket.non_blocking(true, ec);
      if (ec) {
        ec = {};
        return 0;
      }
    }
    std::size_t n = socket.send_now(bufs, ec);
    if (ec == net::error::would_block || ec == net::error::try_again) {
      ec = {};
      return 0;
    }
    return ec ? 0 : n;
  } else {
    return 0;
  }
}

// The part of `bufs` that write_now() left (from byte `written` on), written asynchronously with
// the idle timeout; completes through `token` (tuple_awaitable: to be awaited at once).
template <class Stream, class Buffers, class Token>
auto write_rest(Stream& s, const Buffers& bufs, std::size_t written, std::chrono::milliseconds idle, Token&& token) {
  beast::buffers_suffix<Buffers> rest(bufs);
  rest.consume(written);
  lowest(s).expires_after(idle);
  return net::async_write(s, rest, std::forward<Token>(token));
}

// Parses the next piece of a body from what is already buffered, without an I/O operation (a
// small body arrives with its head): what http::async_read_some does before it reads. need_more
// when the buffer holds no complete element, and then the stream is read.
template <class Parser>
beast::error_code parse_buffered(Parser& p, io::FlatBuffer& buf) {
  if (buf.size() == 0) return http::error::need_more;
  beast::error_code ec;
  std::size_t used = p.put(buf.data(), ec);
  buf.consume(used);
  return ec;
}

// What a read of `n` bytes into `buf` (or its error) brings a parser of our own (BodyReader):
// the end of the stream, the read's error, or what it parsed of the bytes buffered (need_more:
// nothing whole yet). The rest of http::async_read_some's steps, after parse_buffered().
template <class Parser>
beast::error_code parse_read(Parser& p, io::FlatBuffer& buf, const beast::error_code& rec, std::size_t n) {
  beast::error_code ec;
  if (rec == net::error::eof) {
    p.put_eof(ec);
    return ec;
  }
  if (rec) return rec;
  buf.commit(n);
  return parse_buffered(p, buf);
}

// Runs the hook outside the relay's coroutine, so that its optional refusal (large) never sits in
// the frame.
template <class Transform>
std::unique_ptr<policy::Refusal> transform_piece(Transform& transform, std::string_view piece, bool last,
                                                 std::string& out) {
  if (auto refusal = transform(piece, last, out)) return std::make_unique<policy::Refusal>(std::move(*refusal));
  return nullptr;
}

// The keep-alive race: an upstream may close an idle connection just as a request goes out on
// it. What a request may then be sent again (once, on a fresh connection): no body, not an
// upgrade, a safe method. What says the connection was closed under it before it answered:
// UpstreamConnection::closed_before_answer.
inline bool replayable_request(http::verb method, bool has_body, bool upgrade) {
  return !has_body && !upgrade &&
         (method == http::verb::get || method == http::verb::head || method == http::verb::options);
}

// Responses that carry no body whatever their headers say (the proxy's and the gateway's).
inline bool header_only_response(http::verb method, int status) {
  return method == http::verb::head || status == 204 || status == 304;
}

// A read error that means the peer sent something malformed (as opposed to closing or timing out).
inline bool is_parse_error(const beast::error_code& ec) {
  return ec.category() == http::make_error_code(http::error::bad_chunk).category() && ec != http::error::end_of_stream &&
         ec != http::error::partial_message && ec != http::error::need_buffer;
}

// How much a read asks for: the room its connection's buffer already has, at least 4 KB, at most
// 64 KB (a connection's buffer keeps the size its messages needed).
inline std::size_t read_room(const io::FlatBuffer& b) {
  return std::clamp<std::size_t>(b.capacity() - b.size(), 4096, 65536);
}

// How many bytes of chunk framing (a size line with its extensions, trailer fields) may wait in
// a read buffer for the rest of it.
inline constexpr std::size_t kPendingFramingLimit = 65536;

// Each piece is written as soon as it is read (async_read_some, not async_read, which would wait
// for a full buffer). The head goes out together with the first piece when that piece is at hand
// (already buffered, already read, or no body at all): one write instead of two. Otherwise it goes
// out on its own first, so that a stream whose first body byte is late (server-sent events) does
// not hold the head back. `prefetched` is a body piece read before the relay started (the
// request's first piece, read before dialing so that bad framing is refused before anything goes
// upstream). With `header_only` (HEAD, 204, 304) nothing follows the head, not even a last chunk.
template <class Parser, class In, class Out, class Transform>
io::Awaitable<RelayResult> relay_body(In& in, io::FlatBuffer& in_buf, Parser& p,
                                       Out& out, OutHead out_head, Transform& transform, std::chrono::milliseconds idle,
                                       std::uint64_t& body_bytes, bool identity,
                                       std::optional<std::string_view> prefetched = std::nullopt,
                                       bool header_only = false) {
  RelayResult result;
  // The head may carry injected secret values: wiped once written.
  struct WipedHead {
    std::string bytes;
    ~WipedHead() { secrets::wipe(bytes); }
  } head{std::move(out_head.bytes)};
  const bool chunked = out_head.chunked;
  bool head_pending = true;
  auto fail = [&](RelayStatus status, beast::error_code ec) {
    result.status = status;
    result.ec = ec;
    return std::move(result);
  };
  bool piece_at_hand = prefetched || p.is_done() || in_buf.size() > 0;
  // What passed through this thread's registers (an injected value rendered into the head, a
  // piece substituted or scrubbed, its TLS record) is cleared before the relay waits.
  if (header_only || !piece_at_hand) {
    const net::const_buffer bytes = net::buffer(head.bytes);
    beast::error_code hec;
    std::size_t wrote = write_now(out, bytes, hec);
    secrets::clear_vector_registers();
    if (!hec && wrote < bytes.size()) {
      auto [aec, an] = co_await write_rest(out, bytes, wrote, idle, tuple_awaitable);
      secrets::clear_vector_registers();
      hec = aec;
    }
    if (hec) co_return fail(RelayStatus::write_failed, hec);
    head_pending = false;
    if (header_only) co_return result;
  }
  RelayBuffer raw;
  // A transformed body is one that may carry a secret (substituted in, or echoed back to be
  // scrubbed): what was read of it is wiped when the relay ends, before the buffer goes back.
  struct RawWiper {
    RelayBuffer& raw;
    bool on;
    std::size_t used = 0;  // high-water mark of what was read into it
    ~RawWiper() {
      if (on) secrets::wipe(raw.data(), used);
    }
  } raw_wiper{raw, !identity};
  std::string piece;
  char size_line[24];
  static constexpr std::string_view kCrlf = "\r\n", kLastChunk = "0\r\n\r\n";
  for (;;) {
    std::string_view data;
    if (prefetched) {
      data = *prefetched;
      prefetched.reset();
    } else if (!p.is_done()) {
      body_window(p).data = raw.data();
      body_window(p).size = RelayBuffer::kSize;
      beast::error_code ec = parse_buffered(p, in_buf);
      // Only a chunk's size line or trailer section leaves bytes waiting for more (a body's own
      // bytes go to the window as they come): one that never ends must not grow the buffer
      // without bound.
      if (ec == http::error::need_more && in_buf.size() >= kPendingFramingLimit)
        co_return fail(RelayStatus::read_failed, http::error::header_limit);
      if (ec == http::error::need_more) {
        lowest(in).expires_after(idle);
        if constexpr (std::is_base_of_v<BodyReader, Parser>) {
          auto [rec, rn] = co_await in.async_read_some(in_buf.prepare(read_room(in_buf)), tuple_awaitable);
          ec = parse_read(p, in_buf, rec, rn);
          if (ec == http::error::need_more) ec = {};  // (read again, the limit above checked first)
        } else {
          auto [rec, rn] = co_await http::async_read_some(in, in_buf, p, tuple_awaitable);
          ec = rec;
        }
      }
      if (ec == http::error::need_buffer) ec = {};
      if (ec) co_return fail(RelayStatus::read_failed, ec);
      data = std::string_view(raw.data(), RelayBuffer::kSize - body_window(p).size);
      raw_wiper.used = std::max(raw_wiper.used, data.size());
    }
    const bool last = p.is_done();
    body_bytes += data.size();
    std::string_view send = data;
    if (!identity && (!data.empty() || last)) {
      piece.clear();
      if (auto refusal = transform_piece(transform, data, last, piece)) {
        secrets::wipe(piece);
        result.status = RelayStatus::refused;
        result.refusal = std::move(refusal);
        co_return result;
      }
      send = piece;
    }
    std::array<net::const_buffer, 5> bufs;
    std::size_t nbufs = 0;
    if (head_pending) bufs[nbufs++] = net::buffer(head.bytes);
    if (!send.empty()) {
      if (chunked) {
        char* end = std::to_chars(size_line, size_line + sizeof size_line - 2, send.size(), 16).ptr;
        *end++ = '\r';
        *end++ = '\n';
        bufs[nbufs++] = net::buffer(size_line, static_cast<std::size_t>(end - size_line));
      }
      bufs[nbufs++] = net::buffer(send.data(), send.size());
      if (chunked) bufs[nbufs++] = net::buffer(kCrlf.data(), kCrlf.size());
    }
    if (last && chunked) bufs[nbufs++] = net::buffer(kLastChunk.data(), kLastChunk.size());
    if (nbufs > 0) {
      const std::span<const net::const_buffer> all(bufs.data(), nbufs);
      beast::error_code wec;
      std::size_t wrote = write_now(out, all, wec);
      const bool sensitive = head_pending || !identity;
      if (sensitive) secrets::clear_vector_registers();
      if (!wec && wrote < net::buffer_size(all)) {
        auto [aec, an] = co_await write_rest(out, all, wrote, idle, tuple_awaitable);
        if (sensitive) secrets::clear_vector_registers();
        wec = aec;
      }
      if (!identity) secrets::wipe(piece);
      if (wec) co_return fail(RelayStatus::write_failed, wec);
      head_pending = false;
    }
    if (last) break;
  }
  co_return result;
}

// ---------------------------------------------------------------------------------------------
// Blind byte tunnels (CONNECT to an allow rule; protocol upgrades after the handshake).

template <class From, class To>
io::Awaitable<void> pump(From& from, To& to, std::chrono::milliseconds idle, std::uint64_t& bytes) {
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
// ends the pump (and shuts down the writing side). The pieces may hold a secret (an upstream's
// echo, before the transform scrubs it): the read buffer is wiped after each, and whatever the
// transform frees as its strings grow is zeroed (WipeFreedBlocks).
template <class From, class To, class Transform>
io::Awaitable<void> pump_through(From& from, To& to, std::chrono::milliseconds idle, std::uint64_t& bytes,
                                  Transform& transform) {
  std::array<char, 16384> buf;
  std::string out;
  for (;;) {
    lowest(from).expires_after(idle);
    auto [ec, n] = co_await from.async_read_some(net::buffer(buf), tuple_awaitable);
    if (n > 0) {
      out.clear();
      bool go;
      {
        WipeFreedBlocks wipe_freed;
        go = transform(std::string_view(buf.data(), n), out);
      }
      secrets::wipe(buf.data(), n);
      secrets::clear_vector_registers();
      if (!go) break;
      lowest(to).expires_after(idle);
      auto [wec, wn] = co_await net::async_write(to, net::buffer(out), tuple_awaitable);
      secrets::wipe(out);
      bytes += wn;
      if (wec) break;
    }
    if (ec) break;
  }
  secrets::wipe(out);
  beast::error_code ignored;
  lowest(to).socket().shutdown(net::ip::tcp::socket::shutdown_send, ignored);
  lowest(from).socket().shutdown(net::ip::tcp::socket::shutdown_receive, ignored);
}

template <class A, class B>
io::Awaitable<void> tunnel(A& a, B& b, std::chrono::milliseconds idle, std::uint64_t& a_to_b, std::uint64_t& b_to_a) {
  co_await (pump(a, b, idle, a_to_b) && pump(b, a, idle, b_to_a));
}


}  // namespace sidekey::proxy
