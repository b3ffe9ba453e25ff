#pragma once
// The encrypted file store (SPEC section 9): one file, AES-256-GCM, replaced atomically on
// every change. Thread-safe; writes are serialized and durable before they return.
//
// Several processes may share one file (a running `sidekey serve` and the `sidekey secrets`
// command): every write takes an exclusive flock(2) on `<db>.lock` for its whole
// read-modify-write and first reloads the file when another process changed it since this
// Store last read or wrote it, so no process ever overwrites a change it has not seen.
// reload_if_changed() (under a shared lock) lets a long-running process pick up such changes.
#include <array>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "secrets/secret_value.hpp"

namespace sidekey::secrets {

// Names the file and the problem, never a value.
class StoreError : public std::runtime_error {
 public:
  explicit StoreError(const std::string& what, int error = 0) : std::runtime_error(what), error_(error) {}
  // The errno of the file operation that failed (ENOSPC: the disk is full), 0 when the problem
  // is not one (a wrong key, a tampered file, a bad name).
  int error() const noexcept { return error_; }

 private:
  int error_ = 0;
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
  // Under the exclusive lock, removes temp files (".<db name>.tmp-<12 hex>") that a write
  // killed before its rename left next to the file.
  Store(std::filesystem::path db, SecretValue key);

  std::vector<SecretMeta> list(const std::string& scope) const;  // in creation order
  std::optional<SecretMeta> get(const std::string& scope, const std::string& id) const;
  std::optional<SecretMeta> find(const std::string& scope, const std::string& name) const;

  // Creates the secret, or rotates an existing one of that name (new value, same id,
  // allowed_hosts = old ∪ add_hosts). Durable on return; throws StoreError when the write fails,
  // in which case the file is unchanged and memory holds the file's content. The change is
  // applied on top of the file's current content (reloaded first when another process changed
  // it); when that content cannot be read (tampered, wrong key) the write fails, and the file
  // is left as it is.
  SecretMeta put(const std::string& scope, const std::string& name, SecretValue value,
                 const std::vector<std::string>& add_hosts);
  bool remove(const std::string& scope, const std::string& id);
  bool remove_by_name(const std::string& scope, const std::string& name);

  // Re-reads the file when another process changed it since this Store last read or wrote it.
  // Returns true when the content was replaced. Throws StoreError when the new file cannot be
  // read (tampered, wrong key, truncated); the previous content then stays in force.
  bool reload_if_changed();

  std::shared_ptr<const StoreSnapshot> snapshot() const;
  std::size_t size() const;
  const std::filesystem::path& path() const { return db_; }

 private:
  // Which version of the file this Store holds: nullopt = no file; otherwise the SHA-256 of
  // the sealed bytes. Every write uses a fresh random nonce, so the hash names one write
  // exactly (unlike inode/size/mtime, which a quick rewrite can leave equal).
  using Version = std::optional<std::array<unsigned char, 32>>;

  // The caller holds io_mu_ and the file lock. Re-reads the file when its version differs
  // from seen_; true when the content was replaced. Throws StoreError, changing nothing.
  bool reload_locked();
  // Applies `change` (which edits the snapshot and returns false for "nothing to do") to the
  // file's current content and writes the result, all under the exclusive file lock.
  template <class Change>
  bool modify(Change change);
  void persist_locked(const StoreSnapshot& next);  // seal + write_file_atomic, updates seen_
  void remove_stale_temp_files() const;

  std::filesystem::path db_;
  std::filesystem::path lock_path_;
  SecretValue key_;
  std::mutex io_mu_;       // serializes this process's file access (and the writes)
  mutable std::mutex mu_;  // guards items_ only: readers never wait for file I/O
  std::shared_ptr<const StoreSnapshot> items_;
  Version seen_;           // guarded by io_mu_
};

// The store key: SIDEKEY_STORE_KEY (base64 of 32 bytes), else `key_file`, else
// `data_dir/store.key`, generated (0600) when missing. Throws StoreError on a malformed key.
SecretValue load_store_key(const std::filesystem::path& key_file, const std::filesystem::path& data_dir);

}  // namespace sidekey::secrets
