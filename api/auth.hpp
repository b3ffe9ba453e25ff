#pragma once
// The api listener's bearer token (SPEC section 8).
#include <filesystem>
#include <string_view>

#include "secrets/secret_value.hpp"

namespace sidekey::api {

// SIDEKEY_API_TOKEN, else `token_file`, else data_dir/api-token generated (0600) on first start.
secrets::SecretValue load_api_token(const std::filesystem::path& token_file, const std::filesystem::path& data_dir);

// True when `authorization` is "Bearer TOKEN" or `api_key` is TOKEN (constant-time comparison).
bool token_matches(const secrets::SecretValue& token, std::string_view authorization, std::string_view api_key);

}  // namespace sidekey::api
