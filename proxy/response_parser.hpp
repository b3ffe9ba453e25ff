#pragma once
// An upstream's response, read without Beast's parser for its head. Beast reads a head a
// character at a time, looks every field name up in its table and re-parses the framing fields'
// token lists: about 4 k instructions for a five-field head, the largest single step of a
// proxied request. Here the head is read in one pass over its raw bytes (line ends and control
// bytes found 16 at a time) into views of its fields where they lie (nothing is copied), and the
// framing is judged from the same pass (BodyReader, which also reads the body).
//
// Stricter than Beast's parser, never looser (tests/fuzz/fuzz_response_parser.cpp holds it to
// that): refused are obs-fold (RFC 9112 5.2 lets a proxy answer 502), a Content-Length that is a
// list, more than one Transfer-Encoding field, Transfer-Encoding with Content-Length or in an
// HTTP/1.0 response (RFC 9112 6.1), and a Transfer-Encoding other than exactly "chunked" (a
// coding the proxy's re-framing would drop). Pure code.
#include <string_view>

#include "policy/headers.hpp"
#include "proxy/body_reader.hpp"

namespace sidekey::proxy {

class ResponseParser : public BodyReader {
 public:
  ResponseParser();

  // The head, once put_head() succeeded: views into the bytes given to put_head(), which must
  // stay where they are while these are used.
  policy::FieldViews fields;  // as received, in order; framing fields included
  int status = 0;             // three digits, as sent
  std::string_view reason;    // as sent (may be empty)

  // A response to HEAD: no body, whatever its fields say.
  void skip(bool v) { skip_ = v; }

  // Parses `raw`, a whole head through its blank line (as find_head_end() delimits it). The error
  // codes are Beast's (bad_version, bad_status, bad_reason, bad_field, bad_value,
  // bad_line_ending, bad_obs_fold, bad_content_length, multiple_content_length,
  // bad_transfer_encoding).
  error_code put_head(std::string_view raw);

  // Drops the views of the head (its bytes are where the caller keeps them, and wiped there).
  void clear_head() noexcept {
    fields.clear();
    reason = {};
  }

 private:
  bool skip_ = false;
};

}  // namespace sidekey::proxy
