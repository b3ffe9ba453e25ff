#include "policy/headers.hpp"

#include <algorithm>
#include <array>
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

// Whether a Connection field of `h` (either kind of fields) lists `name`.
template <class Fields>
bool named_by_connection(const Fields& h, std::string_view name) {
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

void remove_headers(Headers& h, std::initializer_list<std::string_view> names) {
  std::erase_if(h, [&](const Header& f) {
    return std::any_of(names.begin(), names.end(), [&](std::string_view n) { return iequals(f.name, n); });
  });
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

namespace {

// The fields strip_hop_by_hop() drops, decided on the fields as received: drop[i] for field i.
// Returns whether an upgrade is kept (Connection then becomes just "upgrade"). Either kind of
// fields (owned or views).
template <class Fields>
bool mark_hop_by_hop(const Fields& h, bool keep_upgrade, bool* drop) {
  // The Connection fields' tokens, split once (more than a few: the lists are read again per
  // field). A token that is itself a hop-by-hop name ("keep-alive", "upgrade") names fields that
  // go anyway: not kept, so that the usual "Connection: keep-alive" costs no comparison per field.
  constexpr std::size_t kTokens = 8;
  std::array<std::string_view, kTokens> tokens;
  std::size_t token_count = 0, connection_fields = 0;
  bool many = false, lists_upgrade = false;
  for (const auto& f : h) {
    if (f.name.size() != 10 || !iequals_same_size(f.name, "connection")) continue;
    ++connection_fields;
    for (std::string_view rest = f.value; !many;) {
      const auto comma = rest.find(',');
      const std::string_view token = trim_ows(rest.substr(0, comma));
      if (iequals(token, "upgrade")) lists_upgrade = true;
      else if (!hop_by_hop_name(token)) {
        if (token_count == kTokens) many = true;
        else tokens[token_count++] = token;
      }
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  auto named_by_connection_field = [&](std::string_view name) {
    if (many) return named_by_connection(h, name);
    for (std::size_t i = 0; i < token_count; ++i)
      if (iequals(tokens[i], name)) return true;
    return false;
  };
  bool has_upgrade = false;
  if (keep_upgrade && connection_fields)
    for (const auto& f : h) has_upgrade = has_upgrade || iequals(f.name, "upgrade");
  const bool upgrading = has_upgrade && (many ? named_by_connection(h, "upgrade") : lists_upgrade);
  for (std::size_t i = 0; i < h.size(); ++i) {
    const std::string_view name = h[i].name;
    drop[i] = !(upgrading && iequals(name, "upgrade")) &&
              (hop_by_hop_name(name) || (connection_fields && named_by_connection_field(name)));
  }
  return upgrading;
}

// Room for one flag per field: on the stack for most heads.
class DropFlags {
 public:
  explicit DropFlags(std::size_t n) {
    if (n > kInline) heap_ = std::make_unique<bool[]>(n);
  }
  bool* get() { return heap_ ? heap_.get() : inline_; }

 private:
  static constexpr std::size_t kInline = 64;
  bool inline_[kInline];
  std::unique_ptr<bool[]> heap_;
};

// Keeps the fields not dropped, in order; `gone` sees each dropped one first.
template <class Fields, class Gone>
void keep_unmarked(Fields& h, const bool* drop, Gone gone) {
  std::size_t kept = 0;
  for (std::size_t i = 0; i < h.size(); ++i) {
    if (drop[i]) {
      gone(h[i]);
      continue;
    }
    if (kept != i) std::swap(h[kept], h[i]);
    ++kept;
  }
  h.erase(h.begin() + static_cast<std::ptrdiff_t>(kept), h.end());
}

}  // namespace

void strip_hop_by_hop(Headers& h, bool keep_upgrade) {
  DropFlags drop(h.size());
  const bool upgrading = mark_hop_by_hop(h, keep_upgrade, drop.get());
  keep_unmarked(h, drop.get(), [](Header& f) {
    secrets::wipe(f.name);  // an upstream's field may echo what was written, in either
    secrets::wipe(f.value);
  });
  if (upgrading) h.push_back({"Connection", "upgrade"});
}

void strip_hop_by_hop(FieldViews& h, bool keep_upgrade) {
  DropFlags drop(h.size());
  const bool upgrading = mark_hop_by_hop(h, keep_upgrade, drop.get());
  keep_unmarked(h, drop.get(), [](FieldView&) {});  // (the bytes are the caller's to wipe)
  if (upgrading) h.push_back({"Connection", "upgrade"});
}

}  // namespace sidekey::policy
