#pragma once
// Runtime configuration (SPEC section 10): the model, its defaults, and the strict loader.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/ip.hpp"
#include "core/log.hpp"
#include "secrets/secret_view.hpp"

namespace sidekey::config {

struct Endpoint {
  std::string host;
  std::uint16_t port = 0;
  std::string to_string() const;  // "host:port", IPv6 bracketed
};
// "host:port", "[::1]:port", ":port" (= 127.0.0.1). nullopt when malformed.
std::optional<Endpoint> parse_endpoint(std::string_view text);

struct Config {
  std::filesystem::path file;  // the config file read, empty when none
  Endpoint listen_proxy{"127.0.0.1", 3128};
  Endpoint listen_api{"127.0.0.1", 8000};
  Endpoint listen_admin{"127.0.0.1", 9901};
  std::filesystem::path data_dir = "./sidekey-data";
  std::filesystem::path policy = "./policy.yaml";
  std::string agent_upstream;  // gateway mode when set

  bool api_auth = true;
  std::filesystem::path api_token_file;
  std::filesystem::path store_key_file;
  std::vector<secrets::SourceConfig> sources;

  std::filesystem::path tls_ca_cert, tls_ca_key, tls_upstream_ca_file;
  std::chrono::milliseconds tls_leaf_ttl{std::chrono::hours(24)};
  bool tls_upstream_verify = true;

  std::vector<Cidr> egress_allow_private;
  std::map<std::string, std::string> egress_resolve;  // "host:port" -> "ip:port"

  std::uint32_t max_connections = 10000;
  std::uint32_t max_header_bytes = 65536;
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(10)};
  std::chrono::milliseconds idle_timeout{std::chrono::seconds(60)};
  std::chrono::milliseconds request_timeout{std::chrono::seconds(300)};

  unsigned workers = 0;  // 0 = one per core
  log::Level log_level = log::Level::info;
  std::string log_audit = "stderr";

  unsigned effective_workers() const;
};

// Command-line overrides (SPEC section 10: flags override the file).
struct Overrides {
  std::optional<std::string> policy, data_dir, listen_proxy, listen_api, listen_admin;
};

// Loads `file` (relative paths inside resolve against its folder). Throws PositionedError
// ("file:line:column: message") for unknown keys and bad values, std::runtime_error when the
// file cannot be read.
Config load(const std::filesystem::path& file);
// The defaults of section 10, relative paths against the current folder.
Config defaults();
// `--config F` when given; else ./sidekey.yaml when present; else defaults(). Then overrides.
// Throws std::invalid_argument for a malformed override.
Config resolve(const std::optional<std::string>& config_file, const Overrides& overrides);

}  // namespace sidekey::config
