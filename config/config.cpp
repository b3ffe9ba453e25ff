#include "config/config.hpp"

#include <cctype>
#include <charconv>
#include <stdexcept>
#include <thread>

#include "core/encoding.hpp"
#include "core/files.hpp"
#include "core/yaml_util.hpp"

namespace sidekey::config {
namespace fs = std::filesystem;

std::string Endpoint::to_string() const {
  bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::optional<Endpoint> parse_endpoint(std::string_view text) {
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  std::string_view host = text.substr(0, colon), port = text.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  else if (host.find(':') != std::string_view::npos) return std::nullopt;  // IPv6 needs brackets
  unsigned p = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (port.empty() || ec != std::errc() || ptr != port.data() + port.size() || p > 65535) return std::nullopt;
  Endpoint e{host.empty() ? "127.0.0.1" : std::string(host), static_cast<std::uint16_t>(p)};
  for (char c : e.host)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':' || c == '_')) return std::nullopt;
  return e;
}

unsigned Config::effective_workers() const {
  if (workers) return workers;
  unsigned n = std::thread::hardware_concurrency();
  return n ? n : 1;
}

Config defaults() { return Config{}; }

namespace {

Endpoint endpoint(const YamlReader& r, const YAML::Node& n, std::string_view what) {
  auto e = parse_endpoint(r.string(n, what));
  if (!e) r.fail(n, std::string(what) + " must be host:port (port 0 picks a free port)");
  return *e;
}

fs::path path_value(const YamlReader& r, const YAML::Node& n, std::string_view what, const fs::path& base) {
  std::string s = r.string(n, what);
  return s.empty() ? fs::path() : resolve_against(base, s);
}

void load_sources(const YamlReader& r, const YAML::Node& list, const fs::path& base, Config& c) {
  if (!list || list.IsNull()) return;
  r.expect_sequence(list, "sources");
  for (const auto& item : list) {
    r.expect_map(item, "sources entry", {"env", "dir"});
    if (item.size() != 1) r.fail(item, "each sources entry is exactly one of env: or dir:");
    if (auto env = item["env"]) {
      r.expect_map(env, "env source", {"prefix"});
      secrets::SourceConfig s{secrets::SourceConfig::Kind::env, "SIDEKEY_SECRET_", {}};
      if (env["prefix"]) s.prefix = r.string(env["prefix"], "env prefix");
      if (s.prefix.empty()) r.fail(env, "env source needs a non-empty prefix");
      c.sources.push_back(s);
    } else {
      auto dir = item["dir"];
      r.expect_map(dir, "dir source", {"path"});
      if (!dir["path"]) r.fail(dir, "dir source needs a path");
      secrets::SourceConfig s{secrets::SourceConfig::Kind::dir, {}, path_value(r, dir["path"], "dir path", base)};
      if (s.path.empty()) r.fail(dir["path"], "dir source needs a non-empty path");
      c.sources.push_back(s);
    }
  }
}

}  // namespace

