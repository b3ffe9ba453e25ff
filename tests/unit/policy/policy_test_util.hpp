#pragma once
// Shared by the policy unit tests: a map-backed secret lookup and policy loading shortcuts.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "policy/loader.hpp"
#include "policy/rewrite.hpp"

namespace sidekey::policy::test {

class MapLookup final : public SecretLookup {
 public:
  MapLookup& add(const std::string& name, const std::string& value, std::vector<std::string> allowed_hosts = {},
                 std::string binding_name = {}) {
    secrets::SecretEntry e;
    e.name = name;
    e.binding_name = binding_name.empty() ? name : binding_name;
    e.origin = "store";
    e.allowed_hosts = std::move(allowed_hosts);
    e.value = std::make_shared<const secrets::SecretValue>(value);
    entries_[name] = std::move(e);
    return *this;
  }
  const secrets::SecretEntry* find(std::string_view name) const override {
    auto it = entries_.find(name);
    return it == entries_.end() ? nullptr : &it->second;
  }

 private:
  std::map<std::string, secrets::SecretEntry, std::less<>> entries_;
};

inline PolicyPtr load(const std::string& yaml) { return load_policy(yaml, "policy.yaml").policy; }

inline Destination https(const std::string& host, std::uint16_t port = 443) { return {"https", host, port, true}; }
inline Destination http(const std::string& host, std::uint16_t port = 80) { return {"http", host, port, false}; }

}  // namespace sidekey::policy::test
