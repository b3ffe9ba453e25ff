#include "secrets/secret_value.hpp"

#include <openssl/crypto.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstring>
#include <new>

#include "core/encoding.hpp"

namespace sidekey::secrets {
namespace {
std::size_t page_size() {
  static const std::size_t ps = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return ps;
}
}  // namespace

SecretValue::SecretValue(std::string_view plaintext) {
  if (plaintext.empty()) return;
  std::size_t ps = page_size();
  std::size_t len = (plaintext.size() + ps - 1) / ps * ps;
  void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  ::madvise(p, len, MADV_DONTDUMP);
  ::mlock(p, len);  // best effort: RLIMIT_MEMLOCK may refuse, the page is still excluded from dumps
  data_ = static_cast<char*>(p);
  mapped_ = len;
  size_ = plaintext.size();
  std::memcpy(data_, plaintext.data(), size_);
}

SecretValue::~SecretValue() { release(); }

SecretValue::SecretValue(SecretValue&& o) noexcept : data_(o.data_), size_(o.size_), mapped_(o.mapped_) {
  o.data_ = nullptr;
  o.size_ = o.mapped_ = 0;
}

SecretValue& SecretValue::operator=(SecretValue&& o) noexcept {
  if (this != &o) {
    release();
    data_ = o.data_;
    size_ = o.size_;
    mapped_ = o.mapped_;
    o.data_ = nullptr;
    o.size_ = o.mapped_ = 0;
  }
  return *this;
}

void SecretValue::release() noexcept {
  if (!data_) return;
  OPENSSL_cleanse(data_, mapped_);
  ::munlock(data_, mapped_);
  ::munmap(data_, mapped_);
  data_ = nullptr;
  size_ = mapped_ = 0;
}

SecretValue SecretValue::take(std::string& s) {
  SecretValue v(s);
  wipe(s);
  return v;
}

bool SecretValue::equals(std::string_view other) const noexcept { return constant_time_equals(reveal(), other); }

namespace {
// Zeroes n bytes in a way the optimizer keeps: the empty asm statement takes the pointer and
// clobbers memory, so the compiler must assume the zeroes are read afterwards (a store before a
// free is otherwise a dead store it may drop). The same technique as BoringSSL's
// OPENSSL_cleanse and glibc's explicit_bzero, inlined: wipes run dozens of times per request.
inline void zero(void* p, std::size_t n) noexcept {
  std::memset(p, 0, n);
  __asm__ __volatile__("" : : "r"(p) : "memory");
}
}  // namespace

void wipe(void* p, std::size_t n) noexcept {
  if (p && n) zero(p, n);
}

void harden_process() {
  ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  struct rlimit rl{0, 0};
  ::setrlimit(RLIMIT_CORE, &rl);
}

}  // namespace sidekey::secrets
