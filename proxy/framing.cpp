#include "proxy/framing.hpp"

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

}  // namespace sidekey::proxy
