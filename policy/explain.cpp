#include "policy/explain.hpp"

#include <map>

#include "secrets/secret_name.hpp"

namespace sidekey::policy {
namespace {

// Stands in for the store when explain runs without one: every valid name exists, with a
// placeholder value and only the policy's binding.
class AssumeAllLookup final : public SecretLookup {
 public:
  const secrets::SecretEntry* find(std::string_view name) const override {
    if (!secrets::valid_secret_name(name)) return nullptr;
    auto it = entries_.find(name);
    if (it == entries_.end()) {
      secrets::SecretEntry e;
      e.name = std::string(name);
      e.binding_name = e.name;
      e.origin = "assumed";
      e.value = std::make_shared<const secrets::SecretValue>("placeholder");
      it = entries_.emplace(e.name, std::move(e)).first;
    }
    return &it->second;
  }

 private:
  mutable std::map<std::string, secrets::SecretEntry, std::less<>> entries_;
};

nlohmann::json destination_json(const Destination& d) {
  return {{"scheme", d.scheme}, {"host", d.host}, {"port", d.port}, {"tls", d.tls}};
}

nlohmann::json refusal_json(const Refusal& r) {
  nlohmann::json j = r.to_json()["error"];
  j["status"] = r.status;
  return j;
}

nlohmann::json places(unsigned p) {
  auto out = nlohmann::json::array();
  for (Place x : {kHeaders, kQuery, kBody})
    if (p & x) out.push_back(place_name(x));
  return out;
}

}  // namespace

nlohmann::json explain(const PolicySnapshot& policy, const SecretLookup* secrets, std::string_view method,
                       std::string_view url, const Headers& headers) {
  AssumeAllLookup assumed;
  const SecretLookup& lookup = secrets ? *secrets : assumed;
  nlohmann::json out = {{"method", method}, {"url", url}, {"secrets_checked", secrets != nullptr}};

  if (method == "CONNECT") {
    auto d = parse_connect_authority(url);
    if (!d) {
      out["decision"] = "deny";
      out["refusal"] = refusal_json(Refusal::make(code::bad_request, "CONNECT needs host:port"));
      return out;
    }
    auto c = policy.decide_connect(*d);
    out["destination"] = destination_json(*d);
    out["rule"] = c.rule ? nlohmann::json(c.rule->name) : nlohmann::json(nullptr);
    switch (c.kind) {
      case ConnectDecision::Kind::tunnel: out["decision"] = "tunnel"; break;
      case ConnectDecision::Kind::intercept: out["decision"] = "intercept"; break;
      case ConnectDecision::Kind::deny:
        out["decision"] = "deny";
        out["refusal"] = refusal_json(Refusal::make(code::policy_denied, "CONNECT to " + d->authority() + " is denied")
                                          .with_rule(std::string(c.rule_name()))
                                          .with_host(d->host));
        break;
    }
    return out;
  }

  Destination dest;
  std::string target;
  if (auto parsed = parse_absolute_url(url)) {
    dest = parsed->destination;
    target = parsed->target;
  } else if (!url.empty() && url.front() == '/') {
    const Route* route = policy.route_for(url);
    if (!route) {
      out["decision"] = "deny";
      out["refusal"] = refusal_json(Refusal::make(code::bad_request, "no route prefix matches " + std::string(url)));
      return out;
    }
    out["route"] = route->prefix;
    dest = route->destination;
    target = route->map_target(url);
  } else {
    out["decision"] = "deny";
    out["refusal"] = refusal_json(
        Refusal::make(code::bad_request, "expected an absolute http(s) URL, a route path, or CONNECT host:port"));
    return out;
  }

  Decision decision = policy.decide(dest, method, target);
  out["destination"] = destination_json(dest);
  out["rule"] = decision.rule ? nlohmann::json(decision.rule->name) : nlohmann::json(nullptr);
  out["action"] = to_string(decision.action);
  out["default"] = decision.rule == nullptr;
  if (decision.upgraded) out["upgrade_tls"] = true;

  RequestHead head{std::string(method), target, headers};
  auto result = rewrite(policy, decision, head, lookup);
  if (auto* r = std::get_if<Refusal>(&result)) {
    out["decision"] = "deny";
    out["refusal"] = refusal_json(*r);
    return out;
  }
  const RewritePlan& plan = std::get<RewritePlan>(result);
  out["decision"] = to_string(decision.action);
  out["secrets"] = plan.secrets;
  out["injected"] = plan.injected;
  if (decision.action == Action::inject) {
    out["references"] = places(decision.rule->references);
    out["scrub"] = plan.scrub;
    if (plan.body) {
      static constexpr const char* kNames[] = {"json", "form", "opaque"};
      out["body"] = kNames[static_cast<int>(*plan.body)];
    }
  }
  auto names = nlohmann::json::array();
  for (const auto& h : plan.headers) names.push_back(h.name);
  out["upstream"] = {{"method", plan.method},
                     {"destination", destination_json(decision.destination)},
                     {"path", plan.target.substr(0, plan.target.find('?'))},
                     {"headers", names}};
  return out;
}

}  // namespace sidekey::policy
