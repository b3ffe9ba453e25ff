#pragma once
// The Agent Protocol secrets endpoints (SPEC section 8), write-only by construction: no response
// is built from a value, only from SecretMeta.
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "api/http_server.hpp"
#include "secrets/secret_view.hpp"

namespace sidekey::api {

class SecretsApi {
 public:
  // `host_problem` validates an allowed_hosts entry (the policy's host-pattern grammar); it
  // returns an empty string when the entry is acceptable.
  SecretsApi(secrets::SecretRegistry& registry, std::function<std::string(std::string_view)> host_problem);

  // True for every path this class serves (whatever the method).
  static bool serves(std::string_view path);
  // For task-scoped paths, the task id (gateway mode asks the agent whether it exists).
  static std::optional<std::string> task_of(std::string_view path);

  Response handle(Request& req);

 private:
  Response list(const std::string& scope, std::string_view query, bool task_form);
  Response create(const std::string& scope, Request& req, bool task_form);
  Response get(const std::string& scope, const std::string& id, bool task_form);
  Response remove(const std::string& scope, const std::string& id);
  nlohmann::json render(const secrets::SecretMeta& m, bool task_form) const;
  void changed();

  secrets::SecretRegistry& registry_;
  std::function<std::string(std::string_view)> host_problem_;
};

}  // namespace sidekey::api
