#include "core/json_line.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstring>

#include "core/copy_short.hpp"

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

// Whether every byte of `text` is verbatim: a word at a time, the last (partial) word read as
// the 8 bytes that end the text.
bool all_verbatim(std::string_view text) {
  const std::size_t size = text.size();
  if (size < 8) {
    for (char c : text)
      if (!kVerbatim[static_cast<unsigned char>(c)]) return false;
    return true;
  }
  for (std::size_t j = 0; j + 8 <= size; j += 8)
    if (!verbatim_word(text.data() + j)) return false;
  return size % 8 == 0 || verbatim_word(text.data() + size - 8);
}

}  // namespace

char* write_quoted(char* p, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  const std::size_t size = text.size();
  *p++ = '"';
  if (all_verbatim(text)) {  // most values: one copy
    copy_short(p, text.data(), size);
    p += size;
    *p++ = '"';
    return p;
  }
  std::size_t i = 0;
  while (i < size) {
    std::size_t j = verbatim_prefix(text, i);
    if (j > i) {
      std::memcpy(p, text.data() + i, j - i);
      p += j - i;
      i = j;
      if (i == size) break;
    }
    unsigned char c = static_cast<unsigned char>(text[i]);
    const char* escape = nullptr;
    switch (c) {
      case '"': escape = "\\\""; break;
      case '\\': escape = "\\\\"; break;
      case '\b': escape = "\\b"; break;
      case '\f': escape = "\\f"; break;
      case '\n': escape = "\\n"; break;
      case '\r': escape = "\\r"; break;
      case '\t': escape = "\\t"; break;
      default: break;
    }
    if (escape) {
      *p++ = escape[0];
      *p++ = escape[1];
      ++i;
    } else if (c < 0x20) {
      std::memcpy(p, "\\u00", 4);
      p[4] = kHex[c >> 4];
      p[5] = kHex[c & 0xf];
      p += 6;
      ++i;
    } else if (std::size_t n = utf8_sequence(text, i)) {
      std::memcpy(p, text.data() + i, n);
      p += n;
      i += n;
    } else {
      std::memcpy(p, "\xEF\xBF\xBD", 3);  // U+FFFD for a byte that starts no well-formed sequence
      p += 3;
      ++i;
    }
  }
  *p++ = '"';
  return p;
}


void append_quoted(std::string& out, std::string_view text) {
  const std::size_t used = out.size();
  out.resize(used + quoted_bound(text.size()));
  char* end = write_quoted(out.data() + used, text);
  out.resize(static_cast<std::size_t>(end - out.data()));
}

// The line is written through a cursor into `out_`, which is sized ahead (room()); close()
// trims it to what was written. A field is then a few stores, not a string append per piece.
ObjectWriter::ObjectWriter(std::string& out) : out_(out), used_(out.size()) { *room(1) = '{'; ++used_; }

void ObjectWriter::grow(std::size_t n) { out_.resize(std::max(out_.size() * 2, used_ + n + 256)); }

void ObjectWriter::close() {
  *room(1) = '}';
  out_.resize(used_ + 1);
}

ObjectWriter& ObjectWriter::str_or_null(std::string_view k, std::string_view value) {
  return value.empty() ? null(k) : str(k, value);
}

template <class Integer>
ObjectWriter& ObjectWriter::integer(std::string_view k, Integer value) {
  char* p = write_key(room(k.size() + 4 + 24), k);
  commit(std::to_chars(p, p + 24, value).ptr);
  return *this;
}

ObjectWriter& ObjectWriter::num(std::string_view k, std::int64_t value) { return integer(k, value); }
ObjectWriter& ObjectWriter::num(std::string_view k, std::uint64_t value) { return integer(k, value); }

ObjectWriter& ObjectWriter::num(std::string_view k, double value) {
  if (!std::isfinite(value)) return null(k);
  char* p = write_key(room(k.size() + 4 + 32), k);
  commit(std::to_chars(p, p + 32, value).ptr);
  return *this;
}

ObjectWriter& ObjectWriter::millis(std::string_view k, double value) {
  if (!std::isfinite(value)) return null(k);
  char* p = write_key(room(k.size() + 4 + 32), k);
  // Thousandths as an integer: the same text as the shortest form of the value rounded to three
  // decimals, without the general floating-point formatter.
  double scaled = std::round(value * 1000);
  if (std::fabs(scaled) >= 9e15) {  // beyond exact integers: the general form
    commit(std::to_chars(p, p + 32, scaled / 1000).ptr);
    return *this;
  }
  auto m = static_cast<std::int64_t>(scaled);
  if (m < 0) {
    *p++ = '-';
    m = -m;
  }
  p = std::to_chars(p, p + 24, m / 1000).ptr;
  if (int frac = static_cast<int>(m % 1000)) {
    char digits[4] = {'.', static_cast<char>('0' + frac / 100), static_cast<char>('0' + frac / 10 % 10),
                      static_cast<char>('0' + frac % 10)};
    std::size_t n = 4;
    while (digits[n - 1] == '0') --n;
    std::memcpy(p, digits, n);
    p += n;
  }
  commit(p);
  return *this;
}

ObjectWriter& ObjectWriter::null(std::string_view k) {
  char* p = write_key(room(k.size() + 4 + 4), k);
  std::memcpy(p, "null", 4);
  commit(p + 4);
  return *this;
}

ObjectWriter& ObjectWriter::strings(std::string_view k, const std::vector<std::string>& values) {
  std::size_t bound = k.size() + 4 + 2;
  for (const auto& v : values) bound += quoted_bound(v.size()) + 1;
  char* p = write_key(room(bound), k);
  *p++ = '[';
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i) *p++ = ',';
    p = write_quoted(p, values[i]);
  }
  *p++ = ']';
  commit(p);
  return *this;
}

}  // namespace sidekey::json
