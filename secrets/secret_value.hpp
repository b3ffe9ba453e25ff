#pragma once
// Plaintext of a secret. Lives in its own mmap'd pages that are locked where allowed, excluded
// from core dumps (MADV_DONTDUMP) and zeroized before release. There is deliberately no
// conversion to std::string and no stream operator: reading the plaintext is an explicit
// reveal() that a reviewer can grep for.
#include <cstddef>
#include <string>
#include <string_view>

namespace sidekey::secrets {

class SecretValue {
 public:
  SecretValue() = default;
  explicit SecretValue(std::string_view plaintext);
  ~SecretValue();
  SecretValue(SecretValue&& other) noexcept;
  SecretValue& operator=(SecretValue&& other) noexcept;
  SecretValue(const SecretValue&) = delete;
  SecretValue& operator=(const SecretValue&) = delete;

  // Copies `s` into protected memory and wipes `s`.
  static SecretValue take(std::string& s);
  SecretValue clone() const { return SecretValue(reveal()); }

  std::string_view reveal() const noexcept { return {data_, size_}; }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  bool equals(std::string_view other) const noexcept;  // constant time in the content

 private:
  void release() noexcept;
  char* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t mapped_ = 0;
};

// Wipes a buffer that held plaintext, in a way the optimizer cannot drop.
void wipe(void* p, std::size_t n) noexcept;
// A string of any allocator (std::string, a request body's): its whole capacity, as earlier,
// longer contents may sit past size(); then empties it.
// (Written through data() up to capacity(): the buffer is the string's own, capacity() + 1 bytes
// with the terminator, in libstdc++, the library the build uses; resize(capacity()) would first
// fill the same bytes with zeroes once more.)
template <class Allocator>
void wipe(std::basic_string<char, std::char_traits<char>, Allocator>& s) noexcept {
  wipe(s.data(), s.capacity());
  s.clear();
}

// Zeroes this thread's vector registers. A copy of plaintext passes through them (memcpy moves 32
// or 64 bytes per AVX-512 register) and stays there until other work overwrites them; a core
// dump holds every thread's registers, and a thread that goes idle after handling a secret keeps
// it in them. Called before a thread that handled plaintext can wait: once a head with injected
// values or a substituted or scrubbed piece is written, when a proxied request, an API call on
// the store thread or a store or source read ends. A few instructions.
void clear_vector_registers() noexcept;
// Calls it when the scope ends, whichever way it is left.
struct ClearRegistersOnExit {
  ClearRegistersOnExit() = default;
  ClearRegistersOnExit(const ClearRegistersOnExit&) = delete;
  ClearRegistersOnExit& operator=(const ClearRegistersOnExit&) = delete;
  ~ClearRegistersOnExit() { clear_vector_registers(); }
};

// Process-wide hygiene: not dumpable (no core, no ptrace by other users), RLIMIT_CORE = 0.
void harden_process();

}  // namespace sidekey::secrets
