#pragma once
// Secret references, `{{secrets.NAME}}` (SPEC section 3): recognizing them in text — plain, or
// percent-encoded as in query values and form bodies — and templates parsed once at load.
//
// Grammar: "{{" SP{0,32} "secrets." NAME SP{0,32} "}}", NAME = [A-Za-z0-9_][A-Za-z0-9_.\-/]{0,127}.
// The cap on spaces is ours: it bounds a reference's length, which is what lets a streaming
// reader carry a bounded tail across reads. Text that starts like a reference ("{{ secrets.")
// but does not complete one is *malformed*; callers refuse it rather than forward something the
// agent meant as a reference.
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "policy/sensitive.hpp"

namespace sidekey::policy {

inline constexpr std::size_t kMaxNameLength = 128;
inline constexpr std::size_t kMaxReferencePadding = 32;
inline constexpr std::size_t kMaxReferenceLength = 2 + kMaxReferencePadding + 8 + kMaxNameLength + kMaxReferencePadding + 2;
// Every decoded byte may be written as a three-byte %XX escape.
inline constexpr std::size_t kMaxEncodedReferenceLength = 3 * kMaxReferenceLength;

enum class Encoding {
  plain,    // header values, templates, JSON bodies
  percent,  // query values and form bodies: %XX decoded and '+' read as a space for recognition
};

struct ReferenceMatch {
  enum class Kind {
    none,        // not a reference at this position
    reference,   // a whole reference: `length` raw bytes, `name`
    malformed,   // began "{{ secrets." but cannot complete
    incomplete,  // the text ends while a reference (or a malformed one) is still possible
  };
  Kind kind = Kind::none;
  std::size_t length = 0;
  std::string name;
};

// Reads at most one reference starting exactly at text[0]. With `final` (the text is all
// there is) the result is never `incomplete`: an unfinished reference is malformed once past
// "{{ secrets.", else none.
ReferenceMatch match_reference_at(std::string_view text, Encoding enc, bool final = true);

struct FoundReference {
  std::size_t begin = 0, end = 0;  // raw byte offsets into the scanned text
  std::string name;
};

struct ReferenceScan {
  std::vector<FoundReference> references;
  std::optional<std::size_t> malformed_at;  // raw offset of the first malformed reference
  bool ok() const { return !malformed_at; }
  bool empty() const { return references.empty() && !malformed_at; }
};

// The offset of the first byte at or after `at` where a reference may begin: a '{' (or,
// percent-encoded, a '%'); npos if none. (One memchr for plain text, where find_first_of() calls
// one per byte.)
std::size_t find_reference_start(std::string_view text, std::size_t at, Encoding enc);

// Finds every reference in a complete text. Scanning stops at the first malformed reference.
ReferenceScan scan_references(std::string_view text, Encoding enc = Encoding::plain);

// Builds the text with each found reference replaced by what `append` writes for its name
// (already encoded for the place: raw for headers, percent-encoded for queries…). `append`
// should grow `out` with append_wiping (policy/sensitive.hpp) or the encoders below, which
// never leave a copy of plaintext in a freed buffer.
using AppendValue = std::function<void(std::string_view name, std::string& out)>;
std::string replace_references(std::string_view text, const std::vector<FoundReference>& refs,
                               const AppendValue& append);

// Encoders that append, so that substituted plaintext is never held in a temporary (and, when
// `out` grows, its old buffer is wiped).
void append_percent_encoded(std::string& out, std::string_view bytes);  // RFC 3986 unreserved kept
void append_json_escaped(std::string& out, std::string_view bytes);     // JSON string content, no quotes

// An operator-written template ("Bearer {{secrets.openai}}"), parsed and validated at load.
class Template {
 public:
  // The error (for the loader to position) when the text holds a malformed reference.
  static std::variant<Template, std::string> parse(std::string_view text);

  const std::string& source() const { return source_; }
  // Distinct secret names, in order of first use.
  const std::vector<std::string>& secret_names() const { return names_; }
  // Appends the rendered text to `out`: `value(name)` yields the plaintext for each name, which
  // must all have been resolved. Each reference's value is asked for once and appended before the
  // next is asked for (a lookup may return a view of a buffer it reuses).
  template <class Lookup>
  void render(const Lookup& value, std::string& out) const {
    for (const auto& p : pieces_) append_wiping(out, p.is_reference ? value(p.text) : std::string_view(p.text));
  }
  // The whole template is one reference: the composed value is the plaintext itself.
  bool is_single_reference() const { return pieces_.size() == 1 && pieces_[0].is_reference; }

 private:
  struct Piece {
    bool is_reference = false;
    std::string text;  // literal text, or the secret name
  };
  std::string source_;
  std::vector<Piece> pieces_;
  std::vector<std::string> names_;
};

}  // namespace sidekey::policy
