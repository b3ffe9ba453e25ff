#include "proxy/response_parser.hpp"

namespace sidekey::proxy {
namespace {
namespace http = boost::beast::http;
using head_syntax::is_digit;
}  // namespace

ResponseParser::ResponseParser() { fields.reserve(head_syntax::kFieldsReserved); }

ResponseParser::error_code ResponseParser::put_head(std::string_view raw) {
  const char* p = raw.data();
  const char* const end = p + raw.size();

  // status-line = HTTP-version SP status-code SP reason-phrase CRLF
  const unsigned v = head_syntax::http_version(p, end);
  if (v == 0) return http::error::bad_version;
  version = v;
  if (version != 10 && version != 11) return http::error::bad_version;
  p += 8;
  if (p >= end || *p++ != ' ') return http::error::bad_version;
  if (end - p < 4 || !is_digit(p[0]) || !is_digit(p[1]) || !is_digit(p[2]) || p[3] != ' ')
    return http::error::bad_status;
  status = 100 * (p[0] - '0') + 10 * (p[1] - '0') + (p[2] - '0');
  p += 4;
  const char* reason_end = p + head_syntax::line_run(p, end);
  switch (head_syntax::line_end_fault(reason_end, end)) {
    case head_syntax::FieldFault::none: break;
    case head_syntax::FieldFault::lone_cr: return http::error::bad_line_ending;
    default: return http::error::bad_reason;
  }
  reason = std::string_view(p, static_cast<std::size_t>(reason_end - p));
  p = reason_end + 2;

  head_syntax::FieldFault fault{};
  FramingFault framing{};
  auto ec = head_syntax::read_fields(p, end, fault, [&](std::string_view name, std::string_view value) -> error_code {
    if (auto ec = judge_framing_field(name, value, /*request=*/false, framing)) return ec;
    fields.push_back({name, value});
    return {};
  });
  if (ec) return ec;
  // RFC 9112 6.3, as Beast's finish_header() has it.
  finish_head(skip_ || status / 100 == 1 || status == 204 || status == 304, /*to_eof=*/true);
  return {};
}

}  // namespace sidekey::proxy
