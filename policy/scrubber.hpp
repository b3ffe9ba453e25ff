#pragma once
// Response scrubbing (SPEC section 7, invariant 13.1): a streaming multi-pattern replacer that
// takes every byte string sidekey wrote into a request (each secret's plaintext, each composed
// value) and replaces it — and the forms an echo commonly re-encodes it into — by what the agent
// may see (the reference, or the composed value with references in place of secrets).
// Knows nothing of HTTP: bytes in, bytes out.
//
// Forms (scrub_forms): for a plaintext P and its replacement R,
// - raw: P → R;
// - JSON string escaping, as emitted by common encoders (Python json.dumps with ensure_ascii on
//   and off, Node JSON.stringify, Go encoding/json old and new incl. its HTML escapes, PHP
//   json_encode with "\/", Gson, Jackson, .NET System.Text.Json): P's escaped bytes → R escaped
//   the same way;
// - percent-encoding (RFC 3986 unreserved, Python quote's "/", encodeURIComponent, encodeURI,
//   WHATWG/Java form encoding), %XX in upper and lower case, space as %20 and as '+': P's
//   encoding → R encoded the same way;
// - base64, standard and URL-safe alphabets:
//   * whole value (P encoded alone, e.g. a Basic credential "user:pass"), padded and unpadded
//     → base64 of R in the same alphabet and padding, so the echo still decodes, to R. When the
//     form has no '=' (it may then also begin a longer blob) R gets 0–2 trailing spaces so that
//     |R'| ≡ |P| (mod 3) and whatever follows in the blob still decodes unchanged;
//   * P inside a longer encoded blob: its encoding depends on P's offset mod 3, so for each of
//     the three alignments the stable core — the characters whose 6 bits all come from P — is a
//     pattern. It is replaced by the core, at the same alignment, of R' = R with spaces around
//     it, padded so |R'| ≡ |P| (mod 3): the blob keeps its length mod 4 and still decodes, with
//     the bytes around P intact and R in P's place (the boundary characters the core leaves,
//     which mix P's first/last bits with its neighbours', decode to junk in place of the
//     sacrificial spaces). Those boundary characters keep at most 4 bits of P's first and last
//     bytes each: P cannot be recovered from them.
//   * base64 forms in JSON strings and percent-encoded (PHP's "\/", %2B…), replaced alike;
// - percent forms in JSON strings (a URL echoed in JSON), replaced alike.
//   Not covered: line-wrapped (MIME) base64, double encodings, other transformations.
// Identical forms are kept once (the earlier, i.e. rawer, one wins).
//
// Short plaintexts: a plaintext shorter than kScrubMinLength (4) bytes is still scrubbed as
// raw, JSON and percent forms — invariant 13.1 comes first, even though replacing every
// occurrence of a two-byte string garbles the response — but gets no base64 forms: their cores
// would be 0–4 characters and would garble any base64 in the response while protecting
// nothing a brute force would not find. Such secrets cannot be kept secret anyway;
// scrub_length_warning() yields the warning to log where they are loaded. Empty plaintexts
// are ignored.
//
// Matching: Aho–Corasick over all forms of all patterns, leftmost-longest: the match starting
// first wins, the longest one among those starting there. A match that overlaps the end of a
// replaced one (a later-starting form running past it) is replaced too, so no form survives in
// part next to a replacement: its replacement follows the previous one, unless it is the same
// text (a secret overlapping itself, "abab" in "ababab", gives one replacement). Adjacent
// matches each get theirs. The result does not depend on how the input is split into feeds.
// Limitation: output is not rescanned, so a plaintext that itself begins with the end of a
// replacement ("}}…") or ends with its start ("…{{") could be reassembled across the seam.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "policy/headers.hpp"
#include "policy/sensitive.hpp"

