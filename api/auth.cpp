#include "api/auth.hpp"

#include <cstdlib>
#include <stdexcept>

#include "core/encoding.hpp"
#include "core/files.hpp"
#include "core/random.hpp"

namespace sidekey::api {

namespace {
std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ' || s.back() == '\t')) s.pop_back();
  return s;
}
}  // namespace

secrets::SecretValue load_api_token(const std::filesystem::path& token_file, const std::filesystem::path& data_dir) {
  if (const char* env = std::getenv("SIDEKEY_API_TOKEN"); env && *env) return secrets::SecretValue(env);
  if (!token_file.empty()) {
    std::string t = trim(read_file(token_file));
    if (t.empty()) throw std::runtime_error("api token file " + token_file.string() + " is empty");
    return secrets::SecretValue::take(t);
  }
  auto path = data_dir / "api-token";
  if (auto existing = read_file_if_exists(path)) {
    std::string t = trim(std::move(*existing));
    if (t.empty()) throw std::runtime_error("api token file " + path.string() + " is empty");
    return secrets::SecretValue::take(t);
  }
  ensure_dir(data_dir);
  std::string t = base64url_encode_nopad(random_bytes(32));
  write_file_atomic(path, t + "\n", 0600);
  return secrets::SecretValue::take(t);
}

bool token_matches(const secrets::SecretValue& token, std::string_view authorization, std::string_view api_key) {
  bool ok = false;
  if (authorization.size() > 7 && iequals(authorization.substr(0, 7), "bearer ")) {
    auto presented = authorization.substr(7);
    while (!presented.empty() && presented.front() == ' ') presented.remove_prefix(1);
    ok |= token.equals(presented);
  }
  if (!api_key.empty()) ok |= token.equals(api_key);
  return ok;
}

}  // namespace sidekey::api
