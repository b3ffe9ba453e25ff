#pragma once
// What the socket tests share: a loopback connection whose accepted end is the socket under
// test, and the result of one operation.
#include <boost/asio.hpp>
#include <boost/test/unit_test.hpp>

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>

#include "core/io.hpp"

namespace sidekey::test {

struct IoResult {
  boost::system::error_code ec;
  std::size_t n = 0;
};

// Accepts into `server` a connection from a new blocking descriptor, and returns that descriptor.
inline int connect_loopback(io::Socket& server) {
  namespace net = boost::asio;
  net::basic_socket_acceptor<net::ip::tcp, io::Executor> acceptor(server.get_executor(),
                                                                  {net::ip::address_v4::loopback(), 0});
  const int peer = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(acceptor.local_endpoint().port());
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  BOOST_REQUIRE_EQUAL(::connect(peer, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  acceptor.accept(server);
  return peer;
}

}  // namespace sidekey::test
