#pragma once
// SIDEKEY_SANITIZED: this is a sanitizer build (GCC's -fsanitize=address|thread, or clang's
// address, thread or memory sanitizer). Code that stands in for a C library or runtime function
// the sanitizers intercept (operator new, socket calls) keeps the intercepted one there.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SIDEKEY_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define SIDEKEY_SANITIZED 1
#endif
#endif
