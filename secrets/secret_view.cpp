#include "secrets/secret_view.hpp"

#include "core/json_text.hpp"
#include "core/log.hpp"
#include "secrets/secret_name.hpp"

namespace sidekey::secrets {

namespace {

using Entries = std::map<std::string, SecretEntry, std::less<>>;

// Collects the problems met while reading sources; only those not logged at the previous
// refresh are logged, so a poll every few seconds does not repeat the same warning.
class Problems {
 public:
  explicit Problems(const std::set<std::string>& before) : before_(before) {}

  void warn(std::string_view event, nlohmann::json fields) {
    std::string key = std::string(event) + " " + json::text(fields);  // a file name may not be UTF-8
    if (!before_.count(key)) log::warn(event, std::move(fields));
    now_.insert(std::move(key));
  }
  std::set<std::string> take() { return std::move(now_); }

 private:
  const std::set<std::string>& before_;
  std::set<std::string> now_;
};

// Earlier sources win: a name already present is left alone.
void add(Entries& out, std::string name, std::string binding, const char* origin, std::vector<std::string> hosts,
         std::shared_ptr<const SecretValue> value) {
  if (out.count(name)) return;
  SecretEntry e{name, std::move(binding), origin, std::move(hosts), std::move(value)};
  out.emplace(std::move(name), std::move(e));
}

void add_store(Entries& out, const Store* store) {
  if (!store) return;
  // Held in a local: in `for (… : *store->snapshot())` the shared_ptr is a temporary that dies
  // before the loop runs (C++20 extends only the vector reference's lifetime), and a store write
  // on a worker thread may then free the vector under the loop.
  const auto snapshot = store->snapshot();
  for (const auto& s : *snapshot) {
    const SecretMeta& m = s.meta;
    std::string name = m.scope.empty() ? m.name : task_secret_ref_name(m.scope, m.name);
    add(out, std::move(name), m.name, "store", m.allowed_hosts, s.value);
  }
}

// Earlier sources win (add() leaves a name already present alone).
void add_source(Entries& out, const SourceValues& values, const char* origin) {
  for (const auto& [name, value] : values) add(out, name, name, origin, {}, value);
}

bool same_value(const std::shared_ptr<const SecretValue>& a, const std::shared_ptr<const SecretValue>& b) {
  if (a == b) return true;
  if (!a || !b) return false;
  return a->size() == b->size() && a->equals(b->reveal());
}

bool same_entry(const SecretEntry& a, const SecretEntry& b) {
  return a.name == b.name && a.binding_name == b.binding_name && a.origin == b.origin &&
         a.allowed_hosts == b.allowed_hosts && same_value(a.value, b.value);
}

bool same_entries(const Entries& a, const Entries& b) {
  if (a.size() != b.size()) return false;
  for (auto ia = a.begin(), ib = b.begin(); ia != a.end(); ++ia, ++ib)
    if (!same_entry(ia->second, ib->second)) return false;
  return true;
}

}  // namespace

const SecretEntry* SecretView::find(std::string_view name) const {
  auto it = entries_.find(name);
  return it == entries_.end() ? nullptr : &it->second;
}

SecretRegistry::SecretRegistry(std::shared_ptr<Store> store, std::vector<SourceConfig> sources)
    : store_(std::move(store)), sources_(std::move(sources)), dir_values_(sources_.size()) {
  // The environment is read here, once: its values move into protected memory and leave the
  // environment (SPEC section 9: plaintext only in wiped, non-dumpable buffers).
  std::vector<std::string> prefixes;
  for (const auto& src : sources_) {
    bool env = src.kind == SourceConfig::Kind::env;
    if (env && src.prefix.empty()) log::warn("secret_source_env_without_prefix", nlohmann::json::object());
    prefixes.push_back(env ? src.prefix : "");
  }
  env_values_ = take_env_sources(prefixes, [](std::string_view event, nlohmann::json fields) {
    log::warn(event, std::move(fields));
  });
  refresh();
}

bool SecretRegistry::refresh() {
  ClearRegistersOnExit clear_registers;  // values decrypted and read pass through them
  std::lock_guard lock(mu_);
  if (store_) {
    try {
      store_->reload_if_changed();
      if (!reload_error_.empty()) log::info("secrets_store_readable_again", {{"path", store_->path().string()}});
      reload_error_.clear();
    } catch (const StoreError& e) {
      // StoreError names the file and the problem, never a value. Keep serving the last good
      // content: a bad file must not empty the view.
      if (reload_error_ != e.what()) log::error("secrets_store_reload_failed", {{"error", e.what()}});
      reload_error_ = e.what();
    }
  }
  Entries next;
  Problems problems(warned_);
  add_store(next, store_.get());
  auto warn = [&](std::string_view event, nlohmann::json fields) { problems.warn(event, std::move(fields)); };
  for (std::size_t i = 0; i < sources_.size(); ++i) {
    const SourceConfig& src = sources_[i];
    if (src.kind == SourceConfig::Kind::env) {
      add_source(next, env_values_[i], "env");
      continue;
    }
    if (auto values = read_dir_source(src.path, warn)) dir_values_[i] = std::move(*values);
    else problems.warn("secret_source_dir_unsettled", {{"path", src.path.string()}});  // keeps the last reading
    add_source(next, dir_values_[i], "dir");
  }
  warned_ = problems.take();

  auto old = view_.load(std::memory_order_acquire);
  if (old && same_entries(old->entries(), next)) return false;
  std::size_t count = next.size();
  view_.store(std::make_shared<const SecretView>(std::move(next)), std::memory_order_release);
  log::debug("secrets_view_updated", {{"secrets", count}});
  if (on_change_) on_change_();
  return true;
}

void SecretRegistry::on_change(std::function<void()> f) {
  std::lock_guard lock(mu_);
  on_change_ = std::move(f);
}

}  // namespace sidekey::secrets
