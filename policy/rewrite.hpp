#pragma once
// The pure request rewrite (ARCHITECTURE step 4): decision + request head + secrets → the head
// to send upstream, or the refusal. Every secret is checked against the destination before any
// plaintext is composed, so a request either gets every substitution or none.
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "policy/body_substituter.hpp"
#include "policy/headers.hpp"
#include "policy/policy.hpp"
#include "policy/refusal.hpp"
#include "policy/sensitive.hpp"
#include "secrets/secret_view.hpp"

namespace sidekey::policy {

// Where the rewrite finds secrets: the proxy adapts its SecretView, tests supply a map.
struct SecretLookup {
  virtual ~SecretLookup() = default;
  virtual const secrets::SecretEntry* find(std::string_view name) const = 0;
  // The immutable view every answer comes from, or null (answers that may change): an
  // InjectionMemo helps only a lookup over the view it was made current for.
  virtual const secrets::SecretView* view() const { return nullptr; }
};

class FunctionLookup final : public SecretLookup {
 public:
  using Fn = std::function<const secrets::SecretEntry*(std::string_view)>;
  explicit FunctionLookup(Fn fn) : fn_(std::move(fn)) {}
  const secrets::SecretEntry* find(std::string_view name) const override { return fn_(name); }

 private:
  Fn fn_;
};

// The binding of one secret: the policy's binding for its binding name plus the allowed_hosts
// it was created with (SPEC section 4). Empty = the secret cannot be used.
std::vector<HostPattern> effective_binding(const PolicySnapshot& policy, const secrets::SecretEntry& entry);

// Answers "may this secret be written to this decision's destination?".
class SecretResolver {
 public:
  SecretResolver(const PolicySnapshot& policy, const Decision& decision, const SecretLookup& secrets)
      : policy_(policy), decision_(decision), secrets_(secrets) {}
  // unknown_secret or secret_not_bound, else the entry (with a value).
  std::variant<const secrets::SecretEntry*, Refusal> resolve(std::string_view name) const;

 private:
  const PolicySnapshot& policy_;
  const Decision& decision_;
  const SecretLookup& secrets_;
};

// A byte string written upstream and what the response scrubber puts in its place: each
// secret's plaintext (→ its reference) and each composed value such as a whole header value
// (→ that value with references in place of secrets).
// Composed values the agent wrote (a header or query value with references in it) are scrubbed
// whole up to this many bytes per request in all; past that, through their secrets' plaintexts
// (every form of each plaintext is always in `written`). A scrub set holds ~28 bytes per byte of
// every form and is built per request: an agent must not choose its size.
inline constexpr std::size_t kAgentComposedScrubBudget = 1024;

struct WrittenValue {
  std::string secret;       // the (first) secret it holds
  std::string replacement;  // never plaintext
  SensitiveString bytes;
};
using WrittenValues = std::vector<WrittenValue>;

class InjectionMemo;
class ScrubSet;

struct RewritePlan {
  std::string method;
  std::string target;  // origin-form, query values substituted
  Headers headers;     // hop-by-hop removed, Host set, templates injected, references substituted
  std::vector<std::string> secrets;   // names used, distinct (audit `secrets`)
  std::vector<std::string> injected;  // "header:Authorization", "query:key", "body" (audit `injected`)
  std::optional<BodyFormat> body;     // run the body through a BodySubstituter of this format
  bool scrub = false;                 // scrub the response (inject rules unless scrub: false)

  // What was written, longest first, so a scrubber can prefer the longest match. A plan made
  // with a memo's help composes these only when asked (the response scrubber takes the memo's
  // set instead, scrub_set()).
  const WrittenValues& written() const;
  bool wrote_any() const;
  // The scrub set of written() that the memo which helped make the plan keeps (null: none yet);
  // keep_scrub_set() gives it one for the plans after this one.
  const std::shared_ptr<const ScrubSet>& scrub_set() const;
  void keep_scrub_set(std::shared_ptr<const ScrubSet> set);

  RewritePlan();
  ~RewritePlan();
  RewritePlan(RewritePlan&& o) noexcept;
  RewritePlan& operator=(RewritePlan&& o) noexcept;
  RewritePlan(const RewritePlan&) = delete;
  RewritePlan& operator=(const RewritePlan&) = delete;

  struct MemoEntry;  // what an InjectionMemo keeps (policy/rewrite.cpp)

