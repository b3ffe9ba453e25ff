// TlsStream (proxy/tls_stream.hpp) against OpenSSL peers on loopback: the cases its design has to
// get right beyond a plain exchange, which the integration tests (curl, Python) do not reach:
// a TLS 1.2 renegotiation the server starts while a read and a write are both outstanding,
// concurrent failing handshakes on one thread (each must report its own error), and how the
// end of a stream is reported (close_notify: eof; a bare TCP close: stream_truncated).
#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/beast/core.hpp>
#include <boost/test/unit_test.hpp>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "certs/ca.hpp"
#include "certs/leaf.hpp"
#include "core/io.hpp"
#include "proxy/tls_stream.hpp"

namespace net = boost::asio;
namespace beast = boost::beast;
using tcp = net::ip::tcp;
using sidekey::proxy::TlsStream;
using namespace sidekey::certs;
using namespace std::chrono_literals;

namespace {

constexpr auto tup = sidekey::io::tuple_awaitable;

struct Keys {
  CertificateAuthority::Ptr ca = CertificateAuthority::generate();
  Leaf leaf = mint_leaf(*ca, *CertHost::parse("localhost"), 1h);
};

Keys& keys() {
  static Keys k;
  return k;
}

// A server context with the test leaf; TLS 1.2 only when `tls12` (renegotiation exists there).
SSL_CTX* server_ctx(bool tls12) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (tls12) SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_use_certificate(ctx, keys().leaf.cert.get());
  SSL_CTX_use_PrivateKey(ctx, keys().leaf.key.get());
  return ctx;
}

// A client context that trusts the test CA (or nothing, `trusting` false) and checks the name.
SSL_CTX* client_ctx(bool trusting) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (trusting) X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), keys().ca->certificate());
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  return ctx;
}

// A listening socket on 127.0.0.1 and a thread that accepts connections on it.
struct Listener {
  net::io_context io;
  tcp::acceptor acceptor{io, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0)};
  tcp::endpoint endpoint() const { return acceptor.local_endpoint(); }
  int accept_fd() {
    sidekey::io::Socket s(io);
    acceptor.accept(s);
    return s.release();
  }
};

sidekey::io::Awaitable<sidekey::io::TcpStream> connect_to(tcp::endpoint ep) {
  sidekey::io::TcpStream t(co_await net::this_coro::executor);
  t.expires_after(10s);
  auto [ec] = co_await t.async_connect(ep, tup);
  BOOST_REQUIRE(!ec);
  co_return t;
}

// Accepts one connection on `l` and, once the TLS handshake succeeded, runs `body` on it.
template <class Body>
std::thread tls_server_thread(Listener& l, SSL_CTX* ctx, Body body) {
  return std::thread([&l, ctx, body] {
    int fd = l.accept_fd();
    SSL* ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) == 1) body(ssl);
    SSL_free(ssl);
    ::close(fd);
  });
}

