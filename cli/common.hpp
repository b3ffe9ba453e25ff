#pragma once
// Option handling shared by the subcommands: --config/--data-dir/--policy/--listen-*.
#include <boost/program_options.hpp>

#include <string>
#include <vector>

#include "config/config.hpp"

namespace sidekey::cli {

namespace po = boost::program_options;

// Adds --config, --data-dir, and (when `listeners`) --policy and --listen-{proxy,api,admin}.
void add_config_options(po::options_description& desc, bool listeners);
// Resolves the configuration the options name (section 11: --config F, else ./sidekey.yaml, else
// defaults). Throws PositionedError / std::exception with a message fit for the user.
config::Config config_from(const po::variables_map& vm);

// Parses `args` against `desc` (+ positional); throws po::error on bad usage.
po::variables_map parse(const std::vector<std::string>& args, const po::options_description& desc,
                        const po::positional_options_description* positional = nullptr);

// Prints "sidekey: <message>" to stderr.
void print_error(const std::string& message);

}  // namespace sidekey::cli
