#pragma once
// An allocator that zeroes what it frees, for buffers that may hold a secret's plaintext and
// grow: a growing buffer moves its bytes to a larger block and frees the old one, where its
// owner's own wipes (of the block it holds now) cannot reach them.
//
// Only lines that hold a non-zero byte are written. A buffer's block is mostly capacity nothing
// was ever read into, and a fresh block's untouched pages are not resident: reading them maps
// the kernel's zero page, writing them would make them the process's own (a burst of 1,000
// connections with 6 KB heads peaked 13-20 MB higher when every freed block was zeroed whole).

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

namespace sidekey {

// Zeroes every 64-byte line of [p, p + n) that is not zero already, in a way the optimizer
// keeps (the asm statement takes the pointer and clobbers memory).
inline void wipe_written(void* p, std::size_t n) noexcept {
  auto* b = static_cast<unsigned char*>(p);
  constexpr std::size_t kLine = 64;
  std::size_t i = 0;
  for (; i + kLine <= n; i += kLine) {
    std::uint64_t any = 0;
    for (std::size_t k = 0; k < kLine; k += 8) {
      std::uint64_t word;
      std::memcpy(&word, b + i + k, 8);
      any |= word;
    }
    if (any != 0) std::memset(b + i, 0, kLine);
  }
  std::memset(b + i, 0, n - i);
  __asm__ __volatile__("" : : "r"(p) : "memory");
}

template <class T>
struct WipingAllocator {
  using value_type = T;

  WipingAllocator() noexcept = default;
  template <class U>
  WipingAllocator(const WipingAllocator<U>&) noexcept {}  // NOLINT(google-explicit-constructor)

  T* allocate(std::size_t n) { return std::allocator<T>().allocate(n); }
  void deallocate(T* p, std::size_t n) noexcept {
    wipe_written(p, n * sizeof(T));
    std::allocator<T>().deallocate(p, n);
  }

  template <class U>
  bool operator==(const WipingAllocator<U>&) const noexcept {
    return true;
  }
};

}  // namespace sidekey
