#include "cli/common.hpp"

#include <iostream>
#include <system_error>

#include "policy/host_pattern.hpp"

namespace sidekey::cli {

void add_config_options(po::options_description& desc, bool listeners) {
  desc.add_options()("config", po::value<std::string>(), "configuration file (default ./sidekey.yaml when present)")(
      "data-dir", po::value<std::string>(), "data folder (store, key, token, CA)");
  if (listeners)
    desc.add_options()("policy", po::value<std::string>(), "policy file")(
        "listen-proxy", po::value<std::string>(), "proxy listener host:port")(
        "listen-api", po::value<std::string>(), "Agent Protocol API listener host:port")(
        "listen-admin", po::value<std::string>(), "admin listener host:port");
}

config::Config config_from(const po::variables_map& vm) {
  auto opt = [&](const char* name) -> std::optional<std::string> {
    if (vm.count(name)) return vm[name].as<std::string>();
    return std::nullopt;
  };
  config::Overrides o{opt("policy"), opt("data-dir"), opt("listen-proxy"), opt("listen-api"), opt("listen-admin")};
  auto cfg = config::resolve(opt("config"), o);
  absolute_paths(cfg);
  return cfg;
}

void absolute_paths(config::Config& cfg) {
  auto fix = [](std::filesystem::path& p) {
    if (p.empty()) return;
    std::error_code ec;
    auto abs = std::filesystem::absolute(p, ec);  // fails only when the current folder is gone
    p = (ec ? p : abs).lexically_normal();
  };
  fix(cfg.data_dir);
  fix(cfg.policy);
  fix(cfg.api_token_file);
  fix(cfg.store_key_file);
  fix(cfg.tls_ca_cert);
  fix(cfg.tls_ca_key);
  fix(cfg.tls_upstream_ca_file);
  for (auto& s : cfg.sources)
    if (s.kind == secrets::SourceConfig::Kind::dir) fix(s.path);
  if (!cfg.log_audit.empty() && cfg.log_audit != "stderr") {
    std::filesystem::path audit = cfg.log_audit;
    fix(audit);
    cfg.log_audit = audit.string();
  }
}

std::string host_problem(std::string_view h) {
  if (h.empty() || h.size() > 300) return "host pattern must be 1 to 300 characters";
  for (char c : h)
    if (c <= ' ' || c == '"' || c == '\\' || static_cast<unsigned char>(c) >= 0x7f)
      return "host '" + std::string(h) +
             "' contains a character that is not allowed (space, control, '\"', '\\' or non-ASCII)";
  std::string why;
  if (!policy::HostPattern::parse(h, &why)) return why;
  return {};
}

po::variables_map parse(const std::vector<std::string>& args, const po::options_description& desc,
                        const po::positional_options_description* positional) {
  po::variables_map vm;
  auto parser = po::command_line_parser(args).options(desc);
  if (positional) parser.positional(*positional);
  po::store(parser.run(), vm);
  po::notify(vm);
  return vm;
}

void print_error(const std::string& message) { std::cerr << "sidekey: " << message << std::endl; }

}  // namespace sidekey::cli
