#pragma once
// What the proxy's two head parsers share (RequestParser for a client's request, ResponseParser
// for an upstream's response): the field lines of a head read in one pass over its raw bytes,
// the framing judged from the fields in the same pass, and the body that follows, copied into
// the relay's window as it comes (a chunked body is parsed by Beast: MessageParser, given a
// two-line head). Pure code.
#include <boost/asio/buffer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/error.hpp>

#include <cassert>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string_view>

#include "core/encoding.hpp"

namespace sidekey::proxy {

template <bool isRequest>
class MessageParser;

namespace head_syntax {

// A byte that cannot sit inside a line: a control character other than HTAB, or DEL. (CR, which
// ends a line, is one.)
inline bool ends_run(unsigned char c) { return (c < 0x20 && c != '\t') || c == 0x7f; }

// The offset from `p` of the first byte that ends_run(), or end - p (16 bytes at a time).
std::size_t line_run(const char* p, const char* end);

// The offset from `p` of the first byte that is not a token character (tchar), or end - p.
// Names are mostly letters, digits and '-': those are skipped 16 bytes at a time, the rest of
// tchar byte by byte.
std::size_t token_run(const char* p, const char* end);

inline bool is_digit(char c) { return c >= '0' && c <= '9'; }

// HTTP-version = "HTTP/" DIGIT "." DIGIT at p (with at least 8 bytes to end): 10 * major + minor,
// or 0 when the bytes are not one. The parsers take 10 and 11 only.
inline unsigned http_version(const char* p, const char* end) {
  if (end - p < 8 || std::memcmp(p, "HTTP/", 5) != 0 || !is_digit(p[5]) || p[6] != '.' || !is_digit(p[7])) return 0;
  return static_cast<unsigned>(10 * (p[5] - '0') + (p[7] - '0'));
}

// The fields a parser makes room for up front: most heads have fewer, and their vector is then
// allocated once and never moved (a vector that grows frees its old array with the short values
// still in it).
inline constexpr std::size_t kFieldsReserved = 16;

// What stopped a field line: the caller's answer to a malformed head.
enum class FieldFault {
  none,
  no_line_end,         // the head ends inside a line (find_head_end() never leaves one)
  bare_lf,             // LF without its CR
  lone_cr,             // CR not followed by LF
  nul,                 // NUL
  control,             // another control character, or DEL
  obs_fold,            // a line that begins with whitespace (obsolete line folding)
  no_name,             // a line that begins with ':'
  space_before_colon,  // whitespace between the name and its colon
  bad_name,            // another byte that is not a token character in the name
  trailing_bytes,      // bytes after the blank line
};

// Why the run of ordinary bytes of a line stopped at `at` (end: no line end), or none for CR LF.
inline FieldFault line_end_fault(const char* at, const char* end) {
  if (at >= end) return FieldFault::no_line_end;
  switch (*at) {
    case '\r': return at + 1 < end && at[1] == '\n' ? FieldFault::none : FieldFault::lone_cr;
    case '\n': return FieldFault::bare_lf;
    case '\0': return FieldFault::nul;
    default: return FieldFault::control;
  }
}

// Reads the field lines from `p` through the blank line that ends the head at `end` (a whole
// head, as find_head_end() delimits it): field-name ":" OWS field-value OWS CRLF. Calls
// on_field(name, value) for each field (the value without its surrounding whitespace), which
// returns an error to stop. `fault` says what was malformed when the answer is a parse error.
template <class OnField>
boost::beast::error_code read_fields(const char* p, const char* end, FieldFault& fault, OnField&& on_field) {
  namespace http = boost::beast::http;
  for (;;) {
    if (p >= end) {
      fault = FieldFault::no_line_end;
      return http::error::bad_line_ending;
    }
    if (*p == '\r') {
      if (p + 1 >= end || p[1] != '\n') {
        fault = FieldFault::lone_cr;
        return http::error::bad_line_ending;
      }
      if (p + 2 != end) {
        fault = FieldFault::trailing_bytes;
        return http::error::bad_line_ending;
      }
      return {};
    }
    const char* name = p;
    p += token_run(p, end);
    if (p >= end || *p != ':' || p == name) {
      const char c = p < end ? *p : '\0';
      if (p >= end) fault = FieldFault::no_line_end;
      else if (c == ':') fault = FieldFault::no_name;
      else if (c == ' ' || c == '\t') fault = p == name ? FieldFault::obs_fold : FieldFault::space_before_colon;
      else if (c == '\n') fault = FieldFault::bare_lf;
      else if (c == '\0') fault = FieldFault::nul;
      else if (c == '\r' && !(p + 1 < end && p[1] == '\n')) fault = FieldFault::lone_cr;
      else fault = FieldFault::bad_name;
      return http::error::bad_field;
    }
    const std::string_view field_name(name, static_cast<std::size_t>(p - name));
    ++p;
    while (p < end && is_ows(*p)) ++p;
    const char* value = p;
    const char* value_end = p + line_run(p, end);
    if ((fault = line_end_fault(value_end, end)) != FieldFault::none)
      return fault == FieldFault::lone_cr ? http::error::bad_line_ending : http::error::bad_value;
    p = value_end + 2;
    if (p < end && is_ows(*p)) {
      fault = FieldFault::obs_fold;
      return http::error::bad_obs_fold;
    }
    while (value_end > value && is_ows(value_end[-1])) --value_end;
    if (auto ec = on_field(field_name, std::string_view(value, static_cast<std::size_t>(value_end - value)))) return ec;
  }
}

}  // namespace head_syntax

// The framing a head's fields set, and the body it delimits.
class BodyReader {
 public:
  using error_code = boost::beast::error_code;

