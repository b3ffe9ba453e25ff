#include "policy/destination.hpp"

#include <algorithm>
#include <charconv>

#include "core/encoding.hpp"
#include "core/ip.hpp"

namespace sidekey::policy {
namespace {

bool host_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

// WHATWG's "ends in a number": decimal, or 0x-prefixed hex (even "0x" alone).
bool numeric_label(std::string_view label) {
  if (all_digits(label)) return true;
  if (label.size() >= 2 && label[0] == '0' && label[1] == 'x') {
    for (char c : label.substr(2))
      if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return true;
  }
  return false;
}

std::optional<std::uint16_t> parse_port(std::string_view s) {
  if (s.empty() || s.size() > 5 || !all_digits(s)) return std::nullopt;
  unsigned v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  if (v == 0 || v > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(v);
}

std::uint16_t default_port(std::string_view scheme) { return scheme == "http" ? 80 : 443; }

}  // namespace

std::optional<std::string> normalize_host(std::string_view host, bool allow_bare_v6) {
  if (host.empty()) return std::nullopt;
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return std::nullopt;
    auto inner = host.substr(1, host.size() - 2);
    if (inner.find('%') != std::string_view::npos) return std::nullopt;  // zone ids: local only
    auto ip = IpAddress::parse(inner);
    if (!ip || ip->is_v4) return std::nullopt;
    return ip->to_string();
  }
  if (host.find(':') != std::string_view::npos) {
    if (!allow_bare_v6 || host.find('%') != std::string_view::npos) return std::nullopt;
    auto ip = IpAddress::parse(host);
    if (!ip || ip->is_v4) return std::nullopt;
    return ip->to_string();
  }
  std::string h = ascii_lower(host);
  if (h.back() == '.') h.pop_back();
  if (h.empty() || h.size() > 253) return std::nullopt;
  if (auto ip = IpAddress::parse(h); ip && ip->is_v4) return ip->to_string();
  std::string_view rest = h;
  std::string_view last;
  while (true) {
    auto dot = rest.find('.');
    auto label = rest.substr(0, dot);
    if (label.empty() || label.size() > 63) return std::nullopt;
    for (char c : label)
      if (!host_char(c)) return std::nullopt;
    last = label;
    if (dot == std::string_view::npos) break;
    rest = rest.substr(dot + 1);
  }
  if (numeric_label(last)) return std::nullopt;
  return h;
}

std::optional<HostPort> split_host_port(std::string_view a) {
  if (a.empty()) return std::nullopt;
  std::string_view host = a, port;
  bool has_port = false;
  if (a.front() == '[') {
    auto close = a.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host = a.substr(0, close + 1);
    auto rest = a.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return std::nullopt;
      port = rest.substr(1);
      has_port = true;
    }
  } else if (auto colon = a.rfind(':'); colon != std::string_view::npos) {
    host = a.substr(0, colon);
    port = a.substr(colon + 1);
    has_port = true;
  }
  HostPort hp;
  auto h = normalize_host(host);
  if (!h) return std::nullopt;
  hp.host = std::move(*h);
  if (has_port) {
    auto p = parse_port(port);
    if (!p) return std::nullopt;
    hp.port = *p;
  }
  return hp;
}

bool Destination::host_is_ip() const { return IpAddress::parse(host).has_value(); }

namespace {
// host (IPv6 in brackets), then ":port" when `with_port`: built in one buffer (once per request).
std::string host_and_port(const std::string& host, std::uint16_t port, bool with_port) {
  const bool v6 = host.find(':') != std::string::npos;
  char digits[8];
  const char* digits_end = std::to_chars(digits, digits + sizeof digits, port).ptr;
  const auto port_size = with_port ? 1 + static_cast<std::size_t>(digits_end - digits) : 0;
  std::string h(host.size() + (v6 ? 2 : 0) + port_size, ':');
  char* p = h.data();
  if (v6) *p++ = '[';
  p = std::copy(host.begin(), host.end(), p);
  if (v6) *p++ = ']';
  if (with_port) std::copy(static_cast<const char*>(digits), digits_end, p + 1);  // after the filler ":"
  return h;
}
}  // namespace

std::string Destination::authority() const { return host_and_port(host, port, true); }

std::string Destination::host_header() const {
  return host_and_port(host, port, port != default_port(tls ? "https" : "http"));
}

Destination Destination::upgraded_to_tls() const {
  Destination d = *this;
  d.tls = true;
  if (!tls && port == 80) d.port = 443;
  return d;
}

std::optional<Destination> parse_connect_authority(std::string_view authority) {
  auto hp = split_host_port(authority);
  if (!hp || hp->port == 0) return std::nullopt;
  return Destination{"https", std::move(hp->host), hp->port, true};
}

std::optional<ParsedUrl> parse_absolute_url(std::string_view url) {
  auto sep = url.find("://");
  if (sep == std::string_view::npos) return std::nullopt;
  std::string scheme = ascii_lower(url.substr(0, sep));
  if (scheme != "http" && scheme != "https") return std::nullopt;
  auto rest = url.substr(sep + 3);
  auto end = rest.find_first_of("/?#");
  auto authority = rest.substr(0, end);
  std::string_view target = end == std::string_view::npos ? std::string_view{} : rest.substr(end);
  if (authority.find('@') != std::string_view::npos) return std::nullopt;
  if (target.find('#') != std::string_view::npos) return std::nullopt;
  for (unsigned char c : target)
    if (c <= 0x20 || c >= 0x7f) return std::nullopt;
  auto hp = split_host_port(authority);
  if (!hp) return std::nullopt;
  ParsedUrl out;
  out.destination = Destination{scheme, std::move(hp->host), hp->port ? hp->port : default_port(scheme),
                                scheme == "https"};
  if (target.empty()) out.target = "/";
  else if (target.front() == '?') out.target = "/" + std::string(target);
  else out.target = std::string(target);
  return out;
}

}  // namespace sidekey::policy
