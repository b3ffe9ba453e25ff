// sidekey-bench-load — the load generator of bench/run for what wrk cannot do: HTTPS through a
// proxy (CONNECT, then TLS trusting the proxy's CA, then HTTP/1.1 inside the tunnel).
//
// One blocking thread per connection (closed loop: a connection sends its next request when the
// previous answer is read). Modes:
//   keepalive  N connections stay open; requests for --duration seconds; req/s, p50/p99 latency
//   handshake  each connection does one request (Connection: close) and is closed; a fresh
//              connection (TCP, CONNECT, full TLS handshake) every time; connections/s, p50/p99 of
//              the whole connection
//   idle       opens N connections, one request on each, keeps them open; prints a line when they
//              are all open, then holds them for --hold seconds (memory of idle connections)
//   sse        one request; reads server-sent events "data: <CLOCK_MONOTONIC ns at send>" and
//              reports how long after that stamp each arrived
// Output: one JSON line on stdout. The measured interval of keepalive/handshake starts when every
// connection is open (keepalive) or when every thread is ready (handshake).
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <latch>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

struct Options {
  std::string addr_host = "127.0.0.1";
  int addr_port = 0;
  std::string connect;  // CONNECT authority; empty: talk to --addr directly
  bool tls = false;
  std::string ca;       // CA file to trust; the peer name is checked against the host
  std::string host;     // Host header, and the TLS name (SNI + verification)
  std::string path = "/";
  std::vector<std::string> headers;
  std::string mode = "keepalive";
  int connections = 50;
  double duration = 10;
  double hold = 3600;
  int idle_threads = 8;
  int events = 500;
  int skip = 10;        // sse: the first events are not counted
  int expect = 200;
  std::string dump;     // sse: every delay (ms), one a line, in arrival order
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "sidekey-bench-load: %s\n"
               "usage: sidekey-bench-load --addr HOST:PORT [--connect AUTHORITY] [--tls --ca FILE] --host HOST\n"
               "       [--path P] [--header 'K: V']... [--mode keepalive|handshake|idle|sse] [--connections N]\n"
               "       [--duration S] [--hold S] [--events N] [--skip N] [--expect STATUS] [--dump FILE]\n",
               why);
  std::exit(2);
}

std::int64_t mono_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

