#pragma once
// An allocator that zeroes what it frees, for buffers that may hold a secret's plaintext and
// grow: a growing buffer moves its bytes to a larger block and frees the old one, where its
// owner's own wipes (of the block it holds now) cannot reach them.

#include <string.h>  // explicit_bzero

#include <cstddef>
#include <memory>

namespace sidekey {

template <class T>
struct WipingAllocator {
  using value_type = T;

  WipingAllocator() noexcept = default;
  template <class U>
  WipingAllocator(const WipingAllocator<U>&) noexcept {}  // NOLINT(google-explicit-constructor)

  T* allocate(std::size_t n) { return std::allocator<T>().allocate(n); }
  void deallocate(T* p, std::size_t n) noexcept {
    ::explicit_bzero(p, n * sizeof(T));
    std::allocator<T>().deallocate(p, n);
  }

  template <class U>
  bool operator==(const WipingAllocator<U>&) const noexcept {
    return true;
  }
};

}  // namespace sidekey
