#include <boost/test/unit_test.hpp>

#include "policy_test_util.hpp"

using namespace sidekey;
using namespace sidekey::policy;

namespace {

// Loading `yaml` must fail at exactly line:column with a message containing `needle`.
void expect_error(const std::string& yaml, int line, int column, const std::string& needle) {
  try {
    load_policy(yaml, "p.yaml");
    BOOST_ERROR("no error for: " << needle);
  } catch (const PositionedError& e) {
    BOOST_TEST(e.file() == "p.yaml");
    BOOST_TEST(e.line() == line, needle << ": " << e.what());
    BOOST_TEST(e.column() == column, needle << ": " << e.what());
    BOOST_TEST(e.message().find(needle) != std::string::npos, e.what());
    BOOST_TEST(std::string(e.what()).starts_with("p.yaml:" + std::to_string(line) + ":" + std::to_string(column) + ": "));
  }
}

const std::string kHead = "version: 1\n";  // line 1; test bodies start on line 2

}  // namespace

BOOST_AUTO_TEST_SUITE(loader)

BOOST_AUTO_TEST_CASE(full_policy_loads) {
  auto r = load_policy(R"(version: 1
default: allow
secrets:
  openai:
    hosts: ["api.openai.com"]
  local-test:
    hosts: ["http://127.0.0.1:18080"]
routes:
  - prefix: /openai/
    upstream: https://api.openai.com/
rules:
  - name: openai
    match:
      hosts: ["api.openai.com"]
      methods: [GET, POST]
      paths: ["/v1/*"]
    action: inject
    inject:
      headers: { Authorization: "Bearer {{secrets.openai}}" }
      query: {}
    references: [headers, query, body]
    require_reference: false
    upgrade_tls: false
    scrub: true
  - name: local
    match: { hosts: ["http://127.0.0.1:18080"] }
    inject: { query: { key: "{{ secrets.local-test }}" } }
    references: []
    scrub: false
  - name: packages
    match: { hosts: ["pypi.org", "files.pythonhosted.org"] }
    action: allow
    upgrade_tls: true
  - name: cloud-metadata
    match: { hosts: ["169.254.169.254", "metadata.google.internal"] }
    action: deny
)",
                       "p.yaml");
  BOOST_TEST(r.warnings.empty());
  const auto& p = *r.policy;
  BOOST_TEST((p.default_action() == Action::allow));
  BOOST_TEST(p.rules().size() == 4u);
  const Rule& o = p.rules()[0];
  BOOST_TEST(o.name == "openai");
  BOOST_TEST(o.position.line == 12);
  BOOST_TEST(o.position.column == 5);
  BOOST_TEST(o.references == (kHeaders | kQuery | kBody));
  BOOST_TEST(o.scrub);
  BOOST_TEST(o.inject_headers.size() == 1u);
  BOOST_TEST(o.inject_headers[0].name == "Authorization");
  BOOST_TEST(o.inject_headers[0].value.secret_names() == std::vector<std::string>{"openai"});
  BOOST_TEST(o.match.methods == (std::vector<std::string>{"GET", "POST"}));
  const Rule& l = p.rules()[1];
  BOOST_TEST(l.references == 0u);
  BOOST_TEST(!l.scrub);
  BOOST_TEST((l.action == Action::inject));  // the default action
  BOOST_TEST(l.inject_query[0].name == "key");
  BOOST_TEST(p.rules()[2].upgrade_tls);
  BOOST_TEST(p.routes().size() == 1u);
  BOOST_TEST(p.routes()[0].position.line == 9);
}

BOOST_AUTO_TEST_CASE(syntax_error_is_positioned) {
  expect_error("version: 1\nrules: [\n", 3, 1, "");
  expect_error("version: 1\nrules:\n  - name: a\n   bad: x\n", 4, 4, "");
}

BOOST_AUTO_TEST_CASE(version_and_default) {
  expect_error("", 1, 1, "policy is empty");
  expect_error("default: deny\n", 1, 1, "missing 'version: 1'");
  expect_error("version: 2\n", 1, 10, "unsupported policy version");
  expect_error("version: [1]\n", 1, 10, "unsupported policy version");
  expect_error(kHead + "default: maybe\n", 2, 10, "default must be deny or allow");
  expect_error("- a\n- b\n", 1, 1, "policy must be a mapping");
}

