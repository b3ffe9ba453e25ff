#include "secrets/store.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <string_view>
#include <system_error>
#include <utility>

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

// The errno behind a failure of the core file helpers (write_file_atomic, ensure_dir,
// read_file_if_exists): a std::system_error carries it; the others end their message with its
// text (": No space left on device"). 0 when none is recognized.
int error_number_of(const std::exception& e) {
  if (auto* se = dynamic_cast<const std::system_error*>(&e))
    return se->code().category() == std::generic_category() || se->code().category() == std::system_category()
               ? se->code().value()
               : 0;
  std::string_view what = e.what();
  for (int err : {ENOSPC, EDQUOT, EROFS, EACCES, EPERM, EIO, ENOENT, ENOTDIR, EISDIR, EMFILE, ENFILE, ENOMEM, EFBIG}) {
    std::string suffix = ": " + std::generic_category().message(err);
    if (what.size() >= suffix.size() && what.substr(what.size() - suffix.size()) == suffix) return err;
  }
  return 0;
}

// A StoreError for a failed file operation, keeping its errno.
[[noreturn]] void fail_io(const std::exception& e) {
  throw StoreError(std::string("secrets store: ") + e.what(), error_number_of(e));
}

// Wipes a plaintext buffer however the scope is left, including by an exception.
struct WipeOnExit {
  std::string& s;
  ~WipeOnExit() { wipe(s); }
};

// Decrypts and decodes the sealed bytes of `db`; StoreError naming the file on any problem.
StoreSnapshot decode_file(const fs::path& db, const SecretValue& key, std::string_view file) {
  try {
    std::string plain = unseal(key, file);
    WipeOnExit guard{plain};
    return decode_records(plain);
  } catch (const StoreError& e) {
    fail(db, e.what());
  }
}

std::array<unsigned char, 32> sha256(std::string_view data) {
  std::array<unsigned char, 32> out{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr) != 1 || len != out.size())
    throw StoreError("secrets store: SHA-256 failed");
  return out;
}

// An flock(2) on the store's lock file, released when the object goes away (close drops it).
// Writers hold it exclusively for their whole read-modify-write, readers shared.
class FileLock {
 public:
  FileLock() = default;
  FileLock(FileLock&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  FileLock& operator=(FileLock&&) = delete;
  ~FileLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool held() const { return fd_ >= 0; }

  // Opens (creating it 0600 when missing) and locks `path`, waiting for other holders. When
  // the lock cannot be had: throws StoreError if `required`, otherwise returns an unheld lock
  // (a reader in a read-only or not yet created folder goes on without it: the file is only
  // ever replaced by rename, so what it reads is always one complete version).
  static FileLock acquire(const fs::path& path, int op, bool required) {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 && (errno == EACCES || errno == EROFS || errno == EPERM))
      fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);  // flock needs no write access
    if (fd < 0) return failed(path, "cannot open lock file", errno, required);
    while (::flock(fd, op) != 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return failed(path, "cannot lock", err, required);
    }
    return FileLock(fd);
  }

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  static FileLock failed(const fs::path& path, const char* what, int err, bool required) {
    if (required)
      throw StoreError(std::string("secrets store: ") + what + " " + path.string() + ": " + std::strerror(err), err);
    return {};
  }
  int fd_ = -1;
};

