#include "proxy/tls_stream.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <openssl/bio.h>
#include <openssl/err.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "core/io.hpp"

namespace sidekey::proxy {
namespace {

// A read from the socket while data is streaming: a whole TLS record (16 KB of plaintext plus
// its overhead) fits.
constexpr std::size_t kInputBytes = 16 * 1024 + 512;
// The first read after the previous one found less than it had room for (most often: the wait
// for an idle connection's next request): a small request's record fits, and an idle
// connection does not hold a full record buffer while it waits.
constexpr std::size_t kIdleInputBytes = 2048;
// What one write_some hands OpenSSL before the ciphertext is sent.
constexpr std::size_t kMaxWriteBytes = 64 * 1024;

}  // namespace

struct TlsStream::State {
  io::TcpStream tcp;
  SSL* ssl = nullptr;
  // Ciphertext received and not yet taken by OpenSSL: [in_begin, in_end) of `in` (in_size
  // bytes), which exists only while it holds bytes or a read waits for them.
  std::unique_ptr<char[]> in;
  std::size_t in_begin = 0, in_end = 0, in_size = 0;
  bool streaming = false;  // the last read filled the buffer: more is probably on its way
  // Ciphertext OpenSSL produced and nobody sends yet. The op that sends swaps it out first, so
  // OpenSSL may append while a send is under way.
  std::string out;
  // One socket read and one socket write at a time: an op that needs either while the other op
  // does it waits for that one (rare: a read that makes OpenSSL answer, a write that needs the
  // peer's handshake records during a TLS 1.2 renegotiation) and shares its result.
  bool receiving = false, sending = false;
  beast::error_code receive_error, send_error;
  std::unique_ptr<io::Timer> received, sent;  // wake-ups, made when first needed
  bool failed = false;  // a fatal TLS error: no close_notify then

  explicit State(io::TcpStream&& t) : tcp(std::move(t)) {}
  ~State() {
    if (ssl) SSL_free(ssl);  // frees the BIO too
  }

  std::size_t buffered() const { return in_end - in_begin; }
  void release_input_if_empty() {
    if (in && in_begin == in_end && !receiving) {
      in.reset();
      in_begin = in_end = in_size = 0;
    }
  }

  void set_input(std::size_t size) {  // a new, empty `in`
    in = std::make_unique_for_overwrite<char[]>(size);
    in_size = size;
    in_begin = in_end = 0;
  }

  io::Awaitable<void> wait(std::unique_ptr<io::Timer>& timer) {
    if (!timer) timer = std::make_unique<io::Timer>(tcp.get_executor());
    timer->expires_at(io::Timer::time_point::max());
    co_await timer->async_wait(io::tuple_awaitable);
  }

  // Reads more ciphertext from the socket (OpenSSL asked for more: it took all of `in`).
  io::Awaitable<beast::error_code> fill() {
    if (receiving) {  // the other op is reading: what it gets serves both
      co_await wait(received);
      co_return receive_error;
    }
    if (in && in_begin == in_end && in_size < kInputBytes && streaming) in.reset();
    if (!in) set_input(streaming ? kInputBytes : kIdleInputBytes);
    if (in_begin == in_end) in_begin = in_end = 0;
    if (in_end == in_size) {  // not expected (OpenSSL asks only once it took everything)
      std::memmove(in.get(), in.get() + in_begin, buffered());
      in_end -= in_begin;
      in_begin = 0;
    }
    const std::size_t room = in_size - in_end;
    receiving = true;
    auto [ec, n] = co_await tcp.async_read_some(net::buffer(in.get() + in_end, room), io::tuple_awaitable);
    receiving = false;
    in_end += n;
    streaming = n == room;
    receive_error = ec == net::error::eof ? beast::error_code(net::ssl::error::stream_truncated) : ec;
    if (received) received->cancel();
    co_return receive_error;
  }

  // Sends what OpenSSL produced; when the other op is sending, waits for it to send this too.
  io::Awaitable<beast::error_code> flush() {
    while (sending) {
      co_await wait(sent);
      if (out.empty()) co_return send_error;
    }
    if (out.empty()) co_return beast::error_code{};
    sending = true;
    beast::error_code ec;
    while (!out.empty() && !ec) {
      std::string bytes;
      bytes.swap(out);
      auto [wec, n] = co_await net::async_write(tcp, net::buffer(bytes), io::tuple_awaitable);
      ec = wec;
    }
    if (ec) out.clear();
    sending = false;
    send_error = ec;
    if (sent) sent->cancel();
    co_return ec;
  }

