#include "proxy/egress_guard.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "core/encoding.hpp"
#include "core/io.hpp"

namespace sidekey::proxy {
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {
IpAddress from_asio(const net::ip::address& a) {
  IpAddress out;
  if (a.is_v4()) {
    auto b = a.to_v4().to_bytes();
    out.bytes[10] = out.bytes[11] = 0xff;
    std::copy(b.begin(), b.end(), out.bytes.begin() + 12);
    out.is_v4 = true;
  } else {
    auto b = a.to_v6().to_bytes();
    std::copy(b.begin(), b.end(), out.bytes.begin());
  }
  return out;
}

tcp::endpoint to_endpoint(const IpAddress& a, std::uint16_t port) {
  if (a.is_v4) {
    net::ip::address_v4::bytes_type b;
    std::copy(a.bytes.begin() + 12, a.bytes.end(), b.begin());
    return {net::ip::address_v4(b), port};
  }
  net::ip::address_v6::bytes_type b;
  std::copy(a.bytes.begin(), a.bytes.end(), b.begin());
  return {net::ip::address_v6(b), port};
}
}  // namespace

EgressGuard::EgressGuard(std::vector<Cidr> allow_private, std::map<std::string, std::string> resolve_pins)
    : allow_private_(std::move(allow_private)) {
  for (const auto& [from, to] : resolve_pins) {
    // Validated by the config loader: "ip:port" (IPv6 in brackets).
    auto colon = to.rfind(':');
    auto ip = IpAddress::parse(to.substr(0, colon));
    if (!ip) continue;
    pins_[ascii_lower(from)] = to_endpoint(*ip, static_cast<std::uint16_t>(std::stoi(to.substr(colon + 1))));
  }
}

std::optional<tcp::endpoint> EgressGuard::pinned(const policy::Destination& d) const {
  if (auto it = pins_.find(d.authority()); it != pins_.end()) return it->second;
  return std::nullopt;
}

std::variant<VettedAddresses, policy::Refusal> EgressGuard::classify(const policy::Destination& d,
                                                                     const std::vector<IpAddress>& addresses) const {
  if (addresses.empty())
    return policy::Refusal::make(policy::code::upstream_connect_failed, "no address for " + d.host).with_host(d.host);
  VettedAddresses out;
  for (const auto& a : addresses) {
    if (const char* why = blocked_range(a)) {
      bool allowed = false;
      for (const auto& c : allow_private_) {
        auto v4 = a.embedded_v4();
        allowed |= c.contains(a) || (v4 && c.contains(*v4));
      }
      if (!allowed)
        return policy::Refusal::make(policy::code::egress_blocked, d.host + " resolves to a " + std::string(why) +
                                                                       " address (" + a.to_string() +
                                                                       "); add its range to egress.allow_private to allow it")
            .with_host(d.host);
    }
    out.endpoints.push_back(to_endpoint(a, d.port));
  }
  return out;
}

io::Awaitable<std::variant<VettedAddresses, policy::Refusal>> EgressGuard::vet(const policy::Destination& d) const {
  if (auto pin = pinned(d)) co_return VettedAddresses{{*pin}, true};  // the operator's explicit choice
  if (auto ip = IpAddress::parse(d.host)) co_return classify(d, {*ip});
  io::Resolver resolver(co_await net::this_coro::executor);
  auto [ec, results] = co_await resolver.async_resolve(d.host, std::to_string(d.port), io::tuple_awaitable);
  if (ec)
    co_return policy::Refusal::make(policy::code::upstream_connect_failed, "cannot resolve " + d.host + ": " + ec.message())
        .with_host(d.host);
  std::vector<IpAddress> addresses;
  for (const auto& r : results) addresses.push_back(from_asio(r.endpoint().address()));
  co_return classify(d, addresses);
}

}  // namespace sidekey::proxy
