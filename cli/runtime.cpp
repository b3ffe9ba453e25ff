#include "cli/runtime.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <thread>

#include "api/auth.hpp"
#include "core/files.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"

namespace sidekey::cli {
namespace net = boost::asio;
namespace http = boost::beast::http;

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

// Host patterns accepted in allowed_hosts: the policy's binding grammar, checked coarsely here.
std::string host_problem(std::string_view h) {
  if (h.empty() || h.size() > 300) return "host pattern must be 1 to 300 characters";
  for (char c : h)
    if (c <= ' ' || c == '"' || c == '\\' || static_cast<unsigned char>(c) >= 0x7f)
      return "host pattern contains a character that is not allowed";
  return {};
}
}  // namespace

Runtime::Runtime(config::Config cfg) : cfg_(std::move(cfg)) {}

Runtime::~Runtime() {
  if (workers_) {
    workers_->stop();
    workers_->join();
  }
}

void Runtime::start() {
  describe_metrics();
  log::set_level(cfg_.log_level);
  log::set_audit_target(cfg_.log_audit);

  readiness_.set_not_ready("opening the secrets store");
  store_ = open_store(cfg_);
  registry_ = std::make_unique<secrets::SecretRegistry>(store_, cfg_.sources);
  metrics::registry().gauge("sidekey_secrets").set(static_cast<std::int64_t>(registry_->current()->size()));

  if (cfg_.api_auth)
    api_token_ = std::make_unique<secrets::SecretValue>(api::load_api_token(cfg_.api_token_file, cfg_.data_dir));
  secrets_api_ = std::make_unique<api::SecretsApi>(*registry_, host_problem);

  tracker_.max_connections = cfg_.max_connections;
  api_options_ = {cfg_.max_header_bytes, 1 << 20, cfg_.idle_timeout, cfg_.request_timeout, &tracker_};
  admin_options_ = {cfg_.max_header_bytes, 64 << 10, cfg_.idle_timeout, cfg_.request_timeout, &tracker_};

  workers_ = std::make_unique<proxy::Workers>(cfg_.effective_workers());

  auto api_handler = [this](api::Request& req) -> net::awaitable<api::Response> {
    api::Response res;
    if (api_token_ && !api::token_matches(*api_token_, req[http::field::authorization], req["X-API-KEY"])) {
      res = api::message_response(http::status::unauthorized, "missing or invalid API token");
      res.set(http::field::www_authenticate, "Bearer");
    } else if (api::SecretsApi::serves(req.target())) {
      res = secrets_api_->handle(req);
    } else {
      res = api::message_response(http::status::not_found, "Unable to find entity with the provided path");
    }
    metrics::registry().counter("sidekey_api_requests_total", {{"code", std::to_string(res.result_int())}}).inc();
    co_return res;
  };
  auto admin_handler = [this](api::Request& req) -> net::awaitable<api::Response> {
    co_return api::handle_admin(req, readiness_);
  };
  // The proxy listener's pipeline arrives with the egress-proxy work; until then it answers 501.
  auto proxy_handler = [](api::Request&) -> net::awaitable<api::Response> {
    co_return api::json_response(http::status::not_implemented,
                                 {{"error", {{"code", "not_implemented"}, {"message", "the proxy is not implemented yet"}}}});
  };

  auto http_listener = [this](std::string name, const config::Endpoint& ep, const api::HttpServerOptions& opts,
                              api::Handler handler) {
    auto h = std::make_shared<api::Handler>(std::move(handler));
    return std::make_unique<proxy::Listener>(
        name, ep, *workers_, tracker_,
        [h, &opts](net::ip::tcp::socket s) { return api::serve_http(std::move(s), opts, *h); },
        [](net::ip::tcp::socket s) -> net::awaitable<void> {
          // Over the connection cap: a polite 503 and close, rather than an unbounded backlog.
          static const char kBusy[] =
              "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
              "Content-Length: 75\r\n\r\n{\"error\":{\"code\":\"overloaded\",\"message\":\"too many open connections\"}}\n";
          co_await net::async_write(s, net::buffer(kBusy, sizeof kBusy - 1), net::as_tuple(net::use_awaitable));
        });
  };
  proxy_ = http_listener("proxy", cfg_.listen_proxy, api_options_, proxy_handler);
  api_ = http_listener("api", cfg_.listen_api, api_options_, api_handler);
  admin_ = http_listener("admin", cfg_.listen_admin, admin_options_, admin_handler);
  proxy_->start();
  api_->start();
  admin_->start();
  workers_->start();
  schedule_source_refresh();
  readiness_.set_ready();
}

std::string Runtime::listening_line() const {
  return nlohmann::json{{"event", "listening"},
                        {"proxy", proxy_->local_address()},
                        {"api", api_->local_address()},
                        {"admin", admin_->local_address()}}
      .dump();
}

void Runtime::schedule_source_refresh() {
  bool has_dir = false;
  for (auto& s : cfg_.sources) has_dir |= s.kind == secrets::SourceConfig::Kind::dir;
  if (!has_dir) return;
  refresh_timer_ = std::make_unique<net::steady_timer>(control_);
  net::co_spawn(
      control_,
      [this]() -> net::awaitable<void> {
        for (;;) {
          refresh_timer_->expires_after(std::chrono::seconds(2));
          auto [ec] = co_await refresh_timer_->async_wait(net::as_tuple(net::use_awaitable));
          if (ec) co_return;
          try {
            if (registry_->refresh()) {
              log::info("secret_sources_changed", {{"secrets", registry_->current()->size()}});
              metrics::registry().gauge("sidekey_secrets").set(static_cast<std::int64_t>(registry_->current()->size()));
            }
          } catch (const std::exception& e) {
            log::error("secret_sources_refresh_failed", {{"error", e.what()}});
          }
        }
      },
      net::detached);
}

void Runtime::shutdown(std::chrono::milliseconds deadline) {
  readiness_.set_not_ready("shutting down");
  tracker_.draining.store(true);
  // Acceptors live on worker 0: close them there.
  net::post(workers_->at(0), [this] {
    proxy_->close();
    api_->close();
    admin_->close();
  });
  if (refresh_timer_) refresh_timer_->cancel();
  auto until = std::chrono::steady_clock::now() + deadline;
  while (tracker_.inflight.load() > 0 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  workers_->stop();
  workers_->join();
}

}  // namespace sidekey::cli