BOOST_AUTO_TEST_CASE(unknown_keys) {
  expect_error(kHead + "rulez: []\n", 2, 1, "unknown key 'rulez' in policy");
  expect_error(kHead + "rules:\n  - name: a\n    match: { hosts: [a.com] }\n    actoin: allow\n", 5, 5,
               "unknown key 'actoin' in rule");
  expect_error(kHead + "rules:\n  - name: a\n    match: { hosts: [a.com], path: [\"/x\"] }\n", 4, 30,
               "unknown key 'path' in match");
  expect_error(kHead + "secrets:\n  k: { hosts: [a.com], host: b }\n", 3, 24, "unknown key 'host' in secrets.k");
  expect_error(kHead + "routes:\n  - prefix: /a/\n    upstream: https://a.com/\n    timeout: 5s\n", 5, 5,
               "unknown key 'timeout' in route");
  expect_error(kHead +
                   "rules:\n  - name: a\n    match: { hosts: [a.com] }\n"
                   "    inject: { header: { X: y } }\n",
               5, 15, "unknown key 'header' in inject");
}

BOOST_AUTO_TEST_CASE(duplicate_keys) {
  expect_error(kHead + "rules: []\ndefault: allow\nrules: []\n", 4, 1, "duplicate key 'rules' in policy");
  expect_error(kHead + "rules:\n  - name: a\n    match: { hosts: [a.com] }\n    action: allow\n    action: deny\n", 6, 5,
               "duplicate key 'action' in rule");
  expect_error(kHead + "secrets:\n  k: { hosts: [a.com] }\n  k: { hosts: [b.com] }\n", 4, 3,
               "duplicate key 'k' in secrets");
}

BOOST_AUTO_TEST_CASE(bad_host_patterns) {
  expect_error(kHead + "secrets:\n  k:\n    hosts: [\"a.com\", \"a.com/path\"]\n", 4, 22, "a.com/path");
  expect_error(kHead + "rules:\n  - name: a\n    match: { hosts: [\"*\"] }\n", 4, 22, "'*'");
  expect_error(kHead + "rules:\n  - name: a\n    match: { hosts: [\"ftp://x.com\"] }\n", 4, 22, "only http://");
  expect_error(kHead + "rules:\n  - name: a\n    match: { hosts: [] }\n", 4, 21, "at least one host");
  expect_error(kHead + "rules:\n  - name: a\n    match: { methods: [GET] }\n", 4, 12, "needs 'hosts'");
  expect_error(kHead + "rules:\n  - name: a\n    match: { hosts: a.com }\n", 4, 21, "must be a list");
}

BOOST_AUTO_TEST_CASE(bad_globs_and_methods) {
  expect_error(kHead + "rules:\n  - name: a\n    match: { hosts: [a.com], paths: [\"/ok/*\", \"v1/*\"] }\n", 4, 47,
               "must start with '/'");
  expect_error(kHead + "rules:\n  - name: a\n    match: { hosts: [a.com], paths: [\"/a?b\"] }\n", 4, 38, "'?'");
  expect_error(kHead + "rules:\n  - name: a\n    match: { hosts: [a.com], methods: [\"GE T\"] }\n", 4, 40,
               "not an HTTP method");
}

BOOST_AUTO_TEST_CASE(rule_names) {
  expect_error(kHead + "rules:\n  - name: a\n    match: { hosts: [a.com] }\n  - name: a\n    match: { hosts: [b.com] }\n",
               5, 11, "duplicate rule name 'a' (first at line 3)");
  expect_error(kHead + "rules:\n  - match: { hosts: [a.com] }\n", 3, 5, "needs a 'name'");
  expect_error(kHead + "rules:\n  - name: \"has space\"\n    match: { hosts: [a.com] }\n", 3, 11, "rule name must be");
  expect_error(kHead + "rules:\n  - name: a\n", 3, 5, "needs 'match'");
}

