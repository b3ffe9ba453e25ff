#include "policy/headers.hpp"

#include <algorithm>
#include <memory>

#include "core/encoding.hpp"
#include "secrets/secret_value.hpp"

namespace sidekey::policy {
namespace {

// Connection, Keep-Alive, Proxy-Connection, Proxy-Authorization, Proxy-Authenticate, TE, Trailer,
// Upgrade (any letter case): told apart by length first, as most fields are none of them.
bool hop_by_hop_name(std::string_view n) {
  switch (n.size()) {
    case 2: return iequals(n, "te");
    case 7: return iequals(n, "trailer") || iequals(n, "upgrade");
    case 10: return iequals(n, "connection") || iequals(n, "keep-alive");
    case 16: return iequals(n, "proxy-connection");
    case 18: return iequals(n, "proxy-authenticate");
    case 19: return iequals(n, "proxy-authorization");
    default: return false;
  }
}

// Whether the comma-separated list `value` (a Connection field's) names `name` (any case).
bool lists(std::string_view value, std::string_view name) {
  while (!value.empty()) {
    auto comma = value.find(',');
    if (iequals(trim_ows(value.substr(0, comma)), name)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

// Whether a Connection field of `h` lists `name`.
bool named_by_connection(const Headers& h, std::string_view name) {
  for (const auto& f : h)
    if (iequals(f.name, "connection") && lists(f.value, name)) return true;
  return false;
}

}  // namespace

const Header* find_header(const Headers& h, std::string_view name) {
  for (const auto& f : h)
    if (iequals(f.name, name)) return &f;
  return nullptr;
}

void remove_header(Headers& h, std::string_view name) {
  std::erase_if(h, [&](const Header& f) { return iequals(f.name, name); });
}

void wipe_spare(Headers& h) noexcept {
  if (h.capacity() > h.size()) secrets::wipe(h.data() + h.size(), (h.capacity() - h.size()) * sizeof(Header));
}

void wipe_fields(Headers& h) noexcept {
  for (auto& f : h) {
    secrets::wipe(f.name);
    secrets::wipe(f.value);
  }
  h.clear();
  wipe_spare(h);
}

void grow_wiping(Headers& h, std::size_t at_least) {
  Headers bigger;
  bigger.reserve(std::max(2 * h.capacity(), at_least));
  for (auto& f : h) {
    bigger.push_back(std::move(f));
    secrets::wipe(f.name);
    secrets::wipe(f.value);
  }
  h.swap(bigger);
}

bool is_upgrade_request(const Headers& h) { return find_header(h, "upgrade") && named_by_connection(h, "upgrade"); }

void strip_hop_by_hop(Headers& h, bool keep_upgrade) {
  // The Connection fields' values, found once (more than a few: looked up again per field).
  constexpr std::size_t kListed = 4;
  std::string_view listed[kListed];
  std::size_t connection_fields = 0;
  for (const auto& f : h)
    if (f.name.size() == 10 && iequals(f.name, "connection")) {
      if (connection_fields < kListed) listed[connection_fields] = f.value;
      ++connection_fields;
    }
  auto named_by_connection_field = [&](std::string_view name) {
    if (connection_fields > kListed) return named_by_connection(h, name);
    for (std::size_t i = 0; i < connection_fields; ++i)
      if (lists(listed[i], name)) return true;
    return false;
  };
  const bool upgrading = keep_upgrade && connection_fields && find_header(h, "upgrade") && named_by_connection_field("upgrade");
  // Decided on the fields as received, then removed in one pass.
  constexpr std::size_t kInline = 64;
  bool inline_drop[kInline];
  std::unique_ptr<bool[]> heap_drop;
  bool* drop = inline_drop;
  if (h.size() > kInline) {
    heap_drop = std::make_unique<bool[]>(h.size());
    drop = heap_drop.get();
  }
  for (std::size_t i = 0; i < h.size(); ++i) {
    const std::string_view name = h[i].name;
    drop[i] = !(upgrading && iequals(name, "upgrade")) &&
              (hop_by_hop_name(name) || (connection_fields && named_by_connection_field(name)));
  }
  std::size_t kept = 0;
  for (std::size_t i = 0; i < h.size(); ++i) {
    if (drop[i]) {
      secrets::wipe(h[i].name);  // an upstream's field may echo what was written, in either
      secrets::wipe(h[i].value);
      continue;
    }
    if (kept != i) std::swap(h[kept], h[i]);
    ++kept;
  }
  h.erase(h.begin() + static_cast<std::ptrdiff_t>(kept), h.end());
  if (upgrading) h.push_back({"Connection", "upgrade"});
}

}  // namespace sidekey::policy
