#include "policy/headers.hpp"

#include <algorithm>
#include <memory>

#include "core/encoding.hpp"
#include "secrets/secret_value.hpp"

namespace sidekey::policy {
namespace {

constexpr std::string_view kHopByHop[] = {"connection", "keep-alive", "proxy-connection", "proxy-authorization",
                                          "proxy-authenticate", "te", "trailer", "upgrade"};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Whether a Connection field of `h` lists `name` (case-insensitive).
bool named_by_connection(const Headers& h, std::string_view name) {
  for (const auto& f : h) {
    if (!iequals(f.name, "connection")) continue;
    std::string_view rest = f.value;
    while (!rest.empty()) {
      auto comma = rest.find(',');
      if (iequals(trim(rest.substr(0, comma)), name)) return true;
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
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

bool is_upgrade_request(const Headers& h) { return find_header(h, "upgrade") && named_by_connection(h, "upgrade"); }

void strip_hop_by_hop(Headers& h, bool keep_upgrade) {
  const bool has_connection = find_header(h, "connection") != nullptr;
  const bool upgrading = keep_upgrade && has_connection && find_header(h, "upgrade") && named_by_connection(h, "upgrade");
  // Decided on the fields as received, then removed in one pass (without the token list the
  // Connection fields would otherwise be copied into).
  constexpr std::size_t kInline = 64;
  bool inline_drop[kInline];
  std::unique_ptr<bool[]> heap_drop;
  bool* drop = inline_drop;
  if (h.size() > kInline) {
    heap_drop = std::make_unique<bool[]>(h.size());
    drop = heap_drop.get();
  }
  for (std::size_t i = 0; i < h.size(); ++i) {
    const Header& f = h[i];
    auto named = [&](std::string_view n) { return iequals(f.name, n); };
    drop[i] = !(upgrading && named("upgrade")) &&
              (std::any_of(std::begin(kHopByHop), std::end(kHopByHop), named) ||
               (has_connection && named_by_connection(h, f.name)));
  }
  std::size_t kept = 0;
  for (std::size_t i = 0; i < h.size(); ++i) {
    if (drop[i]) {
      secrets::wipe(h[i].value);  // an upstream's field may echo what was written
      continue;
    }
    if (kept != i) std::swap(h[kept], h[i]);
    ++kept;
  }
  h.erase(h.begin() + static_cast<std::ptrdiff_t>(kept), h.end());
  if (upgrading) h.push_back({"Connection", "upgrade"});
}

}  // namespace sidekey::policy
