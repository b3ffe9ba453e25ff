#include "proxy/audit.hpp"

#include <cmath>
#include <string>
#include <unordered_map>

#include "core/json_line.hpp"
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

namespace {
// The labelled series a request touches, looked up per thread by a key built in a reused
// buffer: no allocation and no lock once a series has been seen. A worker's requests mostly
// repeat the one before (the same rule, decision and status): that series is kept at hand.
metrics::Counter& requests_counter(const std::string& rule, const std::string& decision, int status) {
  thread_local std::unordered_map<std::string, metrics::Counter*> cache;
  thread_local std::string key, last_rule, last_decision;
  thread_local int last_status = -1;
  thread_local metrics::Counter* last = nullptr;
  if (last && status == last_status && rule == last_rule && decision == last_decision) return *last;
  last_rule = rule;
  last_decision = decision;
  last_status = status;
  key.assign(rule).push_back('\0');
  key.append(decision).push_back('\0');
  key.append(std::to_string(status));
  if (auto it = cache.find(key); it != cache.end()) return *(last = it->second);
  auto& c = metrics::registry().counter("sidekey_requests_total",
                                        {{"rule", rule}, {"decision", decision}, {"code", std::to_string(status)}});
  cache.emplace(key, &c);
  return *(last = &c);
}

// Task secrets ("tasks/T/NAME") come and go with their tasks: one series per NAME across tasks,
// "tasks/*/NAME", or the metrics (and this cache) would grow with every task.
metrics::Counter& injections_counter(const std::string& secret) {
  thread_local std::unordered_map<std::string, metrics::Counter*> cache;
  thread_local std::string label, last_secret;
  thread_local metrics::Counter* last = nullptr;
  if (last && secret == last_secret) return *last;
  last_secret = secret;
  label = secret;
  if (secret.starts_with("tasks/"))
    if (auto slash = secret.find('/', 6); slash != std::string::npos) label.assign("tasks/*").append(secret, slash);
  if (auto it = cache.find(label); it != cache.end()) return *(last = it->second);
  auto& c = metrics::registry().counter("sidekey_injections_total", {{"secret", label}});
  cache.emplace(label, &c);
  return *(last = &c);
}

}  // namespace

void AuditRecord::emit(std::chrono::steady_clock::time_point done) const {
  double duration_ms = std::chrono::duration<double, std::milli>(done - started).count();
  if (!log::audit_discarded()) write_line(duration_ms);
  requests_counter(rule, decision, status).inc();
  for (const auto& s : secrets) injections_counter(s).inc();
  static auto& h = metrics::registry().histogram("sidekey_request_duration_seconds", kLatencyBuckets);
  h.observe(duration_ms / 1000);
  if (scrubbed) {
    static auto& sc = metrics::registry().counter("sidekey_scrubbed_total");
    sc.inc(scrubbed);
  }
}

void AuditRecord::write_line(double duration_ms) const {
  thread_local std::string line;
  line.clear();
  json::ObjectWriter w(line);
  w.str("ts", log::now_rfc3339_view())
      .str("event", "audit")
      .str("request_id", request_id)
      .str("client", client)
      .str("method", method)
      .str("scheme", scheme)
      .str("host", host)
      .num("port", port)
      .str("path", path)
      .str("rule", rule)
      .str("decision", decision)
      .strings("secrets", secrets)
      .strings("injected", injected)
      .num("status", status)
      .num("bytes_in", bytes_in)
      .num("bytes_out", bytes_out)
      .millis("duration_ms", duration_ms);
  if (upstream_ms < 0) w.null("upstream_ms");
  else w.millis("upstream_ms", upstream_ms);
  w.num("scrubbed", scrubbed).str_or_null("error", error).close();
  log::audit_line(line);
}

}  // namespace sidekey::proxy
