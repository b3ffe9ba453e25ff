#include "api/admin.hpp"

#include "core/metrics.hpp"

namespace sidekey::api {

Response handle_admin(const Request& req, const Readiness& readiness) {
  std::string_view path = req.target().substr(0, req.target().find('?'));
  bool get = req.method() == http::verb::get || req.method() == http::verb::head;
  if (path == "/healthz" || path == "/readyz" || path == "/metrics") {
    if (!get) {
      auto res = message_response(http::status::method_not_allowed, "method not allowed");
      res.set(http::field::allow, "GET, HEAD");
      return res;
    }
  }
  if (path == "/healthz") return text_response(http::status::ok, "ok\n");
  if (path == "/readyz") {
    if (auto reason = readiness.reason()) return text_response(http::status::service_unavailable, "not ready: " + *reason + "\n");
    return text_response(http::status::ok, "ready\n");
  }
  if (path == "/metrics")
    return text_response(http::status::ok, metrics::registry().render(), "text/plain; version=0.0.4; charset=utf-8");
  return message_response(http::status::not_found, "not found");
}

}  // namespace sidekey::api
