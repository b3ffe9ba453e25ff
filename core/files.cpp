#include "core/files.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <stdexcept>
#include <sys/stat.h>
#include <unistd.h>

#include "core/random.hpp"
#include "core/encoding.hpp"

namespace sidekey {
namespace fs = std::filesystem;

namespace {
[[noreturn]] void fail(const std::string& what, const fs::path& p, int err) {
  throw std::runtime_error(what + " " + p.string() + ": " + std::strerror(err));
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};
}  // namespace

std::optional<std::string> read_file_if_exists(const fs::path& path) {
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) {
    if (errno == ENOENT) return std::nullopt;
    fail("cannot open", path, errno);
  }
  // Read straight into the string, which is on the heap from the start (never the inline
  // buffer a move would leave behind) and wiped before it is outgrown: the file may be a secret
  // (a dir source), and no copy of it is left in freed memory or on the stack.
  struct stat st {};
  const std::size_t hint = ::fstat(f.fd, &st) == 0 && st.st_size > 0 ? static_cast<std::size_t>(st.st_size) : 0;
  std::string out;
  out.resize(std::max<std::size_t>(hint + 1, 64));  // + 1: end of file seen in the same read
  std::size_t used = 0;
  for (;;) {
    if (used == out.size()) {
      std::string bigger;
      bigger.resize(out.size() * 2);
      std::memcpy(bigger.data(), out.data(), used);
      ::explicit_bzero(out.data(), out.size());
      out.swap(bigger);
    }
    ssize_t n = ::read(f.fd, out.data() + used, out.size() - used);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::explicit_bzero(out.data(), out.size());
      fail("cannot read", path, err);
    }
    if (n == 0) break;
    used += static_cast<std::size_t>(n);
  }
  out.resize(used);  // the capacity stays: whoever wipes the string wipes all of it
  return out;
}

std::string read_file(const fs::path& path) {
  auto s = read_file_if_exists(path);
  if (!s) fail("cannot open", path, ENOENT);
  return std::move(*s);
}

void write_file_atomic(const fs::path& path, std::string_view data, unsigned mode) {
  fs::path dir = path.parent_path().empty() ? fs::path(".") : path.parent_path();
  fs::path tmp = dir / ("." + path.filename().string() + ".tmp-" + hex_encode(random_bytes(6)));
  {
    Fd f{::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)};
    if (f.fd < 0) fail("cannot create", tmp, errno);
    ::fchmod(f.fd, mode);  // umask must not widen or narrow what the caller asked for
    const char* p = data.data();
    size_t left = data.size();
    while (left > 0) {
      ssize_t n = ::write(f.fd, p, left);
      if (n < 0) {
        if (errno == EINTR) continue;
        int err = errno;
        ::unlink(tmp.c_str());
        fail("cannot write", tmp, err);
      }
      p += n;
      left -= static_cast<size_t>(n);
    }
    if (::fsync(f.fd) != 0) {
      int err = errno;
      ::unlink(tmp.c_str());
      fail("cannot fsync", tmp, err);
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    fail("cannot rename onto", path, err);
  }
  Fd d{::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
  if (d.fd < 0 || ::fsync(d.fd) != 0) fail("cannot fsync folder", dir, errno);
}

void ensure_dir(const fs::path& path, unsigned mode) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return;
  fs::create_directories(path, ec);
  if (ec) throw std::runtime_error("cannot create folder " + path.string() + ": " + ec.message());
  ::chmod(path.c_str(), mode);
}

fs::path resolve_against(const fs::path& base, const fs::path& p) {
  if (p.empty() || p.is_absolute()) return p;
  return (base.empty() ? p : base / p).lexically_normal();
}

}  // namespace sidekey
