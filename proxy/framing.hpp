#pragma once
// Where a head ends in what was read: the proxy reads a head whole, then parses it in one pass
// (RequestParser, ResponseParser). Pure code.
#include <cstddef>
#include <string_view>

namespace sidekey::proxy {

// Where the head ends in `data` (just past the blank line), or npos while incomplete. A head
// terminated with bare LFs ("\n\n") also counts as complete, so that it can be refused rather
// than waited on.
std::size_t find_head_end(std::string_view data, std::size_t searched_from = 0);

}  // namespace sidekey::proxy
