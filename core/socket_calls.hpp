#pragma once
// The request path's socket reads and writes, as system calls made directly.
//
// recv, send and sendmsg are cancellation points: in a process with more than one thread the C
// library brackets each with two atomic updates of the thread's cancellation state (~37 ns a
// call on the benchmark's host, four calls per proxied request). sidekey never cancels a thread.
// syscall() makes the same call without them; errno and the results are recv's, send's and
// sendmsg's. Sanitizer builds keep the library's calls: the sanitizers intercept them (ASan checks
// the buffers, TSan follows the descriptors).
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstddef>

#include "core/sanitized.hpp"

namespace sidekey::io::socket_calls {

inline ssize_t recv(int fd, void* data, std::size_t size) {
#ifdef SIDEKEY_SANITIZED
  return ::recv(fd, data, size, 0);
#else
  return ::syscall(SYS_recvfrom, fd, data, size, 0, nullptr, nullptr);
#endif
}

// MSG_NOSIGNAL: a peer that has gone is an EPIPE, not a SIGPIPE (as Asio sends).
inline ssize_t send(int fd, const void* data, std::size_t size) {
#ifdef SIDEKEY_SANITIZED
  return ::send(fd, data, size, MSG_NOSIGNAL);
#else
  return ::syscall(SYS_sendto, fd, data, size, MSG_NOSIGNAL, nullptr, 0);
#endif
}

inline ssize_t sendmsg(int fd, const msghdr* message) {
#ifdef SIDEKEY_SANITIZED
  return ::sendmsg(fd, message, MSG_NOSIGNAL);
#else
  return ::syscall(SYS_sendmsg, fd, message, MSG_NOSIGNAL);
#endif
}

}  // namespace sidekey::io::socket_calls
