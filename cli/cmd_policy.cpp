#include <iostream>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "core/files.hpp"
#include "core/json_text.hpp"
#include "core/yaml_util.hpp"
#include "policy/explain.hpp"
#include "policy/loader.hpp"

namespace sidekey::cli {

namespace {

// Loads a policy file for check/explain; prints the problem and returns nullptr when it is bad.
policy::PolicyPtr load_or_report(const std::string& file, bool print_warnings) {
  try {
    auto result = policy::load_policy(read_file(file), file);
    if (print_warnings)
      for (const auto& w : result.warnings) std::cerr << "warning: " << w.what() << "\n";
    return result.policy;
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return nullptr;
  }
}

// check takes no option (like explain, an unknown one is a usage error, exit 2, rather than a
// file that cannot be opened, exit 1); "--" ends options, for a file whose name starts with '-'.
int check(const Args& args) {
  const std::string usage = "usage: sidekey policy check FILE...";
  std::vector<std::string> files;
  bool options_done = false;
  for (const auto& a : args) {
    if (!options_done && a == "--") {
      options_done = true;
    } else if (!options_done && a.size() > 1 && a[0] == '-') {
      print_error("unknown option '" + a + "': policy check takes only files (" + usage + ")");
      return 2;
    } else {
      files.push_back(a);
    }
  }
  if (files.empty()) {
    print_error(usage);
    return 2;
  }
  int rc = 0;
  for (const auto& file : files) {
    auto p = load_or_report(file, true);
    if (!p) {
      rc = 1;
      continue;
    }
    std::cout << file << ": ok (" << p->rules().size() << " rules, " << p->routes().size() << " routes, "
              << p->bindings().size() << " secret bindings, default " << policy::to_string(p->default_action()) << ")\n";
  }
  return rc;
}

int explain(const Args& args) {
  po::options_description desc("sidekey policy explain");
  desc.add_options()("policy", po::value<std::string>(), "policy file")(
      "header,H", po::value<std::vector<std::string>>()->composing(), "request header 'Name: value' (repeatable)")(
      "method", po::value<std::string>(), "")("url", po::value<std::string>(), "");
  po::positional_options_description pos;
  pos.add("method", 1).add("url", 1);
  po::variables_map vm;
  try {
    vm = parse(args, desc, &pos);
  } catch (const std::exception& e) {
    print_error(e.what());
    return 2;
  }
  if (!vm.count("policy") || !vm.count("method") || !vm.count("url")) {
    print_error("usage: sidekey policy explain --policy FILE METHOD URL [-H 'Name: value']...");
    return 2;
  }
  auto p = load_or_report(vm["policy"].as<std::string>(), false);
  if (!p) return 1;
  policy::Headers headers;
  if (vm.count("header")) {
    for (const auto& h : vm["header"].as<std::vector<std::string>>()) {
      auto colon = h.find(':');
      if (colon == std::string::npos || colon == 0) {
        print_error("a header is 'Name: value', got '" + h + "'");
        return 2;
      }
      std::string value = h.substr(colon + 1);
      while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.erase(value.begin());
      headers.push_back({h.substr(0, colon), value});
    }
  }
  std::string method = vm["method"].as<std::string>();
  for (auto& c : method) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  std::cout << json::text(policy::explain(*p, nullptr, method, vm["url"].as<std::string>(), headers), 2) << "\n";
  return 0;
}

}  // namespace

int cmd_policy(const Args& args) {
  if (args.empty()) {
    print_error("usage: sidekey policy check FILE | sidekey policy explain --policy FILE METHOD URL [-H 'Name: value']...");
    return 2;
  }
  Args rest(args.begin() + 1, args.end());
  if (args[0] == "check") return check(rest);
  if (args[0] == "explain") return explain(rest);
  print_error("unknown policy command '" + args[0] + "' (check, explain)");
  return 2;
}

}  // namespace sidekey::cli
