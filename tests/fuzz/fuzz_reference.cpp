// libFuzzer target for secret references (policy/reference.hpp): scanning, matching, templates
// and the encoders.
//
// Input: one control byte (bit 0: also check the percent-encoded reading of the text as raw
// percent text; bits 1-7: a cut point for the streaming check), then the text.
// Checks, aborting on failure:
// - scan_references (plain and percent): references in order, disjoint, inside the text, each
//   re-matching at its offset with the same name and length; names follow the grammar; a
//   malformed position comes after every reference found and re-matches as malformed;
// - scanning the percent-encoding of a text (Encoding::percent) finds the same names and the
//   same malformedness as scanning the text itself (plain), and a percent-mode reference decodes
//   to a plain reference of the same name;
// - match_reference_at on a prefix (final = false): a decided result (reference, malformed,
//   none) stays the same on the whole text; `incomplete` only for a prefix shorter than the
//   longest possible reference (what bounds the carry of a streaming reader);
// - Template::parse fails exactly when the scan finds a malformed reference; otherwise source()
//   is the text, secret_names() the distinct names in order, and rendering
//     * with values that cannot take part in a reference ("#<n>#") leaves no reference, complete
//       or partial, in the output, and each value appears where its reference was;
//     * with each name's canonical reference "{{secrets.NAME}}" gives a text that parses to the
//       same names and renders to itself again (round trip);
// - append_percent_encoded decodes back to the input and emits only unreserved bytes and %XX;
//   append_json_escaped emits no control byte and, when the result parses as a JSON string, it
//   is the input.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "policy/reference.hpp"

using namespace sidekey::policy;
using Kind = ReferenceMatch::Kind;

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_reference: %s\n", what);
  std::abort();
}
void check(bool ok, const char* what) {
  if (!ok) fail(what);
}

bool first_name_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}
bool name_char(char c) { return first_name_char(c) || c == '.' || c == '-' || c == '/'; }
bool valid_name(std::string_view n) {
  return !n.empty() && n.size() <= kMaxNameLength && first_name_char(n[0]) && std::all_of(n.begin(), n.end(), name_char);
}

