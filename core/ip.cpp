#include "core/ip.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace sidekey {

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') text = text.substr(1, text.size() - 2);
  if (text.empty() || text.size() > 45) return std::nullopt;
  std::string s(text);
  IpAddress a;
  in_addr v4{};
  if (::inet_pton(AF_INET, s.c_str(), &v4) == 1) {
    a.bytes[10] = a.bytes[11] = 0xff;
    std::memcpy(&a.bytes[12], &v4, 4);
    a.is_v4 = true;
    return a;
  }
  in6_addr v6{};
  if (::inet_pton(AF_INET6, s.c_str(), &v6) == 1) {
    std::memcpy(a.bytes.data(), &v6, 16);
    return a;
  }
  return std::nullopt;
}

std::string IpAddress::to_string() const {
  char buf[INET6_ADDRSTRLEN];
  if (is_v4) {
    ::inet_ntop(AF_INET, &bytes[12], buf, sizeof buf);
  } else {
    ::inet_ntop(AF_INET6, bytes.data(), buf, sizeof buf);
  }
  return buf;
}

std::optional<IpAddress> IpAddress::embedded_v4() const {
  auto v4_at = [&](int off) {
    IpAddress r;
    r.bytes[10] = r.bytes[11] = 0xff;
    std::memcpy(&r.bytes[12], &bytes[off], 4);
    r.is_v4 = true;
    return r;
  };
  auto zero = [&](int from, int to) {
    for (int i = from; i < to; ++i)
      if (bytes[i]) return false;
    return true;
  };
  if (is_v4) return std::nullopt;
  if (zero(0, 10) && bytes[10] == 0xff && bytes[11] == 0xff) return v4_at(12);               // ::ffff:a.b.c.d
  if (zero(0, 12) && !zero(12, 16) && !(zero(12, 15) && bytes[15] == 1)) return v4_at(12);  // ::a.b.c.d
  if (bytes[0] == 0x00 && bytes[1] == 0x64 && bytes[2] == 0xff && bytes[3] == 0x9b && zero(4, 12))
    return v4_at(12);                                                                       // 64:ff9b::/96
  if (bytes[0] == 0x00 && bytes[1] == 0x64 && bytes[2] == 0xff && bytes[3] == 0x9b && bytes[4] == 0 &&
      bytes[5] == 1)
    return v4_at(12);                                                                       // 64:ff9b:1::/48
  if (bytes[0] == 0x20 && bytes[1] == 0x02) return v4_at(2);                                // 2002::/16
  return std::nullopt;
}

std::optional<Cidr> Cidr::parse(std::string_view text) {
  auto slash = text.find('/');
  auto addr = IpAddress::parse(text.substr(0, slash));
  if (!addr) return std::nullopt;
  int max_bits = addr->is_v4 ? 32 : 128;
  int bits = max_bits;
  if (slash != std::string_view::npos) {
    auto p = text.substr(slash + 1);
    auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), bits);
    if (ec != std::errc() || ptr != p.data() + p.size() || p.empty() || bits < 0 || bits > max_bits)
      return std::nullopt;
  }
  Cidr c{*addr, addr->is_v4 ? bits + 96 : bits};
  // Normalise the base so that contains() can compare masked bytes.
  for (int i = 0; i < 16; ++i) {
    int keep = std::clamp(c.prefix - i * 8, 0, 8);
    c.base.bytes[i] &= static_cast<std::uint8_t>(keep == 0 ? 0 : (0xff << (8 - keep)));
  }
  return c;
}

bool Cidr::contains(const IpAddress& a) const {
  for (int i = 0; i < 16; ++i) {
    int keep = std::clamp(prefix - i * 8, 0, 8);
    if (keep == 0) return true;
    std::uint8_t mask = static_cast<std::uint8_t>(0xff << (8 - keep));
    if ((a.bytes[i] & mask) != base.bytes[i]) return false;
  }
  return true;
}

namespace {
struct Range {
  const char* cidr;
  const char* why;
};
constexpr Range kBlocked[] = {
    {"0.0.0.0/8", "unspecified"},       {"127.0.0.0/8", "loopback"},       {"10.0.0.0/8", "private"},
    {"172.16.0.0/12", "private"},       {"192.168.0.0/16", "private"},     {"169.254.0.0/16", "link-local"},
    {"100.64.0.0/10", "cgnat"},         {"224.0.0.0/4", "multicast"},      {"240.0.0.0/4", "reserved"},
    {"255.255.255.255/32", "broadcast"}, {"::/128", "unspecified"},        {"::1/128", "loopback"},
    {"fc00::/7", "private"},            {"fe80::/10", "link-local"},       {"ff00::/8", "multicast"},
    {"fec0::/10", "site-local"},
};
}  // namespace

const char* blocked_range(const IpAddress& a) {
  static const auto ranges = [] {
    std::array<std::pair<Cidr, const char*>, std::size(kBlocked)> r{};
    for (size_t i = 0; i < std::size(kBlocked); ++i) r[i] = {*Cidr::parse(kBlocked[i].cidr), kBlocked[i].why};
    return r;
  }();
  for (const auto& [c, why] : ranges)
    if (c.contains(a)) return why;
  if (auto v4 = a.embedded_v4())
    for (const auto& [c, why] : ranges)
      if (c.contains(*v4)) return why;
  return nullptr;
}

}  // namespace sidekey
