#include "core/json_line.hpp"

#include <charconv>
#include <cmath>

namespace sidekey::json {
namespace {
// Length of the well-formed UTF-8 sequence starting at s[i] (RFC 3629: no overlongs, no
// surrogates, nothing above U+10FFFF), or 0 when it is not one.
std::size_t utf8_sequence(std::string_view s, std::size_t i) {
  auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  auto cont = [&](std::size_t k) { return k < s.size() && (b(k) & 0xC0) == 0x80; };
  if (c >= 0xC2 && c <= 0xDF) return cont(i + 1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(i + 1) || !cont(i + 2)) return 0;
    unsigned char c1 = b(i + 1);
    if (c == 0xE0 && c1 < 0xA0) return 0;  // overlong
    if (c == 0xED && c1 > 0x9F) return 0;  // surrogate
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(i + 1) || !cont(i + 2) || !cont(i + 3)) return 0;
    unsigned char c1 = b(i + 1);
    if (c == 0xF0 && c1 < 0x90) return 0;  // overlong
    if (c == 0xF4 && c1 > 0x8F) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}
template <class Integer>
void append_integer(std::string& out, Integer value) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, value);
  out.append(buf, r.ptr);
}
}  // namespace

void append_quoted(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  std::size_t i = 0;
  while (i < text.size()) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
      std::size_t j = i + 1;
      while (j < text.size()) {
        unsigned char d = static_cast<unsigned char>(text[j]);
        if (d < 0x20 || d >= 0x80 || d == '"' || d == '\\') break;
        ++j;
      }
      out.append(text.data() + i, j - i);
      i = j;
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; ++i; continue;
      case '\\': out += "\\\\"; ++i; continue;
      case '\b': out += "\\b"; ++i; continue;
      case '\f': out += "\\f"; ++i; continue;
      case '\n': out += "\\n"; ++i; continue;
      case '\r': out += "\\r"; ++i; continue;
      case '\t': out += "\\t"; ++i; continue;
      default: break;
    }
    if (c < 0x20) {
      out += "\\u00";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
      ++i;
      continue;
    }
    if (std::size_t n = utf8_sequence(text, i)) {
      out.append(text.data() + i, n);
      i += n;
    } else {
      out += "\xEF\xBF\xBD";  // U+FFFD for a byte that starts no well-formed sequence
      ++i;
    }
  }
  out.push_back('"');
}

void ObjectWriter::key(std::string_view k) {
  if (!first_) out_.push_back(',');
  first_ = false;
  append_quoted(out_, k);
  out_.push_back(':');
}

ObjectWriter& ObjectWriter::str(std::string_view k, std::string_view value) {
  key(k);
  append_quoted(out_, value);
  return *this;
}

ObjectWriter& ObjectWriter::str_or_null(std::string_view k, std::string_view value) {
  return value.empty() ? null(k) : str(k, value);
}

ObjectWriter& ObjectWriter::num(std::string_view k, std::int64_t value) {
  key(k);
  append_integer(out_, value);
  return *this;
}

ObjectWriter& ObjectWriter::num(std::string_view k, std::uint64_t value) {
  key(k);
  append_integer(out_, value);
  return *this;
}

ObjectWriter& ObjectWriter::num(std::string_view k, double value) {
  if (!std::isfinite(value)) return null(k);
  key(k);
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, value);
  out_.append(buf, r.ptr);
  return *this;
}

ObjectWriter& ObjectWriter::null(std::string_view k) {
  key(k);
  out_ += "null";
  return *this;
}

ObjectWriter& ObjectWriter::strings(std::string_view k, const std::vector<std::string>& values) {
  key(k);
  out_.push_back('[');
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i) out_.push_back(',');
    append_quoted(out_, values[i]);
  }
  out_.push_back(']');
  return *this;
}

}  // namespace sidekey::json