std::string lower(std::string s) {
  for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool is_ip(const std::string& h) {
  in6_addr a6;
  in_addr a4;
  return inet_pton(AF_INET, h.c_str(), &a4) == 1 || inet_pton(AF_INET6, h.c_str(), &a6) == 1;
}

std::string host_only(std::string authority) {  // "name:port" / "[v6]:port" → name
  if (!authority.empty() && authority[0] == '[') return authority.substr(1, authority.find(']') - 1);
  auto colon = authority.rfind(':');
  return colon == std::string::npos ? authority : authority.substr(0, colon);
}

std::string ssl_error_text() {
  unsigned long e = ERR_get_error();
  if (!e) return std::strerror(errno);
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

// One client connection: a socket, optionally TLS, and the bytes read but not consumed yet.
struct Conn {
  int fd = -1;
  SSL* ssl = nullptr;
  std::string in;

  Conn() = default;
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  ~Conn() { close(); }
  bool open() const { return fd >= 0; }

  void close() {
    if (ssl) {
      SSL_shutdown(ssl);  // sends close_notify, does not wait for the peer's
      SSL_free(ssl);
      ssl = nullptr;
    }
    if (fd >= 0) ::close(fd);
    fd = -1;
    in.clear();
  }

  // Appends what arrives to `in`; false at EOF; throws on an error or a timeout.
  bool read_more() {
    char buf[16384];
    for (;;) {
      if (ssl) {
        int n = SSL_read(ssl, buf, sizeof buf);
        if (n > 0) { in.append(buf, std::size_t(n)); return true; }
        int err = SSL_get_error(ssl, n);
        if (err == SSL_ERROR_ZERO_RETURN) return false;
        if (err == SSL_ERROR_SYSCALL && errno == 0) return false;  // EOF without close_notify
        if (errno == EAGAIN) throw std::runtime_error("read timeout");
        throw std::runtime_error("TLS read: " + ssl_error_text());
      }
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n > 0) { in.append(buf, std::size_t(n)); return true; }
      if (n == 0) return false;
      if (errno == EINTR) continue;
      if (errno == EAGAIN) throw std::runtime_error("read timeout");
      throw std::runtime_error(std::string("read: ") + std::strerror(errno));
    }
  }

  void write_all(std::string_view data) {
    while (!data.empty()) {
      ssize_t n;
      if (ssl) {
        n = SSL_write(ssl, data.data(), int(data.size()));
        if (n <= 0) throw std::runtime_error("TLS write: " + ssl_error_text());
      } else {
        n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        if (n < 0) {
          if (errno == EINTR) continue;
          throw std::runtime_error(std::string("write: ") + std::strerror(errno));
        }
      }
      data.remove_prefix(std::size_t(n));
    }
  }

  void need(std::size_t n) {
    while (in.size() < n)
      if (!read_more()) throw std::runtime_error("connection closed mid-response");
  }

  // The next CRLF-terminated line (without the CRLF), consumed.
  std::string line() {
    std::size_t at;
    while ((at = in.find("\r\n")) == std::string::npos)
      if (!read_more()) throw std::runtime_error("connection closed mid-line");
    std::string l = in.substr(0, at);
    in.erase(0, at + 2);
    return l;
  }
};

struct Head {
  int status = 0;
  long long content_length = -1;
  bool chunked = false, close = false;
};

Head read_head(Conn& c) {
  Head h;
  std::string status_line = c.line();
  if (status_line.rfind("HTTP/1.", 0) != 0 || status_line.size() < 12)
    throw std::runtime_error("bad status line: " + status_line.substr(0, 80));
  h.status = std::atoi(status_line.c_str() + 9);
  if (status_line[7] == '0') h.close = true;
  for (std::string l; !(l = c.line()).empty();) {
    auto colon = l.find(':');
    if (colon == std::string::npos) continue;
    std::string name = lower(l.substr(0, colon)), value = lower(l.substr(colon + 1));
    value.erase(0, value.find_first_not_of(" \t"));
    if (name == "content-length") h.content_length = std::atoll(value.c_str());
    else if (name == "transfer-encoding") h.chunked = value.find("chunked") != std::string::npos;
    else if (name == "connection") h.close = value.find("close") != std::string::npos;
  }
  return h;
}

// The next chunk's data ("" after the last chunk and its trailers).
std::string read_chunk(Conn& c) {
  std::string size_line = c.line();
  std::size_t size = std::strtoull(size_line.c_str(), nullptr, 16);
  if (size == 0) {
    while (!c.line().empty()) {}
    return {};
  }
  c.need(size + 2);
  std::string data = c.in.substr(0, size);
  c.in.erase(0, size + 2);
  return data;
}

// Reads a whole response; returns its status, sets `close` when the connection cannot be reused.
int read_response(Conn& c, bool& close) {
  Head h = read_head(c);
  close = h.close;
  bool no_body = h.status == 204 || h.status == 304 || h.status / 100 == 1;
  if (no_body) {
  } else if (h.chunked) {
    while (!read_chunk(c).empty()) {}
  } else if (h.content_length >= 0) {
    c.need(std::size_t(h.content_length));
    c.in.erase(0, std::size_t(h.content_length));
  } else {
    while (c.read_more()) {}  // delimited by the end of the connection
    close = true;
  }
  return h.status;
}

class Client {
 public:
  explicit Client(const Options& o) : o_(o) {
    tls_name_ = host_only(o.host);
    std::string req = "GET " + o.path + " HTTP/1.1\r\nHost: " + o.host + "\r\n";
    for (auto& h : o.headers) req += h + "\r\n";
    request_ = req + "\r\n";
    request_close_ = req + "Connection: close\r\n\r\n";
    if (!o.tls) return;
    ctx_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
    SSL_CTX_set_session_cache_mode(ctx_, SSL_SESS_CACHE_OFF);  // every handshake is a full one
    SSL_CTX_set_mode(ctx_, SSL_MODE_RELEASE_BUFFERS);
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(ctx_, alpn, sizeof alpn - 1);
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    if (o.ca.empty() || SSL_CTX_load_verify_locations(ctx_, o.ca.c_str(), nullptr) != 1)
      usage(("cannot load the CA file '" + o.ca + "'").c_str());
  }
  ~Client() { SSL_CTX_free(ctx_); }
  const std::string& request(bool close) const { return close ? request_close_ : request_; }

  // TCP connect to --addr, CONNECT when asked, TLS when asked. Throws on any failure.
  void open(Conn& c) const {
    c.close();
    addrinfo hints{}, *res = nullptr;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(o_.addr_host.c_str(), std::to_string(o_.addr_port).c_str(), &hints, &res) != 0 || !res)
      throw std::runtime_error("cannot resolve " + o_.addr_host);
    c.fd = ::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int rc = c.fd < 0 ? -1 : ::connect(c.fd, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (rc != 0) {
      std::string e = std::strerror(errno);
      c.close();
      throw std::runtime_error("connect: " + e);
    }
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    timeval tv{15, 0};
    setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (!o_.connect.empty()) {
      c.write_all("CONNECT " + o_.connect + " HTTP/1.1\r\nHost: " + o_.connect + "\r\n\r\n");
      Head h = read_head(c);
      if (h.status != 200) throw std::runtime_error("CONNECT answered " + std::to_string(h.status));
      if (!c.in.empty()) throw std::runtime_error("bytes after the CONNECT answer");
    }
    if (!o_.tls) return;
    c.ssl = SSL_new(ctx_);
    SSL_set_fd(c.ssl, c.fd);
    X509_VERIFY_PARAM* param = SSL_get0_param(c.ssl);
    if (is_ip(tls_name_)) {
      X509_VERIFY_PARAM_set1_ip_asc(param, tls_name_.c_str());
    } else {
      SSL_set_tlsext_host_name(c.ssl, tls_name_.c_str());
      X509_VERIFY_PARAM_set1_host(param, tls_name_.c_str(), 0);
    }
    if (SSL_connect(c.ssl) != 1) {
      long v = SSL_get_verify_result(c.ssl);
      std::string e = v != X509_V_OK ? std::string("certificate: ") + X509_verify_cert_error_string(v) : ssl_error_text();
      c.close();
      throw std::runtime_error("TLS handshake: " + e);
    }
  }

 private:
  const Options& o_;
  SSL_CTX* ctx_ = nullptr;
  std::string tls_name_, request_, request_close_;
};

// What every thread adds to.
struct Tally {
  std::mutex mu;
  std::vector<std::int64_t> latencies_ns;
  long long bad_status = 0, errors = 0;
  std::string first_error;
  void error(const std::string& what) {
    std::lock_guard lock(mu);
    ++errors;
    if (first_error.empty()) first_error = what;
  }
};

double percentile_ms(std::vector<std::int64_t>& v, double p) {
  if (v.empty()) return 0;
  std::size_t i = std::min(v.size() - 1, std::size_t(p * double(v.size())));
  std::nth_element(v.begin(), v.begin() + long(i), v.end());
  return double(v[i]) / 1e6;
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    if (ch == '"' || ch == '\\') out += '\\';
    if (static_cast<unsigned char>(ch) < 0x20) continue;
    out += ch;
  }
  return out;
}

