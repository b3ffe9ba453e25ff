#include "policy/loader.hpp"

#include <algorithm>
#include <optional>

#include "core/encoding.hpp"
#include "secrets/secret_name.hpp"

namespace sidekey::policy {
namespace {

// Headers sidekey owns on the upstream leg; a template may not set them.
constexpr std::string_view kReservedHeaders[] = {
    "host",  "connection", "keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate",
    "te",    "trailer",    "upgrade",    "transfer-encoding", "content-length"};

bool is_token(std::string_view s) { return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar); }

bool valid_rule_name(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.' || c == ':' || c == '/';
  });
}

SourcePosition position_of(const YAML::Node& n) {
  auto m = n.Mark();
  return {m.line >= 0 ? m.line + 1 : 1, m.column >= 0 ? m.column + 1 : 1};
}

// The key node of `key` in map `map`, for errors about the key itself.
YAML::Node key_node(const YAML::Node& map, std::string_view key) {
  for (const auto& kv : map)
    if (kv.first.IsScalar() && kv.first.Scalar() == key) return kv.first;
  return map;
}

class Loader {
 public:
  Loader(const std::string& file) : y_(file) {}

  template <class... Allowed>
  void expect_map(const YAML::Node& node, const std::string& what, Allowed... allowed) {
    if constexpr (sizeof...(allowed) == 0) y_.expect_map(node, what);
    else y_.expect_map(node, what, {std::string_view(allowed)...});
  }

  LoadResult load(const std::string& text) {
    const YAML::Node root = y_.parse(text);
    if (!root.IsDefined() || root.IsNull()) y_.fail(root, "policy is empty (expected at least 'version: 1')");
    expect_map(root, "policy", "version", "default", "secrets", "routes", "rules");
    if (!root.IsMap()) y_.fail(root, "policy must be a mapping");

    const YAML::Node version = root["version"];
    if (!version) y_.fail(root, "missing 'version: 1'");
    if (!version.IsScalar() || version.Scalar() != "1")
      y_.fail(version, "unsupported policy version (this sidekey reads version: 1)");

    Action default_action = Action::deny;
    if (const YAML::Node d = root["default"]; d) {
      std::string s = y_.string(d, "default");
      if (s == "deny") default_action = Action::deny;
      else if (s == "allow") default_action = Action::allow;
      else y_.fail(d, "default must be deny or allow");
    }

    if (const YAML::Node s = root["secrets"]; s) load_secrets(s);
    std::vector<Route> routes;
    if (const YAML::Node r = root["routes"]; r) routes = load_routes(r);
    std::vector<Rule> rules;
    if (const YAML::Node r = root["rules"]; r) rules = load_rules(r);
    derive_bindings(rules);
    LoadResult out;
    out.warnings = shadowing_warnings(rules);
    out.policy = std::make_shared<const PolicySnapshot>(default_action, std::move(bindings_), std::move(routes),
                                                        std::move(rules));
    return out;
  }

 private:
  std::optional<HostPattern> host_pattern(const YAML::Node& n, std::string_view what) {
    std::string why;
    auto p = HostPattern::parse(y_.string(n, what), &why);
    if (!p) y_.fail(n, why);
    return p;
  }

  std::vector<HostPattern> host_list(const YAML::Node& n, std::string_view what, bool required_nonempty) {
    y_.expect_sequence(n, what);
    if (required_nonempty && n.size() == 0) y_.fail(n, std::string(what) + " must list at least one host");
    std::vector<HostPattern> out;
    for (const auto& item : n) out.push_back(*host_pattern(item, std::string(what) + " entries"));
    return out;
  }

  void load_secrets(const YAML::Node& node) {
    expect_map(node, "secrets");
    for (const auto& kv : node) {
      const std::string name = y_.string(kv.first, "secret name");
      if (!secrets::valid_secret_name(name))
        y_.fail(kv.first, "secret name '" + name + "' must match [A-Za-z0-9_][A-Za-z0-9_.-/]{0,127}");
      expect_map(kv.second, "secrets." + name, "hosts");
      const YAML::Node hosts = kv.second["hosts"];
      if (!hosts) y_.fail(kv.second.IsNull() ? kv.first : kv.second, "secrets." + name + " needs 'hosts'");
      Binding b;
      b.declared = true;
      b.hosts = host_list(hosts, "secrets." + name + ".hosts", false);
      bindings_.emplace(name, std::move(b));
    }
  }

