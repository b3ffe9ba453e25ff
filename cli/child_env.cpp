#include "cli/child_env.hpp"

#include "secrets/secret_name.hpp"

namespace sidekey::cli {

std::vector<std::pair<std::string, std::string>> proxy_variables(const ChildEnvInputs& in) {
  std::string proxy = "http://" + in.proxy_address;
  // Loopback stays direct: the agent's own local services, and sidekey's api listener.
  const std::string no_proxy = "localhost,127.0.0.1,::1";
  std::vector<std::pair<std::string, std::string>> v = {
      {"HTTP_PROXY", proxy},
      {"HTTPS_PROXY", proxy},
      {"http_proxy", proxy},
      {"https_proxy", proxy},
      {"NO_PROXY", no_proxy},
      {"no_proxy", no_proxy},
      // These replace the system roots rather than add to them, hence the bundle.
      {"SSL_CERT_FILE", in.trust_bundle},
      {"REQUESTS_CA_BUNDLE", in.trust_bundle},
      {"CURL_CA_BUNDLE", in.trust_bundle},
      {"GIT_SSL_CAINFO", in.trust_bundle},
      {"AWS_CA_BUNDLE", in.trust_bundle},
      {"PIP_CERT", in.trust_bundle},
      // Node adds these to its own roots.
      {"NODE_EXTRA_CA_CERTS", in.ca_file},
      {"NODE_USE_ENV_PROXY", "1"},
  };
  for (const auto& [var, name] : in.ref_env) v.emplace_back(var, secrets::reference_for(name));
  return v;
}

std::vector<std::string> child_environment(const std::vector<std::string>& parent, const ChildEnvInputs& in) {
  auto set = proxy_variables(in);
  std::vector<std::string> out;
  for (const auto& kv : parent) {
    std::string name = kv.substr(0, kv.find('='));
    if (name.rfind("SIDEKEY_", 0) == 0) continue;  // the store key, API token and source secrets stay here
    bool overridden = false;
    for (const auto& [k, v] : set) overridden |= k == name;
    if (!overridden) out.push_back(kv);
  }
  for (const auto& [k, v] : set) out.push_back(k + "=" + v);
  return out;
}

std::string shell_quote(const std::string& value) {
  std::string out = "'";
  for (char c : value) {
    if (c == '\'') out += "'\\''";
    else out += c;
  }
  return out + "'";
}

}  // namespace sidekey::cli
