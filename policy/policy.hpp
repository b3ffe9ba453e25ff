#pragma once
// The policy model (SPEC section 4) and the per-request decision. A PolicySnapshot is immutable
// once built by the loader: share it as std::shared_ptr<const PolicySnapshot> and swap the
// pointer atomically on reload; a Decision points into the snapshot it came from, so hold the
// snapshot for as long as the decision.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "policy/destination.hpp"
#include "policy/host_pattern.hpp"
#include "policy/path_glob.hpp"
#include "policy/reference.hpp"

namespace sidekey::policy {

enum class Action { inject, allow, deny };
std::string_view to_string(Action a);

// Where agent-written references are substituted (`references:`), as bit flags.
enum Place : unsigned { kHeaders = 1, kQuery = 2, kBody = 4 };
std::string_view place_name(Place p);

struct SourcePosition {
  int line = 0, column = 0;  // 1-based, as in the file; 0 when built in code
};

struct Match {
  std::vector<HostPattern> hosts;
  std::vector<std::string> methods;  // empty = any; upper case
  std::vector<PathGlob> paths;       // empty = any

  bool matches(const Destination& d, std::string_view method, std::string_view normalized_path) const;
  bool matches_host(const Destination& d) const;
  // Has method or path conditions, so a CONNECT alone cannot decide it.
  bool narrowed() const { return !methods.empty() || !paths.empty(); }
  // Every request `other` matches, this matches too (sound, for the shadowing warning).
  bool covers(const Match& other) const;
};

struct InjectItem {
  std::string name;  // header name as written, or query key
  Template value;
  std::string audit;  // "header:NAME" or "query:NAME", the audit line's `injected` entry
};

struct Rule {
  std::string name;
  Match match;
  Action action = Action::inject;
  std::vector<InjectItem> inject_headers;
  std::vector<InjectItem> inject_query;
  unsigned references = kHeaders | kQuery;
  bool require_reference = false;  // checked on headers and query; see BodySubstituter::found_reference
  bool upgrade_tls = false;  // plain-HTTP requests go upstream over TLS (inject and allow rules)
  bool scrub = true;
  SourcePosition position;

  bool references_allowed(Place p) const { return (references & p) != 0; }
  // Distinct secret names its templates use.
  std::vector<std::string> template_secrets() const;
};

// Where a secret's plaintext may go: the `secrets:` entry, or the hosts of the rules whose
// templates name it.
struct Binding {
  std::vector<HostPattern> hosts;
  bool declared = false;  // from `secrets:` (else derived from rules)
};

struct Route {
  std::string prefix;         // starts and ends with '/'
  std::string upstream;       // as written
  Destination destination;    // the upstream's scheme, host and port
  std::string base_path;      // the upstream URL's path, ending with '/'
  SourcePosition position;

  // "/openai/v1/models?x=1" → "/v1/models?x=1" for prefix "/openai/" and upstream path "/".
  std::string map_target(std::string_view target) const;
};

struct Decision {
  Action action = Action::deny;
  const Rule* rule = nullptr;  // nullptr: no rule matched, `default` applied
  Destination destination;     // as the upstream leg will use it (after upgrade_tls)
  bool upgraded = false;       // plain HTTP sent upstream over TLS by upgrade_tls

  std::string_view rule_name() const { return rule ? std::string_view(rule->name) : std::string_view{}; }
};

// What a CONNECT gets. A host whose rules depend on method or path must be intercepted so each
// inner request can be decided; a host whose every possible outcome is allow is tunneled blind.
struct ConnectDecision {
  enum class Kind { tunnel, intercept, deny } kind = Kind::deny;
  const Rule* rule = nullptr;  // the deciding rule when one alone decides
  std::string_view rule_name() const { return rule ? std::string_view(rule->name) : std::string_view{}; }
};

class PolicySnapshot {
 public:
  PolicySnapshot(Action default_action, std::map<std::string, Binding, std::less<>> bindings,
                 std::vector<Route> routes, std::vector<Rule> rules);

  Action default_action() const { return default_; }
  const std::vector<Rule>& rules() const { return rules_; }
  const std::vector<Route>& routes() const { return routes_; }
  const std::map<std::string, Binding, std::less<>>& bindings() const { return bindings_; }

  // First matching rule wins; `target` is the origin-form target (its query is ignored).
  Decision decide(const Destination& d, std::string_view method, std::string_view target) const;
  ConnectDecision decide_connect(const Destination& d) const;

  // The route whose prefix the target's path starts with; the longest prefix wins.
  const Route* route_for(std::string_view target) const;
  // The policy's binding for a secret's binding name, or nullptr when it has none.
  const Binding* binding(std::string_view binding_name) const;
  const Rule* rule(std::string_view name) const;

 private:
  Action default_;
  std::map<std::string, Binding, std::less<>> bindings_;
  std::vector<Route> routes_;
  std::vector<Rule> rules_;
};

using PolicyPtr = std::shared_ptr<const PolicySnapshot>;

}  // namespace sidekey::policy