BOOST_AUTO_TEST_CASE(actions_and_options) {
  expect_error(kHead + "rules:\n  - name: a\n    match: { hosts: [a.com] }\n    action: block\n", 5, 13,
               "unknown action 'block'");
  expect_error(kHead + "rules:\n  - name: a\n    match: { hosts: [a.com] }\n    action: allow\n"
                       "    inject: { headers: { X: y } }\n",
               6, 5, "inject applies only to inject rules");
  expect_error(kHead + "rules:\n  - name: a\n    match: { hosts: [a.com] }\n    action: deny\n    scrub: false\n", 6,
               5, "scrub applies only to inject rules");
  expect_error(kHead + "rules:\n  - name: a\n    match: { hosts: [a.com] }\n    action: deny\n    references: [headers]\n",
               6, 5, "references applies only");
  expect_error(kHead + "rules:\n  - name: a\n    match: { hosts: [a.com] }\n    action: deny\n    upgrade_tls: true\n",
               6, 5, "no effect on a deny rule");
  expect_error(kHead + "rules:\n  - name: a\n    match: { hosts: [a.com] }\n    references: [headers, cookies]\n", 5,
               27, "unknown reference place 'cookies'");
  expect_error(kHead + "rules:\n  - name: a\n    match: { hosts: [a.com] }\n    scrub: yes-please\n", 5, 12,
               "scrub must be true or false");
  expect_error(kHead + "rules:\n  - name: a\n    match: { hosts: [a.com] }\n    references: []\n    require_reference: true\n",
               6, 24, "require_reference needs");
}

BOOST_AUTO_TEST_CASE(templates) {
  expect_error(kHead + "rules:\n  - name: a\n    match: { hosts: [a.com] }\n"
                       "    inject:\n      headers:\n        Authorization: \"Bearer {{secrets.}}\"\n",
               7, 24, "malformed secret reference");
  expect_error(kHead + "rules:\n  - name: a\n    match: { hosts: [a.com] }\n"
                       "    inject:\n      query:\n        key: \"{{ secrets.bad name }}\"\n",
               7, 14, "inject.query.key: malformed secret reference");
  expect_error(kHead + "rules:\n  - name: a\n    match: { hosts: [a.com] }\n"
                       "    inject:\n      headers:\n        \"Bad Header\": x\n",
               7, 9, "not a valid header name");
  expect_error(kHead + "rules:\n  - name: a\n    match: { hosts: [a.com] }\n"
                       "    inject:\n      headers:\n        Proxy-Authorization: x\n",
               7, 9, "managed by sidekey");
  expect_error(kHead + "rules:\n  - name: a\n    match: { hosts: [a.com] }\n"
                       "    inject:\n      headers:\n        X-Key: a\n        x-key: b\n",
               8, 9, "injected twice");
  expect_error(kHead + "rules:\n  - name: a\n    match: { hosts: [a.com] }\n"
                       "    inject:\n      headers:\n        X-Key: \"a\\r\\nInjected: 1\"\n",
               7, 16, "control character");
  expect_error(kHead + "rules:\n  - name: a\n    match: { hosts: [a.com] }\n"
                       "    inject:\n      headers:\n        X-Key: [a]\n",
               7, 16, "must be a string");
}

BOOST_AUTO_TEST_CASE(template_outside_its_binding) {
  const std::string secrets = kHead + "secrets:\n  openai:\n    hosts: [api.openai.com]\n";
  // Line 5 onwards.
  expect_error(secrets + "rules:\n  - name: leak\n    match: { hosts: [api.openai.com, evil.com] }\n"
                         "    inject: { headers: { Authorization: \"Bearer {{secrets.openai}}\" } }\n",
               8, 41, "injects secret 'openai' at host 'evil.com'");
  // Another port is outside a binding without one.
  expect_error(secrets + "rules:\n  - name: port\n    match: { hosts: [\"api.openai.com:8443\"] }\n"
                         "    inject: { query: { k: \"{{secrets.openai}}\" } }\n",
               8, 27, "api.openai.com:8443");
  // Plain HTTP is outside a binding without http://.
  expect_error(secrets + "rules:\n  - name: plain\n    match: { hosts: [\"http://api.openai.com\"] }\n"
                         "    inject: { headers: { X: \"{{secrets.openai}}\" } }\n",
               8, 29, "does not cover");
  // Inside: fine; a secret without an entry is bound to the rule's hosts.
  auto ok = load_policy(secrets + "rules:\n  - name: fine\n    match: { hosts: [api.openai.com] }\n"
                                  "    inject: { headers: { X: \"{{secrets.openai}} {{secrets.free}}\" } }\n",
                        "p.yaml");
  BOOST_TEST(ok.policy->binding("free")->hosts.size() == 1u);
}

