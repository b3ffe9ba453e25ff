#pragma once
// IP addresses as 16 bytes (IPv4 as IPv4-mapped IPv6), CIDR ranges, and the classification the
// egress guard uses. Pure code: no resolver, no sockets.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sidekey {

struct IpAddress {
  std::array<std::uint8_t, 16> bytes{};
  bool is_v4 = false;  // written as a dotted quad (stored IPv4-mapped)

  static std::optional<IpAddress> parse(std::string_view text);  // "1.2.3.4", "::1", "[::1]"
  std::string to_string() const;
  // The IPv4 address an IPv6 form embeds (IPv4-mapped, IPv4-compatible, NAT64 64:ff9b::/96,
  // 6to4 2002::/16), or nullopt.
  std::optional<IpAddress> embedded_v4() const;
  bool operator==(const IpAddress&) const = default;
};

struct Cidr {
  IpAddress base;
  int prefix = 0;  // in bits of the 128-bit form

  static std::optional<Cidr> parse(std::string_view text);  // "10.0.0.0/8", "fc00::/7", "127.0.0.1"
  bool contains(const IpAddress& a) const;
};

// Why an address may not be dialed without an allow_private entry, or nullptr when it is public.
// Checks the address itself and any IPv4 address it embeds.
const char* blocked_range(const IpAddress& a);

}  // namespace sidekey
