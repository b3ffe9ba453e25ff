#pragma once
// Streaming substitution of references in request bodies, for rules with
// `references: [..., body]` (SPEC section 3). Knows nothing of HTTP framing: the proxy feeds
// the decoded (de-chunked) body and re-frames the output, whose length differs from the input.
//
// Contract:
// - feed() and finish() append output to `out`; references split across any number of feeds
//   are found, at the cost of holding back at most kMaxEncodedReferenceLength bytes.
// - A reference that cannot be resolved, or a malformed one ("{{secrets.bad name}}"), is
//   reported as a Refusal by the feed()/finish() call that completes it, and that call appends
//   nothing. Output already returned never holds any part of a reference that was refused, so
//   the proxy only has to abort the upstream request (never complete its framing) and answer
//   the agent with the refusal. After a refusal every further call returns it again.
// - `out` holds plaintext after a substitution: send it, then wipe it (secrets::wipe).
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "policy/refusal.hpp"
#include "secrets/secret_value.hpp"

namespace sidekey::policy {

enum class BodyFormat {
  json,    // references replaced by the JSON-string-escaped value (they are expected inside strings)
  form,    // application/x-www-form-urlencoded: references may be percent-encoded, values are
  opaque,  // any other type: not substituted; a reference in it refuses the request (fail closed)
};

// json for application/json and application/*+json, form for
// application/x-www-form-urlencoded, opaque otherwise (parameters and case ignored).
BodyFormat body_format_for(std::string_view content_type);

class BodySubstituter {
 public:
  using Resolved = std::variant<std::shared_ptr<const secrets::SecretValue>, Refusal>;
  // Yields the value of a secret that may be written to this request's destination, or the
  // refusal saying why not.
  using Resolve = std::function<Resolved(std::string_view name)>;

  BodySubstituter(BodyFormat format, Resolve resolve);

  std::optional<Refusal> feed(std::string_view chunk, std::string& out);
  std::optional<Refusal> finish(std::string& out);

  bool found_reference() const { return !names_.empty(); }
  // Names substituted so far, distinct, for the audit line and metrics.
  const std::vector<std::string>& secrets_used() const { return names_; }
  // Their values, for response scrubbing.
  const std::vector<std::shared_ptr<const secrets::SecretValue>>& values_used() const { return values_; }

 private:
  std::optional<Refusal> process(std::string_view buf, bool final, std::string& out);

  BodyFormat format_;
  Resolve resolve_;
  std::string carry_;  // raw input not yet decided: the start of a possible reference
  std::optional<Refusal> failed_;
  std::vector<std::string> names_;
  std::vector<std::shared_ptr<const secrets::SecretValue>> values_;
};

}  // namespace sidekey::policy
