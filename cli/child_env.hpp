#pragma once
// The environment `sidekey exec` gives its child and `sidekey env` prints (SPEC section 11).
// Pure: computed from the parent's environment and sidekey's addresses and files.
#include <map>
#include <string>
#include <vector>

namespace sidekey::cli {

struct ChildEnvInputs {
  std::string proxy_address;      // "127.0.0.1:PORT"
  std::string trust_bundle;       // system roots + the sidekey CA
  std::string ca_file;            // the sidekey CA alone (NODE_EXTRA_CA_CERTS adds to Node's roots)
  std::vector<std::pair<std::string, std::string>> ref_env;  // VAR → secret NAME
};

// The variables sidekey sets, in a stable order.
std::vector<std::pair<std::string, std::string>> proxy_variables(const ChildEnvInputs& in);

// `parent` minus every SIDEKEY_* variable, plus proxy_variables(in). "NAME=value" strings.
std::vector<std::string> child_environment(const std::vector<std::string>& parent, const ChildEnvInputs& in);

// Shell-quotes a value for `export NAME='value'` lines.
std::string shell_quote(const std::string& value);

}  // namespace sidekey::cli
