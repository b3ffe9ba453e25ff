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

#if defined(__x86_64__)
namespace {
// zmm16-31, which only an EVEX instruction reaches: glibc's AVX-512 (EVEX) string functions copy
// through them, and VZEROALL leaves them alone. With AVX512VL a 256-bit write, which zeroes the
// register's upper half too; without it (Xeon Phi) the 512-bit form. Compiled for AVX-512 on its
// own, so that the clobbers can name these registers; called only where the CPU and the OS
// have them (__builtin_cpu_supports reads XCR0 too).
__attribute__((target("avx512f"), noinline)) void clear_upper_sixteen(bool vl) noexcept {
  if (vl) {
    __asm__ __volatile__(
        "vpxord %%ymm16, %%ymm16, %%ymm16\n\tvpxord %%ymm17, %%ymm17, %%ymm17\n\t"
        "vpxord %%ymm18, %%ymm18, %%ymm18\n\tvpxord %%ymm19, %%ymm19, %%ymm19\n\t"
        "vpxord %%ymm20, %%ymm20, %%ymm20\n\tvpxord %%ymm21, %%ymm21, %%ymm21\n\t"
        "vpxord %%ymm22, %%ymm22, %%ymm22\n\tvpxord %%ymm23, %%ymm23, %%ymm23\n\t"
        "vpxord %%ymm24, %%ymm24, %%ymm24\n\tvpxord %%ymm25, %%ymm25, %%ymm25\n\t"
        "vpxord %%ymm26, %%ymm26, %%ymm26\n\tvpxord %%ymm27, %%ymm27, %%ymm27\n\t"
        "vpxord %%ymm28, %%ymm28, %%ymm28\n\tvpxord %%ymm29, %%ymm29, %%ymm29\n\t"
        "vpxord %%ymm30, %%ymm30, %%ymm30\n\tvpxord %%ymm31, %%ymm31, %%ymm31"
        :
        :
        : "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26",
          "xmm27", "xmm28", "xmm29", "xmm30", "xmm31");
  } else {
    __asm__ __volatile__(
        "vpxord %%zmm16, %%zmm16, %%zmm16\n\tvpxord %%zmm17, %%zmm17, %%zmm17\n\t"
        "vpxord %%zmm18, %%zmm18, %%zmm18\n\tvpxord %%zmm19, %%zmm19, %%zmm19\n\t"
        "vpxord %%zmm20, %%zmm20, %%zmm20\n\tvpxord %%zmm21, %%zmm21, %%zmm21\n\t"
        "vpxord %%zmm22, %%zmm22, %%zmm22\n\tvpxord %%zmm23, %%zmm23, %%zmm23\n\t"
        "vpxord %%zmm24, %%zmm24, %%zmm24\n\tvpxord %%zmm25, %%zmm25, %%zmm25\n\t"
        "vpxord %%zmm26, %%zmm26, %%zmm26\n\tvpxord %%zmm27, %%zmm27, %%zmm27\n\t"
        "vpxord %%zmm28, %%zmm28, %%zmm28\n\tvpxord %%zmm29, %%zmm29, %%zmm29\n\t"
        "vpxord %%zmm30, %%zmm30, %%zmm30\n\tvpxord %%zmm31, %%zmm31, %%zmm31"
        :
        :
        : "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26",
          "xmm27", "xmm28", "xmm29", "xmm30", "xmm31");
  }
}
}  // namespace
#endif

void clear_vector_registers() noexcept {
#if defined(__x86_64__)
  // Out of line: the SysV ABI makes every vector register caller-saved, so no caller keeps a
  // value in one across this call. VZEROALL clears ymm0-15 and, on AVX-512 hardware, zmm0-15
  // whole.
  enum Level { sse2, avx, avx512, avx512vl };
  static const Level level = !__builtin_cpu_supports("avx")       ? sse2
                             : !__builtin_cpu_supports("avx512f")  ? avx
                             : !__builtin_cpu_supports("avx512vl") ? avx512
                                                                   : avx512vl;
  if (level == sse2) {
    __asm__ __volatile__(
        "pxor %%xmm0, %%xmm0\n\tpxor %%xmm1, %%xmm1\n\tpxor %%xmm2, %%xmm2\n\tpxor %%xmm3, %%xmm3\n\t"
        "pxor %%xmm4, %%xmm4\n\tpxor %%xmm5, %%xmm5\n\tpxor %%xmm6, %%xmm6\n\tpxor %%xmm7, %%xmm7\n\t"
        "pxor %%xmm8, %%xmm8\n\tpxor %%xmm9, %%xmm9\n\tpxor %%xmm10, %%xmm10\n\tpxor %%xmm11, %%xmm11\n\t"
        "pxor %%xmm12, %%xmm12\n\tpxor %%xmm13, %%xmm13\n\tpxor %%xmm14, %%xmm14\n\tpxor %%xmm15, %%xmm15"
        :
        :
        : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11",
          "xmm12", "xmm13", "xmm14", "xmm15");
    return;
  }
  __asm__ __volatile__("vzeroall" : : : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
                       "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
  if (level >= avx512) clear_upper_sixteen(level == avx512vl);
#endif
}

void harden_process() {
  ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  struct rlimit rl{0, 0};
  ::setrlimit(RLIMIT_CORE, &rl);
}

}  // namespace sidekey::secrets
