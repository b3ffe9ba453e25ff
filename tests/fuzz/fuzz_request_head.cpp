// libFuzzer target for the request head path of the proxy, as proxy/session.cpp runs it:
// find_head_end → RequestParser (its own target, fuzz_request_parser, holds it to Beast's
// parser) → destination (absolute-form, reverse route, CONNECT,
// or an intercepted connection to api.openai.com:443) → decide() → rewrite() with a fixed
// policy and a fixed secret lookup.
//
// Input: the raw bytes the client sends (only the head up to the blank line is used).
// Checks, aborting on failure:
// - find_head_end resumed from any earlier buffer size finds what a search from 0 finds;
// - a rewrite that succeeds
//     * puts in `plan.secrets` only secrets whose binding (modelled here independently of the
//       policy code) allows decision.destination;
//     * never writes the plaintext of a secret that is not bound to decision.destination into
//       a header name, a header value or the target, unless the agent sent those very bytes
//       (each plaintext is one letter repeated, a letter no other value, template, host or
//       encoder output can contribute, so an occurrence can only come from that secret or the
//       agent's own bytes);
//     * leaves no CR, LF or NUL in any header or the target, sets exactly one Host header, first,
//       equal to the destination's, and forwards no hop-by-hop header (SPEC invariant 11).
#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/encoding.hpp"
#include "core/ip.hpp"
#include "policy/loader.hpp"
#include "policy/rewrite.hpp"
#include "proxy/framing.hpp"
#include "proxy/request_parser.hpp"

namespace http = boost::beast::http;
using namespace sidekey::policy;
using sidekey::iequals;

namespace {

[[noreturn]] void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "fuzz_request_head: %s %.*s\n", what, static_cast<int>(detail.size()), detail.data());
  std::abort();
}
void check(bool ok, const char* what, std::string_view detail = {}) {
  if (!ok) fail(what, detail);
}

const char* kPolicy = R"(
version: 1
default: deny
secrets:
  openai: { hosts: [api.openai.com] }
  maps: { hosts: [maps.googleapis.com] }
  local: { hosts: ["http://127.0.0.1:18080"] }
  unbound: { hosts: [] }
routes:
  - { prefix: /openai/, upstream: "https://api.openai.com/v1/" }
  - { prefix: /local/, upstream: "http://127.0.0.1:18080/" }
  - { prefix: /maps/, upstream: "https://maps.googleapis.com/" }
rules:
  - name: metadata
    match: { hosts: ["169.254.169.254"] }
    action: deny
  - name: openai
    match: { hosts: [api.openai.com] }
    inject: { headers: { Authorization: "Bearer {{secrets.openai}}" } }
    references: [headers, query]
  - name: maps
    match: { hosts: [maps.googleapis.com] }
    inject: { query: { key: "{{secrets.maps}}" } }
    references: [headers]
  - name: agent-refs
    match: { hosts: ["127.0.0.1:18080", "127.0.0.1:8080", body.example.com] }
    references: [headers, query, body]
  - name: required
    match: { hosts: [req.example.com], methods: [POST] }
    require_reference: true
  - name: upgrade
    match: { hosts: [plain.example.com] }
    upgrade_tls: true
    inject: { headers: { X-Key: "k={{secrets.plain}}" } }
  - name: packages
    match: { hosts: [pypi.org] }
    action: allow
)";

// Where each secret may go, written down here rather than asked of the policy code.
struct Model {
  std::string value;
  bool (*bound)(const Destination&);
};

bool same_ip(std::string_view host, std::string_view ip) {
  auto a = sidekey::IpAddress::parse(host), b = sidekey::IpAddress::parse(ip);
  return a && b && a->bytes == b->bytes;
}
bool tls443(const Destination& d, std::string_view host) { return d.tls && d.port == 443 && d.host == host; }
bool openai_bound(const Destination& d) { return tls443(d, "api.openai.com"); }
bool maps_bound(const Destination& d) { return tls443(d, "maps.googleapis.com"); }
bool local_bound(const Destination& d) { return d.port == 18080 && same_ip(d.host, "127.0.0.1"); }
bool plain_bound(const Destination& d) { return tls443(d, "plain.example.com"); }
bool api_only_bound(const Destination& d) { return tls443(d, "body.example.com"); }
bool never(const Destination&) { return false; }