  // The error of a failed SSL call, taken from this thread's OpenSSL error queue: called right
  // after the call, before any suspension lets another connection on this thread use the queue.
  beast::error_code ssl_error(int ssl_err) {
    failed = true;
    unsigned long e = ERR_get_error();
    ERR_clear_error();
    if (e != 0) return beast::error_code(static_cast<int>(e), net::error::get_ssl_category());
    if (ssl_err == SSL_ERROR_SYSCALL) return net::ssl::error::stream_truncated;
    return net::ssl::error::unspecified_system_error;
  }
};

namespace {

TlsStream::State* state_of(BIO* b) { return static_cast<TlsStream::State*>(BIO_get_data(b)); }

int bio_write(BIO* b, const char* data, int len) {
  BIO_clear_retry_flags(b);
  try {
    state_of(b)->out.append(data, static_cast<std::size_t>(len));
  } catch (...) {  // out of memory: an error for OpenSSL, never an exception through its frames
    return -1;
  }
  return len;
}

int bio_read(BIO* b, char* data, int len) {
  BIO_clear_retry_flags(b);
  auto* s = state_of(b);
  if (s->buffered() == 0) {
    BIO_set_retry_read(b);
    return -1;
  }
  std::size_t n = std::min(s->buffered(), static_cast<std::size_t>(len));
  std::memcpy(data, s->in.get() + s->in_begin, n);
  s->in_begin += n;
  return static_cast<int>(n);
}

long bio_ctrl(BIO* b, int cmd, long, void*) {
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;
    case BIO_CTRL_PENDING:
      return static_cast<long>(state_of(b)->buffered());
    case BIO_CTRL_WPENDING:
      return static_cast<long>(state_of(b)->out.size());
    default:
      return 0;
  }
}

int bio_create(BIO* b) {
  BIO_set_init(b, 1);
  return 1;
}

const BIO_METHOD* bio_method() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "sidekey tls stream");
    if (!m || !BIO_meth_set_write(m, bio_write) || !BIO_meth_set_read(m, bio_read) || !BIO_meth_set_ctrl(m, bio_ctrl) ||
        !BIO_meth_set_create(m, bio_create))
      throw std::runtime_error("cannot create the TLS stream's BIO method");
    return m;
  }();
  return method;
}

}  // namespace

