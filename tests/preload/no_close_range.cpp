// LD_PRELOAD library for tests: close_range() fails with ENOSYS, as on Linux before 5.9 or under
// a seccomp profile that filters it.
#include <cerrno>

extern "C" int close_range(unsigned int, unsigned int, int) {
  errno = ENOSYS;
  return -1;
}
