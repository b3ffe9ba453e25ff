#pragma once
// Shared fixtures for the secrets unit tests: temporary folders, environment overrides, keys.
// Test values are compared with SecretValue::equals so a failing check never prints them.
#include <stdlib.h>

#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>

#include "core/files.hpp"
#include "core/random.hpp"
#include "secrets/secret_value.hpp"

namespace sidekey::test {

// A fresh folder under /tmp, removed with everything in it at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = "/tmp/sidekey-secrets-test-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// Sets (or unsets, with nullopt) an environment variable for the scope of the test.
class EnvVar {
 public:
  EnvVar(std::string name, std::optional<std::string> value) : name_(std::move(name)) {
    if (const char* old = ::getenv(name_.c_str())) old_ = old;
    if (value) ::setenv(name_.c_str(), value->c_str(), 1);
    else ::unsetenv(name_.c_str());
  }
  ~EnvVar() {
    if (old_) ::setenv(name_.c_str(), old_->c_str(), 1);
    else ::unsetenv(name_.c_str());
  }
  EnvVar(const EnvVar&) = delete;
  EnvVar& operator=(const EnvVar&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

inline secrets::SecretValue random_key() {
  std::string raw = random_bytes(32);
  return secrets::SecretValue::take(raw);
}

inline void write_plain(const std::filesystem::path& p, const std::string& content) {
  write_file_atomic(p, content, 0600);
}

}  // namespace sidekey::test
