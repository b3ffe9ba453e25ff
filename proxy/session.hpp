#pragma once
// The proxy listener's connection handler: absolute-form HTTP, reverse routes and CONNECT,
// each request through the pipeline of ARCHITECTURE.md (head → destination → decision →
// rewrite → egress guard → upstream → relay → audit).
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>

#include "certs/cert_cache.hpp"
#include "core/io.hpp"
#include "proxy/egress_guard.hpp"
#include "proxy/listener.hpp"
#include "proxy/policy_holder.hpp"
#include "proxy/upstream.hpp"
#include "secrets/secret_view.hpp"

namespace sidekey::proxy {

struct ProxyContext {
  PolicyHolder& policy;
  secrets::SecretRegistry& secrets;
  EgressGuard guard;
  UpstreamTls& upstream_tls;
  ConnectionTracker& tracker;
  certs::CertCache& certs;  // leaves for intercepted CONNECT hosts
  std::size_t max_header_bytes = 65536;
  std::chrono::milliseconds connect_timeout{10000}, idle_timeout{60000}, request_timeout{300000};
};

io::Awaitable<void> serve_proxy_connection(io::Socket socket, ProxyContext& ctx);

// Over the connection cap: a 503 with the JSON error, then close.
io::Awaitable<void> refuse_overloaded(io::Socket socket);

// What this worker keeps across requests of the secrets' values (the injection memo, the scrub
// sets) is let go: run on each worker when the secret view changed, so that a rotated or deleted
// value does not wait for the worker's next request to be released.
void forget_secret_values_on_this_thread();

}  // namespace sidekey::proxy
