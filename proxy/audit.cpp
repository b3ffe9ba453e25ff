#include "proxy/audit.hpp"

#include <cmath>

#include "core/log.hpp"
#include "core/metrics.hpp"

namespace sidekey::proxy {
namespace {
const std::vector<double> kLatencyBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                             0.25,   0.5,   1,      2.5,   5,    10,   30,    60};
}

void describe_proxy_metrics() {
  auto& r = metrics::registry();
  r.describe("sidekey_requests_total", "counter", "Proxied requests by rule, decision and HTTP status.");
  r.describe("sidekey_injections_total", "counter", "Secrets written into upstream requests, by secret name.");
  r.describe("sidekey_request_duration_seconds", "histogram", "Time from request head to the end of the response.");
  r.describe("sidekey_upstream_connect_seconds", "histogram", "Time to dial (and handshake with) an upstream.");
  r.describe("sidekey_scrubbed_total", "counter", "Secret occurrences replaced by their reference in responses.");
  r.describe("sidekey_policy_reloads_total", "counter", "Policy reloads by result (ok, error).");
  r.describe("sidekey_cert_mints_total", "counter", "Interception leaf certificates minted.");
  r.describe("sidekey_cert_cache_hits_total", "counter", "Interception leaf certificates served from the cache.");
  r.histogram("sidekey_request_duration_seconds", kLatencyBuckets);
  r.histogram("sidekey_upstream_connect_seconds", kLatencyBuckets);
  r.counter("sidekey_scrubbed_total");
  r.counter("sidekey_policy_reloads_total", {{"result", "ok"}});
  r.counter("sidekey_policy_reloads_total", {{"result", "error"}});
}

void observe_upstream_connect(double seconds) {
  static auto& h = metrics::registry().histogram("sidekey_upstream_connect_seconds", kLatencyBuckets);
  h.observe(seconds);
}

void AuditRecord::emit() const {
  double duration_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  nlohmann::json line = {{"request_id", request_id}, {"client", client},   {"method", method},
                         {"scheme", scheme},         {"host", host},       {"port", port},
                         {"path", path},             {"rule", rule},       {"decision", decision},
                         {"secrets", secrets},       {"injected", injected}, {"status", status},
                         {"bytes_in", bytes_in},     {"bytes_out", bytes_out},
                         {"duration_ms", std::round(duration_ms * 1000) / 1000},
                         {"upstream_ms", upstream_ms < 0 ? nlohmann::json(nullptr) : nlohmann::json(std::round(upstream_ms * 1000) / 1000)},
                         {"scrubbed", scrubbed}, {"error", error.empty() ? nlohmann::json(nullptr) : nlohmann::json(error)}};
  log::audit(std::move(line));

  auto& r = metrics::registry();
  r.counter("sidekey_requests_total", {{"rule", rule}, {"decision", decision}, {"code", std::to_string(status)}}).inc();
  for (const auto& s : secrets) r.counter("sidekey_injections_total", {{"secret", s}}).inc();
  static auto& h = r.histogram("sidekey_request_duration_seconds", kLatencyBuckets);
  h.observe(duration_ms / 1000);
  if (scrubbed) {
    static auto& sc = r.counter("sidekey_scrubbed_total");
    sc.inc(scrubbed);
  }
}

}  // namespace sidekey::proxy