const std::map<std::string, Model, std::less<>>& models() {
  static const std::map<std::string, Model, std::less<>> m = {
      {"openai", {std::string(12, 'Q'), openai_bound}},
      {"maps", {std::string(12, 'R'), maps_bound}},
      {"local", {std::string(12, 'S'), local_bound}},
      {"unbound", {std::string(12, 'T'), never}},           // `secrets:` entry with no hosts
      {"plain", {std::string(12, 'U'), plain_bound}},       // bound by its template's rule
      {"api-only", {std::string(12, 'V'), api_only_bound}},  // allowed_hosts from the API
      {"loose", {std::string(12, 'W'), never}},             // no binding at all
      {"tasks/t1/openai", {std::string(12, 'X'), openai_bound}},  // task secret, binding name openai
      {"crlf", {"ZZ\r\nZ-Evil: ZZ", local_bound}},           // unusable in a header
  };
  return m;
}

class Lookup final : public SecretLookup {
 public:
  Lookup() {
    for (const auto& [name, model] : models()) {
      sidekey::secrets::SecretEntry e;
      e.name = name;
      e.binding_name = name.starts_with("tasks/") ? name.substr(name.rfind('/') + 1) : name;
      e.origin = "store";
      if (name == "api-only") e.allowed_hosts = {"body.example.com"};
      if (name == "crlf") e.allowed_hosts = {"http://127.0.0.1:18080"};
      e.value = std::make_shared<const sidekey::secrets::SecretValue>(model.value);
      entries_.emplace(name, std::move(e));
    }
  }
  const sidekey::secrets::SecretEntry* find(std::string_view name) const override {
    auto it = entries_.find(name);
    return it == entries_.end() ? nullptr : &it->second;
  }

 private:
  std::map<std::string, sidekey::secrets::SecretEntry, std::less<>> entries_;
};

const PolicySnapshot& policy() {
  static const PolicyPtr p = load_policy(kPolicy, "fuzz_policy.yaml").policy;
  return *p;
}
const Lookup& lookup() {
  static const Lookup l;
  return l;
}

// The input as the agent may have meant it: %XX decoded and '+' a space (query values).
std::string decoded(std::string_view s) {
  auto hex = [](char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
  };
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') out += ' ';
    else if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out += static_cast<char>(hex(s[i + 1]) << 4 | hex(s[i + 2]));
      i += 2;
    } else out += s[i];
  }
  return out;
}

// The agent wrote these bytes itself (possibly percent-encoded): not a leak.
bool agent_sent(std::string_view input, std::string_view value) {
  return input.find(value) != std::string_view::npos || decoded(input).find(value) != std::string::npos;
}

bool header_safe(std::string_view v) {
  return std::none_of(v.begin(), v.end(), [](char c) { return c == '\r' || c == '\n' || c == '\0'; });
}

void check_plan(std::string_view input, const Decision& decision, const RewritePlan& plan) {
  const Destination& d = decision.destination;
  for (const auto& name : plan.secrets) {
    auto it = models().find(name);
    check(it != models().end(), "plan uses a secret the lookup does not have:", name);
    check(it->second.bound(d), "plan uses a secret not bound to the destination:", name);
  }
  check(!plan.headers.empty() && iequals(plan.headers[0].name, "host"), "Host is not the first header");
  check(plan.headers[0].value == d.host_header(), "Host is not the destination's", plan.headers[0].value);
  for (std::size_t i = 0; i < plan.headers.size(); ++i) {
    const Header& h = plan.headers[i];
    check(header_safe(h.name) && header_safe(h.value), "CR, LF or NUL in a forwarded header", h.name);
    if (i == 0) continue;
    for (const char* hop : {"host", "proxy-authorization", "proxy-authenticate", "proxy-connection", "keep-alive",
                            "te", "trailer", "transfer-encoding", "content-length"})
      check(!iequals(h.name, hop), "a hop-by-hop, framing or second Host header is forwarded:", h.name);
  }
  check(header_safe(plan.target), "CR, LF or NUL in the target");
  for (const auto& [name, model] : models()) {
    if (model.bound(d) || agent_sent(input, model.value)) continue;
    const std::string& plaintext = model.value;  // (clang 14 cannot capture a structured binding)
    auto leaks = [&](std::string_view s) { return s.find(plaintext) != std::string_view::npos; };
    check(!leaks(plan.target), "an unbound secret's plaintext is in the target:", name);
    for (const auto& h : plan.headers)
      check(!leaks(h.name) && !leaks(h.value), "an unbound secret's plaintext is in a header:", name);
  }
}