  std::vector<Route> load_routes(const YAML::Node& node) {
    y_.expect_sequence(node, "routes");
    std::vector<Route> routes;
    for (const auto& item : node) {
      expect_map(item, "route", "prefix", "upstream");
      if (!item.IsMap()) y_.fail(item, "route must be a mapping with prefix and upstream");
      const YAML::Node prefix = item["prefix"], upstream = item["upstream"];
      if (!prefix) y_.fail(item, "route needs 'prefix'");
      if (!upstream) y_.fail(item, "route needs 'upstream'");
      Route r;
      r.position = position_of(item);
      r.prefix = y_.string(prefix, "route prefix");
      if (r.prefix.size() < 2 || r.prefix.front() != '/' || r.prefix.back() != '/')
        y_.fail(prefix, "route prefix must start and end with '/' (e.g. /openai/)");
      if (r.prefix.find_first_of("?#* \t") != std::string::npos)
        y_.fail(prefix, "route prefix must be a plain path (no '?', '#', '*' or spaces)");
      for (const auto& other : routes)
        if (other.prefix == r.prefix)
          y_.fail(prefix, "duplicate route prefix '" + r.prefix + "' (first at line " +
                              std::to_string(other.position.line) + ")");
      r.upstream = y_.string(upstream, "route upstream");
      auto url = parse_absolute_url(r.upstream);
      if (!url) y_.fail(upstream, "route upstream must be an http:// or https:// URL (e.g. https://api.openai.com/)");
      if (url->target.find('?') != std::string::npos) y_.fail(upstream, "route upstream must not have a query");
      r.destination = url->destination;
      r.base_path = url->target;
      if (r.base_path.back() != '/') r.base_path += '/';
      routes.push_back(std::move(r));
    }
    return routes;
  }

  std::vector<Rule> load_rules(const YAML::Node& node) {
    y_.expect_sequence(node, "rules");
    std::vector<Rule> rules;
    for (const auto& item : node) rules.push_back(load_rule(item, rules));
    return rules;
  }

  Rule load_rule(const YAML::Node& item, const std::vector<Rule>& earlier) {
    expect_map(item, "rule", "name", "match", "action", "inject", "references", "require_reference", "upgrade_tls",
               "scrub");
    if (!item.IsMap()) y_.fail(item, "rule must be a mapping");
    Rule r;
    r.position = position_of(item);

    const YAML::Node name = item["name"];
    if (!name) y_.fail(item, "rule needs a 'name'");
    r.name = y_.string(name, "rule name");
    if (!valid_rule_name(r.name))
      y_.fail(name, "rule name must be 1 to 64 characters of [A-Za-z0-9_.:/-]");
    for (const auto& e : earlier)
      if (e.name == r.name)
        y_.fail(name, "duplicate rule name '" + r.name + "' (first at line " + std::to_string(e.position.line) + ")");

    const YAML::Node match = item["match"];
    if (!match) y_.fail(item, "rule '" + r.name + "' needs 'match' with 'hosts'");
    r.match = load_match(match, r.name);

    if (const YAML::Node a = item["action"]; a) {
      std::string s = y_.string(a, "action");
      if (s == "inject") r.action = Action::inject;
      else if (s == "allow") r.action = Action::allow;
      else if (s == "deny") r.action = Action::deny;
      else y_.fail(a, "unknown action '" + s + "' (expected inject, allow or deny)");
    }

    auto inject_only = [&](std::string_view key) {
      if (item[std::string(key)] && r.action != Action::inject)
        y_.fail(key_node(item, key), std::string(key) + " applies only to inject rules (rule '" + r.name + "' is " +
                                         std::string(to_string(r.action)) + ")");
    };
    for (auto key : {"inject", "references", "require_reference", "scrub"}) inject_only(key);

    if (const YAML::Node inj = item["inject"]; inj) load_inject(inj, r);
    if (const YAML::Node refs = item["references"]; refs) {
      y_.expect_sequence(refs, "references");
      r.references = 0;
      for (const auto& p : refs) {
        std::string s = y_.string(p, "references entries");
        if (s == "headers") r.references |= kHeaders;
        else if (s == "query") r.references |= kQuery;
        else if (s == "body") r.references |= kBody;
        else y_.fail(p, "unknown reference place '" + s + "' (expected headers, query or body)");
      }
    }
    if (const YAML::Node n = item["require_reference"]; n) r.require_reference = y_.boolean(n, "require_reference");
    if (const YAML::Node n = item["scrub"]; n) r.scrub = y_.boolean(n, "scrub");
    if (const YAML::Node n = item["upgrade_tls"]; n) {
      if (r.action == Action::deny) y_.fail(key_node(item, "upgrade_tls"), "upgrade_tls has no effect on a deny rule");
      r.upgrade_tls = y_.boolean(n, "upgrade_tls");
    }
    if (r.require_reference && r.references == 0)
      y_.fail(item["require_reference"], "require_reference needs at least one place in 'references'");
    return r;
  }

