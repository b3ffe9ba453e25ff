#include <iostream>

#include "cli/commands.hpp"

namespace sidekey::cli {

void print_help() {
  std::cout << R"(sidekey — a sidecar proxy that injects secrets the agent never sees

Usage:
  sidekey serve [--config F] [--policy F] [--data-dir D] [--listen-proxy H:P] [--listen-api H:P] [--listen-admin H:P]
        Run the proxy, Agent Protocol API and admin listeners until SIGTERM/SIGINT.
  sidekey secrets set NAME [--host H]... [--config F] [--data-dir D]
        Store a secret; the value is read from stdin (never from the command line).
  sidekey secrets list [--config F] [--data-dir D]
  sidekey secrets rm NAME [--config F] [--data-dir D]
  sidekey policy check FILE...
        Validate policy files (errors and warnings name file:line:column; exit 1 when invalid).
  sidekey policy explain --policy FILE METHOD URL [-H 'Name: value']...
        Show what the policy decides for a request, without sending anything. URL is an absolute
        http(s) URL, a route path, or host:port with METHOD CONNECT.
  sidekey exec [--config F] [--policy F] [--data-dir D] [--ref-env VAR=NAME]... -- COMMAND [ARGS]...
        Serve on free loopback ports and run COMMAND with the proxy and trust variables set;
        exits with COMMAND's exit code. --ref-env sets VAR={{secrets.NAME}} in COMMAND.
  sidekey env [--config F] [--data-dir D] [--ref-env VAR=NAME]...
        Print those variables as export lines for a running sidekey (listen.proxy).
  sidekey ca init|export [--config F] [--data-dir D]
        Create / print the interception CA certificate.
  sidekey --version
  sidekey help

Without --config, ./sidekey.yaml is used when present, else the built-in defaults.
Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.
)";
}

}  // namespace sidekey::cli
