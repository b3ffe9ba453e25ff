#pragma once
// policy.yaml → PolicySnapshot, validated up front (SPEC section 4) so that nothing at request
// time has to second-guess the policy. Pure: the caller reads the file.
#include <string>
#include <vector>

#include "core/yaml_util.hpp"
#include "policy/policy.hpp"

namespace sidekey::policy {

struct LoadResult {
  PolicyPtr policy;
  // Problems that do not make the policy wrong, only suspicious (a rule shadowed by an earlier
  // one), each positioned like an error: "file:line:column: message".
  std::vector<PositionedError> warnings;
};

// Throws PositionedError naming file:line:column for the first problem found: YAML syntax,
// unknown keys, wrong types, version other than 1, unknown action or reference place, bad host
// patterns and path globs, duplicate rule names or route prefixes, route prefixes that do not
// start and end with '/', route upstreams that are not http(s) URLs, malformed references in
// templates, templates whose secret's `secrets:` entry does not cover the rule's hosts, and
// options that mean nothing for the rule's action.
LoadResult load_policy(const std::string& text, const std::string& file_name);

}  // namespace sidekey::policy
