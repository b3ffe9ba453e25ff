#pragma once
// io::Socket: Asio's TCP socket, with reads that remember a drained socket.
//
// Asio's epoll reactor tries every read at once ("speculatively") unless the descriptor was seen
// drained, and it counts a descriptor drained only at EOF. On a proxy most reads are issued right
// after a write (the upstream's answer, the client's next request), so that first attempt finds
// nothing: one recvmsg returning EAGAIN per read. A wait for readability instead re-arms the
// descriptor with epoll_ctl, also a system call.
//
// A TCP recv that returns fewer bytes than asked has emptied the receive queue of data, and any
// byte that arrives after it raises a new edge on the edge-triggered registration; except that a
// FIN does not show in the count (one that came with the last bytes, in the same edge, leaves
// the next read to return 0 at once, and no edge will say so), and urgent data stops a recv at
// its mark with bytes still queued behind it. So, as nginx does, the socket's registration also
// asks for EPOLLRDHUP, and a short read counts as draining the socket unless the last events
// epoll reported for it carried EPOLLRDHUP (the peer's FIN is in), EPOLLPRI (urgent data),
// EPOLLERR or EPOLLHUP. The reactor then queues the next read without trying it until epoll
// reports the descriptor again.
// What the reactor goes by is also told (quiet_since_drained()): a pooled connection that has
// been quiet since its answer's last read is still open as far as the event loop has seen,
// known without a system call or a queued operation.
//
// This reaches into Asio's reactor (boost::asio::detail, Boost 1.81 as pinned by the build's
// Debian packages; tcp_socket.cpp reads four of its private fields): the operations follow
// Asio's own reactor_op protocol with a different answer to "did this read drain the socket?".
// Cancellation, close and shutdown go through the reactor as for Asio's operations. The reactor
// records a descriptor's last reported events without the descriptor's lock: the socket's
// io_context must be run by one thread (each worker's is). The protocol tag io::Tcp exists only
// to select this specialisation: io::Socket is basic_stream_socket<io::Tcp, Executor>, and
// io::TcpStream (core/tcp_stream.hpp) reads through it.

#include <boost/asio/basic_stream_socket.hpp>
#include <boost/asio/detail/bind_handler.hpp>
#include <boost/asio/detail/buffer_sequence_adapter.hpp>
#include <boost/asio/detail/fenced_block.hpp>
#include <boost/asio/detail/handler_cont_helpers.hpp>
#include <boost/asio/detail/handler_work.hpp>
#include <boost/asio/detail/reactor.hpp>
#include <boost/asio/detail/reactor_op.hpp>
#include <boost/asio/detail/socket_ops.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/version.hpp>
#include <sys/socket.h>

#include "core/socket_calls.hpp"

#include <cerrno>
#include <memory>
#include <utility>

#if !defined(BOOST_ASIO_HAS_EPOLL) || defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT) || BOOST_VERSION != 108100
#error "io::Socket's reads are written for the epoll reactor of Boost 1.81's Asio"
#endif

namespace sidekey::io {

// TCP, as a distinct type: never constructed (endpoints and resolvers are ip::tcp's).
struct Tcp : boost::asio::ip::tcp {};

namespace reactor_ops {
namespace ad = boost::asio::detail;

// What an operation needs of its socket's registration.
struct Descriptor {
  int fd;
  ad::reactor* reactor;
  ad::reactor::per_descriptor_data data;
};

// The registration's "try a read at once" flag is down: the last read drained the socket and
// epoll has reported nothing for it since (no bytes, no FIN, no error). False for a socket not
// registered.
bool quiet_since_drained(const ad::reactor::per_descriptor_data& d);

// Whether a read that returned fewer bytes than asked left the socket drained, as far as the
// reactor's edges go. Called from perform(), under the descriptor's lock. The first time it
// adds EPOLLRDHUP to the registration (the re-arm reports anything already there).
bool short_read_drained(const Descriptor& d);

// Removes a queued operation when its cancellation slot fires (per-operation cancellation, as
// the awaitable operators and Beast's composed operations use it).
class Cancellation {
 public:
  Cancellation(ad::reactor* r, ad::reactor::per_descriptor_data* d, int fd) : reactor_(r), data_(d), fd_(fd) {}
  void operator()(boost::asio::cancellation_type_t type) {
    using boost::asio::cancellation_type;
    if (!!(type & (cancellation_type::terminal | cancellation_type::partial | cancellation_type::total)))
      reactor_->cancel_ops_by_key(fd_, *data_, ad::reactor::read_op, this);
  }

