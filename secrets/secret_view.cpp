#include "secrets/secret_view.hpp"

#include <system_error>

#include "core/files.hpp"
#include "core/log.hpp"
#include "secrets/secret_name.hpp"

extern char** environ;

namespace sidekey::secrets {
namespace fs = std::filesystem;

namespace {

using Entries = std::map<std::string, SecretEntry, std::less<>>;

// Collects the problems met while reading sources; only those not logged at the previous
// refresh are logged, so a poll every few seconds does not repeat the same warning.
class Problems {
 public:
  explicit Problems(const std::set<std::string>& before) : before_(before) {}

  void warn(std::string_view event, nlohmann::json fields) {
    std::string key = std::string(event) + " " + fields.dump();
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

// Names in the "tasks/" namespace belong to task-scoped store secrets; a source must not
// be able to stand in for one.
bool usable_source_name(std::string_view name) { return valid_secret_name(name) && name.rfind("tasks/", 0) != 0; }

void add_env(Entries& out, const SourceConfig& src, Problems& problems) {
  if (src.prefix.empty()) {
    problems.warn("secret_source_env_without_prefix", nlohmann::json::object());
    return;
  }
  for (char** e = environ; e && *e; ++e) {
    std::string_view var(*e);
    auto eq = var.find('=');
    if (eq == std::string_view::npos || var.substr(0, eq).rfind(src.prefix, 0) != 0) continue;
    std::string_view name = var.substr(src.prefix.size(), eq - src.prefix.size());
    std::string_view value = var.substr(eq + 1);
    if (!usable_source_name(name)) {
      problems.warn("secret_source_env_bad_name", {{"variable", std::string(var.substr(0, eq))}});
      continue;
    }
    if (auto why = value_problem(value); !why.empty()) {
      problems.warn("secret_source_env_bad_value", {{"variable", std::string(var.substr(0, eq))}, {"problem", why}});
      continue;
    }
    std::string n(name);
    add(out, n, n, "env", {}, std::make_shared<const SecretValue>(value));
  }
}

// Files written by editors and `echo` end in a newline that is not part of the secret; exactly
// one is dropped so content with more line breaks is still refused by value_problem().
void trim_one_newline(std::string& s) {
  if (s.size() >= 2 && s.compare(s.size() - 2, 2, "\r\n") == 0) s.resize(s.size() - 2);
  else if (!s.empty() && s.back() == '\n') s.pop_back();
}

// Reads one secret file; nullptr (after a warning naming the file, never its content) when
// it is unusable. Every temporary copy of the content is wiped.
std::shared_ptr<const SecretValue> read_secret_file(const fs::path& file, Problems& problems) {
  std::error_code ec;
  auto size = fs::file_size(file, ec);
  if (!ec && size > kMaxValueBytes + 2) {
    problems.warn("secret_source_file_skipped", {{"file", file.string()}, {"problem", "larger than 64 KiB"}});
    return nullptr;
  }
  std::optional<std::string> content;
  try {
    content = read_file_if_exists(file);
  } catch (const std::exception& e) {
    problems.warn("secret_source_file_unreadable", {{"file", file.string()}, {"error", e.what()}});
    return nullptr;
  }
  if (!content) return nullptr;  // removed between listing and reading: gone from the source
  trim_one_newline(*content);
  if (auto why = value_problem(*content); !why.empty()) {
    wipe(*content);
    problems.warn("secret_source_file_skipped", {{"file", file.string()}, {"problem", why}});
    return nullptr;
  }
  return std::make_shared<const SecretValue>(SecretValue::take(*content));
}

void add_dir(Entries& out, const SourceConfig& src, Problems& problems) {
  std::error_code ec;
  fs::directory_iterator it(src.path, ec);
  if (ec) {
    // A missing folder is an empty source: the volume may be mounted later.
    problems.warn("secret_source_dir_unavailable", {{"path", src.path.string()}, {"error", ec.message()}});
    return;
  }
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    std::string name = it->path().filename().string();
    // "..data", "..2024_01_01…" and other dot entries are Kubernetes' atomic-swap machinery.
    if (name.empty() || name[0] == '.') continue;
    std::error_code type_ec;  // a dangling link is simply not a secret
    if (!fs::is_regular_file(it->path(), type_ec)) continue;  // follows the ..data symlinks
    if (!usable_source_name(name)) {
      problems.warn("secret_source_file_bad_name", {{"file", it->path().string()}});
      continue;
    }
    if (out.count(name)) continue;  // an earlier source wins; no need to read the value
    if (auto value = read_secret_file(it->path(), problems)) add(out, name, name, "dir", {}, std::move(value));
  }
  if (ec) problems.warn("secret_source_dir_unreadable", {{"path", src.path.string()}, {"error", ec.message()}});
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
    : store_(std::move(store)), sources_(std::move(sources)) {
  refresh();
}

bool SecretRegistry::refresh() {
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
  for (const auto& src : sources_) {
    if (src.kind == SourceConfig::Kind::env) add_env(next, src, problems);
    else add_dir(next, src, problems);
  }
  warned_ = problems.take();

  auto old = view_.load(std::memory_order_acquire);
  if (old && same_entries(old->entries(), next)) return false;
  std::size_t count = next.size();
  view_.store(std::make_shared<const SecretView>(std::move(next)), std::memory_order_release);
  log::debug("secrets_view_updated", {{"secrets", count}});
  return true;
}

}  // namespace sidekey::secrets