// write_file_atomic's temp names: "." + file name + ".tmp-" + 12 lowercase hex digits.
bool is_temp_name(std::string_view name, std::string_view prefix) {
  if (name.size() != prefix.size() + 12 || name.substr(0, prefix.size()) != prefix) return false;
  for (char c : name.substr(prefix.size()))
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
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

Store::Store(fs::path db, SecretValue key)
    : db_(std::move(db)), lock_path_(db_.string() + ".lock"), key_(std::move(key)) {
  if (key_.size() != kKeyBytes) fail(db_, "the store key must be 32 bytes");
  items_ = std::make_shared<const StoreSnapshot>();
  std::lock_guard io(io_mu_);
  // Exclusive: no write is in progress while we hold it, so every temp file is a leftover.
  // Not required: a missing folder (store created on first write) or a read-only one still opens.
  FileLock lock = FileLock::acquire(lock_path_, LOCK_EX, false);
  if (lock.held()) remove_stale_temp_files();
  reload_locked();
}

bool Store::reload_if_changed() {
  std::lock_guard io(io_mu_);
  FileLock lock = FileLock::acquire(lock_path_, LOCK_SH, false);
  return reload_locked();
}

bool Store::reload_locked() {
  std::optional<std::string> file;
  try {
    file = read_file_if_exists(db_);
  } catch (const std::exception& e) {
    fail_io(e);
  }
  Version now;
  if (file) now = sha256(*file);
  if (now == seen_) return false;
  // The bytes on disk are ciphertext; the plaintext is wiped inside decode_file.
  auto next = std::make_shared<const StoreSnapshot>(file ? decode_file(db_, key_, *file) : StoreSnapshot{});
  {
    std::lock_guard lock(mu_);
    items_ = std::move(next);
  }
  seen_ = now;
  return true;
}

template <class Change>
bool Store::modify(Change change) {
  std::lock_guard io(io_mu_);
  try {
    if (!db_.parent_path().empty()) ensure_dir(db_.parent_path(), 0700);
  } catch (const std::exception& e) {
    fail_io(e);
  }
  FileLock lock = FileLock::acquire(lock_path_, LOCK_EX, true);
  // Another process may have written since we last looked: build on its content, never on a
  // stale copy. A file we cannot read stops the write here, before anything is overwritten.
  reload_locked();
  // The copy shares the values of untouched secrets; only the vector of metadata is copied.
  StoreSnapshot next = *snapshot();
  if (!change(next)) return false;
  persist_locked(next);
  auto published = std::make_shared<const StoreSnapshot>(std::move(next));
  std::lock_guard items_lock(mu_);
  items_ = std::move(published);
  return true;
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
  SecretMeta meta;
  modify([&](StoreSnapshot& next) {
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
    meta = it->meta;
    return true;
  });
  return meta;
}

bool Store::remove(const std::string& scope, const std::string& id) {
  return modify([&](StoreSnapshot& next) {
    auto it = std::find_if(next.begin(), next.end(),
                           [&](const StoredSecret& s) { return s.meta.scope == scope && s.meta.id == id; });
    if (it == next.end()) return false;
    next.erase(it);
    return true;
  });
}

bool Store::remove_by_name(const std::string& scope, const std::string& name) {
  // Looked up under the file lock, on the current content, like every change.
  return modify([&](StoreSnapshot& next) {
    auto it = std::find_if(next.begin(), next.end(),
                           [&](const StoredSecret& s) { return s.meta.scope == scope && s.meta.name == name; });
    if (it == next.end()) return false;
    next.erase(it);
    return true;
  });
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
    write_file_atomic(db_, sealed, 0600);  // modify() made the folder
  } catch (const std::exception& e) {
    // write_file_atomic names the path and errno already. When it failed after the rename
    // (folder fsync), seen_ still names the old version and the next access reloads.
    fail_io(e);
  }
  seen_ = sha256(sealed);
}

void Store::remove_stale_temp_files() const {
  fs::path dir = db_.parent_path().empty() ? fs::path(".") : db_.parent_path();
  const std::string prefix = "." + db_.filename().string() + ".tmp-";
  std::vector<fs::path> stale;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (is_temp_name(it->path().filename().string(), prefix)) stale.push_back(it->path());
  std::size_t removed = 0;
  for (const auto& p : stale) {
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;  // only plain files we may have made
    if (::unlink(p.c_str()) == 0) {
      ++removed;
    } else {
      int err = errno;
      log::warn("store_temp_file_not_removed", {{"file", p.string()}, {"error", std::strerror(err)}});
    }
  }
  if (removed) log::info("store_temp_files_removed", {{"folder", dir.string()}, {"files", removed}});
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
