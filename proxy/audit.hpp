#pragma once
// One audit line and the request metrics per proxied request (SPEC section 12): names only,
// never a value, a header value or a query value.
#include <chrono>
#include <string>
#include <vector>

namespace sidekey::proxy {

struct AuditRecord {
  std::string request_id, client, method, scheme, host, path, rule, decision, error;
  int port = 0;
  int status = 0;
  std::vector<std::string> secrets, injected;
  std::uint64_t bytes_in = 0, bytes_out = 0;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  double upstream_ms = -1;  // < 0: no upstream exchange
  std::uint64_t scrubbed = 0;

  // Writes the audit line (unless the audit target is /dev/null) and updates
  // sidekey_requests_total, sidekey_injections_total and sidekey_request_duration_seconds; the
  // request ended at `done` (a caller that has just read the clock passes what it read).
  void emit(std::chrono::steady_clock::time_point done) const;
  void emit() const { emit(std::chrono::steady_clock::now()); }

 private:
  void write_line(double duration_ms) const;
};

// Registers HELP/TYPE for the proxy's metric families so /metrics shows them from the start.
void describe_proxy_metrics();
void observe_upstream_connect(double seconds);

}  // namespace sidekey::proxy
