#pragma once
// What the proxy sees of all secrets: an immutable name → value/binding map built from the
// store and the read-only sources, swapped atomically when any of them changes.
#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "secrets/secret_value.hpp"
#include "secrets/sources.hpp"
#include "secrets/store.hpp"

namespace sidekey::secrets {

struct SecretEntry {
  std::string name;          // reference name: "openai", or "tasks/<task>/<name>" for task secrets
  std::string binding_name;  // the name whose policy `secrets:` entry binds it ("openai")
  std::string origin;        // "store" | "env" | "dir"
  std::vector<std::string> allowed_hosts;  // from the API / CLI (store only)
  std::shared_ptr<const SecretValue> value;
};

class SecretView {
 public:
  explicit SecretView(std::map<std::string, SecretEntry, std::less<>> entries) : entries_(std::move(entries)) {}
  const SecretEntry* find(std::string_view name) const;
  std::size_t size() const { return entries_.size(); }
  const std::map<std::string, SecretEntry, std::less<>>& entries() const { return entries_; }

 private:
  std::map<std::string, SecretEntry, std::less<>> entries_;
};

struct SourceConfig {
  enum class Kind { env, dir } kind;
  std::string prefix;          // env
  std::filesystem::path path;  // dir
};

// Owns the store and the sources; rebuilds the view after each change. Lookups are lock-free
// (an atomic shared_ptr load); rebuilds are serialized.
class SecretRegistry {
 public:
  // Takes the env sources' variables out of the process environment (take_env_sources): they
  // are read here, once, so build one registry per process, before other threads start.
  SecretRegistry(std::shared_ptr<Store> store, std::vector<SourceConfig> sources);

  std::shared_ptr<const SecretView> current() const { return view_.load(std::memory_order_acquire); }
  Store& store() { return *store_; }

  // Re-reads the dir sources and the store (reloading its file when another process, such as
  // `sidekey secrets set`, changed it); returns true when the view changed. Env sources keep
  // the values taken at construction. A store file that
  // cannot be read is logged (never with a value) and the previous store content stays in use.
  // Called after every store write and periodically (every 2 s while serving): the store file
  // can change under us, and Kubernetes swaps dir-source files through symlinks, which a poll
  // of the folder sees reliably.
  bool refresh();
  // Called (on the refreshing thread, under the registry's lock: it must only hand work on)
  // after each refresh that changed the view; empty: nothing. The proxy's workers then forget
  // what they keep of the values of the views before.
  void on_change(std::function<void()> f);

 private:
  std::function<void()> on_change_;
  std::shared_ptr<Store> store_;
  std::vector<SourceConfig> sources_;
  std::mutex mu_;
  std::atomic<std::shared_ptr<const SecretView>> view_;
  std::vector<SourceValues> env_values_;  // per source (empty for dir sources), taken at start
  std::vector<SourceValues> dir_values_;  // per source: the last complete reading of a dir source
  // Source problems (missing folder, unusable file) logged at the last refresh, so a periodic
  // poll warns once per problem instead of on every pass.
  std::set<std::string> warned_;
  // The store reload error logged last, so a bad file is reported once, not every poll.
  std::string reload_error_;
};

}  // namespace sidekey::secrets
