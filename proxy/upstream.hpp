#pragma once
// Upstream connections: dialing the vetted addresses, verified TLS (system roots plus
// tls.upstream_ca_file, SNI, host-name check, TLS 1.2+, ALPN http/1.1, session resumption),
// and a per-worker keep-alive pool. A connection that saw any error is never pooled.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/io.hpp"
#include "policy/destination.hpp"
#include "policy/refusal.hpp"
#include "proxy/egress_guard.hpp"
#include "proxy/tls_stream.hpp"

namespace sidekey::proxy {

namespace beast = boost::beast;
namespace net = boost::asio;

// The client-side TLS context for upstream connections; immutable once built, shared.
class UpstreamTls {
 public:
  UpstreamTls(const std::filesystem::path& extra_ca_file, bool verify);
  net::ssl::context& context() { return ctx_; }
  // SSL ex_data slot holding the connection's "host:port", for the new-session callback.
  static int authority_index();
  bool verify() const { return verify_; }

 private:
  net::ssl::context ctx_;
  bool verify_;
};

// Who dialed a connection: the proxy, to an address the egress guard vetted, or the API
// gateway, to the operator's agent.upstream (not vetted: the operator named it). Neither takes
// the other's from the pool: a proxied request to the agent's address must be vetted.
enum class Dialer : std::uint8_t { egress, gateway };

// What a pooled connection is filed under: the destination it was dialed for (TLS or not, and
// the authority TLS verified), whichever of the destination's vetted addresses it went to, and
// who dialed it.
struct PoolKey {
  std::string host;
  std::uint16_t port = 0;
  bool tls = false;
  Dialer dialer = Dialer::egress;
};
struct PoolKeyView {
  std::string_view host;
  std::uint16_t port = 0;
  bool tls = false;
  Dialer dialer = Dialer::egress;
  PoolKeyView(const PoolKey& k)  // NOLINT(google-explicit-constructor)
      : host(k.host), port(k.port), tls(k.tls), dialer(k.dialer) {}
  PoolKeyView(const policy::Destination& d, Dialer by) : host(d.host), port(d.port), tls(d.tls), dialer(by) {}
  // Host last: a string compared only where the cheap fields tie.
  friend bool operator<(const PoolKeyView& a, const PoolKeyView& b) {
    if (a.tls != b.tls) return a.tls < b.tls;
    if (a.port != b.port) return a.port < b.port;
    if (a.dialer != b.dialer) return a.dialer < b.dialer;
    return a.host < b.host;
  }
};
struct PoolKeyLess {
  using is_transparent = void;
  bool operator()(PoolKeyView a, PoolKeyView b) const { return a < b; }
};

struct UpstreamConnection {
  using Plain = io::TcpStream;
  using Tls = TlsStream;
  // Declared before the stream so that it outlives the SSL object that points at it.
  std::unique_ptr<std::string> authority;  // "host:port", for the new-session callback
  std::variant<Plain, Tls> stream;
  io::FlatBuffer buffer;
  PoolKey key;
  bool reused = false;

  explicit UpstreamConnection(Plain s) : stream(std::move(s)) {}
  explicit UpstreamConnection(Tls s, std::unique_ptr<std::string> a) : authority(std::move(a)), stream(std::move(s)) {}
  UpstreamConnection(const UpstreamConnection&) = delete;
  UpstreamConnection& operator=(const UpstreamConnection&) = delete;
  io::TcpStream& tcp();
  void close();
  // The peer closed the connection (`ec` of a read or write: EOF, reset, broken pipe, or over
  // TLS a bare TCP close without close_notify) before a byte of an answer came: nothing read,
  // and over TLS no part of a record left undecrypted either (an answer may have begun).
  // Never a timeout: a slow upstream is no reason to send a request twice.
  bool closed_before_answer(const beast::error_code& ec) const;
};

struct ConnectResult {
  std::unique_ptr<UpstreamConnection> connection;
  double connect_seconds = 0;  // dial + handshake, 0 for a pooled connection
};

// Per worker (one per thread): never shared across threads, so no locks.
class UpstreamPool {
 public:
  static UpstreamPool& for_this_thread();

  // An idle connection to `key` that is still open; nullptr when there is none.
  // `ask`: also ask the socket (a system call) whether it is still open, beyond what the event
  // loop has reported so far (a plain connection quiet since its last read is not asked).
  // `now`: a caller that has just read the clock passes what it read (a reading costs ~25 ns).
  std::unique_ptr<UpstreamConnection> take(PoolKeyView key, bool ask = true,
                                           std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now());
  void put(std::unique_ptr<UpstreamConnection> c, std::chrono::milliseconds idle_timeout,
           std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now());

  SSL_SESSION* session(const std::string& authority) const;  // not owned
  void keep_session(const std::string& authority, SSL_SESSION* session);  // takes the reference
  ~UpstreamPool();

 private:
  struct Idle {
    std::unique_ptr<UpstreamConnection> c;
    std::chrono::steady_clock::time_point expires;
  };
  // Per key, the idle connections, most recently returned last. A key's entry stays when its
  // list empties: returning and taking a connection then allocates nothing.
  std::map<PoolKey, std::vector<Idle>, PoolKeyLess> idle_;
  std::chrono::steady_clock::time_point next_sweep_{};
  std::map<std::string, SSL_SESSION*> sessions_;
};

// An idle pooled connection to `d`, whichever vetted address it was dialed to: it was vetted
// then (the egress guard's configuration does not change while sidekey runs), so reusing it
// needs no second name lookup — a lookup per request would add a DNS round trip to each.
std::unique_ptr<UpstreamConnection> take_pooled(const policy::Destination& d, bool ask = true, Dialer by = Dialer::egress,
                                                std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now());

// A new connection (filed for the pool as `by`'s): dials each address in turn (connect_timeout
// each) and, for TLS destinations, handshakes with SNI and verification. (A caller that may reuse a connection asks
// take_pooled() first; a CONNECT tunnel never does.)
io::Awaitable<std::variant<ConnectResult, policy::Refusal>> connect_upstream(const policy::Destination& d,
                                                                              const VettedAddresses& addresses,
                                                                              UpstreamTls& tls,
                                                                              std::chrono::milliseconds connect_timeout,
                                                                              Dialer by = Dialer::egress);

}  // namespace sidekey::proxy
