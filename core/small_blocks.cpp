// The program's operator new and sized operator delete: small blocks are kept per thread for
// reuse, in front of malloc.
//
// Why: a proxied request allocates some 30 small blocks (header fields, the rewrite plan's and
// the audit record's strings, the parsers' storage) and frees them all when it ends. glibc's own
// per-thread cache keeps 7 blocks per size; the rest of each request's blocks went through its
// bins (and were consolidated whenever a large block was asked for), about a sixth of the
// request path's user-space instructions (bench/instructions, profile doc "Session 7"). Here a
// thread keeps up to kDepth blocks of each size class up to 248 bytes (the sizes glibc's chunks
// hold: 24, 40, 56, ... so a block is no larger than malloc would have made it): at most 64 KB
// per thread, given back at the thread's exit.
//
// What does not change: every block comes from malloc and can go back to free from any thread
// (a block freed on another thread joins that thread's cache); blocks hold what they held, as
// glibc's cache does (secrets are wiped before they are freed, wherever they live). Arrays,
// aligned and unsized deletes go straight to malloc/free. Sanitizer builds keep the C++
// runtime's operators, so that AddressSanitizer sees every free at once.
#include <cstddef>
#include <cstdlib>
#include <new>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SIDEKEY_RUNTIME_NEW 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define SIDEKEY_RUNTIME_NEW 1
#endif
#endif

#ifndef SIDEKEY_RUNTIME_NEW

namespace {

// Class c holds blocks of 16c + 8 bytes (c = 0: 8 bytes, in glibc's smallest chunk, which holds
// 24 like class 1's): what a chunk of 16(c + 1) bytes holds after its 8-byte size field.
constexpr std::size_t kClasses = 16;
constexpr std::size_t kLargest = 16 * (kClasses - 1) + 8;  // 248
constexpr unsigned kDepth = 32;

constexpr std::size_t class_of(std::size_t n) { return (n + 7) / 16; }
constexpr std::size_t class_size(std::size_t c) { return 16 * c + 8; }
static_assert(class_of(1) == 0 && class_of(8) == 0 && class_of(9) == 1 && class_of(24) == 1 && class_of(25) == 2);
static_assert(class_of(kLargest) == kClasses - 1 && class_size(class_of(kLargest)) == kLargest);

struct Block {
  Block* next;
};

// Trivially destructible, so it stays usable while the thread's other thread_local objects are
// destroyed (their frees then go to free()).
struct Cache {
  Block* head[kClasses];
  unsigned char count[kClasses];
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
}

struct DrainAtExit {
  bool registered = false;
  ~DrainAtExit() { drain(); }
};
thread_local DrainAtExit drain_at_exit;

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
  if (n - 1 < kLargest) {  // 1..248 (0 wraps around)
    const std::size_t c = class_of(n);
    if (Block* b = cache.head[c]) {
      cache.head[c] = b->next;
      --cache.count[c];
      return b;
    }
    return from_malloc(class_size(c));  // the class's size, so any block of it fits any request
  }
  return from_malloc(n ? n : 1);
}

void operator delete(void* p, std::size_t n) noexcept {
  if (p == nullptr) return;
  if (n - 1 < kLargest && !cache.closing) {
    const std::size_t c = class_of(n);
    if (cache.count[c] < kDepth) {
      if (!cache.armed) {
        cache.armed = true;
        drain_at_exit.registered = true;  // constructs it: its destructor runs at thread exit
      }
      auto* b = static_cast<Block*>(p);
      b->next = cache.head[c];
      cache.head[c] = b;
      ++cache.count[c];
      return;
    }
  }
  std::free(p);
}

// Without the size the class is unknown: back to malloc, which knows the block.
void operator delete(void* p) noexcept { std::free(p); }

#endif