 private:
  ad::reactor* reactor_;
  ad::reactor::per_descriptor_data* data_;
  int fd_;
};

// The completion half: the handler is moved out and the operation freed before the upcall,
// which runs through the handler's executor as Asio's own operations do.
template <class Derived, class Handler, class IoExecutor>
class Completing : public ad::reactor_op {
 protected:
  Completing(perform_func_type perform, Handler& h, const IoExecutor& ex)
      : reactor_op(boost::system::error_code(), perform, &Completing::complete),
        handler_(std::move(h)),
        work_(handler_, ex) {}

 private:
  static void complete(void* owner, ad::operation* base, const boost::system::error_code&, std::size_t) {
    auto* o = static_cast<Derived*>(static_cast<Completing*>(base));
    ad::handler_work<Handler, IoExecutor> work(std::move(o->work_));
    auto upcall = [&](auto call) {
      delete o;
      if (owner) {
        ad::fenced_block b(ad::fenced_block::half);
        work.complete(call, call.handler_);
      }
    };
    upcall(ad::binder2<Handler, boost::system::error_code, std::size_t>(o->handler_, o->ec_, o->bytes_transferred_));
  }

  Handler handler_;
  ad::handler_work<Handler, IoExecutor> work_;
};

// After a socket call that failed: false to make it again (EINTR); else true, with `ec` saying why
// (would_block when the socket had nothing, or no room).
inline bool failed_for(boost::system::error_code& ec) {
  const int e = errno;
  if (e == EINTR) return false;
  ec = e == EAGAIN || e == EWOULDBLOCK ? boost::system::error_code(boost::asio::error::would_block)
                                       : boost::system::error_code(e, boost::asio::error::get_system_category());
  return true;
}

// One non-blocking recv into one buffer, as Asio's non_blocking_recv1 has it for a stream (EOF
// an error, EINTR retried): false when the socket has nothing yet.
inline bool recv_once(int fd, void* data, std::size_t size, boost::system::error_code& ec, std::size_t& n) {
  for (;;) {
    const ssize_t got = socket_calls::recv(fd, data, size);
    if (got > 0) {
      ec = {};
      n = static_cast<std::size_t>(got);
      return true;
    }
    if (got == 0) {
      ec = boost::asio::error::eof;
      n = 0;
      return true;
    }
    if (!failed_for(ec)) continue;
    n = 0;
    return ec != boost::asio::error::would_block;
  }
}

template <class Buffers, class Handler, class IoExecutor>
class Recv final : public Completing<Recv<Buffers, Handler, IoExecutor>, Handler, IoExecutor> {
  using Base = Completing<Recv, Handler, IoExecutor>;

 public:
  Recv(const Descriptor& d, const Buffers& buffers, Handler& h, const IoExecutor& ex)
      : Base(&Recv::perform, h, ex), d_(d), buffers_(buffers) {}

 private:
  static ad::reactor_op::status perform(ad::reactor_op* base) {
    auto* o = static_cast<Recv*>(base);
    using Adapter = ad::buffer_sequence_adapter<boost::asio::mutable_buffer, Buffers>;
    Adapter bufs(o->buffers_);
    // One buffer (a flat buffer's room, the usual case) is read with recv(), not recvmsg(): the
    // kernel then copies no message header in and out (nginx reads the same way).
    bool finished;
    if constexpr (Adapter::is_single_buffer) {
      const boost::asio::mutable_buffer b = Adapter::first(o->buffers_);
      finished = recv_once(o->d_.fd, b.data(), b.size(), o->ec_, o->bytes_transferred_);
    } else {
      finished = ad::socket_ops::non_blocking_recv(o->d_.fd, bufs.buffers(), bufs.count(), 0, true, o->ec_,
                                                   o->bytes_transferred_);
    }
    if (!finished) return ad::reactor_op::not_done;
    if (o->ec_ == boost::asio::error::eof) return ad::reactor_op::done_and_exhausted;  // as Asio's
    bool drained = !o->ec_ && o->bytes_transferred_ < bufs.total_size() && short_read_drained(o->d_);
    return drained ? ad::reactor_op::done_and_exhausted : ad::reactor_op::done;
  }

