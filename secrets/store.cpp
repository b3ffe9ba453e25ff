#include "secrets/store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iterator>

#include "core/encoding.hpp"
#include "core/files.hpp"
#include "core/log.hpp"
#include "core/random.hpp"
#include "secrets/secret_name.hpp"
#include "secrets/store_codec.hpp"

namespace sidekey::secrets {
namespace fs = std::filesystem;

namespace {

constexpr std::size_t kKeyBytes = 32;

[[noreturn]] void fail(const fs::path& db, const std::string& why) {
  throw StoreError("secrets store " + db.string() + ": " + why);
}

// Wipes a plaintext buffer however the scope is left, including by an exception.
struct WipeOnExit {
  std::string& s;
  ~WipeOnExit() { wipe(s); }
};

StoreSnapshot load(const fs::path& db, const SecretValue& key) {
  std::optional<std::string> file;
  try {
    file = read_file_if_exists(db);
  } catch (const std::exception& e) {
    throw StoreError(std::string("secrets store: ") + e.what());
  }
  if (!file) return {};
  try {
    std::string plain = unseal(key, *file);
    WipeOnExit guard{plain};
    return decode_records(plain);
  } catch (const StoreError& e) {
    fail(db, e.what());
  }
}

void check_put(const fs::path& db, const std::string& scope, const std::string& name, const SecretValue& value) {
  if (!scope.empty() && !valid_task_id(scope)) fail(db, "invalid task id");
  if (!valid_secret_name(name)) fail(db, "invalid secret name");
  if (auto why = value_problem(value.reveal()); !why.empty()) fail(db, why + " (" + name + ")");
}

void add_hosts(std::vector<std::string>& hosts, const std::vector<std::string>& more) {
  for (const auto& h : more)
    if (std::find(hosts.begin(), hosts.end(), h) == hosts.end()) hosts.push_back(h);
}

template <class Pred>
StoreSnapshot::const_iterator find_in(const StoreSnapshot& items, Pred pred) {
  return std::find_if(items.begin(), items.end(), pred);
}

// ---- key loading --------------------------------------------------------------------------

std::string_view trim(std::string_view s) {
  auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!s.empty() && ws(s.back())) s.remove_suffix(1);
  while (!s.empty() && ws(s.front())) s.remove_prefix(1);
  return s;
}

// nullopt when `text` is not base64 of exactly 32 bytes. Wipes its temporaries.
std::optional<SecretValue> parse_key(std::string_view text) {
  std::optional<std::string> raw = base64_decode(trim(text));
  if (!raw) return std::nullopt;
  if (raw->size() != kKeyBytes) {
    wipe(*raw);
    return std::nullopt;
  }
  return SecretValue::take(*raw);
}

SecretValue key_from_file(const fs::path& path) {
  std::optional<std::string> text;
  try {
    text = read_file_if_exists(path);
  } catch (const std::exception& e) {
    throw StoreError(std::string("store key file: ") + e.what());
  }
  if (!text) throw StoreError("store key file " + path.string() + " does not exist");
  WipeOnExit guard{*text};
  auto key = parse_key(*text);
  if (!key) throw StoreError("store key file " + path.string() + " must hold base64 of 32 bytes");
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 077))
    log::warn("store_key_file_permissions", {{"path", path.string()}, {"hint", "chmod 600"}});
  return std::move(*key);
}

// Creates `path` only if it does not exist yet (link(2) never replaces), durably, so two
// processes starting together agree on one key instead of one of them overwriting the other's.
// Returns false when another process created it first.
bool create_exclusive(const fs::path& path, std::string_view data) {
  fs::path dir = path.parent_path().empty() ? fs::path(".") : path.parent_path();
  fs::path tmp = dir / ("." + path.filename().string() + ".tmp-" + hex_encode(random_bytes(6)));
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) throw StoreError("cannot create " + tmp.string() + ": " + std::strerror(errno));
  ::fchmod(fd, 0600);
  bool written = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()) && ::fsync(fd) == 0;
  int err = errno;
  ::close(fd);
  if (!written) {
    ::unlink(tmp.c_str());
    throw StoreError("cannot write " + tmp.string() + ": " + std::strerror(err));
  }
  int rc = ::link(tmp.c_str(), path.c_str());
  err = errno;
  ::unlink(tmp.c_str());
  if (rc != 0 && err == EEXIST) return false;
  if (rc != 0) throw StoreError("cannot create " + path.string() + ": " + std::strerror(err));
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return true;
}

