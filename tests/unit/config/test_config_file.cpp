#include <boost/test/unit_test.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "config/config.hpp"
#include "core/yaml_util.hpp"

namespace fs = std::filesystem;
using namespace sidekey;

namespace {
struct TempConfig {
  fs::path dir;
  TempConfig() {
    char tmpl[] = "/tmp/sidekey-config-XXXXXX";
    dir = ::mkdtemp(tmpl);
  }
  ~TempConfig() { fs::remove_all(dir); }
  fs::path write(const std::string& text) {
    auto p = dir / "sidekey.yaml";
    std::ofstream(p) << text;
    return p;
  }
};

// Loads `text` and returns "line:column: message" of the error it must produce.
std::string error_of(const std::string& text) {
  TempConfig t;
  auto p = t.write(text);
  try {
    config::load(p);
  } catch (const PositionedError& e) {
    BOOST_TEST(e.file() == p.string());
    return std::to_string(e.line()) + ":" + std::to_string(e.column()) + ": " + e.message();
  }
  BOOST_FAIL("no error for: " + text);
  return {};
}
}  // namespace

BOOST_AUTO_TEST_SUITE(config_file)

BOOST_AUTO_TEST_CASE(defaults_match_the_spec) {
  auto c = config::defaults();
  BOOST_TEST(c.listen_proxy.to_string() == "127.0.0.1:3128");
  BOOST_TEST(c.listen_api.to_string() == "127.0.0.1:8000");
  BOOST_TEST(c.listen_admin.to_string() == "127.0.0.1:9901");
  BOOST_TEST(c.max_connections == 10000u);
  BOOST_TEST(c.max_header_bytes == 65536u);
  BOOST_TEST(c.connect_timeout.count() == 10000);
  BOOST_TEST(c.idle_timeout.count() == 60000);
  BOOST_TEST(c.request_timeout.count() == 300000);
  BOOST_TEST(c.tls_leaf_ttl.count() == 24 * 3600 * 1000);
  BOOST_TEST(c.api_auth);
  BOOST_TEST(c.tls_upstream_verify);
}

BOOST_AUTO_TEST_CASE(full_file_loads_and_paths_resolve_against_its_folder) {
  TempConfig t;
  auto p = t.write(R"(
listen: { proxy: "127.0.0.1:0", api: "[::1]:8001", admin: ":9902" }
data_dir: ./data
policy: policies/p.yaml
agent: { upstream: "http://127.0.0.1:8001" }
api: { auth: none, token_file: tok }
store: { key_file: /etc/sidekey/key }
sources:
  - env: { prefix: MY_ }
  - dir: { path: /var/run/secrets/sidekey }
tls: { ca_cert: ca.pem, ca_key: ca.key, leaf_ttl: 12h, upstream_ca_file: up.pem, upstream_verify: false }
egress: { allow_private: ["127.0.0.0/8", "fc00::/7"], resolve: { "api.openai.com:443": "127.0.0.1:18443" } }
limits: { max_connections: 5, max_header_bytes: 2048, connect_timeout: 2s, idle_timeout: 500ms, request_timeout: 1m }
workers: 3
log: { level: debug, audit: audit.log }
)");
  auto c = config::load(p);
  BOOST_TEST(c.listen_proxy.port == 0);
  BOOST_TEST(c.listen_api.to_string() == "[::1]:8001");
  BOOST_TEST(c.listen_admin.to_string() == "127.0.0.1:9902");
  BOOST_TEST(c.data_dir == t.dir / "data");
  BOOST_TEST(c.policy == t.dir / "policies/p.yaml");
  BOOST_TEST(c.agent_upstream == "http://127.0.0.1:8001");
  BOOST_TEST(!c.api_auth);
  BOOST_TEST(c.api_token_file == t.dir / "tok");
  BOOST_TEST(c.store_key_file == fs::path("/etc/sidekey/key"));
  BOOST_REQUIRE(c.sources.size() == 2u);
  BOOST_TEST(c.sources[0].prefix == "MY_");
  BOOST_TEST(c.sources[1].path == fs::path("/var/run/secrets/sidekey"));
  BOOST_TEST(c.tls_leaf_ttl.count() == 12 * 3600 * 1000);
  BOOST_TEST(!c.tls_upstream_verify);
  BOOST_TEST(c.egress_allow_private.size() == 2u);
  BOOST_TEST(c.egress_resolve.at("api.openai.com:443") == "127.0.0.1:18443");
  BOOST_TEST(c.max_connections == 5u);
  BOOST_TEST(c.idle_timeout.count() == 500);
  BOOST_TEST(c.request_timeout.count() == 60000);
  BOOST_TEST(c.workers == 3u);
  BOOST_TEST(c.effective_workers() == 3u);
  BOOST_TEST((c.log_level == log::Level::debug));
  BOOST_TEST(c.log_audit == (t.dir / "audit.log").string());
}

BOOST_AUTO_TEST_CASE(empty_file_is_the_defaults) {
  TempConfig t;
  auto c = config::load(t.write(""));
  BOOST_TEST(c.listen_proxy.to_string() == "127.0.0.1:3128");
  BOOST_TEST(c.data_dir == t.dir / "sidekey-data");
}