// A client TlsStream to `ep` that completed its handshake, verifying "localhost".
sidekey::io::Awaitable<TlsStream> verified_client(tcp::endpoint ep, SSL_CTX* ctx) {
  TlsStream tls(co_await connect_to(ep), ctx);
  SSL_set_tlsext_host_name(tls.native_handle(), "localhost");
  SSL_set1_host(tls.native_handle(), "localhost");
  auto hec = co_await tls.handshake(TlsStream::Role::client);
  BOOST_REQUIRE_MESSAGE(!hec, hec.message());
  co_return tls;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(tls_stream)

BOOST_AUTO_TEST_CASE(renegotiation_during_concurrent_read_and_write) {
  // The upstream side of a WebSocket: sidekey reads and writes the same TLS stream at once. A
  // TLS 1.2 server renegotiates in the middle; the write that finds OpenSSL waiting for the
  // server's handshake records must wait for them, not fail.
  Listener l;
  const auto ep = l.endpoint();  // taken before the server thread uses the acceptor
  SSL_CTX* sctx = server_ctx(true);
  std::atomic<long> server_got{0};
  std::atomic<bool> renegotiated{false};
  constexpr long kTotal = 400000;
  std::thread server = tls_server_thread(l, sctx, [&](SSL* ssl) {
    char buf[16384];
    while (server_got < kTotal) {
      int n = SSL_read(ssl, buf, sizeof buf);
      if (n <= 0) break;
      server_got += n;
      if (!renegotiated && server_got > 100000) {
        renegotiated = SSL_renegotiate(ssl) == 1 && SSL_do_handshake(ssl) == 1;
        SSL_write(ssl, "x", 1);  // something for the client's reader
      }
    }
    SSL_write(ssl, "bye", 3);
    SSL_shutdown(ssl);
  });
  SSL_CTX* cctx = client_ctx(true);
  net::io_context io;
  long sent = 0, received = 0;
  beast::error_code write_error, read_end;
  net::co_spawn(io, [&]() -> sidekey::io::Awaitable<void> {
    TlsStream tls = co_await verified_client(ep, cctx);
    using namespace net::experimental::awaitable_operators;
    auto reader = [&]() -> sidekey::io::Awaitable<void> {
      char b[1000];
      for (;;) {
        auto [ec, n] = co_await tls.async_read_some(net::buffer(b), tup);
        received += static_cast<long>(n);
        if (ec) {
          read_end = ec;
          co_return;
        }
      }
    };
    auto writer = [&]() -> sidekey::io::Awaitable<void> {
      const std::string chunk(4000, 'a');
      while (sent < kTotal) {
        auto [ec, n] = co_await net::async_write(tls, net::buffer(chunk), tup);
        sent += static_cast<long>(n);
        if (ec) {
          write_error = ec;
          co_return;
        }
        sidekey::io::Timer pause(co_await net::this_coro::executor, 1ms);  // let the reader run between writes
        co_await pause.async_wait(tup);
      }
    };
    co_await (reader() && writer());
  }, net::detached);
  io.run_for(30s);
  server.join();
  SSL_CTX_free(sctx);
  SSL_CTX_free(cctx);
  BOOST_TEST(renegotiated.load());
  BOOST_TEST(!write_error, write_error.message());
  BOOST_TEST(sent == kTotal);
  BOOST_TEST(server_got.load() == kTotal);
  BOOST_TEST(received == 4);  // "x" and "bye"
  BOOST_TEST(read_end == net::error::eof, read_end.message());  // the server's close_notify
}

BOOST_AUTO_TEST_CASE(concurrent_failing_handshakes_report_their_own_errors) {
  // OpenSSL's error queue is per thread and every connection of a worker shares it: an error must
  // be read before the alert is sent (a suspension), not after.
  Listener tls_server, plain_server;
  const auto tls_ep = tls_server.endpoint(), plain_ep = plain_server.endpoint();
  SSL_CTX* sctx = server_ctx(false);
  constexpr int kTls = 3;
  std::thread tls_thread([&] {
    std::vector<std::thread> each;
    for (int i = 0; i < kTls; ++i) {
      int fd = tls_server.accept_fd();
      each.emplace_back([fd, sctx] {
        SSL* ssl = SSL_new(sctx);
        SSL_set_fd(ssl, fd);
        SSL_accept(ssl);  // fails: the client does not trust the certificate
        SSL_free(ssl);
        ::close(fd);
      });
    }
    for (auto& t : each) t.join();
  });
  std::thread plain_thread([&] {
    int fd = plain_server.accept_fd();
    char buf[4096];
    (void)::read(fd, buf, sizeof buf);  // the ClientHello; the answer is not TLS
    const char answer[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    (void)::write(fd, answer, sizeof answer - 1);
    ::close(fd);
  });
  SSL_CTX* untrusting = client_ctx(false);
  net::io_context io;
  std::vector<beast::error_code> tls_errors(kTls);
  std::vector<long> verify_results(kTls, X509_V_OK);
  beast::error_code plain_error;
  for (int i = 0; i < kTls; ++i)
    net::co_spawn(io, [&, i]() -> sidekey::io::Awaitable<void> {
      TlsStream tls(co_await connect_to(tls_ep), untrusting);
      SSL_set_tlsext_host_name(tls.native_handle(), "localhost");
      tls_errors[i] = co_await tls.handshake(TlsStream::Role::client);
      verify_results[i] = SSL_get_verify_result(tls.native_handle());
    }, net::detached);
  net::co_spawn(io, [&]() -> sidekey::io::Awaitable<void> {
    TlsStream tls(co_await connect_to(plain_ep), untrusting);
    plain_error = co_await tls.handshake(TlsStream::Role::client);
  }, net::detached);
  io.run_for(30s);
  tls_thread.join();
  plain_thread.join();
  SSL_CTX_free(sctx);
  SSL_CTX_free(untrusting);
  for (int i = 0; i < kTls; ++i) {
    BOOST_TEST((tls_errors[i].category() == net::error::get_ssl_category()), tls_errors[i].message());
    BOOST_TEST(ERR_GET_REASON(static_cast<unsigned long>(tls_errors[i].value())) == SSL_R_CERTIFICATE_VERIFY_FAILED,
               tls_errors[i].message());
    BOOST_TEST(verify_results[i] != X509_V_OK);
  }
  BOOST_TEST((plain_error.category() == net::error::get_ssl_category()), plain_error.message());
  BOOST_TEST(ERR_GET_REASON(static_cast<unsigned long>(plain_error.value())) == SSL_R_WRONG_VERSION_NUMBER,
             plain_error.message());
}

BOOST_AUTO_TEST_CASE(end_of_stream_close_notify_or_truncation) {
  for (bool close_notify : {true, false}) {
    Listener l;
    const auto ep = l.endpoint();
    SSL_CTX* sctx = server_ctx(false);
    std::thread server = tls_server_thread(l, sctx, [close_notify](SSL* ssl) {
      char buf[64];
      int n = SSL_read(ssl, buf, sizeof buf);
      if (n > 0) SSL_write(ssl, buf, n);  // echo
      if (close_notify) SSL_shutdown(ssl);  // else only the TCP close that follows
    });
    SSL_CTX* cctx = client_ctx(true);
    net::io_context io;
    std::string echoed;
    beast::error_code end;
    net::co_spawn(io, [&]() -> sidekey::io::Awaitable<void> {
      TlsStream tls = co_await verified_client(ep, cctx);
      auto [wec, wn] = co_await net::async_write(tls, net::buffer(std::string_view("ping")), tup);
      BOOST_REQUIRE(!wec);
      char b[64];
      for (;;) {
        auto [ec, n] = co_await tls.async_read_some(net::buffer(b), tup);
        echoed.append(b, n);
        if (ec) {
          end = ec;
          break;
        }
      }
      co_await tls.shutdown();
    }, net::detached);
    io.run_for(30s);
    server.join();
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    BOOST_TEST(echoed == "ping");
    if (close_notify) BOOST_TEST(end == net::error::eof, end.message());
    else BOOST_TEST(end == net::ssl::error::stream_truncated, end.message());
  }
}

BOOST_AUTO_TEST_CASE(destroying_the_stream_ends_a_pending_read) {
  // A pending read shares the stream's state; destroying the stream must end it (there is no
  // timeout that would) and leave nothing to touch freed memory.
  Listener l;
  const auto ep = l.endpoint();
  SSL_CTX* sctx = server_ctx(false);
  std::atomic<bool> done{false};
  std::thread server = tls_server_thread(l, sctx, [&](SSL*) {
    while (!done) std::this_thread::sleep_for(10ms);  // sends nothing: the read stays pending
  });
  SSL_CTX* cctx = client_ctx(true);
  net::io_context io;
  bool completed = false;
  beast::error_code read_error;
  net::co_spawn(io, [&]() -> sidekey::io::Awaitable<void> {
    auto tls = std::make_unique<TlsStream>(co_await verified_client(ep, cctx));
    tls->next_layer().expires_never();
    static char b[64];
    tls->async_read_some(net::buffer(b), [&](beast::error_code ec, std::size_t) {
      completed = true;
      read_error = ec;
    });
    sidekey::io::Timer pause(co_await net::this_coro::executor, 50ms);
    co_await pause.async_wait(tup);
    tls.reset();
  }, net::detached);
  io.run_for(20s);
  done = true;
  server.join();
  SSL_CTX_free(sctx);
  SSL_CTX_free(cctx);
  BOOST_TEST(completed);
  BOOST_TEST(read_error.failed());
}

BOOST_AUTO_TEST_SUITE_END()