SecretValue generated_key(const fs::path& data_dir) {
  fs::path path = data_dir / "store.key";
  std::error_code ec;
  if (fs::exists(path, ec)) return key_from_file(path);
  try {
    ensure_dir(data_dir, 0700);
  } catch (const std::exception& e) {
    throw StoreError(e.what());
  }
  std::string raw = random_bytes(kKeyBytes);
  std::string text = base64_encode(raw) + "\n";
  wipe(raw);
  WipeOnExit guard{text};
  if (create_exclusive(path, text)) {
    log::info("store_key_generated", {{"path", path.string()}});
    return *parse_key(text);
  }
  return key_from_file(path);
}

}  // namespace

// ---- Store --------------------------------------------------------------------------------

Store::Store(fs::path db, SecretValue key) : db_(std::move(db)), key_(std::move(key)) {
  if (key_.size() != kKeyBytes) fail(db_, "the store key must be 32 bytes");
  items_ = std::make_shared<const StoreSnapshot>(load(db_, key_));
}

std::vector<SecretMeta> Store::list(const std::string& scope) const {
  auto items = snapshot();
  std::vector<SecretMeta> out;
  for (const auto& s : *items)
    if (s.meta.scope == scope) out.push_back(s.meta);
  return out;
}

std::optional<SecretMeta> Store::get(const std::string& scope, const std::string& id) const {
  auto items = snapshot();
  auto it = find_in(*items, [&](const StoredSecret& s) { return s.meta.scope == scope && s.meta.id == id; });
  if (it == items->end()) return std::nullopt;
  return it->meta;
}

std::optional<SecretMeta> Store::find(const std::string& scope, const std::string& name) const {
  auto items = snapshot();
  auto it = find_in(*items, [&](const StoredSecret& s) { return s.meta.scope == scope && s.meta.name == name; });
  if (it == items->end()) return std::nullopt;
  return it->meta;
}

SecretMeta Store::put(const std::string& scope, const std::string& name, SecretValue value,
                      const std::vector<std::string>& add_hosts_list) {
  check_put(db_, scope, name, value);
  std::lock_guard lock(mu_);
  // The copy shares the values of untouched secrets; only the vector of metadata is copied.
  StoreSnapshot next = *items_;
  std::string now = log::now_rfc3339();
  auto it = std::find_if(next.begin(), next.end(),
                         [&](const StoredSecret& s) { return s.meta.scope == scope && s.meta.name == name; });
  if (it == next.end()) {
    next.push_back(StoredSecret{SecretMeta{uuid_v4(), scope, name, {}, now, now}, nullptr});
    it = std::prev(next.end());
  }
  it->meta.updated_at = now;
  add_hosts(it->meta.allowed_hosts, add_hosts_list);
  it->value = std::make_shared<const SecretValue>(std::move(value));
  SecretMeta meta = it->meta;
  persist_locked(next);
  items_ = std::make_shared<const StoreSnapshot>(std::move(next));
  return meta;
}

bool Store::remove(const std::string& scope, const std::string& id) {
  std::lock_guard lock(mu_);
  StoreSnapshot next = *items_;
  auto it = std::find_if(next.begin(), next.end(),
                         [&](const StoredSecret& s) { return s.meta.scope == scope && s.meta.id == id; });
  if (it == next.end()) return false;
  next.erase(it);
  persist_locked(next);
  items_ = std::make_shared<const StoreSnapshot>(std::move(next));
  return true;
}

bool Store::remove_by_name(const std::string& scope, const std::string& name) {
  auto meta = find(scope, name);
  return meta && remove(scope, meta->id);
}

std::shared_ptr<const StoreSnapshot> Store::snapshot() const {
  std::lock_guard lock(mu_);
  return items_;
}

std::size_t Store::size() const { return snapshot()->size(); }

void Store::persist_locked(const StoreSnapshot& next) {
  std::string plain = encode_records(next);
  std::string sealed;
  {
    WipeOnExit guard{plain};
    sealed = seal(key_, plain);
  }
  try {
    if (!db_.parent_path().empty()) ensure_dir(db_.parent_path(), 0700);
    write_file_atomic(db_, sealed, 0600);
  } catch (const std::exception& e) {
    // write_file_atomic names the path and errno already.
    throw StoreError(std::string("secrets store: ") + e.what());
  }
}

// ---- key ----------------------------------------------------------------------------------

SecretValue load_store_key(const fs::path& key_file, const fs::path& data_dir) {
  // Set but empty counts as set: falling back to another key would open a different store.
  if (const char* env = std::getenv("SIDEKEY_STORE_KEY")) {
    auto key = parse_key(env);
    if (!key) throw StoreError("SIDEKEY_STORE_KEY must be base64 of 32 bytes");
    return std::move(*key);
  }
  if (!key_file.empty()) return key_from_file(key_file);
  return generated_key(data_dir);
}

}  // namespace sidekey::secrets
