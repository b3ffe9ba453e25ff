#include "proxy/response_parser.hpp"

#include <boost/beast/http/error.hpp>

#include <algorithm>
#include <cstring>

#include "core/encoding.hpp"
#include "proxy/message_parser.hpp"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace sidekey::proxy {
namespace {
namespace http = boost::beast::http;

// A byte that cannot sit inside a line: a control character other than HTAB, or DEL. (CR, which
// ends a line, is one.)
inline bool ends_run(unsigned char c) { return (c < 0x20 && c != '\t') || c == 0x7f; }

// The offset from `p` of the first byte that ends_run(), or end - p.
std::size_t line_run(const char* p, const char* end) {
  const char* q = p;
#if defined(__SSE2__)
  const __m128i below_space = _mm_set1_epi8(0x1f), tab = _mm_set1_epi8('\t'), del = _mm_set1_epi8(0x7f);
  while (end - q >= 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
    __m128i hit = _mm_cmpeq_epi8(_mm_min_epu8(v, below_space), v);  // v <= 0x1f, unsigned
    hit = _mm_andnot_si128(_mm_cmpeq_epi8(v, tab), hit);
    hit = _mm_or_si128(hit, _mm_cmpeq_epi8(v, del));
    if (const int mask = _mm_movemask_epi8(hit)) return static_cast<std::size_t>(q - p) + __builtin_ctz(mask);
    q += 16;
  }
#endif
  while (q < end && !ends_run(static_cast<unsigned char>(*q))) ++q;
  return static_cast<std::size_t>(q - p);
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Which framing field a name is (Beast's do_field() judges these), by length first.
enum class Framing { none, connection, content_length, transfer_encoding };
Framing framing_field(std::string_view name) {
  switch (name.size()) {
    case 10: return iequals_same_size(name, "connection") ? Framing::connection : Framing::none;
    case 14: return iequals_same_size(name, "content-length") ? Framing::content_length : Framing::none;
    case 16: return iequals_same_size(name, "proxy-connection") ? Framing::connection : Framing::none;
    case 17: return iequals_same_size(name, "transfer-encoding") ? Framing::transfer_encoding : Framing::none;
    default: return Framing::none;
  }
}

// What a chunked body's parser is given before the body's bytes.
constexpr std::string_view kChunkedHead = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

}  // namespace

ResponseParser::ResponseParser() { fields.reserve(kFieldsReserved); }
ResponseParser::~ResponseParser() = default;

ResponseParser::error_code ResponseParser::judge_framing_field(std::string_view name, std::string_view value) {
  switch (framing_field(name)) {
    case Framing::none:
      return {};
    case Framing::connection:
      // 1#token, empty elements allowed (RFC 9110 5.6.1): close, keep-alive (and upgrade, which
      // the proxy reads from the fields itself).
      for (std::string_view rest = value;;) {
        const auto comma = rest.find(',');
        const std::string_view item = trim_ows(rest.substr(0, comma));
        if (!std::all_of(item.begin(), item.end(), is_tchar))
          return http::error::bad_value;
        if (iequals(item, "close")) close_ = true;
        if (iequals(item, "keep-alive")) keep_alive_ = true;
        if (comma == std::string_view::npos) return {};
        rest.remove_prefix(comma + 1);
      }
    case Framing::content_length: {
      if (transfer_encoding_) return http::error::bad_content_length;
      // One decimal number per field; the same number when the field repeats.
      if (value.empty() || value.size() > 19 || !std::all_of(value.begin(), value.end(), is_digit))
        return http::error::bad_content_length;
      std::uint64_t n = 0;
      for (char c : value) n = 10 * n + static_cast<std::uint64_t>(c - '0');
      if (length_ && *length_ != n) return http::error::multiple_content_length;
      length_ = n;
      return {};
    }
    case Framing::transfer_encoding:
      // Transfer-Encoding in an HTTP/1.0 message is faulty framing (RFC 9112 6.1), as on requests.
      if (transfer_encoding_ || length_ || version == 10) return http::error::bad_transfer_encoding;
      transfer_encoding_ = true;
      // Any other coding would be dropped by the proxy's re-framing and reach the client
      // unlabelled (and, compressed, unscrubbable): refused.
      if (!iequals(value, "chunked")) return http::error::bad_transfer_encoding;
      chunked_ = true;
      return {};
  }
  return {};
}

ResponseParser::error_code ResponseParser::put_head(std::string_view raw) {
  const char* p = raw.data();
  const char* const end = p + raw.size();
  // Ends the line whose run of ordinary bytes stops at `at`: a CR LF, else `bad` (a control byte
  // inside the line) or bad_line_ending (a CR without its LF).
  auto end_line = [&](const char* at, http::error bad) -> error_code {
    if (at >= end || *at != '\r') return bad;
    if (at + 1 >= end || at[1] != '\n') return http::error::bad_line_ending;
    return {};
  };

  // status-line = HTTP-version SP status-code SP reason-phrase CRLF
  if (raw.size() < 8 || std::memcmp(p, "HTTP/", 5) != 0 || !is_digit(p[5]) || p[6] != '.' || !is_digit(p[7]))
    return http::error::bad_version;
  version = static_cast<unsigned>(10 * (p[5] - '0') + (p[7] - '0'));
  if (version != 10 && version != 11) return http::error::bad_version;
  p += 8;
  if (p >= end || *p++ != ' ') return http::error::bad_version;
  if (end - p < 4 || !is_digit(p[0]) || !is_digit(p[1]) || !is_digit(p[2]) || p[3] != ' ')
    return http::error::bad_status;
  status = 100 * (p[0] - '0') + 10 * (p[1] - '0') + (p[2] - '0');
  p += 4;
  const char* reason_end = p + line_run(p, end);
  if (auto ec = end_line(reason_end, http::error::bad_reason)) return ec;
  reason = std::string_view(p, static_cast<std::size_t>(reason_end - p));
  p = reason_end + 2;

  for (;;) {
    if (p >= end) return http::error::bad_line_ending;  // (find_head_end() delimits a whole head)
    if (*p == '\r') {
      if (p + 1 >= end || p[1] != '\n') return http::error::bad_line_ending;
      if (p + 2 != end) return http::error::bad_line_ending;  // (find_head_end() ends a head here)
      break;
    }
    // field-name ":" OWS field-value OWS CRLF
    const char* name = p;
    while (p < end && is_tchar(*p)) ++p;
    if (p >= end || *p != ':' || p == name) return http::error::bad_field;
    const std::string_view field_name(name, static_cast<std::size_t>(p - name));
    ++p;
    while (p < end && is_ows(*p)) ++p;
    const char* value = p;
    const char* value_end = p + line_run(p, end);
    if (auto ec = end_line(value_end, http::error::bad_value)) return ec;
    p = value_end + 2;
    if (p < end && is_ows(*p)) return http::error::bad_obs_fold;
    while (value_end > value && is_ows(value_end[-1])) --value_end;
    const std::string_view field_value(value, static_cast<std::size_t>(value_end - value));
    if (auto ec = judge_framing_field(field_name, field_value)) return ec;
    fields.push_back({field_name, field_value});
  }

  // RFC 9112 6.3, as Beast's finish_header() has it.
  header_done_ = true;
  if (skip_ || status / 100 == 1 || status == 204 || status == 304) {
    mode_ = Mode::none;
  } else if (length_) {
    mode_ = *length_ > 0 ? Mode::length : Mode::none;
    remaining_ = *length_;
  } else if (chunked_) {
    mode_ = Mode::chunked;
    chunks_ = std::make_unique<MessageParser<false>>();
    chunks_->body_limit(boost::none);
    // One element per put, as the relay expects: a put that went on past a chunk would report
    // need_more for the next chunk's size line and hold back the bytes it already has.
    chunks_->eager(false);
    error_code ec;
    chunks_->put(boost::asio::buffer(kChunkedHead.data(), kChunkedHead.size()), ec);
    if (ec) return ec;  // (cannot happen: a fixed, valid head)
  } else {
    mode_ = Mode::to_eof;
  }
  done_ = mode_ == Mode::none;
  return {};
}

bool ResponseParser::is_done() const { return done_; }

bool ResponseParser::keep_alive() const {
  if (version >= 11 ? close_ : !keep_alive_) return false;
  return mode_ != Mode::to_eof;
}

std::size_t ResponseParser::put(boost::asio::const_buffer in, error_code& ec) {
  ec = {};
  if (!header_done_) {  // no body before a head
    ec = http::error::partial_message;
    return 0;
  }
  if (done_ || in.size() == 0) return 0;
  if (mode_ == Mode::chunked) {
    chunks_->body = body;
    const std::size_t used = chunks_->put(in, ec);
    body = chunks_->body;
    done_ = chunks_->is_done();
    return used;
  }
  if (body.data == nullptr) {
    ec = http::error::need_buffer;
    return 0;
  }
  std::size_t n = std::min(in.size(), body.size);
  if (mode_ == Mode::length) n = static_cast<std::size_t>(std::min<std::uint64_t>(n, remaining_));
  if (n) std::memcpy(body.data, in.data(), n);
  body.data = static_cast<char*>(body.data) + n;
  body.size -= n;
  if (mode_ == Mode::length) {
    remaining_ -= n;
    done_ = remaining_ == 0;
  }
  if (!done_ && n < in.size()) ec = http::error::need_buffer;
  return n;
}

void ResponseParser::put_eof(error_code& ec) {
  ec = {};
  if (!header_done_) {
    ec = http::error::partial_message;
  } else if (mode_ == Mode::to_eof) {
    done_ = true;
  } else if (!done_) {
    ec = http::error::partial_message;
  }
}

}  // namespace sidekey::proxy
