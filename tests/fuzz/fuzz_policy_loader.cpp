// libFuzzer target for the policy loader (policy/loader.hpp) and what runs on a loaded policy.
//
// Input: arbitrary text, read as policy.yaml.
// Checks, aborting on failure:
// - load_policy either returns a policy or throws PositionedError naming the file and a line
//   and column >= 1; any other exception is a bug (it would escape `sidekey policy check` or a
//   reload as something other than a positioned message);
// - on a loaded policy, for a fixed set of destinations plus the hosts, ports and route
//   upstreams the policy itself names: decide() with a few methods and targets,
//   decide_connect(), route_for()/map_target(), rewrite() (no secrets known) and explain() do
//   not crash, and their results are consistent:
//     * a decision's rule is one of the policy's rules and its action the rule's action; with no
//       rule the action is the default; decision.destination keeps the host;
//     * a rewrite either refuses or keeps the method, sets exactly one Host (first) and forwards
//       no Proxy-Authorization, Proxy-Connection, Keep-Alive, TE or Trailer header;
//     * a deny decision always refuses with policy_denied; an allow decision never puts a secret
//       in the plan.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "core/encoding.hpp"
#include "policy/explain.hpp"
#include "policy/loader.hpp"
#include "policy/rewrite.hpp"

using namespace sidekey::policy;

namespace {

[[noreturn]] void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "fuzz_policy_loader: %s %.*s\n", what, static_cast<int>(detail.size()), detail.data());
  std::abort();
}
void check(bool ok, const char* what) {
  if (!ok) fail(what);
}

struct NoSecrets final : SecretLookup {
  const sidekey::secrets::SecretEntry* find(std::string_view) const override { return nullptr; }
};

void exercise(const PolicySnapshot& p, const Destination& d) {
  static const char* const kMethods[] = {"GET", "POST", "DELETE", "PATCH"};
  static const char* const kTargets[] = {"/", "/v1/chat/completions?x=1", "/a/b/../c", "/%2e%2e/x?key={{secrets.a}}",
                                         "/openai/v1/models"};
  // The request heads do not depend on the input: built once, not per destination and input.
  static const std::vector<RequestHead> kHeads = [] {
    std::vector<RequestHead> heads;
    for (const char* method : kMethods)
      for (const char* target : kTargets)
        heads.push_back({method, target, {{"Host", "ignored"}, {"Proxy-Authorization", "Basic eA=="},
                                          {"Connection", "keep-alive, x-drop"}, {"X-Drop", "1"},
                                          {"Authorization", "Bearer {{secrets.a}}"}, {"Keep-Alive", "5"},
                                          {"Content-Type", "application/json"}, {"Content-Length", "2"}}});
    return heads;
  }();
  NoSecrets none;
  for (const RequestHead& head : kHeads) {
    const std::string& method = head.method;
    const std::string& target = head.target;
    Decision dec = p.decide(d, method, target);
    if (dec.rule) {
      check(dec.rule >= p.rules().data() && dec.rule < p.rules().data() + p.rules().size(),
            "decision rule is not one of the policy's rules");
      check(dec.action == dec.rule->action, "decision action differs from its rule's");
    } else {
      check(dec.action == p.default_action(), "decision without rule is not the default");
    }
    check(dec.destination.host == d.host, "decision changed the host");
    auto r = rewrite(p, dec, head, none);
    if (dec.action == Action::deny) {
      check(std::holds_alternative<Refusal>(r) && std::get<Refusal>(r).code == code::policy_denied,
            "deny decision not refused with policy_denied");
      continue;
    }
    if (auto* refusal = std::get_if<Refusal>(&r)) {
      check(refusal->status >= 400 && refusal->status < 600 && refusal->status != 500, "refusal status");
      continue;
    }
    const RewritePlan& plan = std::get<RewritePlan>(r);
    check(plan.method == method, "rewrite changed the method");
    check(!plan.headers.empty() && sidekey::iequals(plan.headers[0].name, "host"), "Host is not the first header");
    check(plan.headers[0].value == dec.destination.host_header(), "Host is not the destination's");
    for (std::size_t i = 1; i < plan.headers.size(); ++i) {
      const auto& n = plan.headers[i].name;
      for (const char* hop : {"host", "proxy-authorization", "proxy-connection", "keep-alive", "te", "trailer", "x-drop"})
        if (sidekey::iequals(n, hop)) fail("a hop-by-hop or second Host header survived:", n);
    }
    if (dec.action == Action::allow) check(plan.secrets.empty() && plan.written().empty(), "allow wrote secrets");
  }
  auto c = p.decide_connect(d);
  if (c.rule)
    check(c.rule >= p.rules().data() && c.rule < p.rules().data() + p.rules().size(), "connect rule not in the policy");
  if (auto* route = p.route_for("/openai/v1/models?x=1")) (void)route->map_target("/openai/v1/models?x=1");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 16384) return 0;
  std::string text(reinterpret_cast<const char*>(data), size);
  LoadResult loaded;
  try {
    loaded = load_policy(text, "fuzz.yaml");
  } catch (const sidekey::PositionedError& e) {
    check(e.file() == "fuzz.yaml" && e.line() >= 1 && e.column() >= 1, "PositionedError without a position");
    check(!e.message().empty(), "PositionedError without a message");
    return 0;
  } catch (const std::exception& e) {
    fail("load_policy threw something other than PositionedError:", e.what());
  } catch (...) {
    fail("load_policy threw a non-standard exception");
  }
  check(loaded.policy != nullptr, "load_policy returned no policy");
  for (const auto& w : loaded.warnings)
    check(w.file() == "fuzz.yaml" && w.line() >= 1 && w.column() >= 1, "warning without a position");
  const PolicySnapshot& p = *loaded.policy;

  std::vector<Destination> dests = {
      {"https", "api.openai.com", 443, true},  {"http", "api.openai.com", 80, false},
      {"https", "example.com", 8443, true},    {"http", "127.0.0.1", 8080, false},
      {"https", "::1", 443, true},             {"https", "169.254.169.254", 443, true},
      {"https", "a.b.example.com", 443, true},
  };
  // The hosts the policy names, at their port or the default ones.
  auto add_pattern = [&](const HostPattern& h) {
    if (dests.size() > 64) return;
    std::string host = h.wildcard() ? "x." + h.host() : h.host();
    std::uint16_t port = h.port().value_or(h.plain_http() ? 80 : 443);
    dests.push_back({"https", host, port, true});
    dests.push_back({"http", host, port, false});
  };
  for (const auto& rule : p.rules())
    for (const auto& h : rule.match.hosts) add_pattern(h);
  for (const auto& [name, binding] : p.bindings())
    for (const auto& h : binding.hosts) add_pattern(h);
  for (const auto& route : p.routes()) dests.push_back(route.destination);

  for (const auto& d : dests) exercise(p, d);

  // explain() on the same policy (no store: every secret assumed present, unbound of its own).
  for (const char* url : {"https://api.openai.com/v1/models", "http://127.0.0.1:8080/x?q={{secrets.a}}",
                          "/openai/v1/models", "api.openai.com:443"}) {
    std::string_view method = std::string_view(url).find("://") == std::string_view::npos && url[0] != '/' ? "CONNECT" : "GET";
    auto j = explain(p, nullptr, method, url, {{"Authorization", "Bearer {{secrets.openai}}"}});
    check(j.is_object(), "explain did not return an object");
  }
  return 0;
}
