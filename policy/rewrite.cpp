#include "policy/rewrite.hpp"

#include <algorithm>
#include <cstring>

#include "core/encoding.hpp"
#include "secrets/secret_name.hpp"

namespace sidekey::policy {
namespace {

struct QueryParam {
  std::string_view key;    // raw
  std::string_view value;  // raw
  bool has_value = false;  // "k=v" rather than "k"
  std::string decoded_key;
};

std::vector<QueryParam> split_query(std::string_view q) {
  std::vector<QueryParam> out;
  while (true) {
    auto amp = q.find('&');
    auto part = q.substr(0, amp);
    if (!part.empty()) {
      QueryParam p;
      auto eq = part.find('=');
      p.key = part.substr(0, eq);
      if (eq != std::string_view::npos) {
        p.value = part.substr(eq + 1);
        p.has_value = true;
      }
      std::string k(p.key);
      std::replace(k.begin(), k.end(), '+', ' ');
      p.decoded_key = percent_decode(k).value_or(k);
      out.push_back(std::move(p));
    }
    if (amp == std::string_view::npos) break;
    q.remove_prefix(amp + 1);
  }
  return out;
}

bool header_safe(std::string_view v) {
  return v.empty() || (!std::memchr(v.data(), '\r', v.size()) && !std::memchr(v.data(), '\n', v.size()) &&
                       !std::memchr(v.data(), '\0', v.size()));
}

std::string scheme_authority(const Destination& d) { return (d.tls ? "https://" : "http://") + d.authority(); }

void add_unique(std::vector<std::string>& v, std::string_view s) {
  if (std::find(v.begin(), v.end(), s) == v.end()) v.emplace_back(s);
}

// A place's agent-written references, found before anything is resolved.
struct AgentValue {
  Place place;
  std::size_t index;  // into plan.headers or the query params
  ReferenceScan scan;
};

}  // namespace

std::vector<HostPattern> effective_binding(const PolicySnapshot& policy, const secrets::SecretEntry& entry) {
  std::vector<HostPattern> out;
  const std::string& name = entry.binding_name.empty() ? entry.name : entry.binding_name;
  if (const Binding* b = policy.binding(name)) out = b->hosts;
  for (const auto& h : entry.allowed_hosts)
    if (auto p = HostPattern::parse(h)) out.push_back(std::move(*p));  // the API validated them
  return out;
}

std::variant<const secrets::SecretEntry*, Refusal> SecretResolver::resolve(std::string_view name) const {
  const Destination& d = decision_.destination;
  auto refuse = [&](std::string_view c, std::string msg) {
    return Refusal::make(c, std::move(msg))
        .with_rule(std::string(decision_.rule_name()))
        .with_secret(std::string(name))
        .with_host(d.host);
  };
  const secrets::SecretEntry* e = secrets_.find(name);
  if (!e || !e->value) return refuse(code::unknown_secret, "no secret named '" + std::string(name) + "'");
  // The policy's binding as it is, unless the secret adds hosts of its own (API allowed_hosts).
  std::vector<HostPattern> merged;
  const std::vector<HostPattern>* hosts = &merged;
  if (e->allowed_hosts.empty()) {
    const Binding* b = policy_.binding(e->binding_name.empty() ? e->name : e->binding_name);
    if (b) hosts = &b->hosts;
  } else {
    merged = effective_binding(policy_, *e);
  }
  const std::vector<HostPattern>& binding = *hosts;
  if (binding.empty())
    return refuse(code::secret_not_bound, "secret '" + std::string(name) +
                                              "' is bound to no host (add a secrets: entry to the policy, or "
                                              "allowed_hosts when creating it)");
  if (std::none_of(binding.begin(), binding.end(), [&](const HostPattern& h) { return h.allows(d); })) {
    std::string msg = "secret '" + std::string(name) + "' may not be sent to " + scheme_authority(d);
    if (!d.tls &&
        std::any_of(binding.begin(), binding.end(), [&](const HostPattern& h) { return h.allows(d.upgraded_to_tls()); }))
      msg += " (its binding requires TLS; use https:// or upgrade_tls)";
    return refuse(code::secret_not_bound, std::move(msg));
  }
  return e;
}

// The secrets a rewrite resolved, by name, with their values.
using Resolved = std::vector<std::pair<std::string, std::shared_ptr<const secrets::SecretValue>>>;

// What a memo keeps for a rule and a destination (see InjectionMemo).
struct RewritePlan::MemoEntry {
  std::shared_ptr<const PolicySnapshot> policy;  // holds `rule`
  const Rule* rule = nullptr;
  Destination destination;
  Resolved resolved;  // each template secret's value
  std::vector<std::string> secret_names, injected;
  bool wrote_any = false;
  std::shared_ptr<const ScrubSet> scrub_set;  // of what the templates write (kept by the proxy)
};

namespace {
void note_written(WrittenValues& out, std::string_view secret, std::string replacement, std::string_view bytes) {
  auto& w = out.emplace_back();
  w.secret.assign(secret);
  w.replacement = std::move(replacement);
  w.bytes = SensitiveString::copy(bytes);
}

// Longest first (composed values contain the plaintext), each value once.
void order_written(WrittenValues& written) {
  // (An insertion sort: stable, and a handful of values needs no buffer of its own.)
  for (std::size_t i = 1; i < written.size(); ++i)
    for (std::size_t j = i; j > 0 && written[j - 1].bytes.size() < written[j].bytes.size(); --j)
      std::swap(written[j - 1], written[j]);
  // Composed values equal to a plaintext (a template that is one reference) are kept once.
  std::size_t kept = 0;
  for (std::size_t i = 0; i < written.size(); ++i) {
    bool seen = std::any_of(written.begin(), written.begin() + static_cast<std::ptrdiff_t>(kept),
                            [&](const WrittenValue& u) { return u.bytes.reveal() == written[i].bytes.reveal(); });
    if (seen) continue;
    if (kept != i) std::swap(written[kept], written[i]);
    ++kept;
  }
  written.erase(written.begin() + static_cast<std::ptrdiff_t>(kept), written.end());
}

// A secret's plaintext by name, from the secrets a rewrite resolved (all of them, first).
auto plaintext_of(const Resolved& resolved) {
  return [&resolved](std::string_view name) -> std::string_view {
    for (const auto& r : resolved)
      if (r.first == name) return r.second->reveal();
    return {};  // unreachable: every name was resolved
  };
}

// The query value a template writes: rendered, then percent-encoded.
std::string encoded_template_value(const InjectItem& item, const Resolved& resolved) {
  std::string rendered, encoded;
  item.value.render(plaintext_of(resolved), rendered);
  append_percent_encoded(encoded, rendered);
  secrets::wipe(rendered);
  return encoded;
}

// What a plan a memo helped make wrote: rewrite_into's values for a request without agent-written
// references (the templates', then each secret's plaintext), composed again from the entry.
void compose_written(WrittenValues& out, const RewritePlan::MemoEntry& e) {
  const auto value_of = plaintext_of(e.resolved);
  for (const auto& item : e.rule->inject_headers) {
    if (item.value.secret_names().empty()) continue;
    std::string value;
    item.value.render(value_of, value);
    note_written(out, item.value.secret_names()[0], item.value.source(), value);
    secrets::wipe(value);
  }
  for (const auto& item : e.rule->inject_query) {
    if (item.value.secret_names().empty()) continue;
    std::string encoded = encoded_template_value(item, e.resolved);
    note_written(out, item.value.secret_names()[0], item.value.source(), encoded);
    secrets::wipe(encoded);
  }
  for (const auto& [name, value] : e.resolved) note_written(out, name, secrets::reference_for(name), value->reveal());
  order_written(out);
}
}  // namespace

RewritePlan::RewritePlan() = default;
RewritePlan::~RewritePlan() { wipe(); }

RewritePlan::RewritePlan(RewritePlan&& o) noexcept
    : method(std::move(o.method)),
      target(std::move(o.target)),
      headers(std::move(o.headers)),
      secrets(std::move(o.secrets)),
      injected(std::move(o.injected)),
      body(o.body),
      scrub(o.scrub),
      written_(std::move(o.written_)),
      written_composed_(o.written_composed_),
      memo_(std::move(o.memo_)) {
  o.wipe();
  o.written_composed_ = true;  // (it has no memo entry left to compose from)
}

RewritePlan& RewritePlan::operator=(RewritePlan&& o) noexcept {
  if (this != &o) {
    wipe();
    method = std::move(o.method);
    target = std::move(o.target);
    headers = std::move(o.headers);
    secrets = std::move(o.secrets);
    injected = std::move(o.injected);
    body = o.body;
    scrub = o.scrub;
    written_ = std::move(o.written_);
    written_composed_ = o.written_composed_;
    memo_ = std::move(o.memo_);
    o.wipe();
    o.written_composed_ = true;
  }
  return *this;
}

const WrittenValues& RewritePlan::written() const {
  if (!written_composed_) {
    compose_written(written_, *memo_);
    written_composed_ = true;
  }
  return written_;
}

bool RewritePlan::wrote_any() const { return written_composed_ ? !written_.empty() : memo_->wrote_any; }

const std::shared_ptr<const ScrubSet>& RewritePlan::scrub_set() const {
  static const std::shared_ptr<const ScrubSet> none;
  return memo_ ? memo_->scrub_set : none;
}

void RewritePlan::keep_scrub_set(std::shared_ptr<const ScrubSet> set) {
  if (memo_) memo_->scrub_set = std::move(set);
}

void RewritePlan::wipe() noexcept {
  secrets::wipe(target);
  for (auto& h : headers) secrets::wipe(h.value);
  // Then the whole array, the string objects too: a field removed after the values went in (the
  // proxy drops framing fields) moves the later ones down, and a long value moved into a slot
  // that held a short one overwrites only the first half of its in-object bytes.
  headers.clear();
  wipe_spare(headers);
}

void InjectionMemo::use(const std::shared_ptr<const PolicySnapshot>& policy,
                        const std::shared_ptr<const secrets::SecretView>& secrets) {
  const bool same_view = secrets && !view_.owner_before(secrets) && !secrets.owner_before(view_) && !view_.expired();
  if (policy == policy_ && same_view) return;
  entries_.clear();
  policy_ = policy;
  view_ = secrets;
  view_id_ = secrets.get();
}

void InjectionMemo::forget() {
  entries_.clear();
  policy_.reset();
  view_.reset();
  view_id_ = nullptr;
}

std::shared_ptr<RewritePlan::MemoEntry> InjectionMemo::find(const Rule* rule, const Destination& d) const {
  for (const auto& e : entries_)
    if (e->rule == rule && e->destination == d) return e;
  return nullptr;
}

void InjectionMemo::keep(std::shared_ptr<RewritePlan::MemoEntry> e) {
  if (entries_.size() >= kCapacity) entries_.clear();
  entries_.push_back(std::move(e));
}

RewriteResult rewrite(const PolicySnapshot& policy, const Decision& decision, RequestHead head,
                      const SecretLookup& secrets) {
  RewritePlan plan;
  if (auto refusal = rewrite_into(plan, policy, decision, std::move(head), secrets)) return std::move(*refusal);
  return plan;
}

std::optional<Refusal> rewrite_into(RewritePlan& plan, const PolicySnapshot& policy, const Decision& decision,
                                    RequestHead head, const SecretLookup& secrets, InjectionMemo* memo) {
  const Rule* rule = decision.rule;
  const Destination& dest = decision.destination;
  auto refuse = [&](std::string_view c, std::string msg, std::string_view secret = {}) {
    return Refusal::make(c, std::move(msg))
        .with_rule(std::string(decision.rule_name()))
        .with_secret(std::string(secret))
        .with_host(dest.host);
  };

  if (decision.action == Action::deny) {
    return refuse(code::policy_denied, rule ? "denied by rule '" + rule->name + "'"
                                            : "no rule allows " + scheme_authority(dest) + " (default: deny)");
  }

  // What body substitution needs to know of the head as received (before hop-by-hop stripping:
  // a Connection field naming Content-Length or Content-Encoding strips it from the plan, but
  // the body still follows and still goes upstream), taken before the fields move to the plan.
  struct BodyHead {
    bool has_body = false;
    std::optional<std::string> content_encoding, content_type;
  } body_head;
  if (rule && decision.action == Action::inject && rule->references_allowed(kBody)) {
    const Header* cl = find_header(head.headers, "content-length");
    body_head.has_body = find_header(head.headers, "transfer-encoding") || (cl && cl->value != "0");
    if (const Header* ce = find_header(head.headers, "content-encoding")) body_head.content_encoding = ce->value;
    if (const Header* ct = find_header(head.headers, "content-type")) body_head.content_type = ct->value;
  }

  plan.method = std::move(head.method);
  // Room for Host, the templates and the proxy's Accept-Encoding now, while the fields hold only
  // what the agent sent: a vector that grows later would free an array with the short values
  // written into it.
  plan.headers = std::move(head.headers);
  plan.headers.reserve(plan.headers.size() + 2 + (rule ? rule->inject_headers.size() : 0));
  strip_hop_by_hop(plan.headers, true);
  remove_header(plan.headers, "host");
  plan.headers.insert(plan.headers.begin(), Header{"Host", dest.host_header()});

  const std::string_view target = head.target;
  const auto qmark = target.find('?');
  const std::string_view path = target.substr(0, qmark);
  const std::string_view query = qmark == std::string_view::npos ? std::string_view{} : target.substr(qmark + 1);
  auto params = split_query(query);

  // A reference where nothing substitutes it would leave sidekey literally; refuse instead.
  auto literal_refusal = [&](const ReferenceScan& s, std::string where) {
    return refuse(code::reference_not_allowed,
                  "secret references are substituted in header values and query values, not in " + where,
                  s.references.empty() ? std::string_view{} : std::string_view(s.references[0].name));
  };
  if (auto s = scan_references(path, Encoding::percent); !s.references.empty()) return literal_refusal(s, "the path");
  for (const auto& p : params)
    if (auto s = scan_references(p.key, Encoding::percent); !s.references.empty())
      return literal_refusal(s, "query keys");

  if (decision.action == Action::allow) {
    std::string why = rule ? "rule '" + rule->name + "' forwards requests untouched (action: allow)"
                           : std::string("no rule matches this request (default: allow)");
    for (const auto& h : plan.headers)
      if (auto s = scan_references(h.value); !s.references.empty())
        return refuse(code::reference_not_allowed, why + "; a secret reference would be sent literally",
                      s.references[0].name);
    for (const auto& p : params)
      if (auto s = scan_references(p.value, Encoding::percent); !s.references.empty())
        return refuse(code::reference_not_allowed, why + "; a secret reference would be sent literally",
                      s.references[0].name);
    plan.target = std::string(target);
    return std::nullopt;
  }

  // inject: templates replace what the agent sent under the same names, so the upstream never
  // sees two candidates.
  for (const auto& item : rule->inject_headers) remove_header(plan.headers, item.name);
  std::erase_if(params, [&](const QueryParam& p) {
    return std::any_of(rule->inject_query.begin(), rule->inject_query.end(),
                       [&](const InjectItem& i) { return i.name == p.decoded_key; });
  });

  std::vector<AgentValue> agent;
  // `label()` names the place for an error message; built only when one is needed.
  auto collect = [&](Place place, std::size_t index, std::string_view raw, Encoding enc,
                     auto label) -> std::optional<Refusal> {
    auto s = scan_references(raw, enc);
    bool allowed = rule->references_allowed(place);
    if (s.malformed_at && allowed)
      return refuse(code::bad_request, "malformed secret reference in " + label() +
                                           " (expected {{secrets.NAME}}, NAME = [A-Za-z0-9_][A-Za-z0-9_.-/]{0,127})");
    if (s.references.empty()) return std::nullopt;
    if (!allowed)
      return refuse(code::reference_not_allowed,
                    "rule '" + rule->name + "' does not substitute references in " +
                        std::string(place_name(place)) + " (references: lists where it does)",
                    s.references[0].name);
    agent.push_back({place, index, std::move(s)});
    return std::nullopt;
  };
  for (std::size_t i = 0; i < plan.headers.size(); ++i)
    if (auto r = collect(kHeaders, i, plan.headers[i].value, Encoding::plain,
                         [&] { return "header " + plan.headers[i].name; }))
      return std::move(*r);
  for (std::size_t i = 0; i < params.size(); ++i)
    if (auto r = collect(kQuery, i, params[i].value, Encoding::percent,
                         [&] { return "query value " + params[i].decoded_key; }))
      return std::move(*r);

  if (rule->require_reference && agent.empty())
    return refuse(code::reference_required,
                  "rule '" + rule->name + "' requires the request to carry a secret reference ({{secrets.NAME}})");

  // The query: untouched parameters keep their bytes; substituted values are percent-encoded.
  std::string new_query;
  auto append_param = [&](std::string_view key, bool has_value, std::string_view value) {
    reserve_wiping(new_query, new_query.size() + key.size() + value.size() + 2);
    if (!new_query.empty()) new_query += '&';
    new_query.append(key);
    if (has_value) {
      new_query += '=';
      new_query.append(value);
    }
  };
  // The end of every inject: the target, then what the body needs.
  auto finish = [&]() -> std::optional<Refusal> {
    plan.target.reserve(path.size() + 1 + new_query.size());
    plan.target.append(path);
    if (!new_query.empty()) {
      plan.target += '?';
      plan.target.append(new_query);
    }
    secrets::wipe(new_query);
    if (rule->references_allowed(kBody) && body_head.has_body) {
      if (const auto& ce = body_head.content_encoding; ce && !iequals(*ce, "identity"))
        return refuse(code::bad_request, "rule '" + rule->name +
                                             "' substitutes references in bodies, which cannot be read through "
                                             "Content-Encoding " + *ce);
      plan.body = body_format_for(body_head.content_type ? std::string_view(*body_head.content_type) : std::string_view{});
    }
    plan.scrub = rule->scrub;
    return std::nullopt;
  };

  // The rule's templates alone: their secrets were resolved and checked for this destination
  // before, if the memo has it.
  const bool memoize = memo != nullptr && agent.empty() && memo->current_for(policy, secrets);
  if (memoize) {
    if (auto e = memo->find(rule, dest)) {
      const auto value_of = plaintext_of(e->resolved);
      for (const auto& item : rule->inject_headers) {  // (header-safe: the same values were)
        auto& h = plan.headers.emplace_back();
        h.name = item.name;
        item.value.render(value_of, h.value);
      }
      for (const auto& p : params) append_param(p.key, p.has_value, p.value);
      for (const auto& item : rule->inject_query) {
        std::string encoded_key, encoded = encoded_template_value(item, e->resolved);
        append_percent_encoded(encoded_key, item.name);
        append_param(encoded_key, true, encoded);
        secrets::wipe(encoded);
      }
      plan.secrets = e->secret_names;
      plan.injected = e->injected;
      plan.written_composed_ = false;
      plan.memo_ = std::move(e);
      return finish();
    }
  }

  // Resolve every secret before composing anything: all substitutions or none.
  Resolved resolved;
  SecretResolver resolver(policy, decision, secrets);
  auto resolve = [&](const std::string& name) -> std::optional<Refusal> {
    for (const auto& r : resolved)
      if (r.first == name) return std::nullopt;
    auto r = resolver.resolve(name);
    if (auto* refusal = std::get_if<Refusal>(&r)) return std::move(*refusal);
    resolved.emplace_back(name, std::get<const secrets::SecretEntry*>(r)->value);
    return std::nullopt;
  };
  for (const auto* items : {&rule->inject_headers, &rule->inject_query})
    for (const auto& item : *items)
      for (const auto& n : item.value.secret_names())
        if (auto r = resolve(n)) return std::move(*r);
  for (const auto& a : agent)
    for (const auto& ref : a.scan.references)
      if (auto r = resolve(ref.name)) return std::move(*r);

  const auto value_of = plaintext_of(resolved);
  auto first_secret = [](const ReferenceScan& s) -> const std::string& { return s.references.front().name; };
  WrittenValues& written = plan.written_;
  written.reserve(2 * (rule->inject_headers.size() + rule->inject_query.size()) + 2);
  std::size_t agent_composed_bytes = 0;
  auto note_agent_written = [&](std::string_view secret, std::string replacement, std::string_view bytes) {
    if (agent_composed_bytes + bytes.size() > kAgentComposedScrubBudget) return;  // its plaintexts still are
    agent_composed_bytes += bytes.size();
    note_written(written, secret, std::move(replacement), bytes);
  };

  // Agent-written header values.
  for (const auto& a : agent) {
    if (a.place != kHeaders) continue;
    Header& h = plan.headers[a.index];
    std::string composed = replace_references(h.value, a.scan.references,
                                              [&](std::string_view n, std::string& out) { append_wiping(out, value_of(n)); });
    if (!header_safe(composed)) {
      secrets::wipe(composed);
      return refuse(code::secret_invalid, "a secret's value cannot be written into header " + h.name,
                    first_secret(a.scan));
    }
    note_agent_written(first_secret(a.scan), h.value, composed);
    std::swap(h.value, composed);
    secrets::wipe(composed);
    add_unique(plan.injected, "header:" + h.name);
  }
  // Template headers.
  for (const auto& item : rule->inject_headers) {
    std::string value;
    item.value.render(value_of, value);
    if (!header_safe(value)) {
      secrets::wipe(value);
      return refuse(code::secret_invalid, "a secret's value cannot be written into header " + item.name,
                    item.value.secret_names().empty() ? std::string_view{} : item.value.secret_names()[0]);
    }
    if (!item.value.secret_names().empty()) {
      note_written(written, item.value.secret_names()[0], item.value.source(), value);
      add_unique(plan.injected, item.audit);
    }
    plan.headers.push_back({item.name, std::move(value)});
  }

  for (std::size_t i = 0; i < params.size(); ++i) {
    const QueryParam& p = params[i];
    auto a = std::find_if(agent.begin(), agent.end(),
                          [&](const AgentValue& v) { return v.place == kQuery && v.index == i; });
    if (a == agent.end()) {
      append_param(p.key, p.has_value, p.value);
      continue;
    }
    std::string composed = replace_references(
        p.value, a->scan.references, [&](std::string_view n, std::string& out) { append_percent_encoded(out, value_of(n)); });
    note_agent_written(first_secret(a->scan), std::string(p.value), composed);
    append_param(p.key, true, composed);
    secrets::wipe(composed);
    add_unique(plan.injected, "query:" + p.decoded_key);
  }
  for (const auto& item : rule->inject_query) {
    std::string encoded_key, encoded = encoded_template_value(item, resolved);
    append_percent_encoded(encoded_key, item.name);
    if (!item.value.secret_names().empty()) {
      note_written(written, item.value.secret_names()[0], item.value.source(), encoded);
      add_unique(plan.injected, item.audit);
    }
    append_param(encoded_key, true, encoded);
    secrets::wipe(encoded);
  }

  // Each secret's plaintext, then longest first (composed values contain the plaintext).
  for (const auto& [name, value] : resolved) {
    plan.secrets.push_back(name);
    note_written(written, name, secrets::reference_for(name), value->reveal());
  }
  order_written(written);

  if (memoize) {
    auto e = std::make_shared<RewritePlan::MemoEntry>();
    e->policy = memo->policy_;
    e->rule = rule;
    e->destination = dest;
    e->resolved = std::move(resolved);
    e->secret_names = plan.secrets;
    e->injected = plan.injected;
    e->wrote_any = !written.empty();
    plan.memo_ = e;  // (for keep_scrub_set(): written_ is composed already)
    memo->keep(std::move(e));
  }
  return finish();
}

BodySubstituter::Resolve body_resolver(const PolicySnapshot& policy, const Decision& decision,
                                       const SecretLookup& secrets) {
  return [&policy, decision, &secrets](std::string_view name) -> BodySubstituter::Resolved {
    auto r = SecretResolver(policy, decision, secrets).resolve(name);
    if (auto* refusal = std::get_if<Refusal>(&r)) return std::move(*refusal);
    return std::get<const secrets::SecretEntry*>(r)->value;
  };
}

}  // namespace sidekey::policy
