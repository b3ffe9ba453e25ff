// libFuzzer target for the streaming body substituter (policy/body_substituter.hpp).
//
// Input: a format byte (json, form, opaque), two bytes of chunking seed, a chunk-size byte,
// then the body. Secrets: "a" and "b" resolve (b's value has quotes, backslashes, a newline,
// '&', '%', '+', UTF-8 and a reference of its own, which must not be substituted again),
// "unbound" is refused with secret_not_bound, "null" resolves to no value, anything else is
// unknown_secret.
// Checks, aborting on failure:
// - one-shot (one feed, then finish) equals a model of the documented semantics: references
//   replaced by the JSON-escaped (json) or percent-encoded (form) value; a malformed reference
//   refuses json and form bodies; any reference refuses an opaque body, a malformed one is left
//   alone there;
// - streaming over a random chunking (empty feeds included) gives the same output and the same
//   refusal, the same secrets_used() and found_reference();
// - between feeds, output only ever grows as a prefix of the model's output, and at most
//   kMaxEncodedReferenceLength input bytes are held back; a refusal comes at the latest with
//   the feed that completes the refused reference, and what was output before it holds no part
//   of that reference;
// - a refusal is sticky: every later feed() and finish() returns it again and appends nothing.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policy/body_substituter.hpp"
#include "policy/reference.hpp"

using namespace sidekey::policy;
using sidekey::secrets::SecretValue;

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_body_substituter: %s\n", what);
  std::abort();
}
void check(bool ok, const char* what) {
  if (!ok) fail(what);
}

const std::shared_ptr<const SecretValue>& value_a() {
  static const auto v = std::make_shared<const SecretValue>("VAL-A");
  return v;
}
const std::shared_ptr<const SecretValue>& value_b() {
  static const auto v = std::make_shared<const SecretValue>("x\"y\\z\n&=%+ \xc3\xa9{{secrets.a}}\x01");
  return v;
}

BodySubstituter::Resolved resolve(std::string_view name) {
  if (name == "a") return value_a();
  if (name == "b") return value_b();
  if (name == "null") return std::shared_ptr<const SecretValue>{};
  if (name == "unbound")
    return Refusal::make(code::secret_not_bound, "secret 'unbound' may not be sent here").with_secret("unbound");
  return Refusal::make(code::unknown_secret, "no secret named '" + std::string(name) + "'").with_secret(std::string(name));
}

struct ModelResult {
  std::string out;                 // the output for the body up to the refusal (all of it without one)
  std::vector<std::size_t> at;     // at[i]: output length for input[0..i) (inside a reference: its start)
  std::optional<Refusal> refusal;
  std::size_t refused_begin = 0, refused_end = 0;  // the refused reference's raw extent
  bool refused_at_finish = false;  // a malformed reference that only the end of the body decides
  std::vector<std::string> names;
};

ModelResult model(BodyFormat format, std::string_view body) {
  using Kind = ReferenceMatch::Kind;
  const Encoding enc = format == BodyFormat::form ? Encoding::percent : Encoding::plain;
  ModelResult m;
  m.at.assign(body.size() + 1, 0);
  std::size_t i = 0;
  auto copy = [&](std::size_t upto) {  // literal bytes [i, upto)
    for (; i < upto; ++i) {
      m.at[i] = m.out.size();
      m.out += body[i];
    }
    m.at[i] = m.out.size();
  };
  std::size_t j = 0;
  while (j < body.size()) {
    char c = body[j];
    if (c != '{' && !(enc == Encoding::percent && c == '%')) {
      ++j;
      continue;
    }
    auto r = match_reference_at(body.substr(j), enc, true);
    check(r.kind != Kind::incomplete, "incomplete with final = true");
    if (r.kind == Kind::none || (r.kind == Kind::malformed && format == BodyFormat::opaque)) {
      ++j;
      continue;
    }
    copy(j);
    auto refuse = [&](Refusal why) {
      m.refusal = std::move(why);
      m.refused_begin = j;
      m.refused_end = j + r.length;
      m.refused_at_finish = match_reference_at(body.substr(j), enc, false).kind == Kind::incomplete;
      for (std::size_t k = j; k <= body.size(); ++k) m.at[k] = m.out.size();
    };
    if (r.kind == Kind::malformed) {
      refuse(Refusal::make(code::bad_request, ""));
      return m;
    }
    if (format == BodyFormat::opaque) {
      refuse(Refusal::make(code::reference_not_allowed, "").with_secret(r.name));
      return m;
    }
    auto v = resolve(r.name);
    if (auto* ref = std::get_if<Refusal>(&v)) {
      refuse(*ref);
      return m;
    }
    auto value = std::get<std::shared_ptr<const SecretValue>>(v);
    if (!value) {
      refuse(Refusal::make(code::unknown_secret, "").with_secret(r.name));
      return m;
    }
    if (format == BodyFormat::json) append_json_escaped(m.out, value->reveal());
    else append_percent_encoded(m.out, value->reveal());
    if (std::find(m.names.begin(), m.names.end(), r.name) == m.names.end()) m.names.push_back(r.name);
    for (std::size_t k = j + 1; k < j + r.length; ++k) m.at[k] = m.at[j];
    i = j = j + r.length;
    m.at[i] = m.out.size();
  }
  copy(body.size());
  return m;
}

