#include <boost/test/unit_test.hpp>

#include "policy/explain.hpp"
#include "policy_test_util.hpp"

using namespace sidekey::policy;
using namespace sidekey::policy::test;

namespace {
const char* kPolicy = R"(
version: 1
default: deny
secrets:
  openai: { hosts: [api.openai.com] }
routes:
  - prefix: /openai/
    upstream: https://api.openai.com/
rules:
  - name: openai
    match: { hosts: [api.openai.com] }
    inject: { headers: { Authorization: "Bearer {{secrets.openai}}" } }
    references: [headers, query, body]
  - name: maps
    match: { hosts: [maps.googleapis.com] }
    inject: { query: { key: "{{secrets.maps}}" } }
  - name: packages
    match: { hosts: [pypi.org] }
    action: allow
  - name: metadata
    match: { hosts: ["169.254.169.254"] }
    action: deny
)";
}  // namespace

BOOST_AUTO_TEST_SUITE(explain)

BOOST_AUTO_TEST_CASE(inject_without_store) {
  auto p = load(kPolicy);
  auto j = sidekey::policy::explain(*p, nullptr, "POST", "https://api.openai.com/v1/chat/completions",
                                    {{"Content-Type", "application/json"}, {"Content-Length", "2"}});
  BOOST_TEST(j["rule"] == "openai");
  BOOST_TEST(j["action"] == "inject");
  BOOST_TEST(j["decision"] == "inject");
  BOOST_TEST(j["default"] == false);
  BOOST_TEST(j["secrets"] == nlohmann::json({"openai"}));
  BOOST_TEST(j["injected"] == nlohmann::json({"header:Authorization"}));
  BOOST_TEST(j["references"] == nlohmann::json({"headers", "query", "body"}));
  BOOST_TEST(j["body"] == "json");
  BOOST_TEST(j["scrub"] == true);
  BOOST_TEST(j["secrets_checked"] == false);
  BOOST_TEST(j["destination"]["host"] == "api.openai.com");
  BOOST_TEST(j["upstream"]["path"] == "/v1/chat/completions");
  BOOST_TEST(!j.contains("refusal"));
  BOOST_TEST(j.dump().find("placeholder") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(with_store_never_prints_values) {
  auto p = load(kPolicy);
  MapLookup s;
  s.add("openai", "sk-very-secret").add("maps", "maps-very-secret");
  auto j = sidekey::policy::explain(*p, &s, "GET", "https://maps.googleapis.com/geo?address=x", {{"X-Q", "1"}});
  BOOST_TEST(j["decision"] == "inject");
  BOOST_TEST(j["injected"] == nlohmann::json({"query:key"}));
  BOOST_TEST(j["secrets_checked"] == true);
  BOOST_TEST(j["upstream"]["path"] == "/geo");
  BOOST_TEST(j.dump().find("very-secret") == std::string::npos);
  auto a = sidekey::policy::explain(*p, &s, "GET", "https://api.openai.com/v1/models");
  BOOST_TEST(a.dump().find("very-secret") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(refusals_explained) {
  auto p = load(kPolicy);
  MapLookup s;
  s.add("openai", "v");
  auto missing = sidekey::policy::explain(*p, &s, "GET", "https://maps.googleapis.com/x");
  BOOST_TEST(missing["decision"] == "deny");
  BOOST_TEST(missing["refusal"]["code"] == "unknown_secret");
  BOOST_TEST(missing["refusal"]["status"] == 403);
  BOOST_TEST(missing["rule"] == "maps");
  auto denied = sidekey::policy::explain(*p, nullptr, "GET", "http://169.254.169.254/latest");
  BOOST_TEST(denied["refusal"]["code"] == "policy_denied");
  BOOST_TEST(denied["rule"] == "metadata");
  auto dflt = sidekey::policy::explain(*p, nullptr, "GET", "https://example.org/");
  BOOST_TEST(dflt["default"] == true);
  BOOST_TEST(dflt["rule"].is_null());
  BOOST_TEST(dflt["refusal"]["code"] == "policy_denied");
  auto unbound = sidekey::policy::explain(*p, nullptr, "GET", "http://api.openai.com/v1/models");
  BOOST_TEST(unbound["refusal"]["code"] == "secret_not_bound");
  auto ref = sidekey::policy::explain(*p, nullptr, "GET", "https://pypi.org/simple/", {{"X", "{{secrets.openai}}"}});
  BOOST_TEST(ref["refusal"]["code"] == "reference_not_allowed");
  auto bad = sidekey::policy::explain(*p, nullptr, "GET", "not a url");
  BOOST_TEST(bad["refusal"]["code"] == "bad_request");
}

BOOST_AUTO_TEST_CASE(routes_and_connect) {
  auto p = load(kPolicy);
  auto r = sidekey::policy::explain(*p, nullptr, "GET", "/openai/v1/models");
  BOOST_TEST(r["route"] == "/openai/");
  BOOST_TEST(r["rule"] == "openai");
  BOOST_TEST(r["upstream"]["path"] == "/v1/models");
  auto noroute = sidekey::policy::explain(*p, nullptr, "GET", "/nothing/here");
  BOOST_TEST(noroute["refusal"]["code"] == "bad_request");
  BOOST_TEST(sidekey::policy::explain(*p, nullptr, "CONNECT", "pypi.org:443")["decision"] == "tunnel");
  BOOST_TEST(sidekey::policy::explain(*p, nullptr, "CONNECT", "api.openai.com:443")["decision"] == "intercept");
  auto d = sidekey::policy::explain(*p, nullptr, "CONNECT", "169.254.169.254:443");
  BOOST_TEST(d["decision"] == "deny");
  BOOST_TEST(d["refusal"]["code"] == "policy_denied");
  BOOST_TEST(sidekey::policy::explain(*p, nullptr, "CONNECT", "nohost")["refusal"]["code"] == "bad_request");
}

BOOST_AUTO_TEST_SUITE_END()
