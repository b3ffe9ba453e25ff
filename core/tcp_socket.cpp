// The part of io::Socket that reads Asio's private reactor state (see tcp_socket.hpp).
#include "core/tcp_socket.hpp"

#include <sys/epoll.h>

namespace sidekey::io::reactor_ops {
namespace {

// An explicit instantiation may name private members ([temp.spec.general]/6); the friend it
// defines hands the member pointer out. Asio 1.81 has no accessor for these.
template <class Tag, typename Tag::type Member>
struct Grant {
  friend typename Tag::type member(Tag) { return Member; }
};

struct EpollFd {
  using type = int ad::epoll_reactor::*;
  friend type member(EpollFd);
};
struct RegisteredEvents {
  using type = uint32_t ad::epoll_reactor::descriptor_state::*;
  friend type member(RegisteredEvents);
};
struct LastEvents {  // the events of the descriptor's latest report, kept by the scheduler
  using type = unsigned int ad::scheduler_operation::*;
  friend type member(LastEvents);
};

struct TrySpeculative {  // per operation type: try it at once, before epoll reports the descriptor
  using type = bool (ad::epoll_reactor::descriptor_state::*)[ad::epoll_reactor::max_ops];
  friend type member(TrySpeculative);
};

template struct Grant<EpollFd, &ad::epoll_reactor::epoll_fd_>;
template struct Grant<RegisteredEvents, &ad::epoll_reactor::descriptor_state::registered_events_>;
template struct Grant<LastEvents, &ad::scheduler_operation::task_result_>;
template struct Grant<TrySpeculative, &ad::epoll_reactor::descriptor_state::try_speculative_>;

}  // namespace

// Raised when epoll reports the descriptor readable, closed or failed (perform_io, with or
// without a read queued), lowered by a read that drained the socket (done_and_exhausted).
bool quiet_since_drained(const ad::reactor::per_descriptor_data& d) {
  return d != nullptr && !(d->*member(TrySpeculative{}))[ad::epoll_reactor::read_op];
}

bool short_read_drained(const Descriptor& d) {
  uint32_t& registered = d.data->*member(RegisteredEvents{});
  if ((registered & EPOLLRDHUP) == 0) {
    // Asio's own re-arms (EPOLLOUT for a write that would block) start from registered_events_,
    // so the flag stays.
    epoll_event ev{};
    ev.events = registered | EPOLLRDHUP;
    ev.data.ptr = d.data;
    if (epoll_ctl(d.reactor->*member(EpollFd{}), EPOLL_CTL_MOD, d.fd, &ev) != 0) return false;
    registered = ev.events;
    return true;
  }
  // descriptor_state derives privately from the scheduler's operation type; a C-style cast may
  // name a private base.
  auto* op = (ad::scheduler_operation*)d.data;  // NOLINT(cppcoreguidelines-pro-type-cstyle-cast)
  // EPOLLPRI: urgent data stops a recv at its mark with bytes behind it (tcp_recvmsg), and those
  // raise no new edge. EPOLLERR, EPOLLHUP: whatever comes next is already there.
  return (op->*member(LastEvents{}) & (EPOLLRDHUP | EPOLLPRI | EPOLLERR | EPOLLHUP)) == 0;
}

}  // namespace sidekey::io::reactor_ops
