#pragma once
// Byte encodings shared by the store, the API, the policy templates and the scrubber.
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

// Constant-time comparison (length may leak, content does not).
bool constant_time_equals(std::string_view a, std::string_view b);

}  // namespace sidekey
