#include "cli/common.hpp"

#include <iostream>

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
  return config::resolve(opt("config"), o);
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
