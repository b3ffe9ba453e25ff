#include "policy/host_pattern.hpp"

#include <algorithm>

#include "core/encoding.hpp"
#include "core/ip.hpp"

namespace sidekey::policy {
namespace {
bool fail(std::string* why, std::string msg) {
  if (why) *why = std::move(msg);
  return false;
}
}  // namespace

std::optional<HostPattern> HostPattern::parse(std::string_view text, std::string* why) {
  HostPattern p;
  p.text_ = std::string(text);
  std::string_view rest = text;
  if (rest.size() > 7 && iequals(rest.substr(0, 7), "http://")) {
    p.plain_http_ = true;
    rest.remove_prefix(7);
  } else if (rest.size() > 8 && iequals(rest.substr(0, 8), "https://")) {
    rest.remove_prefix(8);
  } else if (rest.find("://") != std::string_view::npos) {
    fail(why, "host '" + p.text_ + "': only http:// may prefix a host");
    return std::nullopt;
  }
  if (rest.empty()) {
    fail(why, "host pattern is empty");
    return std::nullopt;
  }
  if (rest.find_first_of("/?#@ \t") != std::string_view::npos) {
    fail(why, "host '" + p.text_ + "' must be a host with an optional port, without path or user");
    return std::nullopt;
  }
  if (rest.starts_with("*.")) {
    p.wildcard_ = true;
    rest.remove_prefix(2);
  }
  if (rest.find('*') != std::string_view::npos) {
    fail(why, "host '" + p.text_ + "': '*' is allowed only as a whole first label (\"*.example.com\")");
    return std::nullopt;
  }
  // A bare IPv6 literal has two or more colons and no brackets; it cannot carry a port.
  bool bare_v6 = rest.front() != '[' && std::count(rest.begin(), rest.end(), ':') >= 2;
  if (bare_v6) {
    auto h = normalize_host(rest, true);
    if (!h) {
      fail(why, "host '" + p.text_ + "' is not a valid IPv6 address (use [addr]:port for a port)");
      return std::nullopt;
    }
    p.host_ = std::move(*h);
  } else {
    auto hp = split_host_port(rest);
    if (!hp) {
      fail(why, "host '" + p.text_ + "' is not a valid host[:port]");
      return std::nullopt;
    }
    p.host_ = std::move(hp->host);
    if (hp->port) p.port_ = hp->port;
  }
  p.ip_ = IpAddress::parse(p.host_);
  if (p.wildcard_ && p.ip_) {
    fail(why, "host '" + p.text_ + "': a wildcard needs a domain name, not an IP address");
    return std::nullopt;
  }
  return p;
}

bool HostPattern::host_matches(std::string_view h) const {
  if (ip_) {
    if (h == host_) return true;
    auto other = IpAddress::parse(h);
    return other && other->bytes == ip_->bytes;  // IPv4 is stored v4-mapped: same bytes, same address
  }
  if (!wildcard_) return h == host_;
  return h.size() > host_.size() + 1 && h.ends_with(host_) && h[h.size() - host_.size() - 1] == '.';
}

bool HostPattern::matches(const Destination& d) const {
  return host_matches(d.host) && (!port_ || *port_ == d.port);
}

bool HostPattern::allows_endpoint(bool tls, std::uint16_t port) const {
  if (port_) return port == *port_ && (tls || plain_http_);
  if (tls) return port == 443;
  return plain_http_ && port == 80;
}

bool HostPattern::allows(const Destination& d) const {
  return host_matches(d.host) && allows_endpoint(d.tls, d.port);
}

bool HostPattern::host_covers(const HostPattern& o) const {
  if (!wildcard_) return !o.wildcard_ && o.host_ == host_;
  if (!o.wildcard_) return host_matches(o.host_);
  return o.host_ == host_ || host_matches(o.host_);
}

bool HostPattern::covers(const HostPattern& o) const {
  if (!host_covers(o)) return false;
  // Enumerate the (tls, port) endpoints `o` allows; each must be allowed here.
  if (o.port_) return allows_endpoint(true, *o.port_) && (!o.plain_http_ || allows_endpoint(false, *o.port_));
  return allows_endpoint(true, 443) && (!o.plain_http_ || allows_endpoint(false, 80));
}

bool HostPattern::match_covers(const HostPattern& o) const {
  return host_covers(o) && (!port_ || o.port_ == port_);
}

}  // namespace sidekey::policy