int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
// The reading Encoding::percent documents: %XX decoded, '+' a space, anything else as is.
std::string percent_read(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
      out += static_cast<char>(hexval(s[i + 1]) << 4 | hexval(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::vector<std::string> names_of(const ReferenceScan& s) {
  std::vector<std::string> v;
  for (const auto& r : s.references) v.push_back(r.name);
  return v;
}

void check_scan(std::string_view text, Encoding enc, const ReferenceScan& scan) {
  std::size_t at = 0;
  for (const auto& r : scan.references) {
    check(r.begin >= at && r.begin < r.end && r.end <= text.size(), "references out of order or out of bounds");
    check(text[r.begin] == '{' || (enc == Encoding::percent && text[r.begin] == '%'), "reference starts on a wrong byte");
    check(valid_name(r.name), "reference name outside the grammar");
    auto m = match_reference_at(text.substr(r.begin), enc, true);
    check(m.kind == Kind::reference && m.length == r.end - r.begin && m.name == r.name, "scan and match disagree");
    check(r.end - r.begin <= (enc == Encoding::plain ? kMaxReferenceLength : kMaxEncodedReferenceLength),
          "reference longer than the documented maximum");
    if (enc == Encoding::percent) {
      // The decoded reference is a plain reference of the same name.
      std::string decoded = percent_read(text.substr(r.begin, r.end - r.begin));
      auto p = match_reference_at(decoded, Encoding::plain, true);
      check(p.kind == Kind::reference && p.length == decoded.size() && p.name == r.name,
            "percent reference does not decode to a plain one");
    }
    at = r.end;
  }
  if (scan.malformed_at) {
    check(*scan.malformed_at >= at && *scan.malformed_at < text.size(), "malformed position out of order");
    auto m = match_reference_at(text.substr(*scan.malformed_at), enc, true);
    check(m.kind == Kind::malformed, "malformed position does not re-match as malformed");
  }
}

// A result decided on a prefix is final: more text cannot change it.
void check_prefix_stability(std::string_view text, Encoding enc, std::size_t cut) {
  std::size_t start = text.find_first_of(enc == Encoding::percent ? "{%" : "{");
  if (start == std::string_view::npos) return;
  std::string_view rest = text.substr(start);
  std::string_view prefix = rest.substr(0, std::min(cut, rest.size()));
  auto partial = match_reference_at(prefix, enc, false);
  auto whole = match_reference_at(rest, enc, true);
  if (partial.kind == Kind::incomplete) {
    check(prefix.size() < (enc == Encoding::plain ? kMaxReferenceLength : kMaxEncodedReferenceLength),
          "incomplete after more bytes than the longest reference");
    return;
  }
  check(partial.kind == whole.kind, "a decided prefix result changed with more text");
  if (partial.kind != Kind::none) {
    check(partial.length == whole.length, "a decided prefix length changed with more text");
    check(partial.name == whole.name, "a decided prefix name changed with more text");
  }
  // final=true on a text must agree with final=false on the same text when decided.
  auto final_prefix = match_reference_at(prefix, enc, true);
  check(final_prefix.kind != Kind::incomplete, "incomplete with final = true");
  if (partial.kind != Kind::incomplete)
    check(final_prefix.kind == partial.kind && final_prefix.length == partial.length, "final changes a decided result");
}

void check_template(std::string_view text, const ReferenceScan& scan) {
  auto parsed = Template::parse(text);
  if (scan.malformed_at) {
    check(std::holds_alternative<std::string>(parsed), "template with a malformed reference parsed");
    check(!std::get<std::string>(parsed).empty(), "empty template error");
    return;
  }
  check(std::holds_alternative<Template>(parsed), "template without malformed reference refused");
  const Template& t = std::get<Template>(parsed);
  check(t.source() == text, "source() differs from the text");
  std::vector<std::string> distinct;
  for (const auto& r : scan.references)
    if (std::find(distinct.begin(), distinct.end(), r.name) == distinct.end()) distinct.push_back(r.name);
  check(t.secret_names() == distinct, "secret_names() are not the distinct names in order");
  check(t.is_single_reference() ==
            (scan.references.size() == 1 && scan.references[0].begin == 0 && scan.references[0].end == text.size()),
        "is_single_reference() wrong");

  // Values that cannot take part in a reference.
  auto safe_value = [&](std::string_view name) -> std::string {
    auto i = std::find(distinct.begin(), distinct.end(), name) - distinct.begin();
    return "#" + std::to_string(i) + "#";
  };
  std::vector<std::string> values;
  for (const auto& n : distinct) values.push_back(safe_value(n));
  std::string rendered;
  std::vector<std::string_view> asked;
  t.render(
      [&](std::string_view name) -> std::string_view {
        auto i = std::find(distinct.begin(), distinct.end(), name);
        if (i == distinct.end()) fail("render asked for a name not in secret_names()");
        asked.push_back(name);
        return values[i - distinct.begin()];
      },
      rendered);
  check(asked.size() == scan.references.size(), "render did not ask once per reference");
  auto after = scan_references(rendered);
  check(after.empty(), "a rendered template holds a reference or a partial one");
  // The expected text: each reference replaced by its value.
  std::string expected;
  std::size_t at = 0;
  for (const auto& r : scan.references) {
    expected.append(text.substr(at, r.begin - at));
    expected += safe_value(r.name);
    at = r.end;
  }
  expected.append(text.substr(at));
  check(rendered == expected, "render differs from the text with references replaced");

  // Round trip through canonical references.
  std::string canonical;
  t.render([&](std::string_view name) -> std::string_view {
    static thread_local std::string ref;
    ref = "{{secrets." + std::string(name) + "}}";
    return ref;
  }, canonical);
  auto again = Template::parse(canonical);
  check(std::holds_alternative<Template>(again), "canonical rendering does not parse");
  const Template& t2 = std::get<Template>(again);
  check(t2.secret_names() == distinct, "canonical rendering changed the names");
  check(names_of(scan_references(canonical)) == names_of(scan), "canonical rendering changed the references");
  std::string canonical2;
  t2.render([&](std::string_view name) -> std::string_view {
    static thread_local std::string ref;
    ref = "{{secrets." + std::string(name) + "}}";
    return ref;
  }, canonical2);
  check(canonical2 == canonical, "canonical rendering is not a fixed point");
}

void check_encoders(std::string_view text) {
  std::string pct = "prefix";
  append_percent_encoded(pct, text);
  check(pct.starts_with("prefix"), "append_percent_encoded changed what was there");
  std::string_view enc = std::string_view(pct).substr(6);
  for (std::size_t i = 0; i < enc.size(); ++i) {
    char c = enc[i];
    bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                      c == '.' || c == '_' || c == '~';
    if (c == '%') {
      check(i + 2 < enc.size() && hexval(enc[i + 1]) >= 0 && hexval(enc[i + 2]) >= 0, "bad %XX escape");
      i += 2;
    } else {
      check(unreserved, "percent encoding emitted a reserved byte");
    }
  }
  check(percent_read(enc) == text, "percent encoding does not decode to the input");

  std::string js;
  append_json_escaped(js, text);
  for (unsigned char c : js) check(c >= 0x20 && c != 0x7f, "JSON escaping emitted a control byte");
  auto parsed = nlohmann::json::parse("\"" + js + "\"", nullptr, false);
  if (!parsed.is_discarded()) check(parsed.is_string() && parsed.get<std::string>() == text, "JSON escaping round trip");
  // ASCII input is valid UTF-8: it must parse.
  if (std::all_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; }))
    check(!parsed.is_discarded(), "JSON escaping of ASCII text does not parse");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1 || size > 8192) return 0;
  const std::uint8_t control = data[0];
  std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);

  auto plain = scan_references(text, Encoding::plain);
  check_scan(text, Encoding::plain, plain);
  check_prefix_stability(text, Encoding::plain, control >> 1);
  check_template(text, plain);

  // The same text percent-encoded reads the same in percent mode.
  std::string encoded;
  append_percent_encoded(encoded, text);
  auto via_percent = scan_references(encoded, Encoding::percent);
  check_scan(encoded, Encoding::percent, via_percent);
  check(names_of(via_percent) == names_of(plain), "percent-encoded text scans to other names");
  check(via_percent.malformed_at.has_value() == plain.malformed_at.has_value(),
        "percent-encoded text differs in malformedness");
  check_prefix_stability(encoded, Encoding::percent, 3 * (control >> 1));

  if (control & 1) {
    // The raw text as percent text (query values, form bodies): same as its decoded reading.
    auto raw = scan_references(text, Encoding::percent);
    check_scan(text, Encoding::percent, raw);
    check_prefix_stability(text, Encoding::percent, control >> 1);
    auto decoded = scan_references(percent_read(text), Encoding::plain);
    check(names_of(raw) == names_of(decoded), "percent text and its decoding scan to other names");
    check(raw.malformed_at.has_value() == decoded.malformed_at.has_value(),
          "percent text and its decoding differ in malformedness");
  }

  check_encoders(text);
  return 0;
}