BOOST_AUTO_TEST_CASE(secrets_section) {
  expect_error(kHead + "secrets:\n  \"bad name\": { hosts: [a.com] }\n", 3, 3, "secret name 'bad name'");
  expect_error(kHead + "secrets:\n  k: {}\n", 3, 6, "needs 'hosts'");
  expect_error(kHead + "secrets:\n  k:\n", 3, 3, "needs 'hosts'");
  expect_error(kHead + "secrets: [a]\n", 2, 10, "must be a mapping");
  // An explicitly empty binding is allowed (the secret is then unusable).
  auto r = load_policy(kHead + "secrets:\n  k: { hosts: [] }\n", "p.yaml");
  BOOST_TEST(r.policy->binding("k")->hosts.empty());
}

BOOST_AUTO_TEST_CASE(routes) {
  expect_error(kHead + "routes:\n  - prefix: openai/\n    upstream: https://api.openai.com/\n", 3, 13,
               "must start and end with '/'");
  expect_error(kHead + "routes:\n  - prefix: /openai\n    upstream: https://api.openai.com/\n", 3, 13,
               "must start and end with '/'");
  expect_error(kHead + "routes:\n  - prefix: /\n    upstream: https://api.openai.com/\n", 3, 13,
               "must start and end with '/'");
  expect_error(kHead + "routes:\n  - prefix: /a/\n    upstream: ftp://api.openai.com/\n", 4, 15,
               "must be an http:// or https:// URL");
  expect_error(kHead + "routes:\n  - prefix: /a/\n    upstream: api.openai.com\n", 4, 15, "http:// or https://");
  expect_error(kHead + "routes:\n  - prefix: /a/\n    upstream: https://api.openai.com/?x=1\n", 4, 15, "query");
  expect_error(kHead + "routes:\n  - prefix: /a/\n", 3, 5, "route needs 'upstream'");
  expect_error(kHead + "routes:\n  - upstream: https://a.com/\n", 3, 5, "route needs 'prefix'");
  expect_error(kHead + "routes:\n  - prefix: /a/\n    upstream: https://a.com/\n  - prefix: /a/\n    upstream: https://b.com/\n",
               5, 13, "duplicate route prefix '/a/' (first at line 3)");
}

BOOST_AUTO_TEST_CASE(shadowing_warnings) {
  auto r = load_policy(kHead + R"(rules:
  - name: all-openai
    match: { hosts: [api.openai.com] }
    action: allow
  - name: openai-v1
    match: { hosts: [api.openai.com], paths: ["/v1/*"] }
    action: deny
  - name: wide
    match: { hosts: ["*.example.com"], methods: [GET, POST] }
    action: allow
  - name: narrower
    match: { hosts: ["a.example.com:8443", "b.c.example.com"], methods: [GET], paths: ["/x"] }
    action: deny
  - name: not-shadowed-apex
    match: { hosts: [example.com] }
    action: deny
  - name: not-shadowed-method
    match: { hosts: [a.example.com] }
    action: deny
  - name: port-rule
    match: { hosts: ["api.github.com:443"] }
    action: allow
  - name: any-port
    match: { hosts: [api.github.com] }
    action: deny
)",
                       "p.yaml");
  BOOST_REQUIRE_EQUAL(r.warnings.size(), 2u);
  BOOST_TEST(r.warnings[0].line() == 6);
  BOOST_TEST(r.warnings[0].column() == 5);
  BOOST_TEST(r.warnings[0].message().find("rule 'openai-v1' can never match: rule 'all-openai' (line 3)") !=
             std::string::npos);
  BOOST_TEST(r.warnings[1].line() == 12);
  BOOST_TEST(r.warnings[1].message().find("'narrower'") != std::string::npos);
  BOOST_TEST(std::string(r.warnings[1].what()).starts_with("p.yaml:12:5: "));
}

BOOST_AUTO_TEST_SUITE_END()
