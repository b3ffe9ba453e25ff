#pragma once
// Gateway mode (SPEC section 2): with agent.upstream set, every /ap/v1/… request on the api
// listener other than the secrets endpoints is forwarded to the agent, streamed both ways
// (artifact uploads and downloads are never held whole). The agent is the operator's own
// service, so the egress guard does not apply to it.
#include <boost/asio/awaitable.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <optional>
#include <string>

#include "api/http_server.hpp"
#include "core/io.hpp"
#include "policy/destination.hpp"
#include "proxy/upstream.hpp"

namespace sidekey::api {

class Gateway {
 public:
  struct Options {
    std::chrono::milliseconds connect_timeout{10000}, idle_timeout{60000}, request_timeout{300000};
    std::size_t max_header_bytes = 65536;
    bool strip_sidekey_auth = true;  // the api token is sidekey's, not the agent's
  };
  // Throws std::invalid_argument when `upstream_url` is not an http(s) URL.
  Gateway(const std::string& upstream_url, proxy::UpstreamTls& tls, Options options);

  static bool forwards(std::string_view target);  // /ap/v1/… but not the secrets endpoints

  // Streams the request (head already read into `parser`) to the agent and the answer back.
  // Returns whether the client connection may be kept alive.
  io::Awaitable<bool> forward(io::TcpStream& client, io::FlatBuffer& buffer,
                                       RequestParser& parser);

  // The agent's status for GET /ap/v1/agent/tasks/{task_id} (200, 404, …), or nullopt when the
  // agent cannot be reached.
  io::Awaitable<std::optional<int>> task_status(const std::string& task_id);

 private:
  // A pooled connection to the agent (`ask`: the pool asks the socket whether it is still
  // open), else a new one; `fresh`: always a new one.
  io::Awaitable<std::optional<proxy::ConnectResult>> connect(bool ask = true, bool fresh = false);
  policy::Destination dest_;
  std::string base_path_;  // the upstream URL's path without its trailing '/'
  proxy::UpstreamTls& tls_;
  Options opt_;
};

}  // namespace sidekey::api
