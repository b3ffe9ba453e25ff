#pragma once
// The heads sidekey sends on, rendered from the policy's view of the fields plus the framing
// the proxy chose. Pure: no Beast message in between, so injected values live only in buffers
// that are wiped (the plan's headers and the rendered head), and a request costs no field
// allocations beyond these.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "policy/headers.hpp"

namespace sidekey::proxy {

// How the body that follows the head is delimited on the way out.
struct Framing {
  bool chunked = false;
  std::optional<std::uint64_t> length;  // Content-Length, when not chunked
};

// A rendered head and the framing its body needs.
struct OutHead {
  std::string bytes;
  bool chunked = false;
};

// "METHOD target HTTP/1.1", the fields in order, then Transfer-Encoding or Content-Length.
OutHead render_request_head(std::string_view method, std::string_view target, const policy::Headers& fields,
                            const Framing& framing);

// "HTTP/1.x status reason", the fields in order, the framing, then `connection` as a Connection
// field when not empty. An empty reason becomes the standard one.
OutHead render_response_head(unsigned version, int status, std::string_view reason, const policy::Headers& fields,
                             const Framing& framing, std::string_view connection);
OutHead render_response_head(unsigned version, int status, std::string_view reason, const policy::FieldViews& fields,
                             const Framing& framing, std::string_view connection);

}  // namespace sidekey::proxy
