#pragma once
// Byte encodings shared by the store, the API, the policy templates and the scrubber.
#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace sidekey {

std::string base64_encode(std::string_view bytes);
// Standard alphabet with padding; whitespace not accepted. nullopt on malformed input.
std::optional<std::string> base64_decode(std::string_view text);
std::string base64url_encode_nopad(std::string_view bytes);

// Percent-encoding per RFC 3986 unreserved set (everything else encoded, uppercase hex).
std::string percent_encode(std::string_view bytes);
void append_percent_encoded(std::string& out, std::string_view bytes);
// nullopt on a malformed escape. '+' is left as is.
std::optional<std::string> percent_decode(std::string_view text);

std::string hex_encode(std::string_view bytes);

// Lower-cases ASCII letters.
std::string ascii_lower(std::string_view s);
namespace detail {
// The 8 bytes at p with ASCII upper-case letters lowered, all at once (bytes of 0x80 and up stay).
inline std::uint64_t lowered_word(const char* p) {
  constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
  std::uint64_t w;
  std::memcpy(&w, p, sizeof w);
  const std::uint64_t low7 = w & (0x7f * kOnes);
  const std::uint64_t at_least_A = low7 + (0x80 - 'A') * kOnes;  // a byte's top bit: >= 'A'
  const std::uint64_t above_Z = low7 + (0x80 - 'Z' - 1) * kOnes;  // a byte's top bit: > 'Z'
  const std::uint64_t upper = at_least_A & ~above_Z & ~w & (0x80 * kOnes);
  return w | (upper >> 2);  // 0x80 >> 2 = 0x20
}
inline char lowered(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }
}  // namespace detail

// ASCII case-insensitive equality of two strings of the same size. Inline: most calls compare a
// field name with a literal, whose side then folds to constants.
inline bool iequals_same_size(std::string_view a, std::string_view b) {
  const std::size_t n = a.size();
  if (n >= 8) {  // a word at a time, the last one overlapping
    for (std::size_t i = 0; i + 8 <= n; i += 8)
      if (detail::lowered_word(a.data() + i) != detail::lowered_word(b.data() + i)) return false;
    return detail::lowered_word(a.data() + n - 8) == detail::lowered_word(b.data() + n - 8);
  }
  for (std::size_t i = 0; i < n; ++i)
    if (detail::lowered(a[i]) != detail::lowered(b[i])) return false;
  return true;
}
inline bool iequals(std::string_view a, std::string_view b) { return a.size() == b.size() && iequals_same_size(a, b); }

// HTTP's token characters (tchar, RFC 9110 5.6.2): what a field name, a method and a list token
// are made of.
inline constexpr std::array<bool, 256> kTokenChars = [] {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = t[c + 32] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}();
inline bool is_tchar(char c) { return kTokenChars[static_cast<unsigned char>(c)]; }
// Optional whitespace (SP, HTAB) around a field value or a list element, removed.
inline bool is_ows(char c) { return c == ' ' || c == '\t'; }
inline std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

// Constant-time comparison (length may leak, content does not).
bool constant_time_equals(std::string_view a, std::string_view b);

}  // namespace sidekey
