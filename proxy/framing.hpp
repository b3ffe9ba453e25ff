#pragma once
// Request framing checks that must see the raw bytes (SPEC invariant 10): a parser that
// "repairs" obs-fold or bare LF would hide exactly the ambiguity that smuggling relies on, so
// the raw head is checked before Beast parses it. Pure code.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace sidekey::proxy {

// Where the head ends in `data` (just past the blank line), or npos while incomplete. A head
// terminated with bare LFs ("\n\n") also counts as complete, so that it can be refused rather
// than waited on.
std::size_t find_head_end(std::string_view data, std::size_t searched_from = 0);

// Why this raw request or response head (up to and including its blank line) is ambiguous, or
// nullopt: bare LF, obs-fold (a line starting with SP or HT), CR or NUL inside a line,
// whitespace before a colon.
std::optional<std::string> raw_head_problem(std::string_view head);

// Checks on the parsed fields: more than one Content-Length, Content-Length with
// Transfer-Encoding, a Transfer-Encoding other than exactly "chunked", Transfer-Encoding in an
// HTTP/1.0 message (RFC 9112 6.1).
struct FramingFields {
  int content_length_count = 0;
  int transfer_encoding_count = 0;
  std::string transfer_encoding;  // the last value seen, as sent
  unsigned version = 11;          // 10 for HTTP/1.0, where Transfer-Encoding is faulty framing
};
std::optional<std::string> framing_problem(const FramingFields& f);

}  // namespace sidekey::proxy
