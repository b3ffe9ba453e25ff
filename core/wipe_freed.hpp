#pragma once
// WipeFreedBlocks: while one lives on a thread, the program's operator delete zeroes every block
// it frees there.
//
// For code that handles a secret inside a library that copies it into memory of its own: the
// JSON parser of a secret write keeps the raw bytes of each token in a std::vector and builds
// its error messages from them (with exceptions off too), all freed through the global
// operator delete, which no allocator of ours reaches. Scopes are short and rare (one API call),
// so the cost does not matter. Not covered: aligned new/delete (the C++ runtime's) and memory a
// C library frees with free() itself (OpenSSL). Only where core/small_blocks.cpp provides the
// operators: not in the sanitizer builds, which keep their runtime's.

namespace sidekey {

namespace detail {
inline thread_local int wipe_freed_depth = 0;
}

class WipeFreedBlocks {
 public:
  WipeFreedBlocks() noexcept { ++detail::wipe_freed_depth; }
  ~WipeFreedBlocks() { --detail::wipe_freed_depth; }
  WipeFreedBlocks(const WipeFreedBlocks&) = delete;
  WipeFreedBlocks& operator=(const WipeFreedBlocks&) = delete;
};

}  // namespace sidekey