  unsigned version = 11;  // 10 or 11

  // Where the next body bytes go (buffer_body's value): set before each put; `data` advances and
  // `size` shrinks by what was written.
  boost::beast::http::buffer_body::value_type body;

  // Body bytes from `in` into the window; returns what was used. need_buffer when the window
  // filled with bytes left over; a malformed chunk is Beast's error.
  std::size_t put(boost::asio::const_buffer in, error_code& ec);
  // The stream ended: completes a body delimited by it, else partial_message unless done.
  void put_eof(error_code& ec);

  bool is_header_done() const { return header_done_; }
  bool is_done() const { return done_; }
  bool chunked() const { return chunked_; }
  std::optional<std::uint64_t> content_length() const { return length_; }
  bool need_eof() const { return mode_ == Mode::to_eof; }
  bool keep_alive() const;

  // A body delimited by its length, taken whole from the buffer by the caller (which consumed
  // it): done.
  void take_whole_body() {
    assert(mode_ == Mode::length || mode_ == Mode::none);
    remaining_ = 0;
    done_ = true;
  }

 protected:
  BodyReader();
  ~BodyReader();
  BodyReader(const BodyReader&) = delete;
  BodyReader& operator=(const BodyReader&) = delete;

  // Why judge_framing_field() refused a field.
  enum class FramingFault { none, bad_connection, bad_length, repeated_length, length_with_coding, repeated_coding, coding_in_http10, not_chunked };

  // Connection, Proxy-Connection, Content-Length, Transfer-Encoding (others pass). A request's
  // Content-Length may not repeat at all; a response's may, with the same number. Inline: most
  // fields are none of these, which their length alone mostly says.
  error_code judge_framing_field(std::string_view name, std::string_view value, bool request, FramingFault& fault) {
    const Framing which = framing_field(name);
    return which == Framing::none ? error_code{} : judge_framing(which, value, request, fault);
  }

  // The head is done: the body's delimitation from the framing fields (RFC 9112 6.3). `no_body`:
  // none whatever the fields say; `to_eof`: without a length or chunked coding the body runs to
  // the end of the stream (responses), else there is none (requests).
  void finish_head(bool no_body, bool to_eof);

 private:
  enum class Mode { none, length, chunked, to_eof };

  // Which framing field a name is (Beast's do_field() judges these), by length first.
  enum class Framing { none, connection, content_length, transfer_encoding };
  static Framing framing_field(std::string_view name) {
    switch (name.size()) {
      case 10: return iequals_same_size(name, "connection") ? Framing::connection : Framing::none;
      case 14: return iequals_same_size(name, "content-length") ? Framing::content_length : Framing::none;
      case 16: return iequals_same_size(name, "proxy-connection") ? Framing::connection : Framing::none;
      case 17: return iequals_same_size(name, "transfer-encoding") ? Framing::transfer_encoding : Framing::none;
      default: return Framing::none;
    }
  }
  error_code judge_framing(Framing which, std::string_view value, bool request, FramingFault& fault);

  Mode mode_ = Mode::none;
  bool header_done_ = false;
  bool done_ = false;
  bool chunked_ = false;
  bool transfer_encoding_ = false;
  bool close_ = false;       // Connection: close
  bool keep_alive_ = false;  // Connection: keep-alive
  std::optional<std::uint64_t> length_;
  std::uint64_t remaining_ = 0;
  std::unique_ptr<MessageParser<false>> chunks_;  // a chunked body's parser
};

}  // namespace sidekey::proxy
