#include "proxy/upstream.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/error.hpp>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>


#include "core/io.hpp"
#include "core/log.hpp"

namespace sidekey::proxy {
using tcp = net::ip::tcp;

UpstreamTls::UpstreamTls(const std::filesystem::path& extra_ca_file, bool verify)
    : ctx_(net::ssl::context::tls_client), verify_(verify) {
  SSL_CTX_set_min_proto_version(ctx_.native_handle(), TLS1_2_VERSION);
  ctx_.set_options(net::ssl::context::default_workarounds | net::ssl::context::no_compression);
  // Decrypted records may hold an echo of an injected secret: OpenSSL wipes them once read.
  SSL_CTX_set_options(ctx_.native_handle(), SSL_OP_CLEANSE_PLAINTEXT);
  ctx_.set_default_verify_paths();
  if (!extra_ca_file.empty()) ctx_.load_verify_file(extra_ca_file.string());
  ctx_.set_verify_mode(verify ? net::ssl::verify_peer : net::ssl::verify_none);
  static const unsigned char alpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  SSL_CTX_set_alpn_protos(ctx_.native_handle(), alpn, sizeof alpn);
  // Client-side session cache: we keep sessions per destination ourselves (UpstreamPool). With
  // TLS 1.3 a session arrives after the handshake (NewSessionTicket), so it is taken in the
  // new-session callback, on the worker thread that reads the connection.
  SSL_CTX_set_session_cache_mode(ctx_.native_handle(), SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx_.native_handle(), [](SSL* ssl, SSL_SESSION* session) -> int {
    auto* authority = static_cast<const std::string*>(SSL_get_ex_data(ssl, authority_index()));
    if (!authority || !SSL_SESSION_is_resumable(session)) return 0;
    UpstreamPool::for_this_thread().keep_session(*authority, session);
    return 1;  // we own the reference now
  });
}

int UpstreamTls::authority_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

io::TcpStream& UpstreamConnection::tcp() {
  return std::visit([](auto& s) -> io::TcpStream& { return beast::get_lowest_layer(s); }, stream);
}

bool UpstreamConnection::closed_before_answer(const beast::error_code& ec) const {
  const bool closed = ec == beast::http::error::end_of_stream || ec == net::error::eof || ec == net::error::connection_reset ||
                      ec == net::error::broken_pipe || ec == net::ssl::error::stream_truncated;
  if (!closed || buffer.size() != 0) return false;
  const auto* tls = std::get_if<Tls>(&stream);
  return tls == nullptr || !tls->holds_unread_ciphertext();
}

void UpstreamConnection::close() {
  beast::error_code ec;
  if (auto* tls = std::get_if<Tls>(&stream)) {
    // Marks the session as properly closed (without a network round trip), so that OpenSSL
    // keeps it resumable.
    SSL_set_quiet_shutdown(tls->native_handle(), 1);
    SSL_shutdown(tls->native_handle());
  }
  tcp().socket().shutdown(tcp::socket::shutdown_both, ec);
  tcp().socket().close(ec);
}

UpstreamPool& UpstreamPool::for_this_thread() {
  thread_local UpstreamPool pool;
  return pool;
}

UpstreamPool::~UpstreamPool() {
  for (auto& [k, s] : sessions_) SSL_SESSION_free(s);
}

namespace {
// Nothing to read right now: no EOF and no unexpected bytes (a response nobody asked for).
bool nothing_to_read(io::Socket& s) {
  char b;
  ssize_t n = ::recv(s.native_handle(), &b, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

// Still usable. A plain connection that has been quiet since its answer's last read drained it
// is open as far as the event loop has been told (io::Socket::quiet_since_drained): an EOF or
// stray bytes that came while it was idle raised an edge the reactor recorded, and then the
// socket is asked. `ask` asks it anyway: an EOF may have arrived that the loop has not taken
// from epoll yet. A TLS connection is always asked, and is not open when its stream holds a
// record nobody asked for (read with the answer's last one: no edge will say so).
bool still_open(UpstreamConnection& c, bool ask) {
  if (c.buffer.size() != 0) return false;
  if (const auto* tls = std::get_if<UpstreamConnection::Tls>(&c.stream); tls && tls->holds_unread_ciphertext()) return false;
  if (!ask && std::holds_alternative<UpstreamConnection::Plain>(c.stream) && c.tcp().socket().quiet_since_drained())
    return true;
  return nothing_to_read(c.tcp().socket());
}
}  // namespace

std::unique_ptr<UpstreamConnection> UpstreamPool::take(PoolKeyView key, bool ask, std::chrono::steady_clock::time_point now) {
  auto it = idle_.find(key);
  if (it == idle_.end()) return nullptr;
  auto& list = it->second;
  while (!list.empty()) {
    auto c = std::move(list.back().c);
    bool fresh = list.back().expires > now;
    list.pop_back();
    if (fresh && still_open(*c, ask)) {
      c->reused = true;
      return c;
    }
    c->close();
  }
  return nullptr;
}

void UpstreamPool::put(std::unique_ptr<UpstreamConnection> c, std::chrono::milliseconds idle_timeout,
                       std::chrono::steady_clock::time_point now) {
  constexpr std::size_t kMaxIdlePerKey = 64;
  // Sweep expired connections so the pool never grows without bound: once a second, not on
  // every return (a busy worker returns a connection per request). Keys left without a
  // connection go too.
  if (now >= next_sweep_) {
    next_sweep_ = now + std::chrono::seconds(1);
    for (auto it = idle_.begin(); it != idle_.end();) {
      auto& list = it->second;
      std::erase_if(list, [&](Idle& i) {
        if (i.expires > now) return false;
        i.c->close();
        return true;
      });
      it = list.empty() ? idle_.erase(it) : std::next(it);
    }
  }
  auto it = idle_.find(PoolKeyView(c->key));
  if (it == idle_.end()) it = idle_.emplace(c->key, std::vector<Idle>{}).first;
  if (it->second.size() >= kMaxIdlePerKey) {
    c->close();
    return;
  }
  it->second.push_back(Idle{std::move(c), now + idle_timeout});
}

SSL_SESSION* UpstreamPool::session(const std::string& authority) const {
  auto it = sessions_.find(authority);
  return it == sessions_.end() ? nullptr : it->second;
}

void UpstreamPool::keep_session(const std::string& authority, SSL_SESSION* session) {
  auto& slot = sessions_[authority];
  if (slot) SSL_SESSION_free(slot);
  slot = session;
}

std::unique_ptr<UpstreamConnection> take_pooled(const policy::Destination& d, bool ask, Dialer by,
                                                std::chrono::steady_clock::time_point now) {
  return UpstreamPool::for_this_thread().take(PoolKeyView(d, by), ask, now);
}

io::Awaitable<std::variant<ConnectResult, policy::Refusal>> connect_upstream(const policy::Destination& d,
                                                                              const VettedAddresses& addresses,
                                                                              UpstreamTls& tls,
                                                                              std::chrono::milliseconds connect_timeout,
                                                                              Dialer by) {
  auto& pool = UpstreamPool::for_this_thread();

  auto executor = co_await net::this_coro::executor;
  auto started = std::chrono::steady_clock::now();
  std::string last_error = "no address";
  bool timed_out = false;
  for (const auto& ep : addresses.endpoints) {
    std::unique_ptr<std::string> authority_holder;
    io::TcpStream stream(executor);
    stream.expires_after(connect_timeout);
    auto [ec] = co_await stream.async_connect(ep, io::tuple_awaitable);
    if (ec) {
      timed_out |= ec == beast::error::timeout;
      last_error = ec.message();
      continue;
    }
    stream.socket().set_option(tcp::no_delay(true), ec);
    std::unique_ptr<UpstreamConnection> conn;
    if (!d.tls) {
      conn = std::make_unique<UpstreamConnection>(std::move(stream));
    } else {
      UpstreamConnection::Tls tls_stream(std::move(stream), tls.context().native_handle());
      SSL* ssl = tls_stream.native_handle();
      bool is_ip = IpAddress::parse(d.host).has_value();
      if (!is_ip) SSL_set_tlsext_host_name(ssl, d.host.c_str());  // no SNI for IP literals (RFC 6066)
      if (tls.verify()) {
        X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (is_ip) X509_VERIFY_PARAM_set1_ip_asc(param, d.host.c_str());
        else X509_VERIFY_PARAM_set1_host(param, d.host.c_str(), 0);
      }
      if (SSL_SESSION* s = pool.session(d.authority())) SSL_set_session(ssl, s);
      // The new-session callback files sessions under this authority. The string lives in the
      // connection object, which outlives the SSL object it is attached to.
      authority_holder = std::make_unique<std::string>(d.authority());
      SSL_set_ex_data(ssl, UpstreamTls::authority_index(), authority_holder.get());
      auto hec = co_await tls_stream.handshake(TlsStream::Role::client);
      if (hec) {
        if (hec == beast::error::timeout)
          co_return policy::Refusal::make(policy::code::upstream_timeout, "TLS handshake with " + d.authority() + " timed out")
              .with_host(d.host);
        std::string why = hec.message();
        long vr = SSL_get_verify_result(ssl);
        if (vr != X509_V_OK) why = X509_verify_cert_error_string(vr);
        co_return policy::Refusal::make(policy::code::upstream_tls_failed,
                                        "TLS handshake with " + d.authority() + " failed: " + why)
            .with_host(d.host);
      }
      conn = std::make_unique<UpstreamConnection>(std::move(tls_stream), std::move(authority_holder));
    }
    conn->key = PoolKey{d.host, d.port, d.tls, by};
    conn->tcp().expires_never();
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    co_return ConnectResult{std::move(conn), secs};
  }
  if (timed_out)
    co_return policy::Refusal::make(policy::code::upstream_timeout, "connecting to " + d.authority() + " timed out")
        .with_host(d.host);
  co_return policy::Refusal::make(policy::code::upstream_connect_failed,
                                  "cannot connect to " + d.authority() + ": " + last_error)
      .with_host(d.host);
}

}  // namespace sidekey::proxy
