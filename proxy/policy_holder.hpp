#pragma once
// The policy in force: an immutable snapshot behind an atomic pointer. Reload (SIGHUP, file
// change) builds a new snapshot off the request path and swaps it in; a bad file leaves the old
// one in force, is logged with file:line:column and counted.
#include <atomic>
#include <filesystem>
#include <string>
#include <sys/stat.h>

#include "policy/policy.hpp"

namespace sidekey::proxy {

class PolicyHolder {
 public:
  explicit PolicyHolder(std::filesystem::path file) : file_(std::move(file)) {}

  // First load: throws PositionedError / std::runtime_error (start-up refuses a bad policy).
  void load();
  // Reload: true when a new policy is in force; false (logged, counted) when the file is bad.
  bool reload(const char* why);
  // Reloads when the file's identity (inode, size, mtime) changed since the last attempt.
  void reload_if_changed();

  policy::PolicyPtr current() const { return current_.load(std::memory_order_acquire); }
  const std::filesystem::path& file() const { return file_; }

 private:
  struct Stamp {
    ino_t ino = 0;
    off_t size = -1;
    timespec mtime{};
    bool operator==(const Stamp& o) const {
      return ino == o.ino && size == o.size && mtime.tv_sec == o.mtime.tv_sec && mtime.tv_nsec == o.mtime.tv_nsec;
    }
  };
  Stamp stamp() const;
  std::filesystem::path file_;
  Stamp last_;
  std::atomic<policy::PolicyPtr> current_;
};

}  // namespace sidekey::proxy
