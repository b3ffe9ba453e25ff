#pragma once
// Byte encodings shared by the store, the API, the policy templates and the scrubber.
#include <array>
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
// ASCII case-insensitive equality. Most calls compare names of different lengths: that test is
// inline, the bytes are compared out of line.
bool iequals_same_size(std::string_view a, std::string_view b);
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