TlsStream::TlsStream(io::TcpStream&& tcp, SSL_CTX* ctx) : s_(std::make_shared<State>(std::move(tcp))) {
  s_->ssl = SSL_new(ctx);
  BIO* bio = s_->ssl ? BIO_new(bio_method()) : nullptr;
  if (!bio) throw std::runtime_error("cannot create a TLS connection (out of memory?)");
  BIO_set_data(bio, s_.get());
  SSL_set_bio(s_->ssl, bio, bio);  // one reference, for both directions
  SSL_set_mode(s_->ssl, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}

TlsStream::TlsStream(TlsStream&&) noexcept = default;

TlsStream& TlsStream::operator=(TlsStream&& other) noexcept {
  if (this != &other) {
    close_socket();
    s_ = std::move(other.s_);
  }
  return *this;
}

TlsStream::~TlsStream() { close_socket(); }

// Pending operations share the state (and with it the socket): closing ends them now, rather
// than when the io::TcpStream's timeout fires.
void TlsStream::close_socket() noexcept {
  if (!s_) return;
  beast::error_code ignored;
  s_->tcp.socket().close(ignored);
}

TlsStream::executor_type TlsStream::get_executor() noexcept { return s_->tcp.get_executor(); }
io::TcpStream& TlsStream::next_layer() noexcept { return s_->tcp; }
bool TlsStream::holds_unread_ciphertext() const noexcept {
  return s_->buffered() > 0 || (s_->ssl != nullptr && SSL_has_pending(s_->ssl) == 1);
}
SSL* TlsStream::native_handle() noexcept { return s_->ssl; }

io::Awaitable<beast::error_code> TlsStream::handshake(Role role, net::const_buffer already_read) {
  const auto keep = s_;
  State& s = *keep;
  if (role == Role::server) SSL_set_accept_state(s.ssl);
  else SSL_set_connect_state(s.ssl);
  if (already_read.size() > 0) {
    s.set_input(std::max(kInputBytes, already_read.size()));
    std::memcpy(s.in.get(), already_read.data(), already_read.size());
    s.in_end = already_read.size();
  }
  for (;;) {
    ERR_clear_error();
    int r = SSL_do_handshake(s.ssl);
    int err = r == 1 ? SSL_ERROR_NONE : SSL_get_error(s.ssl, r);
    beast::error_code failure;
    if (err != SSL_ERROR_NONE && err != SSL_ERROR_WANT_READ) failure = s.ssl_error(err);
    // Our flight, or the alert that ends a failed handshake.
    beast::error_code fec = co_await s.flush();
    if (failure) co_return failure;
    if (fec) co_return fec;
    if (err == SSL_ERROR_NONE) {
      s.release_input_if_empty();
      co_return beast::error_code{};
    }
    if (auto rec = co_await s.fill()) co_return rec;
  }
}

io::Awaitable<beast::error_code> TlsStream::shutdown() {
  const auto keep = s_;
  State& s = *keep;
  if (s.failed || SSL_in_init(s.ssl)) co_return beast::error_code{};
  ERR_clear_error();
  SSL_shutdown(s.ssl);
  ERR_clear_error();
  co_return co_await s.flush();
}

io::Awaitable<TlsStream::Result> TlsStream::read_some(std::shared_ptr<State> keep, net::mutable_buffer into) {
  State& s = *keep;
  if (into.size() == 0) co_return Result{};
  for (;;) {
    ERR_clear_error();
    std::size_t n = 0;
    int r = SSL_read_ex(s.ssl, into.data(), into.size(), &n);
    int err = r == 1 ? SSL_ERROR_NONE : SSL_get_error(s.ssl, r);
    beast::error_code failure;
    if (err == SSL_ERROR_ZERO_RETURN) failure = net::error::eof;
    else if (err != SSL_ERROR_NONE && err != SSL_ERROR_WANT_READ) failure = s.ssl_error(err);
    // Reading may make OpenSSL answer (a KeyUpdate, a renegotiation, an alert): sent first.
    if (!s.out.empty())
      if (auto fec = co_await s.flush(); fec && !failure) failure = fec;
    if (failure) {
      s.release_input_if_empty();
      co_return Result{failure, 0};
    }
    if (err == SSL_ERROR_NONE) {
      s.release_input_if_empty();
      co_return Result{beast::error_code{}, n};
    }
    if (auto rec = co_await s.fill()) {
      s.release_input_if_empty();
      co_return Result{rec, 0};
    }
  }
}

io::Awaitable<TlsStream::Result> TlsStream::write_some(std::shared_ptr<State> keep, Pieces pieces, std::size_t count) {
  State& s = *keep;
  std::size_t total = 0;
  for (std::size_t i = 0; i < count && total < kMaxWriteBytes;) {
    ERR_clear_error();
    std::size_t n = 0;
    const std::size_t len = std::min(pieces[i].size(), kMaxWriteBytes - total);
    int r = SSL_write_ex(s.ssl, pieces[i].data(), len, &n);
    if (r == 1) {
      total += n;
      if (n < len) break;
      ++i;
      continue;
    }
    int err = SSL_get_error(s.ssl, r);
    if (err == SSL_ERROR_WANT_READ) {
      // A TLS 1.2 renegotiation the peer started: OpenSSL needs its handshake records before it
      // writes more. Our part of the handshake goes out, then the same write is retried.
      if (auto fec = co_await s.flush()) co_return Result{fec, 0};
      if (auto rec = co_await s.fill()) co_return Result{rec, 0};
      continue;
    }
    beast::error_code ec = s.ssl_error(err);
    co_await s.flush();  // an alert, if OpenSSL wrote one
    if (total == 0) co_return Result{ec, 0};
    break;
  }
  beast::error_code fec = co_await s.flush();
  s.release_input_if_empty();
  co_return Result{fec, fec ? 0 : total};
}

}  // namespace sidekey::proxy
