#include "policy/scrubber.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "policy/rewrite.hpp"
#include "secrets/secret_value.hpp"

namespace sidekey::policy {
namespace {

// ---------------------------------------------------------------------------------------------
// Encoders. Each appends to `out` after reserving the worst case with reserve_wiping, so a
// string holding an encoded plaintext never leaves a copy behind in a freed buffer.

constexpr char kLowerHex[] = "0123456789abcdef";
constexpr char kUpperHex[] = "0123456789ABCDEF";

constexpr bool is_alnum(unsigned char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// A set of bytes, looked up by table.
struct ByteSet {
  std::array<bool, 256> has{};
  constexpr ByteSet(std::string_view chars, bool alnum) {
    for (unsigned char c : chars) has[c] = true;
    if (alnum)
      for (int c = 0; c < 256; ++c) has[c] = has[c] || is_alnum(static_cast<unsigned char>(c));
  }
  constexpr bool operator[](unsigned char c) const { return has[c]; }
};

// Bytes every JSON and percent style below writes as themselves.
bool encoding_neutral(std::string_view s) {
  for (unsigned char c : s)
    if (!is_alnum(c) && c != '-' && c != '_' && c != '.') return false;
  return true;
}

// One UTF-8 sequence at s[i]: its length and code point, or 0 when the bytes there are not
// well-formed UTF-8 (overlong forms, surrogates and code points past U+10FFFF included).
std::size_t utf8_decode(std::string_view s, std::size_t i, std::uint32_t& cp) {
  auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  std::size_t len;
  std::uint32_t min;
  if (c >= 0xc2 && c <= 0xdf) len = 2, cp = c & 0x1f, min = 0x80;
  else if (c >= 0xe0 && c <= 0xef) len = 3, cp = c & 0x0f, min = 0x800;
  else if (c >= 0xf0 && c <= 0xf4) len = 4, cp = c & 0x07, min = 0x10000;
  else return 0;
  if (i + len > s.size()) return 0;
  for (std::size_t k = 1; k < len; ++k) {
    if ((b(i + k) & 0xc0) != 0x80) return 0;
    cp = cp << 6 | (b(i + k) & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return len;
}

struct JsonStyle {
  const char* name;
  bool slash;          // "/" → "\/"
  int non_ascii;       // 0: raw UTF-8, 1: \uxxxx (lower-case hex), 2: \uXXXX (upper-case hex)
  bool upper;          // upper-case hex in \u00XX escapes of ASCII
  ByteSet extra;       // ASCII characters also written as \u00XX
  bool del;            // 0x7f → \u007f
  bool short_bf;       // \b and \f (else \u0008, \u000c)
  bool line_sep;       // U+2028, U+2029 escaped even when non-ASCII is raw
  bool invalid_fffd;   // ill-formed UTF-8 → \ufffd (else kept raw)
  bool quote_u;        // '"' → \u0022 (else \")
};

// What common encoders emit for the content of a JSON string.
constexpr JsonStyle kJsonStyles[] = {
    // Node JSON.stringify, Python json.dumps(ensure_ascii=False), Go SetEscapeHTML(false), serde_json, Ruby.
    {"json", false, 0, false, ByteSet("", false), false, true, false, false, false},
    // Python json.dumps (ensure_ascii=True, the default): every non-ASCII code point and DEL escaped.
    {"json:python", false, 1, false, ByteSet("", false), true, true, false, false, false},
    // PHP json_encode: "\/" and \u escapes.
    {"json:php", true, 1, false, ByteSet("", false), false, true, false, false, false},
    // PHP JSON_UNESCAPED_UNICODE, Ruby script_safe: "\/" only.
    {"json:slash", true, 0, false, ByteSet("", false), false, true, false, false, false},
    // Go encoding/json (HTML-safe by default; \b and \f since Go 1.22).
    {"json:go", false, 0, false, ByteSet("<>&", false), false, true, true, true, false},
    {"json:go-old", false, 0, false, ByteSet("<>&", false), false, false, true, true, false},
    // Gson (HTML-safe by default).
    {"json:gson", false, 0, false, ByteSet("<>&='", false), false, true, true, false, false},
    // Jackson: upper-case hex for control characters; ESCAPE_NON_ASCII.
    {"json:jackson", false, 0, true, ByteSet("", false), false, true, false, false, false},
    {"json:jackson-ascii", false, 2, true, ByteSet("", false), false, true, false, false, false},
    // .NET System.Text.Json with its default (HTML-safe) encoder.
    {"json:dotnet", false, 2, true, ByteSet("<>&'+`\"", false), true, true, false, false, true},
};

void append_u_escape(std::string& out, std::uint32_t unit, bool upper) {
  const char* hex = upper ? kUpperHex : kLowerHex;
  char buf[6] = {'\\', 'u', hex[(unit >> 12) & 15], hex[(unit >> 8) & 15], hex[(unit >> 4) & 15], hex[unit & 15]};
  out.append(buf, 6);
}

void append_json_style(std::string& out, std::string_view in, const JsonStyle& st) {
  reserve_wiping(out, out.size() + 6 * in.size());  // \u00XX per byte at worst
  for (std::size_t i = 0; i < in.size();) {
    unsigned char c = static_cast<unsigned char>(in[i]);
    if (c < 0x80) {
      ++i;
      if (c == '"' && !st.quote_u) out += "\\\"";
      else if (c == '\\') out += "\\\\";
      else if (c == '/' && st.slash) out += "\\/";
      else if (c == '\n') out += "\\n";
      else if (c == '\r') out += "\\r";
      else if (c == '\t') out += "\\t";
      else if (c == '\b' && st.short_bf) out += "\\b";
      else if (c == '\f' && st.short_bf) out += "\\f";
      else if (c < 0x20 || (c == 0x7f && st.del) || (c == '"' && st.quote_u) || st.extra[c])
        append_u_escape(out, c, st.upper);
      else out += static_cast<char>(c);
      continue;
    }
    std::uint32_t cp = 0;
    std::size_t len = utf8_decode(in, i, cp);
    if (len == 0) {
      if (st.invalid_fffd) append_u_escape(out, 0xfffd, st.upper);
      else out += static_cast<char>(c);
      ++i;
      continue;
    }
    if (st.non_ascii != 0) {
      bool upper = st.non_ascii == 2;
      if (cp >= 0x10000) {
        std::uint32_t v = cp - 0x10000;
        append_u_escape(out, 0xd800 + (v >> 10), upper);
        append_u_escape(out, 0xdc00 + (v & 0x3ff), upper);
      } else {
        append_u_escape(out, cp, upper);
      }
    } else if (st.line_sep && (cp == 0x2028 || cp == 0x2029)) {
      append_u_escape(out, cp, st.upper);
    } else {
      out.append(in.substr(i, len));
    }
    i += len;
  }
}

// Whether the style writes `in` differently from its raw bytes (cheap; spares building copies
// that would only be dropped as duplicates).
bool json_changes(std::string_view in, const JsonStyle& st) {
  for (unsigned char c : in) {
    if (c >= 0x80) {
      if (st.non_ascii != 0 || st.line_sep || st.invalid_fffd) return true;
      continue;  // raw UTF-8, and ill-formed bytes kept raw
    }
    if (c < 0x20 || c == '"' || c == '\\' || (c == '/' && st.slash) || (c == 0x7f && st.del) ||
        st.extra[c])
      return true;
  }
  return false;
}

struct PercentStyle {
  const char* name;
  ByteSet keep;  // kept as is: ASCII letters and digits, and these
};

constexpr PercentStyle kPercentStyles[] = {
    {"percent", ByteSet("-._~", true)},                      // RFC 3986 unreserved (Go, curl, quote(safe=''))
    {"percent:python", ByteSet("-._~/", true)},              // Python urllib.parse.quote (safe='/')
    {"percent:component", ByteSet("-_.!~*'()", true)},       // JavaScript encodeURIComponent
    {"percent:form", ByteSet("-._*", true)},                 // WHATWG x-www-form-urlencoded, Java URLEncoder
    {"percent:uri", ByteSet("-_.!~*'();,/?:@&=+$#", true)},  // JavaScript encodeURI
};

// Whether percent-encoding with `keep` changes `in` (a byte to escape, or a space for '+').
bool percent_changes(std::string_view in, const ByteSet& keep) {
  for (unsigned char c : in)
    if (!keep[c]) return true;
  return false;
}

void append_percent_style(std::string& out, std::string_view in, const ByteSet& keep, bool plus, bool upper) {
  const char* hex = upper ? kUpperHex : kLowerHex;
  reserve_wiping(out, out.size() + 3 * in.size());
  for (unsigned char c : in) {
    if (keep[c]) {
      out += static_cast<char>(c);
    } else if (c == ' ' && plus) {
      out += '+';
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
}

constexpr char kStdAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// Appends characters [j0, j1) of the base64 encoding of (`lead` zero bytes + bytes); character
// j holds bits [6j, 6j+6) of that byte stream, zero past its end.
void append_base64_chars(std::string& out, std::string_view bytes, std::size_t lead, std::size_t j0, std::size_t j1,
                         const char* alphabet) {
  reserve_wiping(out, out.size() + (j1 > j0 ? j1 - j0 : 0) + 3);
  std::uint32_t acc = 0;
  int have = 0;  // bits in acc not yet used
  std::size_t k = 0;
  for (std::size_t j = 0; j < j1; ++j) {
    if (have < 6) {
      unsigned char b = k >= lead && k - lead < bytes.size() ? static_cast<unsigned char>(bytes[k - lead]) : 0;
      acc = (acc << 8 | b) & 0xffff;
      have += 8;
      ++k;
    }
    have -= 6;
    if (j >= j0) out += alphabet[(acc >> have) & 63];
  }
  acc = 0;
}

// The whole value encoded alone.
void append_base64_whole(std::string& out, std::string_view bytes, const char* alphabet, bool pad) {
  std::size_t chars = (8 * bytes.size() + 5) / 6;
  append_base64_chars(out, bytes, 0, 0, chars, alphabet);
  if (pad)
    while (chars++ % 4) out += '=';
}

// The characters whose bits all come from `bytes` when `align` (0–2) bytes precede it in its
// 3-byte group.
void append_base64_core(std::string& out, std::string_view bytes, std::size_t align, const char* alphabet) {
  append_base64_chars(out, bytes, align, (8 * align + 5) / 6, 8 * (align + bytes.size()) / 6, alphabet);
}

// ---------------------------------------------------------------------------------------------

class FormList {
 public:
  explicit FormList(std::vector<ScrubForm>& forms) : forms_(forms) {}

  // Takes `bytes` (wiping it) unless an earlier form has the same bytes; only then are the
  // replacement and the kind computed.
  template <class Replacement, class Kind>
  void add(std::string& bytes, Replacement&& replacement, Kind&& kind) {
    if (bytes.empty() || has(bytes)) {
      secrets::wipe(bytes);
      return;
    }
    forms_.push_back({SensitiveString::take(bytes), replacement(), kind()});
  }

  bool has(std::string_view bytes) const {
    for (const auto& f : forms_)
      if (f.bytes.size() == bytes.size() && f.bytes.reveal() == bytes) return true;
    return false;
  }

  // JSON styles (and, with `percent`, percent styles) of the forms [from, to).
  void add_escaped(std::size_t from, std::size_t to, bool percent, bool only_percent_forms = false) {
    for (std::size_t i = from; i < to; ++i) {
      if (only_percent_forms && forms_[i].kind.rfind("percent", 0) != 0) continue;
      if (encoding_neutral(forms_[i].bytes.reveal())) continue;
      // Copied out: add() may reallocate forms_.
      std::string src(forms_[i].bytes.reveal());
      const std::string repl = forms_[i].replacement, kind = forms_[i].kind;
      auto name = [&](std::string style) { return kind == "raw" ? style : style + "(" + kind + ")"; };
      for (const auto& st : kJsonStyles) {
        if (!json_changes(src, st)) continue;
        std::string b;
        append_json_style(b, src, st);
        add(
            b,
            [&] {
              std::string r;
              append_json_style(r, repl, st);
              return r;
            },
            [&] { return name(st.name); });
      }
      const bool has_space = src.find(' ') != std::string::npos;
      for (const auto& st : kPercentStyles) {
        if (!percent || !percent_changes(src, st.keep)) continue;  // else the raw bytes again
        for (bool plus : {false, true})
          for (bool upper : {true, false}) {
            if (plus && !has_space) continue;
            std::string b;
            append_percent_style(b, src, st.keep, plus, upper);
            add(
                b,
                [&] {
                  std::string r;
                  append_percent_style(r, repl, st.keep, plus, upper);
                  return r;
                },
                [&] { return name(std::string(st.name) + (plus ? "+plus" : "") + (upper ? "" : "+lower")); });
          }
      }
      secrets::wipe(src);
    }
  }

  std::size_t size() const { return forms_.size(); }

 private:
  std::vector<ScrubForm>& forms_;
};

// The URL-safe alphabet's version of a standard base64 string; false when it is the same.
bool to_url_alphabet(std::string& s) {
  bool changed = false;
  for (auto& c : s) {
    if (c == '+') c = '-', changed = true;
    else if (c == '/') c = '_', changed = true;
  }
  return changed;
}

// Adds a base64 form and, when it differs, its URL-safe twin (derived by translation).
void add_base64(FormList& list, std::string& std_bytes, std::string std_repl, const std::string& label) {
  std::string url_bytes;
  reserve_wiping(url_bytes, std_bytes.size());
  url_bytes.append(std_bytes);
  std::string url_repl = std_repl;
  list.add(std_bytes, [&] { return std::move(std_repl); }, [&] { return "base64:std" + label; });
  if (to_url_alphabet(url_bytes)) {
    to_url_alphabet(url_repl);
    list.add(url_bytes, [&] { return std::move(url_repl); }, [&] { return "base64:url" + label; });
  }
  secrets::wipe(url_bytes);
}

}  // namespace

std::vector<ScrubForm> scrub_forms(std::string_view plaintext, std::string_view replacement) {
  std::vector<ScrubForm> forms;
  if (plaintext.empty()) return forms;
  FormList list(forms);
  {
    std::string raw(plaintext);
    list.add(raw, [&] { return std::string(replacement); }, [] { return std::string("raw"); });
  }
  list.add_escaped(0, 1, true);
  // JSON escaping of the percent forms (a URL echoed in JSON).
  list.add_escaped(1, list.size(), false, true);

  if (plaintext.size() < kScrubMinLength) return forms;

  std::size_t base64_begin = list.size();
  const std::size_t n = plaintext.size();
  for (bool pad : {true, false}) {
    // Padding ('=') ends a blob: such a form is the whole value and gets exactly base64(R).
    // Without it the form may also begin a longer blob, so the replacement keeps the bit
    // alignment of what follows: R plus spaces so that |R'| ≡ |P| (mod 3).
    std::string aligned(replacement);
    if (!(pad && n % 3 != 0))
      while ((aligned.size() + 3 - n % 3) % 3 != 0) aligned += ' ';
    std::string b, r;
    append_base64_whole(b, plaintext, kStdAlphabet, pad);
    if (list.has(b)) {
      secrets::wipe(b);
      continue;
    }
    append_base64_whole(r, aligned, kStdAlphabet, pad);
    add_base64(list, b, std::move(r), pad ? "" : "-nopad");
  }
  for (std::size_t align = 0; align < 3; ++align) {
    // R' = R with sacrificial spaces where the core's boundary characters mix in P's bits,
    // and enough trailing spaces that |R'| ≡ |P| (mod 3).
    std::string padded;
    if (align != 0) padded += ' ';
    padded.append(replacement);
    if ((align + n) % 3 != 0) padded += ' ';
    while ((padded.size() + 3 - n % 3) % 3 != 0) padded += ' ';
    std::string b, r;
    append_base64_core(b, plaintext, align, kStdAlphabet);
    if (list.has(b)) {
      secrets::wipe(b);
      continue;
    }
    append_base64_core(r, padded, align, kStdAlphabet);
    add_base64(list, b, std::move(r), std::string("-core") + char('0' + align));
  }
  list.add_escaped(base64_begin, list.size(), true);
  return forms;
}

std::optional<std::string> scrub_length_warning(std::size_t plaintext_length) {
  if (plaintext_length == 0) return "an empty secret cannot be scrubbed from responses";
  if (plaintext_length < kScrubMinLength)
    return "a secret of " + std::to_string(plaintext_length) + " byte" + (plaintext_length == 1 ? "" : "s") +
           " (under " + std::to_string(kScrubMinLength) +
           ") is scrubbed from responses only as raw, JSON-escaped and percent-encoded text, not in base64, and "
           "every occurrence of it is replaced; use a longer secret";
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// The automaton: a trie of every form with Aho–Corasick failure links. The root's transitions
// are a dense table (also the fast path's "can a match start here?" test); other nodes keep
// their children in a sibling list, which stays small since forms share little.

namespace {

struct Node {
  std::uint32_t first_child = 0;
  std::uint32_t next_sibling = 0;
  std::uint32_t fail = 0;
  std::int32_t out = -1;     // the longest form that is a suffix of this node's string, or -1
  std::uint32_t depth = 0;
  std::uint32_t live = 0;    // depth of the longest suffix (itself or along `fail`) with children
  unsigned char byte = 0;
};

struct Form {
  std::uint32_t length = 0;
  std::uint32_t repl_begin = 0, repl_length = 0;
};

// The scanning state of one stream. Offsets count bytes since the stream began.
struct Stream {
  std::uint32_t state = 0;       // automaton state after the bytes [reset point, pos)
  std::uint64_t pos = 0;         // next byte to scan
  std::uint64_t emitted = 0;     // bytes before this are written out (as is or replaced)
  bool has_best = false;         // the leftmost-longest match found, not yet replaced
  std::uint64_t best_start = 0, best_end = 0;
  std::uint32_t best_form = 0;
  std::uint32_t last_form = 0;   // the form replaced last
  std::uint64_t carry_begin = 0, carry_end = 0;  // held bytes (in the carry buffer)
};

}  // namespace

struct ScrubSet::Data {
  std::vector<Node> nodes;
  std::array<std::uint32_t, 256> root_next{};
  std::vector<Form> forms;
  std::string replacements;
  std::size_t max_length = 0;
  int single_first = -1;  // the only byte any form starts with, or -1
  // The bytes forms start with, when there are few: the scan then tests 16 bytes at a time
  // against each (the unused slots repeat the first).
  static constexpr unsigned kVectorFirsts = 8;
  unsigned first_count = 0;
  std::array<unsigned char, kVectorFirsts> firsts{};
  // The first two bytes of every form, hashed into a bit set, when every form has two: a byte
  // that starts a form is a candidate only when the pair it starts could too (a secret's base64
  // cores begin with letters of all kinds, and text is full of them).
  bool by_pairs = false;
  std::array<std::uint64_t, 64> pairs{};

  // The searches for where a form may start (skip(), contains()) move a window of `window`
  // bytes, every form's shortest length (at most 64), along the text by the pair of bytes at its
  // end (Wu–Manber with two-byte blocks): `shift` says how far the window may move without
  // passing the start of a form, 0 when the pair ends some form's first `window` bytes (a form
  // may start at the window's first byte, which the trie then tells). Built when every form has
  // at least kShiftMinLength bytes: a random text then costs a look-up every few bytes, not one
  // a byte.
  static constexpr std::size_t kShiftMinLength = 4;
  bool by_shift = false;
  std::uint32_t window = 0;
  std::array<std::uint8_t, 4096> shift{};  // by pair_hash

  static std::uint32_t pair_hash(unsigned char a, unsigned char b) { return ((std::uint32_t{a} << 4) ^ b) & 4095u; }
  static unsigned char as_is(unsigned char c) { return c; }
  // From `at` (a window's last byte, an index into [b, b + n)) on, the first window whose pair
  // has shift 0, or an index past n when no window inside [b, b + n) has.
  template <class Read>
  std::size_t next_window(const unsigned char* b, std::size_t n, std::size_t at, Read read) const {
    while (at < n) {
      const std::uint32_t by = shift[pair_hash(read(b[at - 1]), read(b[at]))];
      if (by == 0) return at;
      at += by;
    }
    return at;
  }
  bool starts_pair(const unsigned char* p) const {
    const std::uint32_t h = pair_hash(p[0], p[1]);
    return (pairs[h >> 6] >> (h & 63)) & 1u;
  }

  ~Data() {
    if (!nodes.empty()) secrets::wipe(nodes.data(), nodes.size() * sizeof(Node));
    secrets::wipe(root_next.data(), sizeof root_next);
    secrets::wipe(pairs.data(), sizeof pairs);
    secrets::wipe(firsts.data(), sizeof firsts);
    secrets::wipe(shift.data(), sizeof shift);
  }

  // The first byte in [b, e) where a form may start (e if none).
  const unsigned char* skip(const unsigned char* b, const unsigned char* e) const {
    if (by_shift && static_cast<std::size_t>(e - b) >= window) {
      // Window by window (see `shift`): the first window wholly inside [b, e) that may begin
      // with a form; if none does, a form can only start in a window that runs past e, and the
      // byte tests below look at the first of those starts on.
      const std::size_t n = static_cast<std::size_t>(e - b);
      const std::size_t at = next_window(b, n, window - 1, as_is);
      if (at < n) return b + (at + 1 - window);
      b += at + 1 - window;
    }
    auto candidate = [&](const unsigned char* c) { return !by_pairs || e - c < 2 || starts_pair(c); };
#if defined(__SSE2__)
    if (first_count <= kVectorFirsts && e - b >= 16) {
      __m128i want[kVectorFirsts];
      for (unsigned i = 0; i < kVectorFirsts; ++i) want[i] = _mm_set1_epi8(static_cast<char>(firsts[i]));
      for (; e - b >= 16; b += 16) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b));
        __m128i hit = _mm_cmpeq_epi8(v, want[0]);
        for (unsigned i = 1; i < kVectorFirsts; ++i) hit = _mm_or_si128(hit, _mm_cmpeq_epi8(v, want[i]));
        for (unsigned mask = static_cast<unsigned>(_mm_movemask_epi8(hit)); mask != 0; mask &= mask - 1) {
          const unsigned char* c = b + __builtin_ctz(mask);
          if (candidate(c)) return c;
        }
      }
    }
#endif
    for (; b < e; ++b)
      if (root_next[*b] != 0 && candidate(b)) return b;
    return e;
  }

  void build(const std::vector<ScrubForm>& all);

  // Whether `text` holds a form (any match: a search, not a scrub).
  bool contains(std::string_view text) const {
    if (by_shift) return shifted_search(text, as_is);
    auto b = reinterpret_cast<const unsigned char*>(text.data());
    const auto e = b + text.size();
    std::uint32_t s = 0;
    while (b < e) {
      if (s == 0) {
        b = skip(b, e);
        if (b == e) return false;
        s = root_next[*b++];
      } else {
        s = next(s, *b++);
      }
      if (nodes[s].out >= 0) return true;  // outputs are inherited along failure links
    }
    return false;
  }
  // The same with `text` read in ASCII lower case (the automaton of lower-cased forms).
  bool contains_folded(std::string_view text) const {
    constexpr auto fold = [](unsigned char c) { return static_cast<unsigned char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c); };
    if (by_shift) return shifted_search(text, fold);
    std::uint32_t s = 0;
    for (char ch : text) {
      const auto c = fold(static_cast<unsigned char>(ch));
      s = s == 0 ? root_next[c] : next(s, c);
      if (s != 0 && nodes[s].out >= 0) return true;
    }
    return false;
  }
  // contains() by the window (see `shift`), each byte read through `read`. Each window that may
  // begin with a form costs a walk of the trie from its first byte: text that keeps matching the
  // start of a periodic form costs up to its length times the form's (a response head, bounded
  // by limits.max_header_bytes; a body goes through process(), linear).
  template <class Read>
  bool shifted_search(std::string_view text, Read read) const {
    const auto* b = reinterpret_cast<const unsigned char*>(text.data());
    for (std::size_t at = window - 1; (at = next_window(b, text.size(), at, read)) < text.size(); ++at) {
      // A form may start at the window's first byte: the trie says whether one (or one of its
      // suffixes, whose outputs the trie inherits along failure links) occurs from there.
      std::uint32_t s = root_next[read(b[at + 1 - window])];
      for (std::size_t p = at + 1 - window; s != 0;) {
        if (nodes[s].out >= 0) return true;
        if (++p == text.size()) break;
        const unsigned char c = read(b[p]);
        std::uint32_t x = nodes[s].first_child;
        while (x != 0 && nodes[x].byte != c) x = nodes[x].next_sibling;
        s = x;
      }
    }
    return false;  // (also when the text is shorter than every form)
  }

  std::uint32_t next(std::uint32_t s, unsigned char c) const {
    while (s != 0) {
      for (std::uint32_t x = nodes[s].first_child; x != 0; x = nodes[x].next_sibling)
        if (nodes[x].byte == c) return x;
      s = nodes[s].fail;
    }
    return root_next[c];
  }

  std::size_t process(Stream& st, const char* held, std::string_view chunk, bool final, std::string& out) const;
  // Moves the bytes still needed (the live suffix) into `carry` (max_length bytes).
  void keep_tail(Stream& st, char* carry, std::string_view chunk) const;
};

struct Scrubber::Impl {
  std::shared_ptr<const ScrubSet> set;
  const ScrubSet::Data* data = nullptr;  // set's, or null for no pattern
  std::unique_ptr<char[]> carry;         // the held bytes: max_length of them at most
  std::size_t carry_size = 0;
  Stream stream;
  std::size_t replaced = 0;

  explicit Impl(std::shared_ptr<const ScrubSet> s) : set(std::move(s)) {
    if (set && set->data_ && !set->data_->forms.empty()) {
      data = set->data_.get();
      carry_size = data->max_length;
      carry.reset(new char[carry_size]);
      std::memset(carry.get(), 0, carry_size);
    }
  }
  ~Impl() {
    if (carry) secrets::wipe(carry.get(), carry_size);
  }
};

void ScrubSet::Data::build(const std::vector<ScrubForm>& all) {
  std::size_t total = 1;
  for (const auto& f : all) total += f.bytes.size();
  // Reserved up front: a reallocation would free a copy of the trie (the patterns) unwiped.
  nodes.reserve(total);
  nodes.emplace_back();
  for (const auto& f : all) {
    std::string_view bytes = f.bytes.reveal();
    if (bytes.empty()) continue;
    std::uint32_t s = 0;
    for (unsigned char c : bytes) {
      std::uint32_t child = 0;
      if (s == 0) {
        child = root_next[c];
      } else {
        for (std::uint32_t x = nodes[s].first_child; x != 0; x = nodes[x].next_sibling)
          if (nodes[x].byte == c) {
            child = x;
            break;
          }
      }
      if (child == 0) {
        child = static_cast<std::uint32_t>(nodes.size());
        Node n;
        n.byte = c;
        n.depth = nodes[s].depth + 1;
        n.next_sibling = nodes[s].first_child;
        nodes.push_back(n);
        nodes[s].first_child = child;
        if (s == 0) root_next[c] = child;
      }
      s = child;
    }
    if (nodes[s].out >= 0) continue;  // the same bytes as an earlier form: the earlier one wins
    nodes[s].out = static_cast<std::int32_t>(forms.size());
    Form form;
    form.length = static_cast<std::uint32_t>(bytes.size());
    // Equal replacements share their bytes, so comparing offsets compares contents.
    form.repl_begin = static_cast<std::uint32_t>(replacements.size());
    form.repl_length = static_cast<std::uint32_t>(f.replacement.size());
    for (const Form& g : forms)
      if (g.repl_length == form.repl_length &&
          std::string_view(replacements).substr(g.repl_begin, g.repl_length) == f.replacement) {
        form.repl_begin = g.repl_begin;
        break;
      }
    if (form.repl_begin == replacements.size()) replacements += f.replacement;
    forms.push_back(form);
    max_length = std::max(max_length, bytes.size());
  }

  // Breadth-first: failure links, inherited outputs, live depths.
  std::vector<std::uint32_t> queue;
  queue.reserve(nodes.size());
  for (std::uint32_t x = nodes[0].first_child; x != 0; x = nodes[x].next_sibling) {
    nodes[x].fail = 0;
    queue.push_back(x);
  }
  for (std::size_t qi = 0; qi < queue.size(); ++qi) {
    std::uint32_t u = queue[qi];
    Node& nu = nodes[u];
    if (nu.out < 0) nu.out = nodes[nu.fail].out;
    nu.live = nu.first_child != 0 ? nu.depth : nodes[nu.fail].live;
    for (std::uint32_t v = nu.first_child; v != 0; v = nodes[v].next_sibling) {
      nodes[v].fail = next(nu.fail, nodes[v].byte);
      queue.push_back(v);
    }
  }
  secrets::wipe(queue.data(), queue.size() * sizeof(std::uint32_t));

  first_count = 0;
  for (int c = 0; c < 256; ++c)
    if (root_next[c] != 0) {
      if (first_count < kVectorFirsts) firsts[first_count] = static_cast<unsigned char>(c);
      ++first_count;
      single_first = c;
    }
  if (first_count != 1) single_first = -1;
  for (unsigned i = std::min(first_count, kVectorFirsts); i < kVectorFirsts; ++i) firsts[i] = firsts[0];

  std::size_t shortest = all.empty() ? 0 : all.front().bytes.size();
  for (const auto& f : all) shortest = std::min(shortest, f.bytes.size());
  by_shift = shortest >= kShiftMinLength;
  if (by_shift) {
    window = static_cast<std::uint32_t>(std::min<std::size_t>(shortest, 64));
    shift.fill(static_cast<std::uint8_t>(window - 1));
    for (const auto& f : all) {
      auto b = reinterpret_cast<const unsigned char*>(f.bytes.reveal().data());
      for (std::uint32_t q = 1; q < window; ++q) {
        auto& by = shift[pair_hash(b[q - 1], b[q])];
        by = std::min(by, static_cast<std::uint8_t>(window - 1 - q));
      }
    }
  }

  by_pairs = !all.empty() && std::all_of(all.begin(), all.end(), [](const ScrubForm& f) { return f.bytes.size() >= 2; });
  for (const auto& f : all)
    if (f.bytes.size() >= 2) {
      auto b = reinterpret_cast<const unsigned char*>(f.bytes.reveal().data());
      const std::uint32_t h = pair_hash(b[0], b[1]);
      pairs[h >> 6] |= std::uint64_t{1} << (h & 63);
    }
}

// Scans `chunk`, which follows the held bytes [st.carry_begin, st.carry_end) in `held`, and
// appends to `out` every byte decided. With `final`, the input ends after `chunk`.
//
// Leftmost-longest with an overlap rule: a candidate is a match ending past st.emitted; the
// best one (earliest start, then longest) is replaced once no match starting at or before it
// can still appear, i.e. once the live suffix of the automaton starts after it. Then scanning
// restarts from the root at best_start + 1, so a later-starting match that runs past the
// replaced bytes is found too (and replaced next to it), as is any match after them.
std::size_t ScrubSet::Data::process(Stream& st, const char* held, std::string_view chunk, bool final,
                                    std::string& out) const {
  const std::uint64_t end = st.carry_end + chunk.size();
  auto emit = [&](std::uint64_t from, std::uint64_t to) {
    if (from < st.carry_end && from < to) {
      std::uint64_t e = std::min(to, st.carry_end);
      out.append(held + (from - st.carry_begin), static_cast<std::size_t>(e - from));
      from = e;
    }
    if (from < to) out.append(chunk.data() + (from - st.carry_end), static_cast<std::size_t>(to - from));
  };
  std::size_t count = 0;
  auto commit = [&] {
    const Form& f = forms[st.best_form];
    if (st.best_start >= st.emitted) {
      emit(st.emitted, st.best_start);
      out.append(replacements, f.repl_begin, f.repl_length);
    } else if (forms[st.last_form].repl_begin != f.repl_begin || forms[st.last_form].repl_length != f.repl_length) {
      // Overlaps the match just replaced and runs past it: its replacement follows, unless it
      // is the same text (a secret overlapping itself, "abab" in "ababab", is replaced once).
      out.append(replacements, f.repl_begin, f.repl_length);
    }
    st.last_form = st.best_form;
    st.emitted = st.best_end;
    st.pos = st.best_start + 1;
    st.state = 0;
    st.has_best = false;
    ++count;
  };

  for (;;) {
    while (st.pos < end) {
      const unsigned char* seg;
      std::uint64_t seg_base, seg_end;
      if (st.pos < st.carry_end) {
        seg = reinterpret_cast<const unsigned char*>(held);
        seg_base = st.carry_begin;
        seg_end = st.carry_end;
      } else {
        seg = reinterpret_cast<const unsigned char*>(chunk.data());
        seg_base = st.carry_end;
        seg_end = end;
      }
      std::uint64_t p = st.pos;
      std::uint32_t s = st.state;
      bool committed = false;
      while (p < seg_end) {
        if (s == 0 && !st.has_best) {
          // Fast path: skip to the next byte a form starts with.
          const unsigned char* b = seg + (p - seg_base);
          const unsigned char* e = seg + (seg_end - seg_base);
          if (single_first >= 0) {
            b = static_cast<const unsigned char*>(std::memchr(b, single_first, static_cast<std::size_t>(e - b)));
            if (b == nullptr) b = e;
          } else {
            b = skip(b, e);
          }
          p = seg_base + static_cast<std::uint64_t>(b - seg);
          if (b == e) break;
          s = root_next[*b];
        } else {
          s = next(s, seg[p - seg_base]);
        }
        ++p;
        const Node& n = nodes[s];
        if (n.out >= 0 && p > st.emitted) {
          std::uint64_t start = p - forms[static_cast<std::size_t>(n.out)].length;
          if (!st.has_best || start <= st.best_start) {
            st.has_best = true;
            st.best_start = start;
            st.best_end = p;
            st.best_form = static_cast<std::uint32_t>(n.out);
          }
        }
        if (st.has_best && p - n.live > st.best_start) {
          commit();
          committed = true;
          break;
        }
      }
      if (!committed) {
        st.pos = p;
        st.state = s;
      }
    }
    if (final && st.has_best) {
      commit();
      continue;
    }
    break;
  }
  if (final) {
    emit(st.emitted, end);
    st.emitted = end;
  } else {
    // Everything before the live suffix is decided (a pending best match lies inside it).
    std::uint64_t hold_from = end - nodes[st.state].live;
    if (hold_from > st.emitted) {
      emit(st.emitted, hold_from);
      st.emitted = hold_from;
    }
  }
  return count;
}

void ScrubSet::Data::keep_tail(Stream& st, char* buf, std::string_view chunk) const {
  const std::uint64_t end = st.carry_end + chunk.size();
  const std::uint64_t hold_from = end - nodes[st.state].live;
  const std::size_t old_size = static_cast<std::size_t>(st.carry_end - st.carry_begin);
  const std::size_t keep = static_cast<std::size_t>(end - hold_from);  // < max_length
  if (hold_from >= st.carry_end) {
    if (keep) std::memcpy(buf, chunk.data() + (hold_from - st.carry_end), keep);
  } else {
    std::size_t from_old = static_cast<std::size_t>(st.carry_end - hold_from);
    std::memmove(buf, buf + (hold_from - st.carry_begin), from_old);
    if (!chunk.empty()) std::memcpy(buf + from_old, chunk.data(), chunk.size());
  }
  if (old_size > keep) secrets::wipe(buf + keep, old_size - keep);
  st.carry_begin = hold_from;
  st.carry_end = end;
}

static std::vector<ScrubPattern> patterns_of(const std::vector<WrittenValue>& written) {
  std::vector<ScrubPattern> out;
  out.reserve(written.size());
  for (const auto& w : written) out.push_back({w.bytes.reveal(), w.replacement});
  return out;
}

namespace {
// Appends `s` in ASCII lower case (into room the caller made: the bytes may be a secret's).
void append_lower(std::string& out, std::string_view s) {
  const std::size_t at = out.size();
  out.resize(at + s.size());
  char* p = out.data() + at;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    p[i] = c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
  }
}
}  // namespace

ScrubSet::ScrubSet(const std::vector<ScrubForm>& forms) : data_(std::make_unique<Data>()), names_(std::make_unique<Data>()) {
  data_->build(forms);
  // Field names are case-insensitive (and re-cased on the way, e.g. by HTTP/2 hops): a second
  // automaton over every form in lower case, searched with the name in lower case.
  std::vector<ScrubForm> lowered;
  lowered.reserve(forms.size());
  for (const auto& f : forms) {
    std::string bytes;
    bytes.reserve(f.bytes.size());
    append_lower(bytes, f.bytes.reveal());
    lowered.push_back({SensitiveString::take(bytes), f.replacement, f.kind});
  }
  names_->build(lowered);
}

ScrubSet::~ScrubSet() = default;

std::shared_ptr<const ScrubSet> ScrubSet::build(std::span<const ScrubPattern> patterns) {
  std::vector<ScrubForm> all;
  for (const auto& p : patterns) {
    auto forms = scrub_forms(p.plaintext, p.replacement);
    if (all.empty()) {
      all = std::move(forms);
      continue;
    }
    all.reserve(all.size() + forms.size());  // ScrubForm moves wipe what they leave
    for (auto& f : forms) all.push_back(std::move(f));
  }
  return from_forms(all);
}

std::shared_ptr<const ScrubSet> ScrubSet::from_forms(const std::vector<ScrubForm>& forms) {
  return std::shared_ptr<const ScrubSet>(new ScrubSet(forms));
}

std::shared_ptr<const ScrubSet> ScrubSet::build(const std::vector<WrittenValue>& written) {
  return build(std::span<const ScrubPattern>(patterns_of(written)));
}

std::size_t ScrubSet::form_count() const noexcept { return data_->forms.size(); }
std::size_t ScrubSet::max_pattern_length() const noexcept { return data_->max_length; }
std::size_t ScrubSet::memory_bytes() const noexcept {
  auto of = [](const Data& d) {
    return sizeof(Data) + d.nodes.capacity() * sizeof(Node) + d.forms.capacity() * sizeof(Form) + d.replacements.capacity();
  };
  return sizeof(ScrubSet) + of(*data_) + of(*names_);
}

Scrubber::Scrubber() = default;  // no state: passes everything through
Scrubber::Scrubber(std::shared_ptr<const ScrubSet> set) : impl_(std::make_unique<Impl>(std::move(set))) {}
Scrubber::Scrubber(std::span<const ScrubPattern> patterns) : Scrubber(ScrubSet::build(patterns)) {}
Scrubber::Scrubber(const std::vector<WrittenValue>& written) : Scrubber(ScrubSet::build(written)) {}

Scrubber::~Scrubber() = default;
Scrubber::Scrubber(Scrubber&&) noexcept = default;
Scrubber& Scrubber::operator=(Scrubber&&) noexcept = default;

std::size_t Scrubber::feed(std::string_view in, std::string& out) {
  if (!impl_ || !impl_->data) {
    out.append(in);
    return 0;
  }
  Impl& im = *impl_;
  std::size_t n = im.data->process(im.stream, im.carry.get(), in, false, out);
  im.data->keep_tail(im.stream, im.carry.get(), in);
  im.replaced += n;
  return n;
}

std::size_t Scrubber::finish(std::string& out) {
  if (!impl_ || !impl_->data) return 0;
  Impl& im = *impl_;
  Stream& st = im.stream;
  std::size_t n = im.data->process(st, im.carry.get(), {}, true, out);
  secrets::wipe(im.carry.get(), static_cast<std::size_t>(st.carry_end - st.carry_begin));
  st = Stream{};
  im.replaced += n;
  return n;
}

std::size_t Scrubber::replaced() const noexcept { return impl_ ? impl_->replaced : 0; }

std::string Scrubber::scrub_all(std::string_view in) {
  std::string out;
  scrub_into(in, out);
  return out;
}

std::size_t Scrubber::scrub_into(std::string_view in, std::string& out) {
  out.clear();
  if (!impl_ || !impl_->data) {
    out.assign(in);
    return 0;
  }
  out.reserve(in.size());
  Stream st;
  std::size_t n = impl_->data->process(st, nullptr, in, true, out);
  impl_->replaced += n;
  return n;
}

bool Scrubber::finds_any(std::string_view head, const FieldViews& fields) const {
  if (!impl_ || !impl_->data) return false;
  // The head in one search (values, reason and names as sent), then each name in any letter
  // case. Nothing is copied.
  if (impl_->data->contains(head)) return true;
  const ScrubSet::Data& names = *impl_->set->names_;
  return std::any_of(fields.begin(), fields.end(), [&](const FieldView& f) { return names.contains_folded(f.name); });
}

bool Scrubber::drops_name(std::string_view name) {
  if (!impl_ || !impl_->data) return false;
  bool found = impl_->set->names_->contains_folded(name);
  if (found) ++impl_->replaced;
  return found;
}

bool Scrubber::empty() const noexcept { return !impl_ || !impl_->data; }
std::size_t Scrubber::pattern_count() const noexcept { return impl_ && impl_->data ? impl_->data->forms.size() : 0; }
std::size_t Scrubber::max_pattern_length() const noexcept {
  return impl_ && impl_->data ? impl_->data->max_length : 0;
}
std::size_t Scrubber::held() const noexcept {
  return impl_ ? static_cast<std::size_t>(impl_->stream.carry_end - impl_->stream.carry_begin) : 0;
}
const std::shared_ptr<const ScrubSet>& Scrubber::set() const noexcept {
  static const std::shared_ptr<const ScrubSet> none;
  return impl_ ? impl_->set : none;
}

}  // namespace sidekey::policy