void print_result(const Options& o, Tally& t, double seconds, const char* extra = "") {
  std::size_t n = t.latencies_ns.size();
  double p50 = percentile_ms(t.latencies_ns, 0.50), p99 = percentile_ms(t.latencies_ns, 0.99);
  std::printf(
      "{\"mode\":\"%s\",\"connections\":%d,\"count\":%zu,\"seconds\":%.3f,\"rate\":%.1f,\"p50_ms\":%.3f,"
      "\"p99_ms\":%.3f,\"bad_status\":%lld,\"errors\":%lld,\"first_error\":\"%s\"%s}\n",
      o.mode.c_str(), o.connections, n, seconds, seconds > 0 ? double(n) / seconds : 0, p50, p99, t.bad_status,
      t.errors, json_escape(t.first_error).c_str(), extra);
  std::fflush(stdout);
}

// keepalive and handshake: N threads, measured from the moment all are ready for --duration.
int run_load(const Options& o, const Client& client) {
  const bool per_connection = o.mode == "handshake";
  Tally tally;
  std::latch ready(o.connections);
  std::atomic<std::int64_t> t_start{0}, t_end{0};
  std::atomic<bool> go{false}, stop{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < o.connections; ++i) {
    threads.emplace_back([&] {
      Conn c;
      std::vector<std::int64_t> mine;
      long long bad = 0;
      if (!per_connection) {
        try { client.open(c); } catch (const std::exception& e) { tally.error(e.what()); }
      }
      ready.count_down();
      go.wait(false);
      while (!stop.load(std::memory_order_relaxed)) {
        std::int64_t t0 = mono_ns();
        try {
          if (!c.open()) client.open(c);
          if (!per_connection) t0 = mono_ns();  // keep-alive: a reconnect is not part of the request
          c.write_all(client.request(per_connection));
          bool close = false;
          int status = read_response(c, close);
          if (per_connection || close) c.close();
          std::int64_t t1 = mono_ns();
          if (t1 <= t_end.load(std::memory_order_relaxed)) {
            mine.push_back(t1 - t0);
            if (status != o.expect) ++bad;
          }
        } catch (const std::exception& e) {
          c.close();
          if (stop.load()) break;
          tally.error(e.what());
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
      }
      std::lock_guard lock(tally.mu);
      tally.latencies_ns.insert(tally.latencies_ns.end(), mine.begin(), mine.end());
      tally.bad_status += bad;
    });
  }
  ready.wait();
  t_start = mono_ns();
  t_end = t_start + std::int64_t(o.duration * 1e9);
  go = true;
  go.notify_all();
  std::this_thread::sleep_for(std::chrono::nanoseconds(t_end - mono_ns()));
  stop = true;
  for (auto& th : threads) th.join();
  print_result(o, tally, double(t_end - t_start) / 1e9);
  return tally.latencies_ns.empty() ? 1 : 0;
}

// idle: N connections with one request each, then held open.
int run_idle(const Options& o, const Client& client) {
  std::vector<std::unique_ptr<Conn>> conns(std::size_t(o.connections));
  Tally tally;
  std::atomic<long long> open_count{0};
  std::int64_t t0 = mono_ns();
  std::vector<std::thread> threads;
  for (int t = 0; t < o.idle_threads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < o.connections; i += o.idle_threads) {
        auto c = std::make_unique<Conn>();
        try {
          client.open(*c);
          c->write_all(client.request(false));
          bool close = false;
          int status = read_response(*c, close);
          if (status != o.expect) { std::lock_guard lock(tally.mu); ++tally.bad_status; }
          if (close) throw std::runtime_error("the server closed the connection after the response");
          conns[std::size_t(i)] = std::move(c);
          ++open_count;
        } catch (const std::exception& e) {
          tally.error(e.what());
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  char extra[64];
  std::snprintf(extra, sizeof extra, ",\"open\":%lld", open_count.load());
  print_result(o, tally, double(mono_ns() - t0) / 1e9, extra);
  std::this_thread::sleep_for(std::chrono::duration<double>(o.hold));
  return 0;
}

// sse: one stream; each "data: <ns>" line's delay from its stamp to its arrival here.
int run_sse(const Options& o, const Client& client) {
  Tally tally;
  Conn c;
  std::int64_t t0 = mono_ns();
  try {
    client.open(c);
    c.write_all(client.request(false));
    Head h = read_head(c);
    if (h.status != o.expect) throw std::runtime_error("status " + std::to_string(h.status));
    std::string text;  // decoded body not yet split into lines
    if (!h.chunked) text.swap(c.in);
    int seen = 0;
    for (;;) {
      std::size_t nl;
      while ((nl = text.find('\n')) != std::string::npos) {
        std::string line = text.substr(0, nl);
        text.erase(0, nl + 1);
        if (line.rfind("data: ", 0) != 0) continue;
        std::int64_t delay = mono_ns() - std::atoll(line.c_str() + 6);
        if (seen++ >= o.skip) tally.latencies_ns.push_back(delay);
      }
      if (seen >= o.events) break;
      if (h.chunked) {
        std::string chunk = read_chunk(c);
        if (chunk.empty()) break;
        text += chunk;
      } else {
        if (!c.read_more()) break;
        text += c.in;
        c.in.clear();
      }
    }
  } catch (const std::exception& e) {
    tally.error(e.what());
  }
  if (!o.dump.empty()) {
    if (FILE* f = std::fopen(o.dump.c_str(), "w")) {
      for (auto ns : tally.latencies_ns) std::fprintf(f, "%.3f\n", double(ns) / 1e6);
      std::fclose(f);
    }
  }
  auto max = tally.latencies_ns.empty() ? 0 : *std::max_element(tally.latencies_ns.begin(), tally.latencies_ns.end());
  char extra[64];
  std::snprintf(extra, sizeof extra, ",\"max_ms\":%.3f", double(max) / 1e6);
  print_result(o, tally, double(mono_ns() - t0) / 1e9, extra);
  return tally.latencies_ns.empty() ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value for " + a).c_str());
      return argv[++i];
    };
    if (a == "--addr") {
      std::string v = val();
      auto colon = v.rfind(':');
      if (colon == std::string::npos) usage("--addr is HOST:PORT");
      o.addr_host = host_only(v);
      o.addr_port = std::atoi(v.c_str() + colon + 1);
    } else if (a == "--connect") o.connect = val();
    else if (a == "--tls") o.tls = true;
    else if (a == "--ca") o.ca = val();
    else if (a == "--host") o.host = val();
    else if (a == "--path") o.path = val();
    else if (a == "--header") o.headers.push_back(val());
    else if (a == "--mode") o.mode = val();
    else if (a == "--connections") o.connections = std::atoi(val().c_str());
    else if (a == "--duration") o.duration = std::atof(val().c_str());
    else if (a == "--hold") o.hold = std::atof(val().c_str());
    else if (a == "--events") o.events = std::atoi(val().c_str());
    else if (a == "--skip") o.skip = std::atoi(val().c_str());
    else if (a == "--expect") o.expect = std::atoi(val().c_str());
    else if (a == "--dump") o.dump = val();
    else usage(("unknown argument " + a).c_str());
  }
  if (o.addr_port <= 0) usage("--addr is required");
  if (o.host.empty()) o.host = o.connect.empty() ? o.addr_host + ":" + std::to_string(o.addr_port) : o.connect;
  if (o.connections < 1) usage("--connections must be at least 1");
  o.idle_threads = std::min(o.idle_threads, o.connections);

  rlimit rl;  // idle mode holds thousands of sockets
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  Client client(o);
  if (o.mode == "keepalive" || o.mode == "handshake") return run_load(o, client);
  if (o.mode == "idle") return run_idle(o, client);
  if (o.mode == "sse") return run_sse(o, client);
  usage("unknown --mode");
}
