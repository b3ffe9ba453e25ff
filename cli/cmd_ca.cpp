// sidekey ca init|export [--config F] [--data-dir D]: creates / prints the interception CA.
#include <iostream>

#include "certs/ca.hpp"
#include "cli/commands.hpp"
#include "cli/common.hpp"

namespace sidekey::cli {

int cmd_ca(const Args& args);

namespace {
int usage() {
  print_error("usage: sidekey ca init|export [--config F] [--data-dir D]");
  return 2;
}
}  // namespace

int cmd_ca(const Args& args) {
  if (args.empty()) return usage();
  const std::string action = args[0];
  if (action != "init" && action != "export") return usage();
  Args rest(args.begin() + 1, args.end());
  po::options_description desc("sidekey ca");
  add_config_options(desc, false);
  config::Config cfg;
  try {
    auto vm = parse(rest, desc);
    cfg = config_from(vm);
  } catch (const std::exception& e) {
    print_error(e.what());
    return 2;
  }
  try {
    auto ca = certs::CertificateAuthority::load(cfg);
    if (action == "export") {
      std::cout << ca->certificate_pem() << std::flush;
      return std::cout ? 0 : 1;
    }
    // config_from made the paths absolute; normal form too ("/w/d/ca.pem", never "/w/./d/ca.pem").
    std::error_code ec;
    auto cert = std::filesystem::absolute(ca->cert_path(), ec);
    cert = (ec ? ca->cert_path() : cert).lexically_normal();
    std::cout << (ca->created() ? "created " : "using ") << "the interception CA \"" << ca->subject() << "\"\n"
              << "certificate: " << cert.string() << "\n"
              << "sha256: " << ca->fingerprint_sha256() << "\n";
    return 0;
  } catch (const std::exception& e) {
    print_error(e.what());
    return 1;
  }
}

}  // namespace sidekey::cli