  Descriptor d_;
  Buffers buffers_;
};

}  // namespace reactor_ops
}  // namespace sidekey::io

namespace boost::asio {

template <class Executor>
class basic_stream_socket<sidekey::io::Tcp, Executor> : public basic_stream_socket<ip::tcp, Executor> {
  using Base = basic_stream_socket<ip::tcp, Executor>;

 public:
  template <class Executor1>
  struct rebind_executor {
    using other = basic_stream_socket<sidekey::io::Tcp, Executor1>;
  };

  using Base::Base;
  // An accepted or connected socket of the plain type becomes this one.
  basic_stream_socket(Base&& s) noexcept : Base(std::move(s)) {}  // NOLINT(google-explicit-constructor)

  template <class MutableBufferSequence, class Token>
  auto async_read_some(const MutableBufferSequence& buffers, Token&& token) {
    return async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const MutableBufferSequence& b) {
          using Op = sidekey::io::reactor_ops::Recv<MutableBufferSequence, decltype(handler), Executor>;
          bool empty = detail::buffer_sequence_adapter<mutable_buffer, MutableBufferSequence>::all_empty(b);
          start<Op>(handler, empty, b);
        },
        token, buffers);
  }

  // Writes what the socket takes right now, without the reactor (the socket must be non-blocking:
  // then "would block" is the error when it takes nothing). One sendmsg for several buffers.
  template <class ConstBufferSequence>
  std::size_t send_now(const ConstBufferSequence& buffers, boost::system::error_code& ec) {
    using Adapter = detail::buffer_sequence_adapter<const_buffer, ConstBufferSequence>;
    const int fd = this->impl_.get_implementation().socket_;
    for (;;) {
      ssize_t sent;
      if constexpr (Adapter::is_single_buffer) {
        const const_buffer b = Adapter::first(buffers);
        sent = sidekey::io::socket_calls::send(fd, b.data(), b.size());
      } else {
        Adapter bufs(buffers);
        msghdr message{};
        message.msg_iov = const_cast<iovec*>(reinterpret_cast<const iovec*>(bufs.buffers()));
        message.msg_iovlen = bufs.count();
        sent = sidekey::io::socket_calls::sendmsg(fd, &message);
      }
      if (sent >= 0) {
        ec = {};
        return static_cast<std::size_t>(sent);
      }
      if (sidekey::io::reactor_ops::failed_for(ec)) return 0;
    }
  }

  // Nothing has come since a read drained the socket, as far as the event loop has been told
  // (see reactor_ops::quiet_since_drained). No system call.
  bool quiet_since_drained() const {
    return sidekey::io::reactor_ops::quiet_since_drained(this->impl_.get_implementation().reactor_data_);
  }

 private:
  // The handler's continuation hint and cancellation slot are read before the operation takes it.
  template <class Op, class Handler, class... Args>
  void start(Handler& handler, bool nothing_to_do, const Args&... args) {
    auto& impl = this->impl_.get_implementation();
    // Looked up once per socket: a registry walk under a mutex otherwise.
    if (reactor_ == nullptr) reactor_ = &use_service<detail::reactor>(this->get_executor().context());
    bool cont = boost_asio_handler_cont_helpers::is_continuation(handler);
    auto slot = get_associated_cancellation_slot(handler);
    auto owned = std::make_unique<Op>(sidekey::io::reactor_ops::Descriptor{impl.socket_, reactor_, impl.reactor_data_},
                                      args..., handler, this->impl_.get_executor());
    if (slot.is_connected())
      owned->cancellation_key_ =
          &slot.template emplace<sidekey::io::reactor_ops::Cancellation>(reactor_, &impl.reactor_data_, impl.socket_);
    detail::reactor_op* op = owned.release();  // the reactor owns it from here, and cannot throw
    if (nothing_to_do || (!(impl.state_ & detail::socket_ops::non_blocking) &&
                          !detail::socket_ops::set_internal_non_blocking(impl.socket_, impl.state_, true, op->ec_))) {
      reactor_->post_immediate_completion(op, cont);
      return;
    }
    reactor_->start_op(detail::reactor::read_op, impl.socket_, impl.reactor_data_, op, cont, true);
  }

  detail::reactor* reactor_ = nullptr;
};

}  // namespace boost::asio