BOOST_AUTO_TEST_CASE(errors_name_line_and_column) {
  BOOST_TEST(error_of("listen: {}\nbogus: 1\n") == "2:1: unknown key 'bogus' in configuration (known: listen, data_dir, "
                                                   "policy, agent, api, store, sources, tls, egress, limits, workers, log)");
  BOOST_TEST(error_of("listen:\n  proxy: nope\n").rfind("2:10: listen.proxy must be host:port", 0) == 0);
  BOOST_TEST(error_of("listen:\n  prox: 1.2.3.4:1\n").rfind("2:3: unknown key 'prox' in listen", 0) == 0);
  BOOST_TEST(error_of("limits:\n  idle_timeout: soon\n").rfind("2:17: limits.idle_timeout must be a duration", 0) == 0);
  BOOST_TEST(error_of("limits: { max_connections: 0 }\n").rfind("1:28: limits.max_connections must be an integer", 0) == 0);
  BOOST_TEST(error_of("workers: many\n").rfind("1:10: workers must be an integer", 0) == 0);
  BOOST_TEST(error_of("api: { auth: maybe }\n").rfind("1:14: api.auth must be token or none", 0) == 0);
  BOOST_TEST(error_of("egress:\n  allow_private: [\"10.0.0.0/33\"]\n").rfind("2:19: not a CIDR range", 0) == 0);
  BOOST_TEST(error_of("egress:\n  resolve: { \"api.openai.com\": \"127.0.0.1:1\" }\n").rfind("2:14: egress.resolve keys", 0) == 0);
  BOOST_TEST(error_of("egress:\n  resolve: { \"a.com:443\": \"localhost:1\" }\n").rfind("2:27: egress.resolve values", 0) == 0);
  BOOST_TEST(error_of("tls: { leaf_ttl: 1s }\n").rfind("1:18: tls.leaf_ttl must be a duration from 5m to 397d", 0) == 0);
  // Timeouts of zero (every connection closed at once) or past what a timer can hold.
  BOOST_TEST(error_of("limits: { idle_timeout: 0 }\n").rfind("1:25: limits.idle_timeout must be a duration from 1ms to 30d", 0) == 0);
  BOOST_TEST(error_of("limits: { idle_timeout: 10000000000 }\n").rfind("1:25: limits.idle_timeout must be a duration", 0) == 0);
  BOOST_TEST(error_of("limits: { connect_timeout: 0ms }\n").rfind("1:28: limits.connect_timeout must be a duration", 0) == 0);
  BOOST_TEST(error_of("limits: { request_timeout: 31d }\n").rfind("1:28: limits.request_timeout must be a duration", 0) == 0);
  BOOST_TEST(error_of("limits: { request_timeout: 99999999999999d }\n").rfind("1:28: limits.request_timeout must be", 0) == 0);
  // A repeated key is refused, not shadowed by the first.
  BOOST_TEST(error_of("data_dir: ./a\ndata_dir: ./b\n") == "2:1: duplicate key 'data_dir' in configuration");
  BOOST_TEST(error_of("api: { auth: token, auth: none }\n").rfind("1:21: duplicate key 'auth' in api", 0) == 0);
  BOOST_TEST(error_of("tls: { upstream_verify: yes please }\n").rfind("1:25: tls.upstream_verify must be true or false", 0) == 0);
  BOOST_TEST(error_of("tls: { ca_cert: a.pem }\n").rfind("1:6: tls.ca_cert and tls.ca_key must be given together", 0) == 0);
  BOOST_TEST(error_of("sources:\n  - env: {}\n    dir: {path: x}\n").rfind("2:5: each sources entry is exactly one", 0) == 0);
  BOOST_TEST(error_of("sources:\n  - file: {}\n").rfind("2:5: unknown key 'file' in sources entry", 0) == 0);
  BOOST_TEST(error_of("log: { level: loud }\n").rfind("1:15: log.level must be", 0) == 0);
  BOOST_TEST(error_of("agent: { upstream: ftp://x }\n").rfind("1:20: agent.upstream must be an http", 0) == 0);
  BOOST_TEST(error_of("listen: [1, 2]\n").rfind("1:9: listen must be a mapping", 0) == 0);
  // A syntax error is positioned too.
  BOOST_TEST(error_of("listen: {proxy: \"x\"\n").rfind("2:1: ", 0) == 0);
}

BOOST_AUTO_TEST_CASE(endpoint_parsing) {
  BOOST_TEST(config::parse_endpoint("0.0.0.0:80")->to_string() == "0.0.0.0:80");
  BOOST_TEST(config::parse_endpoint("[::]:0")->to_string() == "[::]:0");
  BOOST_TEST(config::parse_endpoint("localhost:8000")->host == "localhost");
  BOOST_TEST(!config::parse_endpoint("::1:80"));
  BOOST_TEST(!config::parse_endpoint("host"));
  BOOST_TEST(!config::parse_endpoint("host:65536"));
  BOOST_TEST(!config::parse_endpoint("host:-1"));
  BOOST_TEST(!config::parse_endpoint("ho st:1"));
}

BOOST_AUTO_TEST_CASE(overrides_win_over_the_file) {
  TempConfig t;
  auto p = t.write("listen: { proxy: \"127.0.0.1:1\" }\n");
  config::Overrides o;
  o.listen_proxy = "127.0.0.1:2";
  o.data_dir = "/tmp/x";
  auto c = config::resolve(p.string(), o);
  BOOST_TEST(c.listen_proxy.port == 2);
  BOOST_TEST(c.data_dir == fs::path("/tmp/x"));
  o.listen_api = "bad";
  BOOST_CHECK_THROW(config::resolve(p.string(), o), std::invalid_argument);
}

BOOST_AUTO_TEST_SUITE_END()
