#include "cli/runtime.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <iostream>
#include <thread>

#include "api/auth.hpp"
#include "api/gateway.hpp"
#include "certs/ca.hpp"
#include "certs/trust_bundle.hpp"
#include "cli/common.hpp"
#include "core/files.hpp"
#include "core/code_pages.hpp"
#include "core/heap_trim.hpp"
#include "core/io.hpp"
#include "core/log.hpp"
#include "core/yaml_util.hpp"
#include "core/metrics.hpp"
#include "proxy/audit.hpp"

namespace sidekey::cli {
namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;

TrustFiles prepare_trust_files(const config::Config& cfg) {
  ensure_dir(cfg.data_dir, 0700);
  auto ca = certs::CertificateAuthority::load(cfg);
  return trust_files_for(*ca, cfg);
}

TrustFiles trust_files_for(const certs::CertificateAuthority& ca, const config::Config& cfg) {
  TrustFiles t;
  t.trust_bundle = certs::write_trust_bundle(ca, cfg.data_dir);
  // NODE_EXTRA_CA_CERTS wants the CA alone; an operator's CA may live outside data_dir.
  t.ca = ca.cert_path().empty() ? cfg.data_dir / certs::kCaCertFile : ca.cert_path();
  if (ca.cert_path().empty()) write_file_atomic(t.ca, ca.certificate_pem(), 0644);
  return t;
}

ControlThreadSignals::ControlThreadSignals(std::initializer_list<int> signals) {
  sigemptyset(&set_);
  for (int s : signals) sigaddset(&set_, s);
  pthread_sigmask(SIG_BLOCK, &set_, nullptr);
}

void ControlThreadSignals::deliver_here() noexcept { pthread_sigmask(SIG_UNBLOCK, &set_, nullptr); }
void ControlThreadSignals::keep_from_this_thread() noexcept { pthread_sigmask(SIG_BLOCK, &set_, nullptr); }

int start_or_report(Runtime& runtime) {
  try {
    runtime.start();
    return 0;
  } catch (const PositionedError& e) {
    std::cerr << "sidekey: " << e.what() << std::endl;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "sidekey: " << e.what() << std::endl;
    return 1;
  }
}

std::shared_ptr<secrets::Store> open_store(const config::Config& cfg) {
  ensure_dir(cfg.data_dir, 0700);
  auto key = secrets::load_store_key(cfg.store_key_file, cfg.data_dir);
  return std::make_shared<secrets::Store>(cfg.data_dir / "secrets.db", std::move(key));
}

namespace {
void describe_metrics() {
  auto& r = metrics::registry();
  r.describe("sidekey_active_connections", "gauge", "Open client connections on all listeners.");
  r.describe("sidekey_secrets", "gauge", "Secrets known (store and sources).");
  r.describe("sidekey_api_requests_total", "counter", "Agent Protocol API requests by status code.");
  r.gauge("sidekey_active_connections");
}
}  // namespace

Runtime::Runtime(config::Config cfg) : cfg_(std::move(cfg)) {}

Runtime::~Runtime() {
  if (registry_) registry_->on_change(nullptr);  // it would post to the workers
  stop_accepting();
  if (workers_) {
    workers_->stop();
    workers_->join();
  }
}

void Runtime::stop_accepting() {
  for (auto* listener : {proxy_.get(), api_.get(), admin_.get()})
    if (listener) listener->close();
  // The accept loops end on their closed acceptors: run them to the end here, on the control
  // thread, while the workers' contexts still exist (a pending accept holds a socket of the
  // worker it was accepting for, destroyed with the control context otherwise).
  control_.restart();
  control_.poll();
}

void Runtime::start() {
  describe_metrics();
  log::set_level(cfg_.log_level);
  log::set_audit_target(cfg_.log_audit);

  proxy::describe_proxy_metrics();
  readiness_.set_not_ready("loading the policy");
  policy_ = std::make_unique<proxy::PolicyHolder>(cfg_.policy);
  policy_->load();  // a bad policy refuses to start (PositionedError names file:line:column)
  readiness_.set_not_ready("opening the secrets store");
  store_ = open_store(cfg_);
  registry_ = std::make_unique<secrets::SecretRegistry>(store_, cfg_.sources);
  metrics::registry().gauge("sidekey_secrets").set(static_cast<std::int64_t>(registry_->current()->size()));

  readiness_.set_not_ready("loading the interception CA");
  auto ca = certs::CertificateAuthority::load(cfg_);
  if (ca->created()) log::info("ca_generated", {{"path", ca->cert_path().string()}, {"fingerprint", ca->fingerprint_sha256()}});
  trust_ = trust_files_for(*ca, cfg_);
  certs::CertCache::Options cache_options;
  cache_options.leaf_ttl = cfg_.tls_leaf_ttl;
  cert_cache_ = std::make_unique<certs::CertCache>(ca, cache_options);

  if (cfg_.api_auth)
    api_token_ = std::make_unique<secrets::SecretValue>(api::load_api_token(cfg_.api_token_file, cfg_.data_dir));
  secrets_api_ = std::make_unique<api::SecretsApi>(*registry_, host_problem);

  tracker_.max_connections = cfg_.max_connections;
  api_options_ = {cfg_.max_header_bytes, 1 << 20, cfg_.idle_timeout, cfg_.request_timeout, &tracker_};
  admin_options_ = {cfg_.max_header_bytes, 64 << 10, cfg_.idle_timeout, cfg_.request_timeout, &tracker_};

  workers_ = std::make_unique<proxy::Workers>(cfg_.effective_workers());
  registry_->on_change([w = workers_.get()] {
    try {
      for (unsigned i = 0; i < w->size(); ++i) boost::asio::post(w->at(i), [] { proxy::forget_secret_values_on_this_thread(); });
    } catch (const std::exception& e) {  // (the new view is in place: a store write must not fail for this)
      log::error("secret_caches_not_forgotten", {{"error", e.what()}});
    }
  });
  upstream_tls_ = std::make_unique<proxy::UpstreamTls>(cfg_.tls_upstream_ca_file, cfg_.tls_upstream_verify);
  if (!cfg_.tls_upstream_verify) log::warn("upstream_tls_verification_off", {{"setting", "tls.upstream_verify"}});
  proxy_context_ = std::make_unique<proxy::ProxyContext>(proxy::ProxyContext{
      *policy_, *registry_, proxy::EgressGuard(cfg_.egress_allow_private, cfg_.egress_resolve), *upstream_tls_, tracker_, *cert_cache_,
      cfg_.max_header_bytes, cfg_.connect_timeout, cfg_.idle_timeout, cfg_.request_timeout});

  auto api_handler = [this](api::Request& req) -> io::Awaitable<api::Response> {
    api::Response res;
    if (api_token_ && !api::token_matches(*api_token_, req[http::field::authorization], req["X-API-KEY"])) {
      res = api::message_response(http::status::unauthorized, "missing or invalid API token");
      res.set(http::field::www_authenticate, "Bearer");
    } else if (api::SecretsApi::serves(req.target())) {
      // In gateway mode a task the agent does not know has no secrets (SPEC section 8).
      std::optional<int> task_known = 200;
      if (auto task = api::SecretsApi::task_of(req.target()); task && gateway_)
        task_known = co_await gateway_->task_status(*task);
      if (!task_known)
        res = api::message_response(http::status::bad_gateway, "the agent is not reachable");
      else if (*task_known < 200 || *task_known > 299)  // some agents answer 500 for an unknown task
        res = api::message_response(http::status::not_found, "Unable to find task with the provided id");
      else
        res = co_await net::co_spawn(
            store_io_,
            [&]() -> net::awaitable<api::Response> {
              // The store thread parses, seals and re-reads values, then waits for the next
              // call: its registers are cleared however the call ends.
              secrets::ClearRegistersOnExit clear_registers;
              co_return secrets_api_->handle(req);
            },
            io::use_awaitable);
    } else {
      res = api::message_response(http::status::not_found, "Unable to find entity with the provided path");
    }
    metrics::registry().counter("sidekey_api_requests_total", {{"code", std::to_string(res.result_int())}}).inc();
    co_return res;
  };
  if (!cfg_.agent_upstream.empty()) {
    api::Gateway::Options gopt{cfg_.connect_timeout, cfg_.idle_timeout, cfg_.request_timeout, cfg_.max_header_bytes,
                               cfg_.api_auth};
    gateway_ = std::make_unique<api::Gateway>(cfg_.agent_upstream, *upstream_tls_, gopt);
    api_options_.wants_stream = [](const http::request_header<>& h) {
      return !api::SecretsApi::serves(h.target()) && api::Gateway::forwards(h.target());
    };
    api_options_.stream_handler = [this](io::TcpStream& stream, io::FlatBuffer& buffer,
                                         api::RequestParser& parser) -> io::Awaitable<bool> {
      auto& h = parser.get();
      if (api_token_ && !api::token_matches(*api_token_, h[http::field::authorization], h["X-API-KEY"])) {
        auto res = api::message_response(http::status::unauthorized, "missing or invalid API token");
        res.set(http::field::www_authenticate, "Bearer");
        res.keep_alive(false);  // the body, if any, is left unread
        res.prepare_payload();
        co_await http::async_write(stream, res, io::tuple_awaitable);
        co_return false;
      }
      co_return co_await gateway_->forward(stream, buffer, parser);
    };
  }
  auto admin_handler = [this](api::Request& req) -> io::Awaitable<api::Response> {
    co_return api::handle_admin(req, readiness_);
  };

  auto http_listener = [this](std::string name, const config::Endpoint& ep, const api::HttpServerOptions& opts,
                              api::Handler handler) {
    auto h = std::make_shared<api::Handler>(std::move(handler));
    return std::make_unique<proxy::Listener>(
        name, ep, control_, *workers_, tracker_,
        [h, &opts](io::Socket s) { return api::serve_http(std::move(s), opts, *h); },
        [](io::Socket s) -> io::Awaitable<void> {
          // Over the connection cap: a polite 503 and close, rather than an unbounded backlog.
          auto res = api::message_response(http::status::service_unavailable, "too many open connections");
          res.keep_alive(false);
          res.prepare_payload();
          io::TcpStream stream(std::move(s));
          co_await http::async_write(stream, res, io::tuple_awaitable);
        });
  };
  proxy_ = std::make_unique<proxy::Listener>(
      "proxy", cfg_.listen_proxy, control_, *workers_, tracker_,
      [this](io::Socket s) { return proxy::serve_proxy_connection(std::move(s), *proxy_context_); },
      proxy::refuse_overloaded);
  api_ = http_listener("api", cfg_.listen_api, api_options_, api_handler);
  admin_ = http_listener("admin", cfg_.listen_admin, admin_options_, admin_handler);
  proxy_->start();
  api_->start();
  admin_->start();
  workers_->start();
  schedule_source_refresh();
  schedule_policy_watch();
  schedule_heap_trim();
  // Startup's code (configuration, OpenSSL's initialisation, the CA bundle) is not run again.
  auto released = core::release_code_pages();
  log::debug("code_pages_released", {{"mappings", released.mappings}, {"kib", released.kib}});
  readiness_.set_ready();
}

std::string Runtime::listening_line() const {
  return nlohmann::json{{"event", "listening"},
                        {"proxy", proxy_->local_address()},
                        {"api", api_->local_address()},
                        {"admin", admin_->local_address()}}
      .dump();
}

// Runs `tick` on the control thread every `period` until `timer` is cancelled (shutdown).
void Runtime::every(std::unique_ptr<net::steady_timer>& timer, std::chrono::seconds period, std::function<void()> tick) {
  timer = std::make_unique<net::steady_timer>(control_);
  net::co_spawn(
      control_,
      [t = timer.get(), period, tick = std::move(tick)]() -> io::Awaitable<void> {
        for (;;) {
          t->expires_after(period);
          auto [ec] = co_await t->async_wait(io::tuple_awaitable);
          if (ec) co_return;
          tick();
        }
      },
      net::detached);
}

// Always polled: besides dir sources, the store file itself changes under a running server
// when `sidekey secrets set/rm` writes it.
void Runtime::schedule_source_refresh() {
  every(refresh_timer_, std::chrono::seconds(2), [this] {
    try {
      if (registry_->refresh()) {
        log::info("secret_sources_changed", {{"secrets", registry_->current()->size()}});
        metrics::registry().gauge("sidekey_secrets").set(static_cast<std::int64_t>(registry_->current()->size()));
      }
    } catch (const std::exception& e) {
      log::error("secret_sources_refresh_failed", {{"error", e.what()}});
    }
  });
}

void Runtime::schedule_policy_watch() {
  every(policy_timer_, std::chrono::seconds(1), [this] { policy_->reload_if_changed(); });
}

// On the control thread, not a worker: a trim locks each malloc arena in turn (a few ms with a
// large heap), which a worker's allocations may briefly wait for, but no event loop stops.
void Runtime::schedule_heap_trim() {
  every(trim_timer_, std::chrono::seconds(1), [this, trim = core::HeapTrimPolicy()]() mutable {
    const auto active = tracker_.active.load(std::memory_order_relaxed);
    const auto peak = tracker_.peak.exchange(active, std::memory_order_relaxed);
    if (trim.due(active, peak)) log::debug("heap_trimmed", {{"connections", active}, {"released", core::trim_heap()}});
  });
}

void Runtime::shutdown(std::chrono::milliseconds deadline) {
  readiness_.set_not_ready("shutting down");
  tracker_.draining.store(true);
  if (refresh_timer_) refresh_timer_->cancel();
  if (policy_timer_) policy_timer_->cancel();
  if (trim_timer_) trim_timer_->cancel();
  // Acceptors live on the control context, whose thread this is (shutdown is called before
  // control().run() or after it returned): closed here, no connection is accepted any more.
  stop_accepting();
  auto until = std::chrono::steady_clock::now() + deadline;
  while (tracker_.inflight.load() > 0 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  registry_->on_change(nullptr);  // the workers are stopping: nothing left to forget there
  workers_->stop();
  workers_->join();
  store_io_.join();
}

}  // namespace sidekey::cli
