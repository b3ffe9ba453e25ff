// LD_PRELOAD library for tests: fsync() and fdatasync() hold while the file named by
// $SIDEKEY_SLOW_FSYNC_GATE exists (having created "<gate>.started" so a test knows a sync is
// waiting), then sync for real. Stands in for a slow or busy disk, deterministically.
#include <dlfcn.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

namespace {

void hold_at_gate() {
  const char* gate = std::getenv("SIDEKEY_SLOW_FSYNC_GATE");
  if (!gate || ::access(gate, F_OK) != 0) return;
  const std::string started = std::string(gate) + ".started";
  int fd = ::open(started.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd >= 0) ::close(fd);
  while (::access(gate, F_OK) == 0) ::usleep(10000);
}

template <class F>
F real(const char* name) {
  return reinterpret_cast<F>(::dlsym(RTLD_NEXT, name));
}

}  // namespace

extern "C" int fsync(int fd) {
  hold_at_gate();
  static auto next = real<int (*)(int)>("fsync");
  return next(fd);
}

extern "C" int fdatasync(int fd) {
  hold_at_gate();
  static auto next = real<int (*)(int)>("fdatasync");
  return next(fd);
}