Config load(const fs::path& file) {
  std::string text = read_file(file);
  YamlReader r(file.string());
  YAML::Node root = r.parse(text);
  Config c = defaults();
  c.file = file;
  fs::path base = file.parent_path();
  c.data_dir = resolve_against(base, c.data_dir);
  c.policy = resolve_against(base, c.policy);
  if (root.IsNull()) return c;
  r.expect_map(root, "configuration",
               {"listen", "data_dir", "policy", "agent", "api", "store", "sources", "tls", "egress", "limits", "workers",
                "log"});

  if (auto l = root["listen"]) {
    r.expect_map(l, "listen", {"proxy", "api", "admin"});
    if (l["proxy"]) c.listen_proxy = endpoint(r, l["proxy"], "listen.proxy");
    if (l["api"]) c.listen_api = endpoint(r, l["api"], "listen.api");
    if (l["admin"]) c.listen_admin = endpoint(r, l["admin"], "listen.admin");
  }
  if (auto n = root["data_dir"]) {
    c.data_dir = path_value(r, n, "data_dir", base);
    if (c.data_dir.empty()) r.fail(n, "data_dir must not be empty");
  }
  if (auto n = root["policy"]) {
    c.policy = path_value(r, n, "policy", base);
    if (c.policy.empty()) r.fail(n, "policy must not be empty");
  }
  if (auto a = root["agent"]) {
    r.expect_map(a, "agent", {"upstream"});
    if (a["upstream"]) {
      c.agent_upstream = r.string(a["upstream"], "agent.upstream");
      if (!c.agent_upstream.empty() && c.agent_upstream.rfind("http://", 0) != 0 &&
          c.agent_upstream.rfind("https://", 0) != 0)
        r.fail(a["upstream"], "agent.upstream must be an http:// or https:// URL");
    }
  }
  if (auto a = root["api"]) {
    r.expect_map(a, "api", {"auth", "token_file"});
    if (auto n = a["auth"]) {
      std::string v = r.string(n, "api.auth");
      if (v != "token" && v != "none") r.fail(n, "api.auth must be token or none");
      c.api_auth = v == "token";
    }
    if (a["token_file"]) c.api_token_file = path_value(r, a["token_file"], "api.token_file", base);
  }
  if (auto s = root["store"]) {
    r.expect_map(s, "store", {"key_file"});
    if (s["key_file"]) c.store_key_file = path_value(r, s["key_file"], "store.key_file", base);
  }
  load_sources(r, root["sources"], base, c);
  if (auto t = root["tls"]) {
    r.expect_map(t, "tls", {"ca_cert", "ca_key", "leaf_ttl", "upstream_ca_file", "upstream_verify"});
    if (t["ca_cert"]) c.tls_ca_cert = path_value(r, t["ca_cert"], "tls.ca_cert", base);
    if (t["ca_key"]) c.tls_ca_key = path_value(r, t["ca_key"], "tls.ca_key", base);
    if (c.tls_ca_cert.empty() != c.tls_ca_key.empty())
      r.fail(t, "tls.ca_cert and tls.ca_key must be given together");
    if (auto n = t["leaf_ttl"]) {
      c.tls_leaf_ttl = r.duration(n, "tls.leaf_ttl", std::chrono::minutes(5), std::chrono::hours(24 * 397));
    }
    if (t["upstream_ca_file"]) c.tls_upstream_ca_file = path_value(r, t["upstream_ca_file"], "tls.upstream_ca_file", base);
    if (t["upstream_verify"]) c.tls_upstream_verify = r.boolean(t["upstream_verify"], "tls.upstream_verify");
  }
  if (auto e = root["egress"]) {
    r.expect_map(e, "egress", {"allow_private", "resolve"});
    if (auto ap = e["allow_private"]) {
      r.expect_sequence(ap, "egress.allow_private");
      for (const auto& item : ap) {
        auto cidr = Cidr::parse(r.string(item, "egress.allow_private entries"));
        if (!cidr) r.fail(item, "not a CIDR range: '" + item.Scalar() + "' (e.g. 127.0.0.0/8, fc00::/7)");
        c.egress_allow_private.push_back(*cidr);
      }
    }
    if (auto res = e["resolve"]) {
      r.expect_map(res, "egress.resolve");
      for (const auto& kv : res) {
        std::string from = r.string(kv.first, "egress.resolve key"), to = r.string(kv.second, "egress.resolve value");
        auto fe = parse_endpoint(from);
        if (!fe || fe->port == 0) r.fail(kv.first, "egress.resolve keys are host:port, e.g. api.openai.com:443");
        auto te = parse_endpoint(to);
        if (!te || te->port == 0 || !IpAddress::parse(te->host))
          r.fail(kv.second, "egress.resolve values are ip:port, e.g. 127.0.0.1:18443");
        c.egress_resolve[ascii_lower(fe->to_string())] = te->to_string();
      }
    }
  }
  if (auto l = root["limits"]) {
    r.expect_map(l, "limits", {"max_connections", "max_header_bytes", "connect_timeout", "idle_timeout", "request_timeout"});
    if (l["max_connections"]) c.max_connections = static_cast<std::uint32_t>(r.integer(l["max_connections"], "limits.max_connections", 1, 1'000'000));
    if (l["max_header_bytes"]) c.max_header_bytes = static_cast<std::uint32_t>(r.integer(l["max_header_bytes"], "limits.max_header_bytes", 1024, 16 << 20));
    if (l["connect_timeout"]) c.connect_timeout = r.duration(l["connect_timeout"], "limits.connect_timeout");
    if (l["idle_timeout"]) c.idle_timeout = r.duration(l["idle_timeout"], "limits.idle_timeout");
    if (l["request_timeout"]) c.request_timeout = r.duration(l["request_timeout"], "limits.request_timeout");
  }
  if (auto w = root["workers"]) c.workers = static_cast<unsigned>(r.integer(w, "workers", 0, 1024));
  if (auto l = root["log"]) {
    r.expect_map(l, "log", {"level", "audit"});
    if (auto n = l["level"]) {
      if (!log::parse_level(r.string(n, "log.level"), c.log_level)) r.fail(n, "log.level must be debug, info, warn or error");
    }
    if (auto n = l["audit"]) {
      std::string v = r.string(n, "log.audit");
      c.log_audit = (v.empty() || v == "stderr") ? "stderr" : resolve_against(base, v).string();
    }
  }
  return c;
}

Config resolve(const std::optional<std::string>& config_file, const Overrides& o) {
  Config c;
  if (config_file) c = load(*config_file);
  else if (fs::exists("sidekey.yaml")) c = load("sidekey.yaml");
  else c = defaults();
  auto ep = [](const std::string& flag, const std::string& v) {
    auto e = parse_endpoint(v);
    if (!e) throw std::invalid_argument(flag + " must be host:port, got '" + v + "'");
    return *e;
  };
  if (o.policy) c.policy = *o.policy;
  if (o.data_dir) c.data_dir = *o.data_dir;
  if (o.listen_proxy) c.listen_proxy = ep("--listen-proxy", *o.listen_proxy);
  if (o.listen_api) c.listen_api = ep("--listen-api", *o.listen_api);
  if (o.listen_admin) c.listen_admin = ep("--listen-admin", *o.listen_admin);
  return c;
}

}  // namespace sidekey::config
