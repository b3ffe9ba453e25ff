#pragma once
// The one shape every refusal takes (SPEC section 5), whichever stage produced it, so the error
// body, the audit line and the metrics label stay consistent. Never carries a secret value:
// `secret` is a name, `host` a destination.
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace sidekey::policy {

namespace code {
inline constexpr std::string_view policy_denied = "policy_denied";
inline constexpr std::string_view secret_not_bound = "secret_not_bound";
inline constexpr std::string_view unknown_secret = "unknown_secret";
inline constexpr std::string_view reference_not_allowed = "reference_not_allowed";
inline constexpr std::string_view reference_required = "reference_required";
inline constexpr std::string_view misdirected_request = "misdirected_request";
inline constexpr std::string_view egress_blocked = "egress_blocked";
inline constexpr std::string_view bad_request = "bad_request";
inline constexpr std::string_view upstream_connect_failed = "upstream_connect_failed";
inline constexpr std::string_view upstream_tls_failed = "upstream_tls_failed";
inline constexpr std::string_view upstream_timeout = "upstream_timeout";
// Extension: a stored value that cannot be written where the policy puts it (e.g. a header
// value holding CR/LF from a hand-edited source file). The operator's problem, not the agent's.
inline constexpr std::string_view secret_invalid = "secret_invalid";
}  // namespace code

// The HTTP status of each code above; 500 for anything unknown.
int status_for(std::string_view code);

struct Refusal {
  std::string code;
  int status = 0;
  std::string message;
  std::string rule;    // rule name, empty when no rule matched
  std::string secret;  // secret name, when one is involved
  std::string host;    // destination host, when known

  static Refusal make(std::string_view code, std::string message);
  Refusal& with_rule(std::string r) { rule = std::move(r); return *this; }
  Refusal& with_secret(std::string s) { secret = std::move(s); return *this; }
  Refusal& with_host(std::string h) { host = std::move(h); return *this; }

  // {"error":{"code","message","rule"?,"secret"?,"host"?,"request_id"?}}: empty fields left out.
  nlohmann::json to_json(std::string_view request_id = {}) const;
  bool operator==(const Refusal&) const = default;
};

}  // namespace sidekey::policy