  Match load_match(const YAML::Node& node, const std::string& rule) {
    expect_map(node, "match", "hosts", "methods", "paths");
    const YAML::Node hosts = node["hosts"];
    if (!node.IsMap() || !hosts) y_.fail(node, "match of rule '" + rule + "' needs 'hosts'");
    Match m;
    m.hosts = host_list(hosts, "match.hosts", true);
    if (const YAML::Node methods = node["methods"]; methods) {
      y_.expect_sequence(methods, "match.methods");
      for (const auto& item : methods) {
        std::string s = y_.string(item, "match.methods entries");
        if (!is_token(s)) y_.fail(item, "method '" + s + "' is not an HTTP method token");
        for (auto& c : s)
          if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
        if (std::find(m.methods.begin(), m.methods.end(), s) == m.methods.end()) m.methods.push_back(s);
      }
    }
    if (const YAML::Node paths = node["paths"]; paths) {
      y_.expect_sequence(paths, "match.paths");
      for (const auto& item : paths) {
        std::string why;
        auto g = PathGlob::parse(y_.string(item, "match.paths entries"), &why);
        if (!g) y_.fail(item, why);
        m.paths.push_back(std::move(*g));
      }
    }
    return m;
  }

  Template template_at(const YAML::Node& n, std::string_view what) {
    std::string text = y_.string(n, what);
    auto t = Template::parse(text);
    if (auto* err = std::get_if<std::string>(&t)) y_.fail(n, std::string(what) + ": " + *err);
    return std::get<Template>(std::move(t));
  }

  void check_binding_covers(const YAML::Node& at, const Template& t, const Rule& r) {
    for (const auto& secret : t.secret_names()) {
      auto it = bindings_.find(secret);
      if (it == bindings_.end()) continue;  // no entry: the binding is derived from this very rule
      for (const auto& h : r.match.hosts) {
        bool covered = std::any_of(it->second.hosts.begin(), it->second.hosts.end(),
                                   [&](const HostPattern& b) { return b.covers(h); });
        if (!covered)
          y_.fail(at, "rule '" + r.name + "' injects secret '" + secret + "' at host '" + h.text() +
                          "', which its binding (secrets." + secret + ".hosts) does not cover");
      }
    }
  }

  void load_inject(const YAML::Node& node, Rule& r) {
    expect_map(node, "inject", "headers", "query");
    if (const YAML::Node headers = node["headers"]; headers) {
      expect_map(headers, "inject.headers");
      for (const auto& kv : headers) {
        std::string name = y_.string(kv.first, "header name");
        if (!is_token(name)) y_.fail(kv.first, "'" + name + "' is not a valid header name");
        std::string lower = ascii_lower(name);
        if (std::find(std::begin(kReservedHeaders), std::end(kReservedHeaders), lower) != std::end(kReservedHeaders))
          y_.fail(kv.first, "header '" + name + "' is managed by sidekey and cannot be injected");
        for (const auto& e : r.inject_headers)
          if (iequals(e.name, name)) y_.fail(kv.first, "header '" + name + "' is injected twice");
        std::string what = "inject.headers." + name;
        Template t = template_at(kv.second, what);
        for (unsigned char c : t.source())
          if ((c < 0x20 && c != '\t') || c == 0x7f) y_.fail(kv.second, what + " holds a control character");
        check_binding_covers(kv.second, t, r);
        std::string audit = "header:" + name;
        r.inject_headers.push_back({std::move(name), std::move(t), std::move(audit)});
      }
    }
    if (const YAML::Node query = node["query"]; query) {
      expect_map(query, "inject.query");
      for (const auto& kv : query) {
        std::string key = y_.string(kv.first, "query key");
        if (key.empty()) y_.fail(kv.first, "query key must not be empty");
        std::string what = "inject.query." + key;
        Template t = template_at(kv.second, what);
        check_binding_covers(kv.second, t, r);
        std::string audit = "query:" + key;
        r.inject_query.push_back({std::move(key), std::move(t), std::move(audit)});
      }
    }
  }

  // Secrets without a `secrets:` entry are bound to the hosts of the rules whose templates name them.
  void derive_bindings(const std::vector<Rule>& rules) {
    for (const auto& r : rules) {
      if (r.action != Action::inject) continue;
      for (const auto& secret : r.template_secrets()) {
        auto [it, inserted] = bindings_.try_emplace(secret);
        Binding& b = it->second;
        if (b.declared) continue;
        for (const auto& h : r.match.hosts)
          if (std::none_of(b.hosts.begin(), b.hosts.end(), [&](const HostPattern& x) { return x.text() == h.text(); }))
            b.hosts.push_back(h);
      }
    }
  }

  std::vector<PositionedError> shadowing_warnings(const std::vector<Rule>& rules) {
    std::vector<PositionedError> out;
    for (std::size_t j = 0; j < rules.size(); ++j)
      for (std::size_t i = 0; i < j; ++i)
        if (rules[i].match.covers(rules[j].match)) {
          out.emplace_back(y_.file(), rules[j].position.line, rules[j].position.column,
                           "rule '" + rules[j].name + "' can never match: rule '" + rules[i].name + "' (line " +
                               std::to_string(rules[i].position.line) + ") matches every request it does");
          break;
        }
    return out;
  }

  YamlReader y_;
  std::map<std::string, Binding, std::less<>> bindings_;
};

}  // namespace

LoadResult load_policy(const std::string& text, const std::string& file_name) {
  return Loader(file_name).load(text);
}

}  // namespace sidekey::policy
