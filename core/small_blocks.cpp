// The program's operator new and sized operator delete: blocks up to 16 KB are kept per thread
// for reuse, in front of malloc.
//
// Why: a proxied request allocates some 40 blocks (header fields, the rewrite plan's and the
// audit record's strings, the parsers' storage, its coroutine frames: Asio's own frame cache is
// turned off with BOOST_ASIO_DISABLE_AWAITABLE_FRAME_RECYCLING, see CMakeLists.txt) and frees
// them all when it ends. glibc's per-thread cache keeps 7 blocks per size and nothing above
// 1 KB; the rest went through its bins, and every block above 1 KB (the request's main frame is
// 9.7 KB) first consolidated them: about a sixth of the request path's user-space instructions
// (bench/instructions, profile doc "Session 7").
//
// Classes: 16 of 16-byte steps up to 248 bytes (the sizes glibc's chunks hold: 24, 40, 56, ...,
// so a block is no larger than malloc would have made it), kept 128 deep; then eight per
// doubling up to 16376 bytes (a block at most an eighth larger than asked for), kept 32 deep and
// 1 MB in all. At most 1.25 MB per thread, given back at the thread's exit. The depths are for a
// worker with many requests in flight: each holds its blocks while the others allocate, so a
// class must cover them all (with 32 and 8 it ran dry at 10 keep-alive connections and a tenth
// of the allocations went to malloc: 2.4 k instructions per request, profile doc "Session 9").
//
// What does not change: every block comes from malloc and can go back to free from any thread
// (a block freed on another thread joins that thread's cache); blocks hold what they held, as
// glibc's cache does (secrets are wiped before they are freed, wherever they live; inside a
// WipeFreedBlocks scope, core/wipe_freed.hpp, every block is zeroed as it is freed). Aligned
// new and delete stay the C++ runtime's. Sanitizer builds keep all of the runtime's operators,
// so that AddressSanitizer sees every free at once. What a thread keeps is out of reach of
// malloc_trim (after a burst) and of glibc's malloc debugging (MALLOC_PERTURB_, valgrind's
// mismatched-delete check).
#include <bit>
#include <cstddef>
#include <cstdlib>
#include <new>

#include <malloc.h>
#include <string.h>  // explicit_bzero

#include "core/sanitized.hpp"
#include "core/wipe_freed.hpp"

#ifndef SIDEKEY_SANITIZED

