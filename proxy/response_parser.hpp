#pragma once
// An upstream's response, read without Beast's parser for its head. Beast reads a head a
// character at a time, looks every field name up in its table and re-parses the framing fields'
// token lists: about 4 k instructions for a five-field head, the largest single step of a
// proxied request. Here the head is read in one pass over its raw bytes (line ends and control
// bytes found 16 at a time) into views of its fields where they lie (nothing is copied), and the
// framing is judged from the same pass. A body with a length, or to the end of the stream, is copied into
// the relay's window as it comes; a chunked body is parsed by Beast (MessageParser, given a
// two-line head).
//
// Stricter than Beast's parser, never looser (tests/fuzz/fuzz_response_parser.cpp holds it to
// that): refused are obs-fold (RFC 9112 5.2 lets a proxy answer 502), a Content-Length that is a
// list, more than one Transfer-Encoding field, Transfer-Encoding with Content-Length or in an
// HTTP/1.0 response (RFC 9112 6.1), and a Transfer-Encoding other than exactly "chunked" (a
// coding the proxy's re-framing would drop). Pure code.
#include <boost/asio/buffer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/buffer_body.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "policy/headers.hpp"

namespace sidekey::proxy {

template <bool isRequest>
class MessageParser;

class ResponseParser {
 public:
  using error_code = boost::beast::error_code;

  ResponseParser();
  ~ResponseParser();
  ResponseParser(const ResponseParser&) = delete;
  ResponseParser& operator=(const ResponseParser&) = delete;

  // The head, once put_head() succeeded: views into the bytes given to put_head(), which must
  // stay where they are while these are used.
  policy::FieldViews fields;  // as received, in order; framing fields included
  unsigned version = 11;      // 10 or 11
  int status = 0;             // three digits, as sent
  std::string_view reason;    // as sent (may be empty)

  // Where the next body bytes go (buffer_body's value): set before each put; `data` advances and
  // `size` shrinks by what was written.
  boost::beast::http::buffer_body::value_type body;

  // A response to HEAD: no body, whatever its fields say.
  void skip(bool v) { skip_ = v; }

  // Parses `raw`, a whole head through its blank line (as find_head_end() delimits it). The error
  // codes are Beast's (bad_version, bad_status, bad_reason, bad_field, bad_value,
  // bad_line_ending, bad_obs_fold, bad_content_length, multiple_content_length,
  // bad_transfer_encoding).
  error_code put_head(std::string_view raw);

  // Body bytes from `in` into the window; returns what was used. need_buffer when the window
  // filled with bytes left over; a malformed chunk is Beast's error.
  std::size_t put(boost::asio::const_buffer in, error_code& ec);
  // The stream ended: completes a body delimited by it, else partial_message unless done.
  void put_eof(error_code& ec);

  bool is_header_done() const { return header_done_; }
  bool is_done() const;
  bool chunked() const { return chunked_; }
  std::optional<std::uint64_t> content_length() const { return length_; }
  bool need_eof() const { return mode_ == Mode::to_eof; }
  bool keep_alive() const;

  // Drops the views of the head (its bytes are where the caller keeps them, and wiped there).
  void clear_head() noexcept {
    fields.clear();
    reason = {};
  }

 private:
  static constexpr std::size_t kFieldsReserved = 16;
  enum class Mode { none, length, chunked, to_eof };
  error_code judge_framing_field(std::string_view name, std::string_view value);

  Mode mode_ = Mode::none;
  bool header_done_ = false;
  bool done_ = false;
  bool skip_ = false;
  bool chunked_ = false;
  bool transfer_encoding_ = false;
  bool close_ = false;       // Connection: close
  bool keep_alive_ = false;  // Connection: keep-alive
  std::optional<std::uint64_t> length_;
  std::uint64_t remaining_ = 0;
  std::unique_ptr<MessageParser<false>> chunks_;  // a chunked body's parser
};

}  // namespace sidekey::proxy
