#include "policy/body_substituter.hpp"

#include <algorithm>

#include "core/encoding.hpp"
#include "policy/reference.hpp"
#include "policy/sensitive.hpp"

namespace sidekey::policy {

BodyFormat body_format_for(std::string_view content_type) {
  auto semi = content_type.find(';');
  auto media = content_type.substr(0, semi);
  while (!media.empty() && (media.back() == ' ' || media.back() == '\t')) media.remove_suffix(1);
  while (!media.empty() && (media.front() == ' ' || media.front() == '\t')) media.remove_prefix(1);
  std::string m = ascii_lower(media);
  if (m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))) return BodyFormat::json;
  if (m == "application/x-www-form-urlencoded") return BodyFormat::form;
  return BodyFormat::opaque;
}

BodySubstituter::BodySubstituter(BodyFormat format, Resolve resolve)
    : format_(format), resolve_(std::move(resolve)) {}

std::optional<Refusal> BodySubstituter::feed(std::string_view chunk, std::string& out) {
  if (failed_) return failed_;
  if (carry_.empty()) return process(chunk, false, out);  // the common case: no copy
  carry_.append(chunk);
  return process(carry_, false, out);
}

std::optional<Refusal> BodySubstituter::finish(std::string& out) {
  if (failed_) return failed_;
  return process(carry_, true, out);
}

std::optional<Refusal> BodySubstituter::process(std::string_view buf, bool final, std::string& out) {
  using Kind = ReferenceMatch::Kind;
  const Encoding enc = format_ == BodyFormat::form ? Encoding::percent : Encoding::plain;
  // Built aside and appended only on success, so that a refusal appends nothing.
  std::string staged;
  std::size_t emitted = 0, keep_from = buf.size();
  auto fail = [&](Refusal r) {
    secrets::wipe(staged);
    failed_ = std::move(r);
    carry_.clear();
    return failed_;
  };

  std::size_t i = find_reference_start(buf, 0, enc);
  while (i != std::string_view::npos) {
    auto m = match_reference_at(buf.substr(i), enc, final);
    if (m.kind == Kind::incomplete) {
      keep_from = i;
      break;
    }
    if (m.kind == Kind::none || (m.kind == Kind::malformed && format_ == BodyFormat::opaque)) {
      i = find_reference_start(buf, i + 1, enc);
      continue;
    }
    if (m.kind == Kind::malformed)
      return fail(Refusal::make(code::bad_request,
                                "malformed secret reference in the request body (expected {{secrets.NAME}})"));
    if (format_ == BodyFormat::opaque)
      return fail(Refusal::make(code::reference_not_allowed,
                                "secret references in bodies are substituted only for application/json and "
                                "application/x-www-form-urlencoded")
                      .with_secret(m.name));
    auto resolved = resolve_(m.name);
    if (auto* r = std::get_if<Refusal>(&resolved)) return fail(std::move(*r));
    auto value = std::get<std::shared_ptr<const secrets::SecretValue>>(std::move(resolved));
    if (!value) return fail(Refusal::make(code::unknown_secret, "no secret named '" + m.name + "'").with_secret(m.name));
    append_wiping(staged, buf.substr(emitted, i - emitted));
    if (format_ == BodyFormat::json) append_json_escaped(staged, value->reveal());
    else append_percent_encoded(staged, value->reveal());
    if (std::find(names_.begin(), names_.end(), m.name) == names_.end()) {
      names_.push_back(m.name);
      values_.push_back(std::move(value));
    }
    emitted = i + m.length;
    i = find_reference_start(buf, emitted, enc);
  }
  append_wiping(staged, buf.substr(emitted, keep_from - emitted));
  append_wiping(out, staged);
  secrets::wipe(staged);
  std::string tail(buf.substr(keep_from));  // `buf` may view carry_ itself
  carry_.swap(tail);
  return std::nullopt;
}

}  // namespace sidekey::policy
