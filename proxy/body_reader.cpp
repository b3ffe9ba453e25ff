#include "proxy/body_reader.hpp"

#include <algorithm>
#include <cstring>

#include "proxy/message_parser.hpp"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace sidekey::proxy {
namespace head_syntax {

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

std::size_t token_run(const char* p, const char* end) {
  const char* q = p;
#if defined(__SSE2__)
  // Signed compares: bytes from 0x80 up are negative and fall outside every range.
  const __m128i case_bit = _mm_set1_epi8(0x20), before_a = _mm_set1_epi8('a' - 1), after_z = _mm_set1_epi8('z' + 1),
                before_0 = _mm_set1_epi8('0' - 1), after_9 = _mm_set1_epi8('9' + 1), dash = _mm_set1_epi8('-');
  while (end - q >= 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
    const __m128i folded = _mm_or_si128(v, case_bit);  // 'A'..'Z' → 'a'..'z' (and '@'..'_' → '`'..DEL: not letters)
    const __m128i letter = _mm_and_si128(_mm_cmpgt_epi8(folded, before_a), _mm_cmplt_epi8(folded, after_z));
    const __m128i digit = _mm_and_si128(_mm_cmpgt_epi8(v, before_0), _mm_cmplt_epi8(v, after_9));
    const __m128i ok = _mm_or_si128(_mm_or_si128(letter, digit), _mm_cmpeq_epi8(v, dash));
    const unsigned mask = static_cast<unsigned>(_mm_movemask_epi8(ok)) ^ 0xFFFFu;
    if (mask != 0) {
      q += __builtin_ctz(mask);
      break;
    }
    q += 16;
  }
#endif
  while (q < end && is_tchar(*q)) ++q;
  return static_cast<std::size_t>(q - p);
}

}  // namespace head_syntax

namespace {
namespace http = boost::beast::http;
using head_syntax::is_digit;

// What a chunked body's parser is given before the body's bytes (chunks are the same in either
// direction).
constexpr std::string_view kChunkedHead = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

}  // namespace

BodyReader::BodyReader() = default;
BodyReader::~BodyReader() = default;

BodyReader::error_code BodyReader::judge_framing(Framing which, std::string_view value, bool request,
                                                 FramingFault& fault) {
  auto refuse = [&](FramingFault f, http::error e) -> error_code {
    fault = f;
    return e;
  };
  switch (which) {
    case Framing::none:
      return {};
    case Framing::connection:
      // 1#token, empty elements allowed (RFC 9110 5.6.1): close, keep-alive (and upgrade, which
      // the proxy reads from the fields itself).
      for (std::string_view rest = value;;) {
        const auto comma = rest.find(',');
        const std::string_view item = trim_ows(rest.substr(0, comma));
        if (!std::all_of(item.begin(), item.end(), is_tchar)) return refuse(FramingFault::bad_connection, http::error::bad_value);
        if (iequals(item, "close")) close_ = true;
        if (iequals(item, "keep-alive")) keep_alive_ = true;
        if (comma == std::string_view::npos) return {};
        rest.remove_prefix(comma + 1);
      }
    case Framing::content_length: {
      if (transfer_encoding_) return refuse(FramingFault::length_with_coding, http::error::bad_content_length);
      // One decimal number per field; a response may repeat it (the same number), a request not.
      if (value.empty() || value.size() > 19 || !std::all_of(value.begin(), value.end(), is_digit))
        return refuse(FramingFault::bad_length, http::error::bad_content_length);
      std::uint64_t n = 0;
      for (char c : value) n = 10 * n + static_cast<std::uint64_t>(c - '0');
      if (length_ && (request || *length_ != n)) return refuse(FramingFault::repeated_length, http::error::multiple_content_length);
      length_ = n;
      return {};
    }
    case Framing::transfer_encoding:
      // Transfer-Encoding with Content-Length, twice, or in an HTTP/1.0 message is faulty framing
      // (RFC 9112 6.1).
      if (length_) return refuse(FramingFault::length_with_coding, http::error::bad_transfer_encoding);
      if (transfer_encoding_) return refuse(FramingFault::repeated_coding, http::error::bad_transfer_encoding);
      if (version == 10) return refuse(FramingFault::coding_in_http10, http::error::bad_transfer_encoding);
      transfer_encoding_ = true;
      // Any other coding would be dropped by the proxy's re-framing and reach the other side
      // unlabelled (and, compressed, unscrubbable): refused.
      if (!iequals(value, "chunked")) return refuse(FramingFault::not_chunked, http::error::bad_transfer_encoding);
      chunked_ = true;
      return {};
  }
  return {};
}

void BodyReader::finish_head(bool no_body, bool to_eof) {
  header_done_ = true;
  if (no_body) {
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
    chunks_->put(boost::asio::buffer(kChunkedHead.data(), kChunkedHead.size()), ec);  // (a fixed, valid head)
  } else {
    mode_ = to_eof ? Mode::to_eof : Mode::none;
  }
  done_ = mode_ == Mode::none;
}

bool BodyReader::keep_alive() const {
  if (version >= 11 ? close_ : !keep_alive_) return false;
  return mode_ != Mode::to_eof;
}

std::size_t BodyReader::put(boost::asio::const_buffer in, error_code& ec) {
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

void BodyReader::put_eof(error_code& ec) {
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