void decide_and_rewrite(std::string_view input, const Destination& dest, std::string_view method,
                        const std::string& origin_target, const Headers& headers) {
  const PolicySnapshot& p = policy();
  Decision decision = p.decide(dest, method, origin_target);
  check(decision.destination.host == dest.host, "the decision moved the destination to another host");
  RequestHead head{std::string(method), origin_target, headers};
  auto r = rewrite(p, decision, head, lookup());
  if (auto* refusal = std::get_if<Refusal>(&r)) {
    check(refusal->status >= 400 && refusal->status < 600, "refusal status");
    for (const auto& [name, model] : models())
      if (!agent_sent(input, model.value))
        check(refusal->message.find(model.value) == std::string::npos, "a plaintext is in a refusal message:", name);
    return;
  }
  check_plan(input, decision, std::get<RewritePlan>(r));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 16384) return 0;
  std::string_view input(reinterpret_cast<const char*>(data), size);

  const std::size_t end = sidekey::proxy::find_head_end(input);
  // The session searches again from where the previous read ended: same answer.
  for (std::size_t k : {size / 3, size / 2, size - std::min<std::size_t>(size, 2)}) {
    std::size_t before = sidekey::proxy::find_head_end(input.substr(0, k));
    if (before != std::string_view::npos) {
      check(before == end, "a head end found in a prefix is not the first one");
    } else {
      check(sidekey::proxy::find_head_end(input, k) == end, "resumed head search differs from a full one");
    }
  }
  if (end == std::string_view::npos) return 0;
  std::string_view raw_head = input.substr(0, end);
  sidekey::proxy::RequestParser p;
  if (p.put_head(raw_head)) return 0;

  Headers headers;
  for (const auto& field : p.fields) {
    check(header_safe(field.name) && header_safe(field.value), "the parser let CR, LF or NUL into a field");
    if (iequals(field.name, "content-length") || iequals(field.name, "transfer-encoding")) continue;
    headers.push_back(field);
  }

  const PolicySnapshot& pol = policy();
  std::string_view method = p.method_string;
  std::string target = p.target;
  if (p.method == http::verb::connect) {
    if (auto dest = parse_connect_authority(target)) {
      auto c = pol.decide_connect(*dest);
      (void)c;
    }
    return 0;
  }
  if (iequals(std::string_view(target).substr(0, 7), "http://") || iequals(std::string_view(target).substr(0, 8), "https://")) {
    auto url = parse_absolute_url(target);
    if (!url) return 0;
    decide_and_rewrite(input, url->destination, method, url->target, headers);
    return 0;
  }
  if (target.empty() || target[0] != '/') return 0;
  // A reverse route.
  if (const Route* route = pol.route_for(target)) decide_and_rewrite(input, route->destination, method, route->map_target(target), headers);
  // An intercepted connection (CONNECT api.openai.com:443): Host must name the authority.
  const Destination intercepted{"https", "api.openai.com", 443, true};
  const Header* host = find_header(p.fields, "host");
  auto hp = split_host_port(host ? std::string_view(host->value) : std::string_view{});
  if (hp && hp->host == intercepted.host && (hp->port != 0 ? hp->port : 443) == intercepted.port)
    decide_and_rewrite(input, intercepted, method, target, headers);
  return 0;
}
