#pragma once
// The egress guard (SPEC section 5): resolve the destination once, classify every address,
// and hand back exactly the addresses that may be dialed. Nothing is looked up a second time,
// so a DNS answer that changes between check and dial (rebinding) cannot slip through.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <map>
#include <string>
#include <variant>
#include <vector>

#include "core/io.hpp"
#include "core/ip.hpp"
#include "policy/destination.hpp"
#include "policy/refusal.hpp"

namespace sidekey::proxy {

struct VettedAddresses {
  std::vector<boost::asio::ip::tcp::endpoint> endpoints;  // dial these, in order, and nothing else
  bool pinned = false;                                     // from egress.resolve
};

class EgressGuard {
 public:
  EgressGuard(std::vector<Cidr> allow_private, std::map<std::string, std::string> resolve_pins);

  // The pure part: whether these resolved addresses may be dialed for `d`. Refuses when any
  // address is in a blocked range (or embeds one) that no allow_private entry covers.
  std::variant<VettedAddresses, policy::Refusal> classify(const policy::Destination& d,
                                                          const std::vector<IpAddress>& addresses) const;

  // Pin lookup ("host:port" → endpoint) without resolving.
  std::optional<boost::asio::ip::tcp::endpoint> pinned(const policy::Destination& d) const;

  // Pins first; IP literals as they are; names through the resolver, once.
  io::Awaitable<std::variant<VettedAddresses, policy::Refusal>> vet(const policy::Destination& d) const;

 private:
  std::vector<Cidr> allow_private_;
  std::map<std::string, boost::asio::ip::tcp::endpoint> pins_;
};

}  // namespace sidekey::proxy
