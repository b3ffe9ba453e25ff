#include <boost/test/unit_test.hpp>

#include "policy_test_util.hpp"

using namespace sidekey::policy;
using namespace sidekey::policy::test;

namespace {
const char* kPolicy = R"(
version: 1
default: deny
routes:
  - prefix: /openai/
    upstream: https://api.openai.com/
  - prefix: /openai/beta/
    upstream: https://beta.openai.com/v2
  - prefix: /local/
    upstream: http://127.0.0.1:18080
rules:
  - name: openai-admin
    match: { hosts: [api.openai.com], paths: ["/v1/organization/*"] }
    action: deny
  - name: openai
    match: { hosts: [api.openai.com], methods: [get, POST], paths: ["/v1/*"] }
    inject:
      headers: { Authorization: "Bearer {{secrets.openai}}" }
  - name: packages
    match: { hosts: [pypi.org, "*.pythonhosted.org"] }
    action: allow
  - name: plain-upgrade
    match: { hosts: [api.example.com] }
    upgrade_tls: true
    action: allow
  - name: metadata
    match: { hosts: ["169.254.169.254"] }
    action: deny
)";
}  // namespace

BOOST_AUTO_TEST_SUITE(policy)

BOOST_AUTO_TEST_CASE(first_match_wins) {
  auto p = load(kPolicy);
  auto d = p->decide(https("api.openai.com"), "GET", "/v1/organization/users");
  BOOST_TEST(d.rule_name() == "openai-admin");
  BOOST_TEST((d.action == Action::deny));
  d = p->decide(https("api.openai.com"), "POST", "/v1/chat/completions?stream=true");
  BOOST_TEST(d.rule_name() == "openai");
  BOOST_TEST((d.action == Action::inject));
  BOOST_TEST((d.destination == https("api.openai.com")));
  BOOST_TEST(!d.upgraded);
}

BOOST_AUTO_TEST_CASE(methods_and_paths_narrow) {
  auto p = load(kPolicy);
  BOOST_TEST(p->decide(https("api.openai.com"), "GET", "/v1/models").rule_name() == "openai");  // "get" upper-cased
  auto del = p->decide(https("api.openai.com"), "DELETE", "/v1/models");
  BOOST_TEST(!del.rule);
  BOOST_TEST((del.action == Action::deny));
  BOOST_TEST(!p->decide(https("api.openai.com"), "GET", "/v2/models").rule);
  // Path tricks are normalized before matching.
  BOOST_TEST(p->decide(https("api.openai.com"), "GET", "/v1/../v1/organization/x").rule_name() == "openai-admin");
  BOOST_TEST(p->decide(https("api.openai.com"), "GET", "/%761/organization/x").rule_name() == "openai-admin");
  BOOST_TEST(!p->decide(https("api.openai.com"), "GET", "/v1/../v2/x").rule);
}

BOOST_AUTO_TEST_CASE(default_applies_when_nothing_matches) {
  auto p = load(kPolicy);
  auto d = p->decide(https("example.org"), "GET", "/");
  BOOST_TEST(!d.rule);
  BOOST_TEST((d.action == Action::deny));
  auto allow = load("version: 1\ndefault: allow\n");
  BOOST_TEST((allow->decide(https("example.org"), "GET", "/").action == Action::allow));
  auto implicit = load("version: 1\n");
  BOOST_TEST((implicit->default_action() == Action::deny));
}

BOOST_AUTO_TEST_CASE(wildcards_ports_and_ips) {
  auto p = load(kPolicy);
  BOOST_TEST(p->decide(https("files.pythonhosted.org"), "GET", "/x").rule_name() == "packages");
  BOOST_TEST(!p->decide(https("pythonhosted.org"), "GET", "/x").rule);
  BOOST_TEST(p->decide(http("169.254.169.254"), "GET", "/latest/meta-data").rule_name() == "metadata");
  BOOST_TEST(p->decide(http("169.254.169.254", 8080), "GET", "/").rule_name() == "metadata");
}

BOOST_AUTO_TEST_CASE(upgrade_tls_changes_the_upstream_leg) {
  auto p = load(kPolicy);
  auto d = p->decide(http("api.example.com"), "GET", "/");
  BOOST_TEST(d.upgraded);
  BOOST_TEST(d.destination.tls);
  BOOST_TEST(d.destination.port == 443);
  BOOST_TEST(d.destination.host == "api.example.com");
  auto already = p->decide(https("api.example.com"), "GET", "/");
  BOOST_TEST(!already.upgraded);
}