namespace sidekey::policy {

struct WrittenValue;  // policy/rewrite.hpp

inline constexpr std::size_t kScrubMinLength = 4;

// One byte string to scrub and what replaces it. Borrowed: the Scrubber keeps no copy of the
// plaintext (only its automaton, wiped on destruction).
struct ScrubPattern {
  std::string_view plaintext;
  std::string_view replacement;
};

// One expanded form of a pattern.
struct ScrubForm {
  SensitiveString bytes;    // what an echo may contain
  std::string replacement;  // what replaces it (never plaintext)
  std::string kind;         // "raw", "json:python", "percent:lower", "base64:std-pad", "base64:url-core1", …
};

// Every form of `plaintext` (see above), distinct, rawest first. Empty for an empty plaintext.
std::vector<ScrubForm> scrub_forms(std::string_view plaintext, std::string_view replacement);

// The load-time warning for a plaintext of this length, or nullopt when it is scrubbed in
// every form.
std::optional<std::string> scrub_length_warning(std::size_t plaintext_length);

// The immutable automaton for one pattern set: every form of every pattern. Building costs
// about 20 µs (Release) for a 50-byte secret and its "Bearer …" header value, ~100 µs for
// secrets full of characters that JSON or URLs escape, and ~28 bytes of memory per byte of all
// forms; it can be shared by any number of Scrubbers, across threads, e.g. cached per rule and
// secret versions. Its buffers (which encode the patterns) are wiped on destruction.
class ScrubSet {
 public:
  // Earlier patterns win ties between identical forms (RewritePlan::written is longest first).
  static std::shared_ptr<const ScrubSet> build(std::span<const ScrubPattern> patterns);
  // The patterns of a RewritePlan: each written value → its replacement.
  static std::shared_ptr<const ScrubSet> build(const std::vector<WrittenValue>& written);
  // The automaton of forms already expanded: build(patterns) is this over every pattern's
  // scrub_forms, in order (the fuzz target checks the automaton against a model of those forms
  // without expanding them twice). Earlier forms win ties between identical bytes.
  static std::shared_ptr<const ScrubSet> from_forms(const std::vector<ScrubForm>& forms);
  ~ScrubSet();
  ScrubSet(const ScrubSet&) = delete;
  ScrubSet& operator=(const ScrubSet&) = delete;

  std::size_t form_count() const noexcept;          // distinct forms
  std::size_t max_pattern_length() const noexcept;  // longest form
  std::size_t memory_bytes() const noexcept;        // what it holds, for callers that cache sets

  struct Data;

 private:
  explicit ScrubSet(const std::vector<ScrubForm>& forms);
  std::unique_ptr<Data> data_;
  std::unique_ptr<Data> names_;  // the same forms in lower case, for field names
  friend class Scrubber;
};

// One stream's scrubbing state over a ScrubSet. Not thread-safe; one per response (and a
// fresh stream after finish()). A moved-from Scrubber may only be destroyed or assigned.
class Scrubber {
 public:
  // An empty scrubber: passes everything through.
  Scrubber();
  explicit Scrubber(std::shared_ptr<const ScrubSet> set);
  // Shorthands that build the set.
  explicit Scrubber(std::span<const ScrubPattern> patterns);
  explicit Scrubber(const std::vector<WrittenValue>& written);
  ~Scrubber();
  Scrubber(Scrubber&&) noexcept;
  Scrubber& operator=(Scrubber&&) noexcept;
  Scrubber(const Scrubber&) = delete;
  Scrubber& operator=(const Scrubber&) = delete;

  // Appends to `out` the scrubbed bytes that can be decided so far; holds back at most
  // max_pattern_length() - 1 bytes (the start of a possible match) until the next call.
  // Returns the number of occurrences replaced by this call (overlapping ones included).
  std::size_t feed(std::string_view in, std::string& out);
  // End of the stream: appends the held-back bytes, scrubbed. The scrubber may then be fed a
  // new stream. Returns the number of occurrences replaced by this call.
  std::size_t finish(std::string& out);
  // Occurrences replaced so far (feed, finish and scrub_all): sidekey_scrubbed_total.
  std::size_t replaced() const noexcept;

  // Scrubs one complete string (a header value), independently of the stream in progress;
  // counts into replaced().
  std::string scrub_all(std::string_view in);
  // The same into `out` (cleared first, its storage reused); returns the occurrences replaced,
  // 0 when `in` holds none (then `out` is a copy of it).
  std::size_t scrub_into(std::string_view in, std::string& out);
  // Whether `head`, a message head as it came (start line and fields, one text: a value, the
  // reason phrase or a name as sent), holds a form of what is scrubbed, or a name of `fields`
  // (that head's, parsed) does in any letter case. Counts nothing into replaced(). A match
  // across two lines, which no per-field scrub replaces, also answers true: the answer decides
  // only whether the fields are scrubbed one by one.
  bool finds_any(std::string_view head, const FieldViews& fields) const;
  // Whether a field name holds a form of what is scrubbed, in any letter case (names are
  // case-insensitive, and may be re-cased on their way): the field is then dropped, counted as
  // one occurrence into replaced().
  bool drops_name(std::string_view name);

  bool empty() const noexcept;                  // no pattern: feed() copies input through
  std::size_t pattern_count() const noexcept;   // distinct forms in the automaton
  std::size_t max_pattern_length() const noexcept;
  std::size_t held() const noexcept;            // input bytes kept right now (< max_pattern_length())
  const std::shared_ptr<const ScrubSet>& set() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sidekey::policy
