#pragma once
// Destination: the single answer to "where is this request going", shared by rule matching,
// binding checks, the egress guard and the upstream pool. Hosts are normalized once here so
// every comparison downstream is a plain string comparison.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sidekey::policy {

struct Destination {
  std::string scheme = "https";  // how the agent addressed it: "http" | "https"
  std::string host;              // normalized: see normalize_host()
  std::uint16_t port = 443;
  bool tls = true;               // the upstream leg uses verified TLS (https, or upgrade_tls)

  bool host_is_ip() const;
  // "host:port", IPv6 in brackets: the form for CONNECT, logs and egress.resolve keys.
  std::string authority() const;
  // The Host header value: the port is left out when it is the scheme's default.
  std::string host_header() const;
  // The same destination reached over TLS (upgrade_tls): port 80 becomes 443, others kept.
  Destination upgraded_to_tls() const;

  bool operator==(const Destination&) const = default;
};

// Lower case, one trailing dot removed, IP literals in canonical text (IPv6 without brackets).
// Refuses what is neither a DNS name ([a-z0-9_-] labels of 1..63, at most 253 bytes) nor an IP
// literal; also refuses names whose last label is numeric ("127.1", "0x7f.1", "2130706433"),
// which resolvers may read as IPv4 addresses and which could otherwise dodge host rules.
// A bracketed literal must be IPv6; a bare IPv6 literal is accepted only when `allow_bare_v6`.
std::optional<std::string> normalize_host(std::string_view host, bool allow_bare_v6 = false);

// Splits "host[:port]" (IPv6 in brackets). `port` is 0 when absent. nullopt when malformed.
struct HostPort {
  std::string host;  // normalized
  std::uint16_t port = 0;
};
std::optional<HostPort> split_host_port(std::string_view authority);

// The authority of a CONNECT request: "host:port", the port required (RFC 9110 9.3.6).
std::optional<Destination> parse_connect_authority(std::string_view authority);

// An absolute URL as in an absolute-form request target or a route upstream:
// http(s)://host[:port][/path][?query]. No userinfo (a classic way to disguise the real host),
// no fragment, scheme case-insensitive. `target` is the origin-form remainder ("/" when empty).
struct ParsedUrl {
  Destination destination;
  std::string target;
};
std::optional<ParsedUrl> parse_absolute_url(std::string_view url);

}  // namespace sidekey::policy
