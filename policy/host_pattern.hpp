#pragma once
// The host forms shared by `secrets:` bindings and rule `match.hosts` (SPEC section 4):
//   api.example.com      exact host (DNS name or IP literal; IPv6 as [::1] or bare ::1)
//   *.example.com        any subdomain, at any depth, never the apex example.com
//   …:8443               an explicit port
//   http://…             plain HTTP is also allowed (binding semantics only)
//   https://…            accepted as an explicit spelling of the default (TLS)
// IP literals match by address, so 10.0.0.5 and ::ffff:10.0.0.5 (IPv4-mapped) are one host.
// Two readings of one pattern:
//   matches() — rule matching: host, and the port when one is given; the scheme prefix does not
//               narrow a match (a rule for api.example.com also sees http://api.example.com,
//               which is what upgrade_tls acts on, and a deny rule without a port denies every
//               port).
//   allows()  — binding: where plaintext may be written. Without a scheme, only verified TLS,
//               port 443 unless given; http:// adds plain HTTP, port 80 unless given.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/ip.hpp"
#include "policy/destination.hpp"

namespace sidekey::policy {

class HostPattern {
 public:
  // nullopt (with the reason in *why) for anything else: paths, userinfo, "*", "a*.b.com", "*.1.2.3.4"…
  static std::optional<HostPattern> parse(std::string_view text, std::string* why = nullptr);

  const std::string& text() const { return text_; }  // as written, for messages
  bool wildcard() const { return wildcard_; }
  const std::string& host() const { return host_; }  // normalized; the suffix after "*." for wildcards
  std::optional<std::uint16_t> port() const { return port_; }
  bool plain_http() const { return plain_http_; }

  bool host_matches(std::string_view normalized_host) const;
  bool matches(const Destination& d) const;
  bool allows(const Destination& d) const;
  // Every destination `other` allows, this allows too (binding semantics): used to check that
  // an inject template stays inside its secret's binding.
  bool covers(const HostPattern& other) const;
  // Every destination `other` matches, this matches too (rule semantics): used for shadowing.
  bool match_covers(const HostPattern& other) const;

 private:
  bool host_covers(const HostPattern& other) const;
  bool allows_endpoint(bool tls, std::uint16_t port) const;

  std::string text_;
  std::string host_;
  std::optional<std::uint16_t> port_;
  std::optional<IpAddress> ip_;  // when the host is an IP literal
  bool wildcard_ = false;
  bool plain_http_ = false;
};

}  // namespace sidekey::policy