namespace {

constexpr std::size_t kFine = 16;                           // classes 0..15: 16c + 8 bytes
constexpr std::size_t kFineLargest = 16 * (kFine - 1) + 8;  // 248
constexpr std::size_t kSteps = 8;                           // coarse classes per doubling
constexpr std::size_t kDoublings = 6;                       // chunks of 256 B .. 16 KB
constexpr std::size_t kClasses = kFine + kSteps * kDoublings;
constexpr std::size_t kLargest = (std::size_t{1} << (8 + kDoublings)) - 8;  // 16376
constexpr unsigned char kFineDepth = 128, kCoarseDepth = 32;
constexpr std::size_t kCoarseBudget = 1024 * 1024;  // bytes of coarse blocks a thread keeps

// A block of class c is what a glibc chunk of chunk(c) bytes holds after its 8-byte size field.
// Fine: chunks of 32, 48, ... 256 bytes (class 0, 8 bytes, sits in the smallest chunk, 32
// bytes, which holds 24). Coarse: from 256 bytes on, eight steps per doubling (2^k + j 2^(k-3),
// j = 1..8), so a block is at most an eighth larger than asked for.
constexpr std::size_t class_of(std::size_t n) {  // 1 <= n <= kLargest
  if (n <= kFineLargest) return (n + 7) / 16;
  const std::size_t chunk = n + 8;
  const std::size_t k = static_cast<std::size_t>(std::bit_width(chunk - 1)) - 1;  // 2^k < chunk <= 2^(k+1)
  const std::size_t step = std::size_t{1} << (k - 3);
  const std::size_t j = (chunk - (std::size_t{1} << k) + step - 1) / step;  // 1..8
  return kFine + (k - 8) * kSteps + (j - 1);
}
constexpr std::size_t class_size(std::size_t c) {
  if (c < kFine) return 16 * c + 8;
  const std::size_t k = 8 + (c - kFine) / kSteps, j = (c - kFine) % kSteps + 1;
  return (std::size_t{1} << k) + j * (std::size_t{1} << (k - 3)) - 8;
}
constexpr bool every_size_has_the_smallest_class_that_holds_it() {
  for (std::size_t n = 1; n <= kLargest; ++n) {
    const std::size_t c = class_of(n);
    if (c >= kClasses || class_size(c) < n || (c > 0 && class_size(c - 1) >= n)) return false;
  }
  return true;
}
static_assert(every_size_has_the_smallest_class_that_holds_it());
static_assert(class_of(kLargest) == kClasses - 1 && class_size(kClasses - 1) == kLargest);

struct Block {
  Block* next;
};

// Trivially destructible, so it stays usable while the thread's other thread_local objects are
// destroyed (their frees then go to free()).
struct Cache {
  Block* head[kClasses];
  unsigned char count[kClasses];
  std::size_t coarse_bytes;
  bool armed;    // the drain below is registered for this thread
  bool closing;  // the drain ran: the thread is ending
};
thread_local Cache cache{};

void drain() noexcept {
  cache.closing = true;
  for (std::size_t c = 0; c < kClasses; ++c) {
    while (Block* b = cache.head[c]) {
      cache.head[c] = b->next;
      std::free(b);
    }
    cache.count[c] = 0;
  }
  cache.coarse_bytes = 0;
}

struct DrainAtExit {
  bool registered = false;
  ~DrainAtExit() { drain(); }
};
thread_local DrainAtExit drain_at_exit;

void* take(std::size_t c) noexcept {  // nullptr when class c has no block kept
  Block* b = cache.head[c];
  if (b == nullptr) return nullptr;
  cache.head[c] = b->next;
  --cache.count[c];
  if (c >= kFine) cache.coarse_bytes -= class_size(c);
  return b;
}

bool keep(void* p, std::size_t c) noexcept {
  if (cache.closing) return false;
  if (c < kFine) {
    if (cache.count[c] >= kFineDepth) return false;
  } else {
    if (cache.count[c] >= kCoarseDepth || cache.coarse_bytes + class_size(c) > kCoarseBudget) return false;
    cache.coarse_bytes += class_size(c);
  }
  if (!cache.armed) {
    cache.armed = true;
    drain_at_exit.registered = true;  // constructs it: its destructor runs at thread exit
  }
  auto* b = static_cast<Block*>(p);
  b->next = cache.head[c];
  cache.head[c] = b;
  ++cache.count[c];
  return true;
}

void* from_malloc(std::size_t n) {
  for (;;) {
    if (void* p = std::malloc(n)) return p;
    std::new_handler handler = std::get_new_handler();
    if (!handler) throw std::bad_alloc();
    handler();
  }
}

}  // namespace

void* operator new(std::size_t n) {
  if (n - 1 < kLargest) {  // 1..kLargest (0 wraps around)
    const std::size_t c = class_of(n);
    if (void* p = take(c)) return p;
    return from_malloc(class_size(c));  // the class's size, so any block of it fits any request
  }
  return from_malloc(n ? n : 1);
}

void operator delete(void* p, std::size_t n) noexcept {
  if (p == nullptr) return;
  if (sidekey::detail::wipe_freed_depth != 0) [[unlikely]]
    ::explicit_bzero(p, n);
  if (n - 1 < kLargest && keep(p, class_of(n))) return;
  std::free(p);
}

// Without the size (coroutine frames are freed this way): malloc knows what the block holds, and
// a block made for a class holds exactly that class's size (see class_size).
void operator delete(void* p) noexcept {
  if (p == nullptr) return;
  const std::size_t usable = malloc_usable_size(p);
  if (sidekey::detail::wipe_freed_depth != 0) [[unlikely]]
    ::explicit_bzero(p, usable);
  if (usable - 1 < kLargest) {
    const std::size_t c = class_of(usable);
    if (class_size(c) == usable && keep(p, c)) return;
  }
  std::free(p);
}

#endif