 private:
  friend std::optional<Refusal> rewrite_into(RewritePlan&, const PolicySnapshot&, const Decision&, RequestHead,
                                             const SecretLookup&, InjectionMemo*);
  mutable WrittenValues written_;
  mutable bool written_composed_ = true;  // false: compose written_ from memo_ when asked
  std::shared_ptr<MemoEntry> memo_;
  void wipe() noexcept;
};

// What an inject rule's templates come to for one destination, kept from one request to the
// next: resolving every secret and checking its binding, and the response's scrub set, are the
// same work for every request the rule's templates alone inject into (no agent-written
// reference). It keeps no plaintext of its own: the secret values it resolved (in protected
// pages) and the scrub set (the proxy keeps sets across requests anyway). Valid for one policy
// snapshot and one secret view: a request with others empties it, and so does forget() (the
// proxy runs it on every worker when the view changes). It does not keep the view alive, only
// knows it. Not thread-safe: one per worker.
class InjectionMemo {
 public:
  // Forgets what it holds unless it was filled for this policy and these secrets.
  void use(const std::shared_ptr<const PolicySnapshot>& policy, const std::shared_ptr<const secrets::SecretView>& secrets);
  // Forgets everything (the values it resolved go with the entries).
  void forget();

 private:
  friend std::optional<Refusal> rewrite_into(RewritePlan&, const PolicySnapshot&, const Decision&, RequestHead,
                                             const SecretLookup&, InjectionMemo*);
  // Few rules inject on one worker at a time: a short list, emptied when full.
  static constexpr std::size_t kCapacity = 16;
  // Made current (use()) for this policy and the view behind `secrets`.
  bool current_for(const PolicySnapshot& policy, const SecretLookup& secrets) const {
    return policy_ && &policy == policy_.get() && secrets.view() != nullptr && secrets.view() == view_id_;
  }
  std::shared_ptr<RewritePlan::MemoEntry> find(const Rule* rule, const Destination& d) const;
  void keep(std::shared_ptr<RewritePlan::MemoEntry> e);

  // The policy is held (entries point at its rules; it holds no plaintext); the view is only
  // known: its weak pointer keeps its control block, so no later view can be taken for it by
  // use() (which the proxy calls with the view of each request's lookup just before the
  // rewrite; the raw pointer then tells a lookup over another view apart).
  std::shared_ptr<const PolicySnapshot> policy_;
  std::weak_ptr<const secrets::SecretView> view_;
  const secrets::SecretView* view_id_ = nullptr;
  std::vector<std::shared_ptr<RewritePlan::MemoEntry>> entries_;
};

using RewriteResult = std::variant<RewritePlan, Refusal>;

// For `decision` (from the same snapshot) and a request head whose target is origin-form:
// - deny → policy_denied;
// - allow (by rule or default) → the head without hop-by-hop headers; any reference in a header
//   or query value refuses with reference_not_allowed, since it would go out literally;
// - inject → templates rendered, agent references substituted where `references:` allows,
//   every secret resolved and checked against decision.destination first.
// Host is set from decision.destination. Codes: policy_denied, secret_not_bound,
// unknown_secret, reference_not_allowed, reference_required, bad_request, secret_invalid.
// The head is taken by value: a caller done with it moves it in, and its fields become the
// plan's without a copy.
RewriteResult rewrite(const PolicySnapshot& policy, const Decision& decision, RequestHead head,
                      const SecretLookup& secrets);

// The same, into `plan` (empty, default-constructed): the proxy's plan lives in its request's
// frame and is never moved (a move costs a pass over every field and a wipe of the source).
// On a refusal `plan` holds part of the head; the caller drops it (its destructor wipes it).
// With a memo (made current for `policy` and the view behind `secrets` with use()), a request
// that carries no agent-written reference takes its rule's resolved secret values from it.
std::optional<Refusal> rewrite_into(RewritePlan& plan, const PolicySnapshot& policy, const Decision& decision,
                                    RequestHead head, const SecretLookup& secrets, InjectionMemo* memo = nullptr);

// The resolver a BodySubstituter needs for `plan.body`. Copies the decision; `policy` and
// `secrets` are captured by reference and must outlive the substituter (the proxy holds the
// snapshot and the secret view for the whole request anyway).
BodySubstituter::Resolve body_resolver(const PolicySnapshot& policy, const Decision& decision,
                                       const SecretLookup& secrets);

}  // namespace sidekey::policy
