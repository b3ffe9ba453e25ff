#include <boost/test/unit_test.hpp>

#include "policy_test_util.hpp"
#include "core/encoding.hpp"
#include "policy/scrubber.hpp"
#include "secrets/secret_name.hpp"

using namespace sidekey::policy;
using namespace sidekey::policy::test;
using sidekey::iequals;

namespace {

const char* kPolicy = R"(
version: 1
default: deny
secrets:
  openai: { hosts: [api.openai.com] }
  maps: { hosts: ["maps.googleapis.com"] }
  local: { hosts: ["http://127.0.0.1:18080"] }
  tls-only-local: { hosts: ["127.0.0.1:18443"] }
  unbound: { hosts: [] }
rules:
  - name: openai
    match: { hosts: [api.openai.com] }
    inject:
      headers: { Authorization: "Bearer {{secrets.openai}}" }
  - name: maps
    match: { hosts: [maps.googleapis.com] }
    inject:
      query: { key: "{{secrets.maps}}" }
    references: [headers]
  - name: agent-refs
    match: { hosts: ["http://127.0.0.1:18080", "127.0.0.1:18443", "127.0.0.1:8080"] }
    references: [headers, query]
  - name: required
    match: { hosts: [req.example.com] }
    require_reference: true
  - name: body-refs
    match: { hosts: [body.example.com] }
    references: [headers, query, body]
  - name: upgrade
    match: { hosts: [plain.example.com] }
    upgrade_tls: true
    inject: { headers: { X-Key: "k={{secrets.plain}}" } }
  - name: packages
    match: { hosts: [pypi.org] }
    action: allow
  - name: metadata
    match: { hosts: ["169.254.169.254"] }
    action: deny
)";

struct Fixture {
  PolicyPtr policy = load(kPolicy);
  MapLookup secrets;
  Fixture() {
    secrets.add("openai", "sk-live-123")
        .add("maps", "AIza key/with+chars")
        .add("local", "local-secret")
        .add("tls-only-local", "tls-secret")
        .add("unbound", "u")
        .add("plain", "plain-secret")
        .add("api-only", "api-secret", {"body.example.com", "http://127.0.0.1:18080"})
        .add("loose", "loose-secret")  // no policy entry, no template, no allowed_hosts
        .add("tasks/t1/openai", "task-sk", {}, "openai")
        .add("crlf", "a\r\nX-Evil: 1", {"http://127.0.0.1:18080"});
  }
  RewriteResult run(const Destination& d, RequestHead head) {
    auto decision = policy->decide(d, head.method, head.target);
    return rewrite(*policy, decision, head, secrets);
  }
};

const RewritePlan& plan_of(const RewriteResult& r) {
  if (auto* ref = std::get_if<Refusal>(&r)) BOOST_FAIL("refused: " << ref->code << ": " << ref->message);
  return std::get<RewritePlan>(r);
}
const Refusal& refusal_of(const RewriteResult& r) {
  BOOST_REQUIRE_MESSAGE(std::holds_alternative<Refusal>(r), "expected a refusal");
  return std::get<Refusal>(r);
}
std::string header(const RewritePlan& p, std::string_view name) {
  const Header* h = find_header(p.headers, name);
  return h ? h->value : "<none>";
}
bool wrote(const RewritePlan& p, std::string_view bytes, std::string_view replacement) {
  for (const auto& w : p.written())
    if (w.bytes.reveal() == bytes && w.replacement == replacement) return true;
  return false;
}
using V = std::vector<std::string>;
const Destination kLocal = http("127.0.0.1", 18080);

}  // namespace

BOOST_FIXTURE_TEST_SUITE(rewrite, Fixture)

BOOST_AUTO_TEST_CASE(template_header_injected) {
  auto r = run(https("api.openai.com"), {"POST", "/v1/chat?x=1", {{"Authorization", "Bearer agent-fake"}, {"Accept", "*/*"}}});
  const auto& p = plan_of(r);
  BOOST_TEST(header(p, "Authorization") == "Bearer sk-live-123");
  BOOST_TEST(p.headers.front().name == "Host");
  BOOST_TEST(p.headers.front().value == "api.openai.com");
  BOOST_TEST(header(p, "Accept") == "*/*");
  BOOST_TEST(p.target == "/v1/chat?x=1");
  BOOST_TEST(p.method == "POST");
  BOOST_TEST(p.secrets == V{"openai"});
  BOOST_TEST(p.injected == V{"header:Authorization"});
  BOOST_TEST(p.scrub);
  BOOST_TEST(!p.body);
  // Only one Authorization: the agent's was replaced.
  int count = 0;
  for (const auto& h : p.headers) count += iequals(h.name, "authorization");
  BOOST_TEST(count == 1);
  // Scrub list: the composed header value and the plaintext, longest first.
  BOOST_REQUIRE_EQUAL(p.written().size(), 2u);
  BOOST_TEST(p.written()[0].bytes.reveal() == "Bearer sk-live-123");
  BOOST_TEST(p.written()[0].replacement == "Bearer {{secrets.openai}}");
  BOOST_TEST(p.written()[1].bytes.reveal() == "sk-live-123");
  BOOST_TEST(p.written()[1].replacement == "{{secrets.openai}}");
}

