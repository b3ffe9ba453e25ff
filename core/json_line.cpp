#include "core/json_line.hpp"

#include <array>
#include <charconv>
#include <cmath>
#include <cstring>

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

// Bytes that a JSON string can hold as they are: printable ASCII other than '"' and '\\'.
constexpr std::array<bool, 256> kVerbatim = [] {
  std::array<bool, 256> t{};
  for (int c = 0x20; c < 0x80; ++c) t[c] = c != '"' && c != '\\';
  return t;
}();

// Whether the 8 bytes at p are all verbatim, tested at once (the bit tricks of "Bit Twiddling
// Hacks": a byte below n, a zero byte): audit lines are mostly such bytes.
bool verbatim_word(const char* p) {
  constexpr std::uint64_t kOnes = 0x0101010101010101ULL, kHighs = 0x8080808080808080ULL;
  std::uint64_t w;
  std::memcpy(&w, p, sizeof w);
  auto has_zero_byte = [&](std::uint64_t v) { return (v - kOnes) & ~v & kHighs; };
  std::uint64_t control = (w - kOnes * 0x20) & ~w & kHighs;  // a byte below 0x20 (none is >= 0x80 here)
  return ((w & kHighs) | control | has_zero_byte(w ^ (kOnes * '"')) | has_zero_byte(w ^ (kOnes * '\\'))) == 0;
}

// Where the run of verbatim bytes of text that starts at `from` ends.
std::size_t verbatim_prefix(std::string_view text, std::size_t from) {
  std::size_t j = from;
  while (j + 8 <= text.size() && verbatim_word(text.data() + j)) j += 8;
  while (j < text.size() && kVerbatim[static_cast<unsigned char>(text[j])]) ++j;
  return j;
}
}  // namespace

void append_quoted(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  const std::size_t size = text.size();
  // Most values (names, hosts, paths, ids) are short and need no escaping: one append.
  if (char quoted[96]; size + 2 <= sizeof quoted && verbatim_prefix(text, 0) == size) {
    quoted[0] = '"';
    std::memcpy(quoted + 1, text.data(), size);
    quoted[size + 1] = '"';
    out.append(quoted, size + 2);
    return;
  }
  out.push_back('"');
  std::size_t i = 0;
  while (i < size) {
    std::size_t j = verbatim_prefix(text, i);
    if (j > i) {
      out.append(text.data() + i, j - i);
      i = j;
      if (i == size) break;
    }
    unsigned char c = static_cast<unsigned char>(text[i]);
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

// `,"key":` into buf (room for kMaxKey + 4 bytes); the bytes written. Keys are the caller's own
// names (see the header): written as they are.
std::size_t ObjectWriter::key_into(char* buf, std::string_view k) {
  std::size_t n = 0;
  if (!first_) buf[n++] = ',';
  first_ = false;
  buf[n++] = '"';
  std::memcpy(buf + n, k.data(), k.size());
  n += k.size();
  buf[n++] = '"';
  buf[n++] = ':';
  return n;
}

void ObjectWriter::key(std::string_view k) {
  if (k.size() > kMaxKey) {  // not one of ours; still correct
    out_.append(first_ ? "\"" : ",\"");
    first_ = false;
    out_.append(k);
    out_.append("\":");
    return;
  }
  char buf[kMaxKey + 4];
  out_.append(buf, key_into(buf, k));
}

ObjectWriter& ObjectWriter::str(std::string_view k, std::string_view value) {
  // The usual field, a short name and a short value that needs no escaping: one append.
  if (char buf[kMaxKey + 4 + 96]; k.size() <= kMaxKey && value.size() + 2 <= 96 &&
                                   verbatim_prefix(value, 0) == value.size()) {
    std::size_t n = key_into(buf, k);
    buf[n++] = '"';
    std::memcpy(buf + n, value.data(), value.size());
    n += value.size();
    buf[n++] = '"';
    out_.append(buf, n);
    return *this;
  }
  key(k);
  append_quoted(out_, value);
  return *this;
}

ObjectWriter& ObjectWriter::str_or_null(std::string_view k, std::string_view value) {
  return value.empty() ? null(k) : str(k, value);
}

template <class Integer>
ObjectWriter& ObjectWriter::integer(std::string_view k, Integer value) {
  if (k.size() > kMaxKey) {
    key(k);
    append_integer(out_, value);
    return *this;
  }
  char buf[kMaxKey + 4 + 24];
  std::size_t n = key_into(buf, k);
  auto r = std::to_chars(buf + n, buf + sizeof buf, value);
  out_.append(buf, r.ptr);
  return *this;
}

ObjectWriter& ObjectWriter::num(std::string_view k, std::int64_t value) { return integer(k, value); }
ObjectWriter& ObjectWriter::num(std::string_view k, std::uint64_t value) { return integer(k, value); }

ObjectWriter& ObjectWriter::num(std::string_view k, double value) {
  if (!std::isfinite(value)) return null(k);
  key(k);
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, value);
  out_.append(buf, r.ptr);
  return *this;
}

ObjectWriter& ObjectWriter::millis(std::string_view k, double value) {
  if (!std::isfinite(value)) return null(k);
  key(k);
  // Thousandths as an integer: the same text as the shortest form of the value rounded to three
  // decimals, without the general floating-point formatter.
  double scaled = std::round(value * 1000);
  if (std::fabs(scaled) >= 9e15) {  // beyond exact integers: the general form
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, scaled / 1000);
    out_.append(buf, r.ptr);
    return *this;
  }
  auto m = static_cast<std::int64_t>(scaled);
  if (m < 0) {
    out_.push_back('-');
    m = -m;
  }
  append_integer(out_, m / 1000);
  if (int frac = static_cast<int>(m % 1000)) {
    char digits[4] = {'.', static_cast<char>('0' + frac / 100), static_cast<char>('0' + frac / 10 % 10),
                      static_cast<char>('0' + frac % 10)};
    std::size_t n = 4;
    while (digits[n - 1] == '0') --n;
    out_.append(digits, n);
  }
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
