#pragma once
// A Beast HTTP/1 parser whose head lands straight in the policy's view of the fields
// (policy::Headers): Beast's own parser builds a basic_fields (an allocation per field) that the
// proxy then copied into policy::Headers; this one keeps one copy, the one the policy reads and
// the proxy renders from. Beast's basic_parser still does all the parsing and framing (lengths,
// chunks, limits, keep-alive), and the body is read as buffer_body reads it: into the window the
// relay sets before each read.
//
// Fields that follow a chunked body (trailers) are not kept: the proxy re-frames every body and
// sends no trailers on.
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/verb.hpp>

#include <algorithm>
#include <cstring>
#include <string>

#include "policy/headers.hpp"
#include "secrets/secret_value.hpp"

namespace sidekey::proxy {

template <bool isRequest>
class MessageParser final : public boost::beast::http::basic_parser<isRequest> {
  using error_code = boost::beast::error_code;
  using string_view = boost::beast::string_view;
  using field = boost::beast::http::field;
  using verb = boost::beast::http::verb;

 public:
  MessageParser() { fields.reserve(kFieldsReserved); }
  ~MessageParser() override = default;
  MessageParser(const MessageParser&) = delete;
  MessageParser& operator=(const MessageParser&) = delete;

  // The head, once is_header_done().
  policy::Headers fields;  // as received, in order; framing fields included
  unsigned version = 11;   // 10 or 11
  verb method = verb::unknown;  // requests
  std::string method_string;    // requests, as sent
  std::string target;           // requests, as sent
  int status = 0;               // responses
  std::string reason;           // responses, as sent (may be empty)

  // Where the next body bytes go (buffer_body's value): set before each read; `data` advances
  // and `size` shrinks by what was written.
  boost::beast::http::buffer_body::value_type body;

  // Room for `n` more fields without the vector moving on its own (which would free the old
  // array with the short values still in it).
  void make_room(std::size_t n) {
    while (fields.capacity() < fields.size() + n) grow();
  }

  // Overwrites every byte of the head this parser holds (fields, target, reason) and drops the
  // fields: for a response that may echo what was written, once its head is rendered or refused.
  void wipe() noexcept {
    policy::wipe_fields(fields);
    secrets::wipe(target);
    secrets::wipe(reason);
  }

 private:
  // Most heads have fewer fields: their vector is then allocated once and never moved (a vector
  // that grows frees its old array with the short values still in it).
  static constexpr std::size_t kFieldsReserved = 16;

  void on_request_impl(verb m, string_view m_str, string_view t, int v, error_code&) override {
    method = m;
    method_string.assign(m_str.data(), m_str.size());
    target.assign(t.data(), t.size());
    version = static_cast<unsigned>(v);
  }

  void on_response_impl(int code, string_view r, int v, error_code&) override {
    status = code;
    reason.assign(r.data(), r.size());
    version = static_cast<unsigned>(v);
  }

  void on_field_impl(field, string_view name, string_view value, error_code&) override {
    if (header_done_) return;  // a trailer
    if (fields.size() == fields.capacity()) grow();
    auto& h = fields.emplace_back();  // built in place: no temporary on the stack with the bytes
    h.name.assign(name.data(), name.size());
    h.value.assign(value.data(), value.size());
  }

  void on_header_impl(error_code&) override { header_done_ = true; }

  void on_body_init_impl(const boost::optional<std::uint64_t>&, error_code&) override {}

  std::size_t on_body_impl(string_view bytes, error_code& ec) override { return copy_into_window(bytes, ec); }

  void on_chunk_header_impl(std::uint64_t, string_view, error_code&) override {}

  std::size_t on_chunk_body_impl(std::uint64_t, string_view bytes, error_code& ec) override { return copy_into_window(bytes, ec); }

  void on_finish_impl(error_code&) override {}

  // buffer_body's reader: copies what fits into the window; need_buffer when it is full.
  std::size_t copy_into_window(string_view bytes, error_code& ec) {
    if (body.data == nullptr) {
      ec = boost::beast::http::error::need_buffer;
      return 0;
    }
    const std::size_t n = std::min(bytes.size(), body.size);
    if (n) std::memcpy(body.data, bytes.data(), n);
    body.data = static_cast<char*>(body.data) + n;
    body.size -= n;
    if (n < bytes.size()) ec = boost::beast::http::error::need_buffer;
    return n;
  }

  void grow() { policy::grow_wiping(fields, kFieldsReserved); }  // also after the fields moved out

  bool header_done_ = false;
};

}  // namespace sidekey::proxy