BOOST_AUTO_TEST_CASE(template_query_injected_and_encoded) {
  auto r = run(https("maps.googleapis.com"), {"GET", "/maps/api/geocode/json?address=x+y&key=agent", {}});
  const auto& p = plan_of(r);
  BOOST_TEST(p.target == "/maps/api/geocode/json?address=x+y&key=AIza%20key%2Fwith%2Bchars");
  BOOST_TEST(p.injected == V{"query:key"});
  BOOST_TEST(wrote(p, "AIza key/with+chars", "{{secrets.maps}}"));
  BOOST_TEST(wrote(p, "AIza%20key%2Fwith%2Bchars", "{{secrets.maps}}"));
  auto bare = run(https("maps.googleapis.com"), {"GET", "/x", {}});
  BOOST_TEST(plan_of(bare).target == "/x?key=AIza%20key%2Fwith%2Bchars");
  // An agent parameter spelled with an escape is the same key: replaced, not duplicated.
  auto escaped = run(https("maps.googleapis.com"), {"GET", "/x?k%65y=agent&a=1", {}});
  BOOST_TEST(plan_of(escaped).target == "/x?a=1&key=AIza%20key%2Fwith%2Bchars");
}

BOOST_AUTO_TEST_CASE(agent_header_reference_substituted) {
  auto r = run(kLocal, {"GET", "/", {{"X-Api-Key", "Token {{ secrets.local }}"}, {"X-Other", "{{secrets.api-only}}"}}});
  const auto& p = plan_of(r);
  BOOST_TEST(header(p, "X-Api-Key") == "Token local-secret");
  BOOST_TEST(header(p, "X-Other") == "api-secret");
  BOOST_TEST(header(p, "Host") == "127.0.0.1:18080");
  BOOST_TEST(p.secrets == (V{"local", "api-only"}));
  BOOST_TEST(p.injected == (V{"header:X-Api-Key", "header:X-Other"}));
  BOOST_TEST(wrote(p, "Token local-secret", "Token {{ secrets.local }}"));
  BOOST_TEST(wrote(p, "local-secret", "{{secrets.local}}"));
  BOOST_TEST(wrote(p, "api-secret", "{{secrets.api-only}}"));
}

BOOST_AUTO_TEST_CASE(agent_query_reference_percent_encoded) {
  auto r = run(kLocal, {"GET", "/get?a=1&key=%7B%7Bsecrets.maps_local%7D%7D", {}});
  BOOST_TEST(refusal_of(r).code == "unknown_secret");
  secrets.add("sp", "a b&c", {"http://127.0.0.1:18080"});
  auto ok = run(kLocal, {"GET", "/get?a=1&key=%7B%7Bsecrets.sp%7D%7D&raw={{secrets.local}}&mixed=pre-%7B%7B+secrets.local+%7D%7D-post&flag",
                         {}});
  const auto& p = plan_of(ok);
  BOOST_TEST(p.target == "/get?a=1&key=a%20b%26c&raw=local-secret&mixed=pre-local-secret-post&flag");
  BOOST_TEST(p.injected == (V{"query:key", "query:raw", "query:mixed"}));
  BOOST_TEST(wrote(p, "pre-local-secret-post", "pre-%7B%7B+secrets.local+%7D%7D-post"));
}

