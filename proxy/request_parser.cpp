#include "proxy/request_parser.hpp"

namespace sidekey::proxy {
namespace {
namespace http = boost::beast::http;
using head_syntax::FieldFault;
using head_syntax::kFieldsReserved;

const char* describe(FieldFault f) {
  switch (f) {
    case FieldFault::none: break;
    case FieldFault::no_line_end: return "header line without line ending";
    case FieldFault::bare_lf: return "bare LF in the request head";
    case FieldFault::lone_cr: return "CR inside a header line";
    case FieldFault::nul: return "NUL in the request head";
    case FieldFault::control: return "control character in a header line";
    case FieldFault::obs_fold: return "obsolete line folding (obs-fold) in a header";
    case FieldFault::no_name: return "header line without a name";
    case FieldFault::space_before_colon: return "whitespace between a header name and its colon";
    case FieldFault::bad_name: return "bad header name";
    case FieldFault::trailing_bytes: return "bytes after the end of the head";
  }
  return "malformed head";
}

// request-target: any byte but controls, space and DEL (as Beast's parser has it).
inline bool target_char(unsigned char c) { return c > 0x20 && c != 0x7f; }

}  // namespace

RequestParser::RequestParser() { fields.reserve(kFieldsReserved); }
RequestParser::~RequestParser() = default;

RequestParser::error_code RequestParser::put_head(std::string_view raw) {
  const char* p = raw.data();
  const char* const end = p + raw.size();
  auto malformed = [&](http::error e, const char* why) -> error_code {
    problem_ = std::string("malformed request: ") + why;
    return e;
  };

  // request-line = method SP request-target SP HTTP-version CRLF
  const char* m = p;
  while (p < end && is_tchar(*p)) ++p;
  if (p == m || p >= end || *p != ' ') {
    if (p < end && (*p == '\n' || *p == '\0')) return malformed(http::error::bad_method, describe(*p == '\n' ? FieldFault::bare_lf : FieldFault::nul));
    return malformed(http::error::bad_method, "bad method");
  }
  const std::string_view method_view(m, static_cast<std::size_t>(p - m));
  const char* t = ++p;
  while (p < end && target_char(static_cast<unsigned char>(*p))) ++p;
  if (p == t || p >= end || *p != ' ') {
    if (p < end && (*p == '\n' || *p == '\0')) return malformed(http::error::bad_target, describe(*p == '\n' ? FieldFault::bare_lf : FieldFault::nul));
    return malformed(http::error::bad_target, "bad request target");
  }
  const std::string_view target_view(t, static_cast<std::size_t>(p - t));
  ++p;
  const unsigned v = end - p < 10 ? 0 : head_syntax::http_version(p, end);  // (and its CR LF)
  if (v == 0) return malformed(http::error::bad_version, "bad HTTP version");
  version = v;
  if (version != 10 && version != 11) return malformed(http::error::bad_version, "unsupported HTTP version");
  p += 8;
  if (p[0] != '\r' || p[1] != '\n') {
    if (p[0] == '\n') return malformed(http::error::bad_version, describe(FieldFault::bare_lf));
    return malformed(http::error::bad_version, "bad HTTP version");
  }
  p += 2;

  FieldFault fault{};
  FramingFault framing{};
  auto ec = head_syntax::read_fields(p, end, fault, [&](std::string_view name, std::string_view value) -> error_code {
    if (auto ec = judge_framing_field(name, value, /*request=*/true, framing)) return ec;
    if (fields.size() == fields.capacity()) policy::grow_wiping(fields, kFieldsReserved);
    auto& h = fields.emplace_back();  // built in place: no temporary on the stack with the bytes
    h.name.assign(name);
    h.value.assign(value);
    return {};
  });
  if (ec) {
    switch (framing) {
      case FramingFault::none: problem_ = std::string("malformed request: ") + describe(fault); break;
      case FramingFault::bad_connection: problem_ = "malformed request: bad Connection"; break;
      case FramingFault::bad_length: problem_ = "malformed request: bad Content-Length"; break;
      case FramingFault::repeated_length: problem_ = "ambiguous framing: more than one Content-Length"; break;
      case FramingFault::length_with_coding: problem_ = "ambiguous framing: both Content-Length and Transfer-Encoding"; break;
      case FramingFault::repeated_coding: problem_ = "ambiguous framing: more than one Transfer-Encoding"; break;
      case FramingFault::coding_in_http10: problem_ = "ambiguous framing: Transfer-Encoding in an HTTP/1.0 request"; break;
      case FramingFault::not_chunked: problem_ = "ambiguous framing: unsupported Transfer-Encoding (only chunked is accepted)"; break;
    }
    return ec;
  }
  method_string.assign(method_view);
  target.assign(target_view);
  method = http::string_to_verb(method_view);
  // A request without Content-Length or Transfer-Encoding has no body (RFC 9112 6.3).
  finish_head(/*no_body=*/false, /*to_eof=*/false);
  return {};
}

}  // namespace sidekey::proxy
