#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <stdexcept>
#include <string>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "cli/runtime.hpp"
#include "secrets/secret_name.hpp"

namespace sidekey::cli {

namespace {

// Reads the value from stdin; one trailing newline (from `echo` or a here-string) is dropped.
// read(2) straight into one buffer sized for the largest value: no stdio buffer and no growing
// string leaves a copy of the value behind, and an endless stdin is cut at the limit.
secrets::SecretValue read_value_from_stdin() {
  std::string v(secrets::kMaxValueBytes + 3, '\0');  // + CR LF + one byte to tell "too long"
  std::size_t n = 0;
  while (n < v.size()) {
    ssize_t r = ::read(STDIN_FILENO, v.data() + n, v.size() - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int e = errno;
      secrets::wipe(v);
      throw std::runtime_error(std::string("cannot read the value from stdin: ") + std::strerror(e));
    }
    if (r == 0) break;
    n += static_cast<std::size_t>(r);
  }
  const bool cut = n == v.size();
  v.resize(n);  // shrinking keeps the buffer: nothing is copied
  if (!v.empty() && v.back() == '\n') v.pop_back();
  if (!v.empty() && v.back() == '\r') v.pop_back();
  std::string problem = cut ? "secret value is larger than 64 KiB" : secrets::value_problem(v);
  if (!problem.empty()) {
    secrets::wipe(v);
    throw std::invalid_argument(problem + " (the value is read from stdin)");
  }
  return secrets::SecretValue::take(v);
}

int usage() {
  print_error("usage: sidekey secrets set NAME [--host H]... | list | rm NAME   [--config F] [--data-dir D]");
  return 2;
}

}  // namespace

int cmd_secrets(const Args& args) {
  if (args.empty()) return usage();
  std::string action = args[0];
  Args rest(args.begin() + 1, args.end());
  po::options_description desc("sidekey secrets");
  add_config_options(desc, false);
  desc.add_options()("host", po::value<std::vector<std::string>>()->composing(), "allowed host (repeatable)")(
      "name", po::value<std::string>(), "secret name");
  po::positional_options_description pos;
  pos.add("name", 1);
  po::variables_map vm;
  config::Config cfg;
  try {
    vm = parse(rest, desc, &pos);
    cfg = config_from(vm);
  } catch (const std::exception& e) {
    print_error(e.what());
    return 2;
  }
  std::string name = vm.count("name") ? vm["name"].as<std::string>() : "";
  if ((action == "set" || action == "rm") && name.empty()) return usage();
  if (!name.empty() && !secrets::valid_secret_name(name)) {
    print_error("secret name must match [A-Za-z0-9_][A-Za-z0-9_.\\-/]{0,127}");
    return 2;
  }
  std::vector<std::string> hosts;
  if (vm.count("host")) hosts = vm["host"].as<std::vector<std::string>>();
  for (const auto& h : hosts)
    if (auto problem = host_problem(h); !problem.empty()) {
      // Refused before anything is read or stored: an entry the policy cannot parse would be
      // kept and then silently left out of the binding.
      print_error("--host: " + problem);
      return 2;
    }
  try {
    if (action == "set") {
      auto value = read_value_from_stdin();
      auto store = open_store(cfg);
      auto meta = store->put("", name, std::move(value), hosts);
      std::cout << "stored " << meta.name << " (" << meta.id << "), reference " << secrets::reference_for(meta.name)
                << "\n";
      return 0;
    }
    if (action == "list") {
      if (vm.count("name")) return usage();
      auto store = open_store(cfg);
      for (const auto& m : store->list("")) {
        std::string hosts;
        for (const auto& h : m.allowed_hosts) hosts += (hosts.empty() ? "" : ",") + h;
        std::cout << m.name << "\t" << m.id << "\t" << (hosts.empty() ? "-" : hosts) << "\t" << m.updated_at << "\n";
      }
      return 0;
    }
    if (action == "rm") {
      auto store = open_store(cfg);
      if (!store->remove_by_name("", name)) {
        print_error("no secret named " + name);
        return 1;
      }
      std::cout << "removed " << name << "\n";
      return 0;
    }
  } catch (const std::invalid_argument& e) {
    print_error(e.what());
    return 2;
  } catch (const std::exception& e) {
    print_error(e.what());
    return 1;
  }
  return usage();
}

}  // namespace sidekey::cli
