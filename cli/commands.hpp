#pragma once
// Subcommands of the sidekey binary. Each takes the arguments after its name and returns the
// process exit code. Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error.
#include <string>
#include <vector>

namespace sidekey::cli {

using Args = std::vector<std::string>;

int cmd_serve(const Args& args);
int cmd_secrets(const Args& args);
int cmd_policy(const Args& args);
int cmd_exec(const Args& args);
int cmd_env(const Args& args);
int cmd_ca(const Args& args);
void print_help();

}  // namespace sidekey::cli
