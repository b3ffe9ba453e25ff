#include "policy/reference.hpp"

#include "core/encoding.hpp"

#include <algorithm>

#include "policy/sensitive.hpp"

namespace sidekey::policy {
namespace {

bool first_name_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}
bool name_char(char c) { return first_name_char(c) || c == '.' || c == '-' || c == '/'; }

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Yields decoded characters from raw text.
class Cursor {
 public:
  enum Status { ok, end, partial };
  Cursor(std::string_view s, Encoding enc, bool final) : s_(s), enc_(enc), final_(final) {}

  Status next(char& c) {
    if (pos_ >= s_.size()) return end;
    char r = s_[pos_];
    if (enc_ == Encoding::percent) {
      if (r == '+') {
        c = ' ';
        ++pos_;
        return ok;
      }
      if (r == '%') {
        std::size_t left = s_.size() - pos_ - 1;
        if (left >= 2 && hex(s_[pos_ + 1]) >= 0 && hex(s_[pos_ + 2]) >= 0) {
          c = static_cast<char>(hex(s_[pos_ + 1]) << 4 | hex(s_[pos_ + 2]));
          pos_ += 3;
          return ok;
        }
        // "%" or "%7" at the very end may still become an escape once more text arrives.
        if (!final_ && (left == 0 || (left == 1 && hex(s_[pos_ + 1]) >= 0))) return partial;
      }
    }
    c = r;
    ++pos_;
    return ok;
  }
  std::size_t pos() const { return pos_; }

 private:
  std::string_view s_;
  Encoding enc_;
  bool final_;
  std::size_t pos_ = 0;
};

}  // namespace

ReferenceMatch match_reference_at(std::string_view text, Encoding enc, bool final) {
  using Kind = ReferenceMatch::Kind;
  Cursor cur(text, enc, final);
  bool past_prefix = false;  // "{{ secrets." read: any failure from here on is malformed
  ReferenceMatch m;
  auto stop = [&](Kind k) {
    m.kind = k;
    m.length = cur.pos();
    if (k != Kind::reference) m.name.clear();
    return m;
  };
  auto fail = [&] { return stop(past_prefix ? Kind::malformed : Kind::none); };
  char c = 0;
  // Reads the next character; false when the text ended or was cut inside an escape.
  auto read = [&]() { return cur.next(c) == Cursor::ok; };
  auto ran_out = [&] { return final ? fail() : stop(Kind::incomplete); };

  for (int i = 0; i < 2; ++i) {
    if (!read()) return ran_out();
    if (c != '{') return fail();
  }
  std::size_t pad = 0;
  while (true) {
    if (!read()) return ran_out();
    if (c != ' ') break;
    if (++pad > kMaxReferencePadding) return fail();
  }
  static constexpr std::string_view kPrefix = "secrets.";
  for (std::size_t i = 0; i < kPrefix.size(); ++i) {
    if (i > 0 && !read()) return ran_out();
    if (c != kPrefix[i]) return fail();
  }
  past_prefix = true;
  if (!read()) return ran_out();
  if (!first_name_char(c)) return fail();
  m.name += c;
  while (true) {
    if (!read()) return ran_out();
    if (!name_char(c)) break;
    if (m.name.size() == kMaxNameLength) return fail();
    m.name += c;
  }
  pad = 0;
  while (c == ' ') {
    if (++pad > kMaxReferencePadding) return fail();
    if (!read()) return ran_out();
  }
  if (c != '}') return fail();
  if (!read()) return ran_out();
  if (c != '}') return fail();
  return stop(Kind::reference);
}

std::size_t find_reference_start(std::string_view text, std::size_t at, Encoding enc) {
  if (enc != Encoding::percent) return text.find('{', at);
  for (; at < text.size(); ++at)
    if (text[at] == '{' || text[at] == '%') return at;
  return std::string_view::npos;
}

ReferenceScan scan_references(std::string_view text, Encoding enc) {
  ReferenceScan scan;
  std::size_t i = find_reference_start(text, 0, enc);
  while (i != std::string_view::npos) {
    auto m = match_reference_at(text.substr(i), enc, true);
    switch (m.kind) {
      case ReferenceMatch::Kind::reference:
        scan.references.push_back({i, i + m.length, std::move(m.name)});
        i += m.length;
        break;
      case ReferenceMatch::Kind::malformed:
        scan.malformed_at = i;
        return scan;
      case ReferenceMatch::Kind::none:
      case ReferenceMatch::Kind::incomplete:  // not produced with final = true
        ++i;
        break;
    }
    if (i >= text.size()) break;
    i = find_reference_start(text, i, enc);
  }
  return scan;
}

std::string replace_references(std::string_view text, const std::vector<FoundReference>& refs,
                               const AppendValue& append) {
  std::string out;
  out.reserve(text.size() + 64);
  std::size_t at = 0;
  for (const auto& r : refs) {
    append_wiping(out, text.substr(at, r.begin - at));
    append(r.name, out);
    at = r.end;
  }
  append_wiping(out, text.substr(at));
  return out;
}

void append_percent_encoded(std::string& out, std::string_view in) {
  reserve_wiping(out, out.size() + 3 * in.size());  // no reallocation may leave plaintext behind
  sidekey::append_percent_encoded(out, in);
}

void append_json_escaped(std::string& out, std::string_view in) {
  static constexpr char kHex[] = "0123456789abcdef";
  reserve_wiping(out, out.size() + 6 * in.size());  // \u00XX at worst
  for (unsigned char c : in) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 15];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
}

std::variant<Template, std::string> Template::parse(std::string_view text) {
  auto scan = scan_references(text);
  if (scan.malformed_at) {
    auto snippet = text.substr(*scan.malformed_at, 40);
    return "malformed secret reference at '" + std::string(snippet) +
           "' (expected {{secrets.NAME}}, NAME = [A-Za-z0-9_][A-Za-z0-9_.-/]{0,127})";
  }
  Template t;
  t.source_ = std::string(text);
  std::size_t at = 0;
  for (auto& r : scan.references) {
    if (r.begin > at) t.pieces_.push_back({false, std::string(text.substr(at, r.begin - at))});
    if (std::find(t.names_.begin(), t.names_.end(), r.name) == t.names_.end()) t.names_.push_back(r.name);
    t.pieces_.push_back({true, std::move(r.name)});
    at = r.end;
  }
  if (at < text.size()) t.pieces_.push_back({false, std::string(text.substr(at))});
  return t;
}

}  // namespace sidekey::policy
