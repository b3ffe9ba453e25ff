#pragma once
// The request head as policy code sees it: no Beast types, so this stays pure and testable.
// The proxy converts to and from its parser's fields.
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace sidekey::policy {

struct Header {
  std::string name;
  std::string value;
  bool operator==(const Header&) const = default;
};
using Headers = std::vector<Header>;

// A field whose bytes live elsewhere: an upstream's response head, read where it lies in the
// connection's buffer (wiping those bytes wipes the field). Valid until that buffer is read into
// again.
struct FieldView {
  std::string_view name;
  std::string_view value;
};
using FieldViews = std::vector<FieldView>;

struct RequestHead {
  std::string method;
  std::string target;  // origin-form: path[?query]
  Headers headers;
};

// First header of that name (case-insensitive), or nullptr.
const Header* find_header(const Headers& h, std::string_view name);
void remove_header(Headers& h, std::string_view name);
// Every field named one of `names` (case-insensitive), in one pass.
void remove_headers(Headers& h, std::initializer_list<std::string_view> names);

// `Connection` lists "upgrade" and an `Upgrade` header is present (WebSocket and the like).
bool is_upgrade_request(const Headers& h);

// Removes the hop-by-hop headers of SPEC section 5 — Connection and every header it names,
// Keep-Alive, Proxy-Connection, Proxy-Authorization, Proxy-Authenticate, TE, Trailer, Upgrade —
// for either direction. With `keep_upgrade`, Upgrade survives and Connection becomes just
// "upgrade", so a protocol switch can be relayed.
void strip_hop_by_hop(Headers& h, bool keep_upgrade = false);
void strip_hop_by_hop(FieldViews& h, bool keep_upgrade = false);

// Zeroes the array's room past its last field. A field removed, or moved from by a swap or an
// erase, leaves a short value's bytes in the slot it left (std::string keeps up to 15 bytes in
// the object itself); wiping each field that is left does not reach them. After clear(): the
// whole array.
void wipe_spare(Headers& h) noexcept;

// Overwrites every name and value, then drops the fields and zeroes the whole array (the string
// objects too: fields moved or removed since leave short values in slots past the end, and
// in-object bytes of live strings).
void wipe_fields(Headers& h) noexcept;

// Doubles the array's room (to at least `at_least`), wiping each field it moves out of: a vector
// that grows on its own frees the old array with the short values still in it.
void grow_wiping(Headers& h, std::size_t at_least = 16);

}  // namespace sidekey::policy
