#pragma once
// The encrypted file store (SPEC section 9): one file, AES-256-GCM, replaced atomically on
// every change. Thread-safe; writes are serialized and durable before they return.
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "secrets/secret_value.hpp"

namespace sidekey::secrets {

class StoreError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// What may be shown about a stored secret: everything but the value.
struct SecretMeta {
  std::string id;     // UUID v4, stable across rotation
  std::string scope;  // "" = agent-scoped, otherwise the task id
  std::string name;
  std::vector<std::string> allowed_hosts;
  std::string created_at;  // RFC 3339
  std::string updated_at;
};

struct StoredSecret {
  SecretMeta meta;
  std::shared_ptr<const SecretValue> value;
};

// An immutable copy of the store's content, shared by pointer (values are not copied).
using StoreSnapshot = std::vector<StoredSecret>;

class Store {
 public:
  // Opens `db` (created empty on first write if missing) with a 32-byte key.
  // Throws StoreError with a clear message for a wrong key, a tampered or truncated file.
  Store(std::filesystem::path db, SecretValue key);

  std::vector<SecretMeta> list(const std::string& scope) const;  // in creation order
  std::optional<SecretMeta> get(const std::string& scope, const std::string& id) const;
  std::optional<SecretMeta> find(const std::string& scope, const std::string& name) const;

  // Creates the secret, or rotates an existing one of that name (new value, same id,
  // allowed_hosts = old ∪ add_hosts). Durable on return; throws StoreError when the write fails,
  // in which case the store (memory and file) is unchanged.
  SecretMeta put(const std::string& scope, const std::string& name, SecretValue value,
                 const std::vector<std::string>& add_hosts);
  bool remove(const std::string& scope, const std::string& id);
  bool remove_by_name(const std::string& scope, const std::string& name);

  std::shared_ptr<const StoreSnapshot> snapshot() const;
  std::size_t size() const;
  const std::filesystem::path& path() const { return db_; }

 private:
  void persist_locked(const StoreSnapshot& next);  // seal + write_file_atomic
  std::filesystem::path db_;
  SecretValue key_;
  mutable std::mutex mu_;
  std::shared_ptr<const StoreSnapshot> items_;
};

// The store key: SIDEKEY_STORE_KEY (base64 of 32 bytes), else `key_file`, else
// `data_dir/store.key`, generated (0600) when missing. Throws StoreError on a malformed key.
SecretValue load_store_key(const std::filesystem::path& key_file, const std::filesystem::path& data_dir);

}  // namespace sidekey::secrets
