#include "proxy/framing.hpp"

#include "core/encoding.hpp"

namespace sidekey::proxy {

std::size_t find_head_end(std::string_view d, std::size_t from) {
  from = from >= 3 ? from - 3 : 0;
  for (std::size_t i = from; i < d.size(); ++i) {
    i = d.find('\n', i);  // from line end to line end (memchr), not byte by byte
    if (i == std::string_view::npos) break;
    if (i + 1 < d.size() && d[i + 1] == '\n') return i + 2;
    if (i + 2 < d.size() && d[i + 1] == '\r' && d[i + 2] == '\n') return i + 3;
  }
  return std::string_view::npos;
}

std::optional<std::string> raw_head_problem(std::string_view head) {
  std::size_t line_start = 0;
  bool first = true;
  while (line_start < head.size()) {
    std::size_t lf = head.find('\n', line_start);
    if (lf == std::string_view::npos) return "header line without line ending";
    if (lf == line_start || head[lf - 1] != '\r') return "bare LF in the request head";
    std::string_view line = head.substr(line_start, lf - 1 - line_start);
    if (line.empty()) break;  // the blank line
    for (char c : line) {
      if (c == '\r') return "CR inside a header line";
      if (c == '\0') return "NUL in the request head";
    }
    if (!first) {
      if (line[0] == ' ' || line[0] == '\t') return "obsolete line folding (obs-fold) in a header";
      auto colon = line.find(':');
      if (colon == std::string_view::npos || colon == 0) return "header line without a name";
      char before = line[colon - 1];
      if (before == ' ' || before == '\t') return "whitespace between a header name and its colon";
    }
    first = false;
    line_start = lf + 1;
  }
  return std::nullopt;
}

std::optional<std::string> framing_problem(const FramingFields& f) {
  if (f.content_length_count > 1) return "more than one Content-Length";
  if (f.transfer_encoding_count > 0 && f.content_length_count > 0) return "both Content-Length and Transfer-Encoding";
  if (f.transfer_encoding_count > 1) return "more than one Transfer-Encoding";
  if (f.transfer_encoding_count > 0 && f.version < 11) return "Transfer-Encoding in an HTTP/1.0 request";
  if (f.transfer_encoding_count == 1 && ascii_lower(f.transfer_encoding) != "chunked")
    return "unsupported Transfer-Encoding (only chunked is accepted)";
  return std::nullopt;
}

}  // namespace sidekey::proxy
