#pragma once
// The admin listener: /healthz, /readyz, /metrics (SPEC section 12).
#include <atomic>
#include <memory>
#include <string>

#include "api/http_server.hpp"

namespace sidekey::api {

// Readiness: the reason we are not ready yet, or empty once listeners, policy, store and CA are.
class Readiness {
 public:
  void set_not_ready(std::string reason) { reason_.store(std::make_shared<const std::string>(std::move(reason))); }
  void set_ready() { reason_.store(nullptr); }
  std::shared_ptr<const std::string> reason() const { return reason_.load(); }

 private:
  std::atomic<std::shared_ptr<const std::string>> reason_{std::make_shared<const std::string>("starting")};
};

Response handle_admin(const Request& req, const Readiness& readiness);

}  // namespace sidekey::api
