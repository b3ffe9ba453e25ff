#pragma once
// Option handling shared by the subcommands: --config/--data-dir/--policy/--listen-*.
#include <boost/program_options.hpp>

#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

namespace sidekey::cli {

namespace po = boost::program_options;

// Adds --config, --data-dir, and (when `listeners`) --policy and --listen-{proxy,api,admin}.
void add_config_options(po::options_description& desc, bool listeners);
// Resolves the configuration the options name (section 11: --config F, else ./sidekey.yaml, else
// defaults), with every path made absolute against the current folder (see absolute_paths).
// Throws PositionedError / std::exception with a message fit for the user.
config::Config config_from(const po::variables_map& vm);

// Makes each path of `cfg` absolute (against the current folder) and lexically normal. Paths
// sidekey hands on — SSL_CERT_FILE, NODE_EXTRA_CA_CERTS… to `exec`'s child and `env`'s shell —
// must still name the same file after the agent changes folder, and messages then print clean
// paths ("/w/sidekey-data/ca.pem", not "/w/./sidekey-data/ca.pem").
void absolute_paths(config::Config& cfg);

// Why `host` is not an acceptable allowed_hosts entry (API allowed_hosts, `secrets set --host`),
// or "" when it is: the policy's host-pattern grammar (policy::HostPattern), so an entry is
// never stored only to be ignored when the binding is built.
std::string host_problem(std::string_view host);

// Parses `args` against `desc` (+ positional); throws po::error on bad usage.
po::variables_map parse(const std::vector<std::string>& args, const po::options_description& desc,
                        const po::positional_options_description* positional = nullptr);

// Prints "sidekey: <message>" to stderr.
void print_error(const std::string& message);

}  // namespace sidekey::cli
