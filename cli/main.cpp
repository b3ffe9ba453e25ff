#include <iostream>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "secrets/secret_value.hpp"

int main(int argc, char** argv) {
  sidekey::secrets::harden_process();
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "help" || args[0] == "--help" || args[0] == "-h") {
    sidekey::cli::print_help();
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "--version" || args[0] == "version") {
    std::cout << "sidekey " << SIDEKEY_VERSION << "\n";
    return 0;
  }
  std::string cmd = args[0];
  args.erase(args.begin());
  if (cmd == "serve") return sidekey::cli::cmd_serve(args);
  if (cmd == "secrets") return sidekey::cli::cmd_secrets(args);
  if (cmd == "policy") return sidekey::cli::cmd_policy(args);
  if (cmd == "exec") return sidekey::cli::cmd_exec(args);
  if (cmd == "env") return sidekey::cli::cmd_env(args);
  if (cmd == "ca") return sidekey::cli::cmd_ca(args);
  std::cerr << "sidekey: unknown command '" << cmd << "' (see: sidekey help)\n";
  return 2;
}