BOOST_AUTO_TEST_CASE(refusal_policy_denied) {
  auto r = run(http("169.254.169.254"), {"GET", "/latest/meta-data/", {}});
  const auto& f = refusal_of(r);
  BOOST_TEST(f.code == "policy_denied");
  BOOST_TEST(f.status == 403);
  BOOST_TEST(f.rule == "metadata");
  BOOST_TEST(f.host == "169.254.169.254");
  auto d = run(https("unknown.example"), {"GET", "/", {}});
  BOOST_TEST(refusal_of(d).code == "policy_denied");
  BOOST_TEST(refusal_of(d).rule.empty());
  BOOST_TEST(refusal_of(d).message.find("default: deny") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(refusal_unknown_secret) {
  auto r = run(kLocal, {"GET", "/", {{"X-Key", "{{secrets.nope}}"}}});
  const auto& f = refusal_of(r);
  BOOST_TEST(f.code == "unknown_secret");
  BOOST_TEST(f.status == 403);
  BOOST_TEST(f.secret == "nope");
  BOOST_TEST(f.rule == "agent-refs");
  // A template naming a secret that is not set.
  MapLookup empty;
  auto d = policy->decide(https("api.openai.com"), "GET", "/");
  auto t = sidekey::policy::rewrite(*policy, d, {"GET", "/", {}}, empty);
  BOOST_TEST(refusal_of(t).code == "unknown_secret");
  BOOST_TEST(refusal_of(t).secret == "openai");
}

BOOST_AUTO_TEST_CASE(refusal_secret_not_bound) {
  // Bound elsewhere.
  auto r = run(kLocal, {"GET", "/", {{"X-Key", "{{secrets.openai}}"}}});
  BOOST_TEST(refusal_of(r).code == "secret_not_bound");
  BOOST_TEST(refusal_of(r).secret == "openai");
  BOOST_TEST(refusal_of(r).host == "127.0.0.1");
  BOOST_TEST(refusal_of(r).message.find("http://127.0.0.1:18080") != std::string::npos);
  // Empty binding (declared empty, or nothing at all).
  auto u = run(kLocal, {"GET", "/", {{"X-Key", "{{secrets.unbound}}"}}});
  BOOST_TEST(refusal_of(u).code == "secret_not_bound");
  BOOST_TEST(refusal_of(u).message.find("bound to no host") != std::string::npos);
  auto l = run(kLocal, {"GET", "/", {{"X-Key", "{{secrets.loose}}"}}});
  BOOST_TEST(refusal_of(l).code == "secret_not_bound");
  // TLS-only binding reached over plain HTTP.
  auto t = run(http("127.0.0.1", 18443), {"GET", "/", {{"X-Key", "{{secrets.tls-only-local}}"}}});
  BOOST_TEST(refusal_of(t).code == "secret_not_bound");
  BOOST_TEST(refusal_of(t).message.find("requires TLS") != std::string::npos);
  auto tls = run(https("127.0.0.1", 18443), {"GET", "/", {{"X-Key", "{{secrets.tls-only-local}}"}}});
  BOOST_TEST(header(plan_of(tls), "X-Key") == "tls-secret");
  // allowed_hosts from the API extend the binding; without them, the port is not in it.
  auto other_port = run(http("127.0.0.1", 8080), {"GET", "/", {{"X-Key", "{{secrets.api-only}}"}}});
  BOOST_TEST(refusal_of(other_port).code == "secret_not_bound");
}

BOOST_AUTO_TEST_CASE(task_secret_takes_its_policy_binding) {
  auto d = policy->decide(https("api.openai.com"), "GET", "/");
  BOOST_TEST(d.rule_name() == "openai");
  auto r = sidekey::policy::rewrite(*policy, d, {"GET", "/", {{"X-Org", "{{secrets.tasks/t1/openai}}"}}}, secrets);
  const auto& p = plan_of(r);
  BOOST_TEST(header(p, "X-Org") == "task-sk");
  BOOST_TEST(p.secrets == (V{"openai", "tasks/t1/openai"}));
  auto elsewhere = run(kLocal, {"GET", "/", {{"X", "{{secrets.tasks/t1/openai}}"}}});
  BOOST_TEST(refusal_of(elsewhere).code == "secret_not_bound");
}

BOOST_AUTO_TEST_CASE(refusal_reference_not_allowed) {
  // Place not listed in references: (maps allows headers only).
  auto q = run(https("maps.googleapis.com"), {"GET", "/x?other={{secrets.maps}}", {}});
  BOOST_TEST(refusal_of(q).code == "reference_not_allowed");
  BOOST_TEST(refusal_of(q).rule == "maps");
  BOOST_TEST(refusal_of(q).secret == "maps");
  BOOST_TEST(refusal_of(q).message.find("query") != std::string::npos);
  // Default references are headers and query: the openai rule does not take body references,
  // and it does take header references.
  // Allow rule: a reference would go out literally.
  auto a = run(https("pypi.org"), {"GET", "/simple/", {{"Authorization", "Bearer {{secrets.openai}}"}}});
  BOOST_TEST(refusal_of(a).code == "reference_not_allowed");
  BOOST_TEST(refusal_of(a).rule == "packages");
  auto aq = run(https("pypi.org"), {"GET", "/simple/?t=%7B%7Bsecrets.openai%7D%7D", {}});
  BOOST_TEST(refusal_of(aq).code == "reference_not_allowed");
  // No rule, default allow.
  auto open = load("version: 1\ndefault: allow\n");
  auto d = open->decide(https("x.com"), "GET", "/");
  auto n = sidekey::policy::rewrite(*open, d, {"GET", "/", {{"X", "{{secrets.openai}}"}}}, secrets);
  BOOST_TEST(refusal_of(n).code == "reference_not_allowed");
  BOOST_TEST(refusal_of(n).rule.empty());
  // Never substituted in the path or in query keys.
  auto path = run(kLocal, {"GET", "/x/%7B%7Bsecrets.local%7D%7D", {}});
  BOOST_TEST(refusal_of(path).code == "reference_not_allowed");
  auto key = run(kLocal, {"GET", "/x?{{secrets.local}}=1", {}});
  BOOST_TEST(refusal_of(key).code == "reference_not_allowed");
  // Rules with references: [] substitute nothing.
  auto none = load(R"(
version: 1
rules:
  - name: none
    match: { hosts: [a.com] }
    references: []
)");
  auto dn = none->decide(https("a.com"), "GET", "/");
  auto rn = sidekey::policy::rewrite(*none, dn, {"GET", "/", {{"X", "{{secrets.openai}}"}}}, secrets);
  BOOST_TEST(refusal_of(rn).code == "reference_not_allowed");
}

BOOST_AUTO_TEST_CASE(allow_forwards_untouched) {
  auto r = run(https("pypi.org"), {"GET", "/simple/x/?a=%7B&b", {{"Accept", "text/html"}, {"Proxy-Authorization", "Basic x"},
                                                                 {"X-Literal", "{{secrets.bad name}}"}}});
  const auto& p = plan_of(r);
  BOOST_TEST(p.target == "/simple/x/?a=%7B&b");
  BOOST_TEST(header(p, "Proxy-Authorization") == "<none>");
  BOOST_TEST(header(p, "X-Literal") == "{{secrets.bad name}}");  // not a reference: no opinion
  BOOST_TEST(p.secrets.empty());
  BOOST_TEST(p.written().empty());
  BOOST_TEST(!p.scrub);
}

BOOST_AUTO_TEST_CASE(refusal_reference_required) {
  auto r = run(https("req.example.com"), {"GET", "/", {}});
  BOOST_TEST(refusal_of(r).code == "reference_required");
  BOOST_TEST(refusal_of(r).status == 403);
  secrets.add("req", "rv", {"req.example.com"});
  auto ok = run(https("req.example.com"), {"GET", "/?k={{secrets.req}}", {}});
  BOOST_TEST(plan_of(ok).target == "/?k=rv");
}

BOOST_AUTO_TEST_CASE(refusal_bad_request_for_malformed_reference) {
  auto h = run(kLocal, {"GET", "/", {{"X-Key", "Bearer {{secrets.bad name}}"}}});
  BOOST_TEST(refusal_of(h).code == "bad_request");
  BOOST_TEST(refusal_of(h).status == 400);
  auto q = run(kLocal, {"GET", "/?k=%7B%7Bsecrets.%7D%7D", {}});
  BOOST_TEST(refusal_of(q).code == "bad_request");
  // In a place the rule does not substitute, malformed text is not a reference: forwarded.
  auto m = run(https("maps.googleapis.com"), {"GET", "/?q={{secrets.", {}});
  BOOST_TEST(plan_of(m).target == "/?q={{secrets.&key=AIza%20key%2Fwith%2Bchars");
}

BOOST_AUTO_TEST_CASE(refusal_secret_invalid_for_header_breaking_values) {
  auto r = run(kLocal, {"GET", "/", {{"X-Key", "{{secrets.crlf}}"}}});
  BOOST_TEST(refusal_of(r).code == "secret_invalid");
  BOOST_TEST(refusal_of(r).message.find("X-Evil") == std::string::npos);
  // In a query the value is percent-encoded, so it cannot break the request line.
  auto q = run(kLocal, {"GET", "/?k={{secrets.crlf}}", {}});
  BOOST_TEST(plan_of(q).target == "/?k=a%0D%0AX-Evil%3A%201");
}

BOOST_AUTO_TEST_CASE(fail_closed_no_partial_substitution) {
  // The first reference resolves, the second does not: nothing is produced.
  auto r = run(kLocal, {"GET", "/?a={{secrets.local}}", {{"X-A", "{{secrets.local}}"}, {"X-B", "{{secrets.missing}}"}}});
  BOOST_TEST(refusal_of(r).code == "unknown_secret");
  BOOST_TEST(refusal_of(r).secret == "missing");
}

BOOST_AUTO_TEST_CASE(no_refusal_message_holds_a_value) {
  std::vector<RewriteResult> results;
  results.push_back(run(kLocal, {"GET", "/", {{"X", "{{secrets.openai}}"}}}));
  results.push_back(run(kLocal, {"GET", "/", {{"X", "{{secrets.crlf}}"}}}));
  results.push_back(run(http("127.0.0.1", 18443), {"GET", "/", {{"X", "{{secrets.tls-only-local}}"}}}));
  for (const auto& r : results) {
    auto text = refusal_of(r).to_json("rid").dump();
    for (std::string v : {"sk-live-123", "a\r\nX-Evil", "X-Evil", "tls-secret", "local-secret"})
      BOOST_TEST(text.find(v) == std::string::npos, text);
  }
}

BOOST_AUTO_TEST_CASE(hop_by_hop_removed_and_host_set) {
  auto r = run(https("api.openai.com"), {"GET", "/", {{"Host", "spoofed.example"}, {"Connection", "keep-alive, X-Drop"},
                                                      {"X-Drop", "1"}, {"Proxy-Authorization", "Basic abc"},
                                                      {"Keep-Alive", "5"}, {"TE", "trailers"}, {"X-Keep", "2"}}});
  const auto& p = plan_of(r);
  V names;
  for (const auto& h : p.headers) names.push_back(h.name);
  BOOST_TEST(names == (V{"Host", "X-Keep", "Authorization"}));
  BOOST_TEST(header(p, "Host") == "api.openai.com");
}

BOOST_AUTO_TEST_CASE(websocket_upgrade_kept) {
  auto r = run(https("api.openai.com"), {"GET", "/v1/realtime", {{"Connection", "Upgrade"}, {"Upgrade", "websocket"},
                                                                  {"Sec-WebSocket-Version", "13"}}});
  const auto& p = plan_of(r);
  BOOST_TEST(header(p, "Upgrade") == "websocket");
  BOOST_TEST(header(p, "Connection") == "upgrade");
}

BOOST_AUTO_TEST_CASE(upgrade_tls_sets_host_and_binding) {
  secrets.add("plain", "plain-secret", {"plain.example.com"});
  auto r = run(http("plain.example.com"), {"GET", "/x", {}});
  const auto& p = plan_of(r);
  BOOST_TEST(header(p, "X-Key") == "k=plain-secret");
  BOOST_TEST(header(p, "Host") == "plain.example.com");
}

BOOST_AUTO_TEST_CASE(body_format_selected) {
  secrets.add("b", "bv", {"body.example.com"});
  auto json = run(https("body.example.com"), {"POST", "/", {{"Content-Type", "application/json; charset=utf-8"},
                                                           {"Content-Length", "10"}}});
  BOOST_TEST((*plan_of(json).body == BodyFormat::json));
  auto form = run(https("body.example.com"), {"POST", "/", {{"Content-Type", "application/x-www-form-urlencoded"},
                                                           {"Transfer-Encoding", "chunked"}}});
  BOOST_TEST((*plan_of(form).body == BodyFormat::form));
  auto other = run(https("body.example.com"), {"POST", "/", {{"Content-Type", "text/plain"}, {"Content-Length", "3"}}});
  BOOST_TEST((*plan_of(other).body == BodyFormat::opaque));
  auto empty = run(https("body.example.com"), {"POST", "/", {{"Content-Length", "0"}}});
  BOOST_TEST(!plan_of(empty).body);
  auto gz = run(https("body.example.com"), {"POST", "/", {{"Content-Type", "application/json"}, {"Content-Length", "9"},
                                                         {"Content-Encoding", "gzip"}}});
  BOOST_TEST(refusal_of(gz).code == "bad_request");
  // Rules without body references leave bodies alone.
  auto no = run(https("api.openai.com"), {"POST", "/", {{"Content-Type", "application/json"}, {"Content-Length", "9"}}});
  BOOST_TEST(!plan_of(no).body);
}

BOOST_AUTO_TEST_CASE(body_found_when_connection_names_its_framing) {
  // Hop-by-hop stripping takes a field the Connection field names out of the plan, but the body
  // still follows the head: substitution is decided from the head as received.
  auto cl = run(https("body.example.com"), {"POST", "/", {{"Content-Type", "application/json"},
                                                         {"Content-Length", "30"},
                                                         {"Connection", "close, Content-Length, Content-Type"}}});
  BOOST_TEST(!find_header(plan_of(cl).headers, "Content-Length"));
  BOOST_TEST((*plan_of(cl).body == BodyFormat::json));
  auto te = run(https("body.example.com"), {"POST", "/", {{"Transfer-Encoding", "chunked"},
                                                         {"Connection", "Transfer-Encoding"}}});
  BOOST_TEST(plan_of(te).body.has_value());
  auto gz = run(https("body.example.com"), {"POST", "/", {{"Content-Length", "9"}, {"Content-Encoding", "gzip"},
                                                         {"Connection", "Content-Encoding"}}});
  BOOST_TEST(refusal_of(gz).code == "bad_request");
}

BOOST_AUTO_TEST_CASE(agent_composed_values_scrubbed_whole_within_a_budget) {
  // A long value the agent composed is not expanded into the scrub set (its size would be the
  // agent's choice); its secret's plaintext is, in every form.
  std::string pad(kAgentComposedScrubBudget, 'a');
  auto r = run(kLocal, {"GET", "/", {{"X-Small", "T {{secrets.local}}"}, {"X-Big", pad + "{{secrets.local}}"}}});
  const auto& p = plan_of(r);
  BOOST_TEST(header(p, "X-Big") == pad + "local-secret");
  BOOST_TEST(wrote(p, "T local-secret", "T {{secrets.local}}"));
  BOOST_TEST(wrote(p, "local-secret", "{{secrets.local}}"));
  for (const auto& w : p.written()) BOOST_TEST(w.bytes.size() <= kAgentComposedScrubBudget);
  BOOST_TEST(p.written().size() == 2u);
  // Many small ones: the first within the budget are kept, the total stays bounded.
  Headers many;
  for (int i = 0; i < 100; ++i) many.push_back({"X-" + std::to_string(i), std::to_string(i) + "-{{secrets.local}}"});
  auto m = run(kLocal, {"GET", "/", many});
  std::size_t composed = 0;
  for (const auto& w : plan_of(m).written())
    if (w.bytes.reveal() != "local-secret") composed += w.bytes.size();
  BOOST_TEST(composed <= kAgentComposedScrubBudget);
  BOOST_TEST(composed > kAgentComposedScrubBudget / 2);
  BOOST_TEST(wrote(plan_of(m), "local-secret", "{{secrets.local}}"));
}

BOOST_AUTO_TEST_CASE(body_resolver_checks_binding) {
  secrets.add("b", "bv", {"body.example.com"});
  auto d = policy->decide(https("body.example.com"), "POST", "/");
  auto resolve = body_resolver(*policy, d, secrets);
  auto ok = resolve("b");
  BOOST_REQUIRE(std::holds_alternative<std::shared_ptr<const sidekey::secrets::SecretValue>>(ok));
  BOOST_TEST(std::get<0>(ok)->reveal() == "bv");
  BOOST_TEST(std::get<Refusal>(resolve("openai")).code == "secret_not_bound");
  BOOST_TEST(std::get<Refusal>(resolve("zzz")).code == "unknown_secret");
}

BOOST_AUTO_TEST_CASE(plan_moves_and_wipes) {
  auto r = run(https("api.openai.com"), {"GET", "/", {}});
  RewritePlan p = std::move(std::get<RewritePlan>(r));
  BOOST_TEST(header(p, "Authorization") == "Bearer sk-live-123");
  RewritePlan q;
  q = std::move(p);
  BOOST_TEST(header(q, "Authorization") == "Bearer sk-live-123");
  BOOST_TEST(p.headers.empty());
  BOOST_TEST(p.target.empty());
  BOOST_TEST(p.written().empty());
}

BOOST_AUTO_TEST_CASE(effective_binding_union) {
  const auto* e = secrets.find("api-only");
  auto b = effective_binding(*policy, *e);
  BOOST_TEST(b.size() == 2u);
  const auto* t = secrets.find("tasks/t1/openai");
  BOOST_TEST(effective_binding(*policy, *t).size() == 1u);
}

// ---------------------------------------------------------------------------------------------
// InjectionMemo: what the proxy passes to rewrite_into (one per worker).

namespace {
// A secret view and a lookup over it, as the proxy has them (the memo holds the view).
class ViewLookup final : public SecretLookup {
 public:
  explicit ViewLookup(std::shared_ptr<const sidekey::secrets::SecretView> v) : held(std::move(v)) {}
  const sidekey::secrets::SecretEntry* find(std::string_view name) const override {
    auto it = held->entries().find(name);  // (SecretView::find is the secrets library's)
    return it == held->entries().end() ? nullptr : &it->second;
  }
  const sidekey::secrets::SecretView* view() const override { return held.get(); }
  std::shared_ptr<const sidekey::secrets::SecretView> held;
};
std::shared_ptr<const sidekey::secrets::SecretView> view_of(const std::map<std::string, std::string>& values,
                                                            const std::map<std::string, std::string>& bindings = {}) {
  std::map<std::string, sidekey::secrets::SecretEntry, std::less<>> entries;
  for (const auto& [name, value] : values) {
    sidekey::secrets::SecretEntry e;
    e.name = e.binding_name = name;
    if (auto b = bindings.find(name); b != bindings.end()) e.binding_name = b->second;
    e.origin = "store";
    e.value = std::make_shared<const sidekey::secrets::SecretValue>(value);
    entries.emplace(name, std::move(e));
  }
  return std::make_shared<const sidekey::secrets::SecretView>(std::move(entries));
}
// Every field of two plans alike (written() composed on demand for a plan the memo helped make).
void same_plan(const RewritePlan& a, const RewritePlan& b) {
  BOOST_TEST(a.method == b.method);
  BOOST_TEST(a.target == b.target);
  BOOST_REQUIRE_EQUAL(a.headers.size(), b.headers.size());
  for (std::size_t i = 0; i < a.headers.size(); ++i) {
    BOOST_TEST(a.headers[i].name == b.headers[i].name);
    BOOST_TEST(a.headers[i].value == b.headers[i].value);
  }
  BOOST_TEST(a.secrets == b.secrets);
  BOOST_TEST(a.injected == b.injected);
  BOOST_TEST(a.scrub == b.scrub);
  BOOST_TEST(a.body.has_value() == b.body.has_value());
  BOOST_TEST(a.wrote_any() == b.wrote_any());
  BOOST_REQUIRE_EQUAL(a.written().size(), b.written().size());
  for (std::size_t i = 0; i < a.written().size(); ++i) {
    BOOST_TEST(a.written()[i].bytes.reveal() == b.written()[i].bytes.reveal());
    BOOST_TEST(a.written()[i].replacement == b.written()[i].replacement);
    BOOST_TEST(a.written()[i].secret == b.written()[i].secret);
  }
  BOOST_TEST(a.wrote_any() == !a.written().empty());
}
std::optional<Refusal> rewrite_with(const PolicyPtr& policy, const Destination& d, RequestHead head,
                                    const SecretLookup& lookup, RewritePlan& plan, InjectionMemo* memo) {
  auto decision = policy->decide(d, head.method, head.target);
  return rewrite_into(plan, *policy, decision, std::move(head), lookup, memo);
}
}  // namespace

BOOST_AUTO_TEST_CASE(a_memo_gives_the_plan_a_rewrite_without_it_gives) {
  auto view = view_of({{"openai", "sk-live-123"}, {"maps", "AIza key/with+chars"}});
  ViewLookup lookup(view);
  InjectionMemo memo;
  memo.use(policy, view);
  const std::vector<std::pair<Destination, RequestHead>> requests = {
      {https("api.openai.com"), {"POST", "/v1/chat?x=1", {{"Authorization", "Bearer agent-fake"}, {"Accept", "*/*"}}}},
      {https("maps.googleapis.com"), {"GET", "/maps/api/geocode/json?address=x+y&key=agent", {}}},
      // An agent-written reference: composed for this request alone, the memo not asked.
      {https("api.openai.com"), {"GET", "/v1/models", {{"X-Org", "org {{secrets.openai}}"}}}},
  };
  for (const auto& [dest, head] : requests) {
    RewritePlan expected;
    BOOST_REQUIRE(!rewrite_with(policy, dest, head, lookup, expected, nullptr));
    BOOST_TEST(!expected.scrub_set());
    std::shared_ptr<const ScrubSet> set;
    for (int i = 0; i < 3; ++i) {  // the first fills the memo, the others are served from it
      RewritePlan p;
      BOOST_REQUIRE(!rewrite_with(policy, dest, head, lookup, p, &memo));
      same_plan(p, expected);
      if (head.headers.size() == 1 && head.headers[0].name == "X-Org") {
        p.keep_scrub_set(ScrubSet::build(p.written()));
        BOOST_TEST(!p.scrub_set(), "a plan with agent-written values has no memo entry");
        BOOST_TEST(wrote(p, "org sk-live-123", "org {{secrets.openai}}"));
        continue;
      }
      if (i == 0) {  // the proxy gives the first plan's entry its set
        BOOST_TEST(!p.scrub_set());
        set = ScrubSet::build(p.written());
        p.keep_scrub_set(set);
      }
      BOOST_TEST(p.scrub_set() == set, "served by the same memo entry");
    }
  }
}

BOOST_AUTO_TEST_CASE(a_memo_forgets_what_it_kept_for_other_secrets) {
  auto old_view = view_of({{"openai", "sk-old-value"}});
  auto new_view = view_of({{"openai", "sk-new-value"}});
  InjectionMemo memo;
  const RequestHead head{"GET", "/v1/models", {}};
  memo.use(policy, old_view);
  for (int i = 0; i < 2; ++i) {
    RewritePlan p;
    BOOST_REQUIRE(!rewrite_with(policy, https("api.openai.com"), head, ViewLookup(old_view), p, &memo));
    BOOST_TEST(header(p, "Authorization") == "Bearer sk-old-value");
  }
  memo.use(policy, new_view);  // the secret was rotated
  RewritePlan p;
  BOOST_REQUIRE(!rewrite_with(policy, https("api.openai.com"), head, ViewLookup(new_view), p, &memo));
  BOOST_TEST(header(p, "Authorization") == "Bearer sk-new-value");
  BOOST_TEST(wrote(p, "sk-new-value", "{{secrets.openai}}"));
  BOOST_TEST(!wrote(p, "sk-old-value", "{{secrets.openai}}"));
  // A memo made current for another policy snapshot helps no plan of this one.
  auto other = load(kPolicy);
  memo.use(other, new_view);
  RewritePlan q;
  BOOST_REQUIRE(!rewrite_with(policy, https("api.openai.com"), head, ViewLookup(new_view), q, &memo));
  BOOST_TEST(header(q, "Authorization") == "Bearer sk-new-value");
  BOOST_TEST(!q.scrub_set());
}

BOOST_AUTO_TEST_CASE(a_memo_keeps_each_destination_apart) {
  // One rule for two hosts, its secret's value bound (through its binding name, as a task
  // secret's is) to one: what was checked for one host is not taken for the other.
  auto two = load(R"(
version: 1
default: deny
secrets:
  k: { hosts: ["a.example.com", "b.example.com"] }
  narrow: { hosts: ["a.example.com"] }
rules:
  - name: two
    match: { hosts: ["a.example.com", "b.example.com"] }
    inject: { headers: { X-Key: "{{secrets.k}}" } }
)");
  auto view = view_of({{"k", "k-value-123"}}, {{"k", "narrow"}});
  ViewLookup lookup(view);
  InjectionMemo memo;
  memo.use(two, view);
  const RequestHead head{"GET", "/", {}};
  for (int i = 0; i < 2; ++i) {
    RewritePlan a;
    BOOST_REQUIRE(!rewrite_with(two, https("a.example.com"), head, lookup, a, &memo));
    BOOST_TEST(header(a, "X-Key") == "k-value-123");
    RewritePlan b;
    auto refused = rewrite_with(two, https("b.example.com"), head, lookup, b, &memo);
    BOOST_REQUIRE(refused);
    BOOST_TEST(refused->code == code::secret_not_bound);
  }
}

BOOST_AUTO_TEST_CASE(a_memo_helps_only_the_lookup_over_its_view) {
  auto view = view_of({{"openai", "sk-live-123"}});
  auto other_view = view_of({{"openai", "sk-other-456"}});
  InjectionMemo memo;
  memo.use(policy, view);
  const RequestHead head{"GET", "/v1/models", {}};
  RewritePlan first;
  BOOST_REQUIRE(!rewrite_with(policy, https("api.openai.com"), head, ViewLookup(view), first, &memo));
  first.keep_scrub_set(ScrubSet::build(first.written()));
  // A lookup over another view, or over no view at all, is rewritten without the memo.
  RewritePlan p;
  BOOST_REQUIRE(!rewrite_with(policy, https("api.openai.com"), head, ViewLookup(other_view), p, &memo));
  BOOST_TEST(header(p, "Authorization") == "Bearer sk-other-456");
  BOOST_TEST(!p.scrub_set());
  RewritePlan q;
  BOOST_REQUIRE(!rewrite_with(policy, https("api.openai.com"), head, secrets, q, &memo));  // MapLookup
  BOOST_TEST(header(q, "Authorization") == "Bearer sk-live-123");
  BOOST_TEST(!q.scrub_set());
}

BOOST_AUTO_TEST_CASE(a_memo_holds_no_view_and_lets_replaced_values_go) {
  auto view = view_of({{"openai", "sk-live-123"}});
  std::weak_ptr<const sidekey::secrets::SecretValue> value = view->entries().at("openai").value;
  InjectionMemo memo;
  memo.use(policy, view);
  {
    RewritePlan p;
    BOOST_REQUIRE(!rewrite_with(policy, https("api.openai.com"), {"GET", "/", {}}, ViewLookup(view), p, &memo));
  }
  BOOST_TEST(view.use_count() == 1, "the memo does not hold the view");
  BOOST_TEST(value.use_count() == 2, "the view's and the memo entry's");
  memo.use(policy, view_of({{"openai", "sk-new"}}));  // a new view: the entries made with the old go
  view.reset();
  BOOST_TEST(value.expired(), "nothing holds the replaced value");
  // forget() lets them go at once (the proxy runs it on each worker when the view changes).
  auto next = view_of({{"openai", "sk-next"}});
  std::weak_ptr<const sidekey::secrets::SecretValue> next_value = next->entries().at("openai").value;
  memo.use(policy, next);
  {
    RewritePlan p;
    BOOST_REQUIRE(!rewrite_with(policy, https("api.openai.com"), {"GET", "/", {}}, ViewLookup(next), p, &memo));
  }
  BOOST_TEST(next_value.use_count() == 2);
  memo.forget();
  BOOST_TEST(next_value.use_count() == 1);
}

BOOST_AUTO_TEST_CASE(a_plan_the_memo_helped_moves_whole) {
  auto view = view_of({{"openai", "sk-live-123"}});
  ViewLookup lookup(view);
  InjectionMemo memo;
  memo.use(policy, view);
  const RequestHead head{"GET", "/", {}};
  for (int i = 0; i < 2; ++i) {  // made by the memo's entry, then served from it
    RewritePlan p;
    BOOST_REQUIRE(!rewrite_with(policy, https("api.openai.com"), head, lookup, p, &memo));
    RewritePlan q(std::move(p));
    BOOST_TEST(q.wrote_any());
    BOOST_TEST(wrote(q, "Bearer sk-live-123", "Bearer {{secrets.openai}}"));
    BOOST_TEST(!p.wrote_any());
    BOOST_TEST(p.written().empty());
    RewritePlan r;
    r = std::move(q);
    BOOST_TEST(wrote(r, "sk-live-123", "{{secrets.openai}}"));
    BOOST_TEST(q.written().empty());
  }
}

BOOST_AUTO_TEST_SUITE_END()
