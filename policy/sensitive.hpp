#pragma once
// A string that holds plaintext (a secret, or a value composed from one) and wipes its buffer
// when destroyed or moved from: std::string's small-string buffer would otherwise keep a copy
// behind after a move.
#include <algorithm>
#include <string>
#include <string_view>

#include "secrets/secret_value.hpp"

namespace sidekey::policy {

// Makes room for `n` bytes in a string that holds plaintext. std::string's own growth frees the
// old buffer without wiping it; this copies to a larger buffer and wipes the old one first.
inline void reserve_wiping(std::string& s, std::size_t n) {
  if (n <= s.capacity()) return;
  std::string bigger;
  bigger.reserve(std::max(n, 2 * s.capacity()));
  bigger.append(s);
  secrets::wipe(s);
  s.swap(bigger);
}

inline void append_wiping(std::string& s, std::string_view more) {
  reserve_wiping(s, s.size() + more.size());
  s.append(more);
}

class SensitiveString {
 public:
  SensitiveString() = default;
  // Takes the content of `s` and wipes `s`.
  static SensitiveString take(std::string& s) {
    SensitiveString out;
    out.s_ = std::move(s);
    secrets::wipe(s);
    return out;
  }
  // A copy of `bytes` in a buffer of its own (allocated once: nothing to wipe behind).
  static SensitiveString copy(std::string_view bytes) {
    SensitiveString out;
    out.s_.assign(bytes.data(), bytes.size());
    return out;
  }
  ~SensitiveString() { secrets::wipe(s_); }
  SensitiveString(SensitiveString&& o) noexcept : s_(std::move(o.s_)) { secrets::wipe(o.s_); }
  SensitiveString& operator=(SensitiveString&& o) noexcept {
    if (this != &o) {
      secrets::wipe(s_);
      s_ = std::move(o.s_);
      secrets::wipe(o.s_);
    }
    return *this;
  }
  SensitiveString(const SensitiveString&) = delete;
  SensitiveString& operator=(const SensitiveString&) = delete;

  std::string_view reveal() const noexcept { return s_; }
  std::size_t size() const noexcept { return s_.size(); }

 private:
  std::string s_;
};

}  // namespace sidekey::policy