bool same_refusal(const Refusal& a, const Refusal& b) { return a.code == b.code && a.secret == b.secret; }

void check_sticky(BodySubstituter& s, const Refusal& r) {
  std::string out = "unchanged";
  auto again = s.feed("{{secrets.a}} more", out);
  check(again && *again == r, "a refusal is not sticky on feed");
  auto fin = s.finish(out);
  check(fin && *fin == r, "a refusal is not sticky on finish");
  check(out == "unchanged", "a call after a refusal appended output");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 4 || size > 16384) return 0;
  const BodyFormat format = static_cast<BodyFormat>(data[0] % 3);
  std::uint32_t x = (data[1] | data[2] << 8) * 2654435761u + 1;
  const std::size_t max_chunk = 1 + data[3];
  std::string_view body(reinterpret_cast<const char*>(data + 4), size - 4);

  ModelResult m = model(format, body);

  // One shot.
  BodySubstituter one(format, resolve);
  std::string whole;
  std::optional<Refusal> r1 = one.feed(body, whole);
  if (r1) check(whole.empty(), "a refusing feed appended output");
  if (!r1) {
    std::size_t before = whole.size();
    r1 = one.finish(whole);
    if (r1) check(whole.size() == before, "a refusing finish appended output");
  }
  check(r1.has_value() == m.refusal.has_value(), "one-shot refusal differs from the model");
  if (r1) {
    check(same_refusal(*r1, *m.refusal), "one-shot refusal is not the model's");
    check(m.out.starts_with(whole), "one-shot output before a refusal is not a prefix of the model's");
    check_sticky(one, *r1);
  } else {
    check(whole == m.out, "one-shot output differs from the model");
    check(one.secrets_used() == m.names, "secrets_used differs from the model");
    check(one.found_reference() == !m.names.empty(), "found_reference differs from the model");
    check(one.values_used().size() == m.names.size(), "values_used size");
  }

  // Random chunking (xorshift), with empty feeds now and then.
  auto rnd = [&] {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return x;
  };
  BodySubstituter s(format, resolve);
  std::string out;
  std::optional<Refusal> r2;
  std::size_t fed = 0;
  while (fed < body.size()) {
    std::size_t step = rnd() % 5 == 0 ? 0 : 1 + rnd() % max_chunk;
    step = std::min(step, body.size() - fed);
    std::size_t before = out.size();
    r2 = s.feed(body.substr(fed, step), out);
    fed += step;
    if (r2) {
      check(out.size() == before, "a refusing feed appended output");
      break;
    }
    check(m.out.starts_with(out), "streamed output is not a prefix of the model's");
    // (In a form body a '%' is decided by the two bytes after it: "%7}" is no escape.)
    if (m.refusal && !m.refused_at_finish)
      check(fed < m.refused_end + (format == BodyFormat::form ? 2 : 0),
            "no refusal from the feed that completed the refused reference");
    std::size_t decided = fed > kMaxEncodedReferenceLength ? fed - kMaxEncodedReferenceLength : 0;
    check(out.size() >= m.at[decided], "held back more than kMaxEncodedReferenceLength bytes");
  }
  if (!r2) {
    std::size_t before = out.size();
    r2 = s.finish(out);
    if (r2) check(out.size() == before, "a refusing finish appended output");
  }
  check(r2.has_value() == r1.has_value(), "streaming and one-shot disagree on refusing");
  if (r2) {
    check(*r2 == *r1, "streaming refusal differs from one-shot");
    // Nothing of the refused reference went out.
    check(out.size() <= m.at[m.refused_begin], "output before a refusal holds part of the refused reference");
    check_sticky(s, *r2);
  } else {
    check(out == whole, "streaming output differs from one-shot");
    check(s.secrets_used() == one.secrets_used(), "streaming secrets_used differs from one-shot");
  }
  return 0;
}
