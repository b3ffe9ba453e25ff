#include "policy/refusal.hpp"

namespace sidekey::policy {

int status_for(std::string_view c) {
  if (c == code::bad_request) return 400;
  if (c == code::misdirected_request) return 421;
  if (c == code::upstream_connect_failed || c == code::upstream_tls_failed) return 502;
  if (c == code::upstream_timeout) return 504;
  if (c == code::policy_denied || c == code::secret_not_bound || c == code::unknown_secret ||
      c == code::reference_not_allowed || c == code::reference_required || c == code::egress_blocked)
    return 403;
  // Not the agent's doing: a stored value the policy cannot write where it puts it (README's
  // table of codes: 500). Listed so it does not depend on the fall-through below.
  if (c == code::secret_invalid) return 500;
  return 500;
}

Refusal Refusal::make(std::string_view c, std::string message) {
  Refusal r;
  r.code = std::string(c);
  r.status = status_for(c);
  r.message = std::move(message);
  return r;
}

nlohmann::json Refusal::to_json(std::string_view request_id) const {
  nlohmann::json e = {{"code", code}, {"message", message}};
  if (!rule.empty()) e["rule"] = rule;
  if (!secret.empty()) e["secret"] = secret;
  if (!host.empty()) e["host"] = host;
  if (!request_id.empty()) e["request_id"] = request_id;
  return {{"error", std::move(e)}};
}

}  // namespace sidekey::policy
