#include "policy/headers.hpp"

#include <algorithm>

#include "core/encoding.hpp"

namespace sidekey::policy {
namespace {

constexpr std::string_view kHopByHop[] = {"connection", "keep-alive", "proxy-connection", "proxy-authorization",
                                          "proxy-authenticate", "te", "trailer", "upgrade"};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Comma-separated tokens of every Connection header (it may be repeated).
std::vector<std::string> connection_tokens(const Headers& h) {
  std::vector<std::string> out;
  for (const auto& f : h) {
    if (!iequals(f.name, "connection")) continue;
    std::string_view rest = f.value;
    while (!rest.empty()) {
      auto comma = rest.find(',');
      auto tok = trim(rest.substr(0, comma));
      if (!tok.empty()) out.push_back(ascii_lower(tok));
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  return out;
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

bool is_upgrade_request(const Headers& h) {
  auto tokens = connection_tokens(h);
  return find_header(h, "upgrade") && std::find(tokens.begin(), tokens.end(), "upgrade") != tokens.end();
}

void strip_hop_by_hop(Headers& h, bool keep_upgrade) {
  std::vector<std::string> listed;  // lower-case
  if (find_header(h, "connection")) listed = connection_tokens(h);
  bool upgrading = keep_upgrade && find_header(h, "upgrade") &&
                   std::find(listed.begin(), listed.end(), "upgrade") != listed.end();
  std::erase_if(h, [&](const Header& f) {
    if (upgrading && iequals(f.name, "upgrade")) return false;
    auto named = [&](std::string_view n) { return iequals(f.name, n); };
    return std::any_of(std::begin(kHopByHop), std::end(kHopByHop), named) ||
           std::any_of(listed.begin(), listed.end(), named);
  });
  if (upgrading) h.push_back({"Connection", "upgrade"});
}

}  // namespace sidekey::policy