BOOST_AUTO_TEST_CASE(connect_decisions) {
  auto p = load(kPolicy);
  using K = ConnectDecision::Kind;
  BOOST_TEST((p->decide_connect(https("pypi.org")).kind == K::tunnel));
  BOOST_TEST(p->decide_connect(https("pypi.org")).rule_name() == "packages");
  BOOST_TEST((p->decide_connect(https("api.openai.com")).kind == K::intercept));
  BOOST_TEST((p->decide_connect(https("169.254.169.254")).kind == K::deny));
  BOOST_TEST((p->decide_connect(https("example.org")).kind == K::deny));

  auto narrow_allow = load(R"(
version: 1
default: deny
rules:
  - name: simple-only
    match: { hosts: [pypi.org], paths: ["/simple/*"] }
    action: allow
  - name: gh-deny-admin
    match: { hosts: [api.github.com], paths: ["/admin/*"] }
    action: deny
  - name: gh
    match: { hosts: [api.github.com] }
    action: allow
  - name: x-deny-part
    match: { hosts: [x.com], methods: [DELETE] }
    action: deny
)");
  // allow on some paths, default deny on the rest: must look inside.
  BOOST_TEST((narrow_allow->decide_connect(https("pypi.org")).kind == K::intercept));
  BOOST_TEST(!narrow_allow->decide_connect(https("pypi.org")).rule);
  BOOST_TEST((narrow_allow->decide_connect(https("api.github.com")).kind == K::intercept));
  // Every outcome is deny: refuse the CONNECT itself.
  BOOST_TEST((narrow_allow->decide_connect(https("x.com")).kind == K::deny));

  auto allow_default = load("version: 1\ndefault: allow\n");
  BOOST_TEST((allow_default->decide_connect(https("anything.com")).kind == K::tunnel));
}

BOOST_AUTO_TEST_CASE(routes_longest_prefix) {
  auto p = load(kPolicy);
  const Route* r = p->route_for("/openai/v1/models?x=1");
  BOOST_REQUIRE(r);
  BOOST_TEST(r->prefix == "/openai/");
  BOOST_TEST((r->destination == https("api.openai.com")));
  BOOST_TEST(r->map_target("/openai/v1/models?x=1") == "/v1/models?x=1");
  const Route* beta = p->route_for("/openai/beta/things");
  BOOST_TEST(beta->prefix == "/openai/beta/");
  BOOST_TEST(beta->map_target("/openai/beta/things") == "/v2/things");
  const Route* local = p->route_for("/local/x");
  BOOST_TEST((local->destination == http("127.0.0.1", 18080)));
  BOOST_TEST(local->map_target("/local/x") == "/x");
  BOOST_TEST(!p->route_for("/openai"));
  BOOST_TEST(!p->route_for("/other/"));
  BOOST_TEST(!p->route_for("/x?/openai/"));
}

BOOST_AUTO_TEST_CASE(bindings_declared_and_derived) {
  auto p = load(R"(
version: 1
secrets:
  declared: { hosts: ["api.a.com", "http://127.0.0.1:9000"] }
rules:
  - name: a
    match: { hosts: [api.a.com] }
    inject: { headers: { X-Key: "{{secrets.declared}}" } }
  - name: b1
    match: { hosts: [b.com, "*.b.com"] }
    inject: { query: { key: "{{secrets.derived}}" } }
  - name: b2
    match: { hosts: ["b.com:8443"] }
    inject: { headers: { X: "{{ secrets.derived }}" } }
  - name: allowed
    match: { hosts: [c.com] }
    action: allow
)");
  const Binding* declared = p->binding("declared");
  BOOST_REQUIRE(declared);
  BOOST_TEST(declared->declared);
  BOOST_TEST(declared->hosts.size() == 2u);
  const Binding* derived = p->binding("derived");
  BOOST_REQUIRE(derived);
  BOOST_TEST(!derived->declared);
  BOOST_TEST(derived->hosts.size() == 3u);
  BOOST_TEST(!p->binding("other"));
  BOOST_TEST(p->rule("b2")->template_secrets() == std::vector<std::string>{"derived"});
}

BOOST_AUTO_TEST_SUITE_END()
