#include "policy/policy.hpp"

#include <algorithm>

namespace sidekey::policy {

std::string_view to_string(Action a) {
  switch (a) {
    case Action::inject: return "inject";
    case Action::allow: return "allow";
    case Action::deny: return "deny";
  }
  return "deny";
}

std::string_view place_name(Place p) {
  switch (p) {
    case kHeaders: return "headers";
    case kQuery: return "query";
    case kBody: return "body";
  }
  return "";
}

bool Match::matches_host(const Destination& d) const {
  return std::any_of(hosts.begin(), hosts.end(), [&](const HostPattern& h) { return h.matches(d); });
}

bool Match::matches(const Destination& d, std::string_view method, std::string_view path) const {
  if (!matches_host(d)) return false;
  if (!methods.empty() && std::find(methods.begin(), methods.end(), method) == methods.end()) return false;
  if (!paths.empty() &&
      std::none_of(paths.begin(), paths.end(), [&](const PathGlob& g) { return g.matches(path); }))
    return false;
  return true;
}

bool Match::covers(const Match& o) const {
  for (const auto& h : o.hosts)
    if (std::none_of(hosts.begin(), hosts.end(), [&](const HostPattern& mine) { return mine.match_covers(h); }))
      return false;
  if (!methods.empty()) {
    if (o.methods.empty()) return false;
    for (const auto& m : o.methods)
      if (std::find(methods.begin(), methods.end(), m) == methods.end()) return false;
  }
  if (!paths.empty()) {
    if (o.paths.empty()) return false;
    for (const auto& p : o.paths)
      if (std::none_of(paths.begin(), paths.end(), [&](const PathGlob& mine) { return mine.covers(p); }))
        return false;
  }
  return true;
}

std::vector<std::string> Rule::template_secrets() const {
  std::vector<std::string> out;
  for (const auto* items : {&inject_headers, &inject_query})
    for (const auto& item : *items)
      for (const auto& n : item.value.secret_names())
        if (std::find(out.begin(), out.end(), n) == out.end()) out.push_back(n);
  return out;
}

std::string Route::map_target(std::string_view target) const {
  return base_path + std::string(target.substr(prefix.size()));
}

PolicySnapshot::PolicySnapshot(Action default_action, std::map<std::string, Binding, std::less<>> bindings,
                               std::vector<Route> routes, std::vector<Rule> rules)
    : default_(default_action), bindings_(std::move(bindings)), routes_(std::move(routes)), rules_(std::move(rules)) {}

Decision PolicySnapshot::decide(const Destination& d, std::string_view method, std::string_view target) const {
  std::string_view path = target.substr(0, target.find('?'));
  std::string normalized;
  if (!path_is_normal(path)) path = normalized = normalize_path(target);
  Decision out;
  out.destination = d;
  out.action = default_;
  for (const auto& r : rules_) {
    if (!r.match.matches(d, method, path)) continue;
    out.rule = &r;
    out.action = r.action;
    break;
  }
  if (out.rule && out.rule->upgrade_tls && out.action != Action::deny && !d.tls) {
    out.destination = d.upgraded_to_tls();
    out.upgraded = true;
  }
  return out;
}

ConnectDecision PolicySnapshot::decide_connect(const Destination& d) const {
  // Walk the rules this host can reach, up to the first that applies to every request.
  bool any_allow = false, any_deny = false, any_inject = false;
  auto note = [&](Action a) {
    any_allow |= a == Action::allow;
    any_deny |= a == Action::deny;
    any_inject |= a == Action::inject;
  };
  const Rule* decider = nullptr;
  bool narrowed_seen = false;
  for (const auto& r : rules_) {
    if (!r.match.matches_host(d)) continue;
    note(r.action);
    if (!r.match.narrowed()) {
      decider = &r;
      break;
    }
    narrowed_seen = true;
  }
  if (!decider) note(default_);
  ConnectDecision out;
  if (!narrowed_seen) out.rule = decider;
  if (any_inject || (any_allow && any_deny)) out.kind = ConnectDecision::Kind::intercept;
  else if (any_allow) out.kind = ConnectDecision::Kind::tunnel;
  else out.kind = ConnectDecision::Kind::deny;
  return out;
}

const Route* PolicySnapshot::route_for(std::string_view target) const {
  auto path = target.substr(0, target.find('?'));
  const Route* best = nullptr;
  for (const auto& r : routes_)
    if (path.starts_with(r.prefix) && (!best || r.prefix.size() > best->prefix.size())) best = &r;
  return best;
}

const Binding* PolicySnapshot::binding(std::string_view name) const {
  auto it = bindings_.find(name);
  return it == bindings_.end() ? nullptr : &it->second;
}

const Rule* PolicySnapshot::rule(std::string_view name) const {
  for (const auto& r : rules_)
    if (r.name == name) return &r;
  return nullptr;
}

}  // namespace sidekey::policy
