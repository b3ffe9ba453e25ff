#pragma once
// `sidekey policy explain`: one request through decide() and rewrite() without sending it.
// The result names rules, secrets and places, never a value (SPEC section 13.1): the upstream
// head is described by header names and the path only.
#include <nlohmann/json.hpp>
#include <string_view>

#include "policy/headers.hpp"
#include "policy/policy.hpp"
#include "policy/rewrite.hpp"

namespace sidekey::policy {

// `url` is an absolute http(s) URL, an origin-form path matched against the routes, or, with
// method CONNECT, a host:port authority. Without `secrets` (no store at hand) every referenced
// secret is assumed to exist with no allowed_hosts of its own, and the result says so.
//
// {"method","url","destination":{scheme,host,port,tls},"route"?,"rule":name|null,"action",
//  "default":bool,"decision":"inject|allow|tunnel|intercept|deny","upgrade_tls"?,
//  "secrets":[…],"injected":[…],"references":[…],"body"?,"scrub"?,
//  "upstream":{"method","path","headers":[names]}?,"refusal":{code,status,message,…}?,
//  "secrets_checked":bool}
nlohmann::json explain(const PolicySnapshot& policy, const SecretLookup* secrets, std::string_view method,
                       std::string_view url, const Headers& headers = {});

}  // namespace sidekey::policy
