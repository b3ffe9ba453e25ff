#include "core/tcp_stream.hpp"

#include <algorithm>

namespace sidekey::io {
namespace timed {

boost::asio::execution_context::id Sweeper::id;

State::State(Socket&& s)
    : socket(std::move(s)), sweeper(&boost::asio::use_service<Sweeper>(socket.get_executor().context())) {}

Sweeper::Sweeper(boost::asio::execution_context& ctx)
    : boost::asio::execution_context::service(ctx), timer_(static_cast<boost::asio::io_context&>(ctx)) {}

void Sweeper::shutdown() {
  // The io_context is going away: what is still listed is left alone (its operations are
  // destroyed with the context, and unwatch() finds them unlisted).
  down_ = true;
  for (State* s = head_; s;) {
    State* n = s->next;
    s->listed = false;
    s->prev = s->next = nullptr;
    s = n;
  }
  head_ = nullptr;
  timer_.cancel();
}

void Sweeper::watch(State& s, Clock::time_point at) noexcept {
  if (down_) return;
  if (!s.listed) {
    s.listed = true;
    s.prev = nullptr;
    s.next = head_;
    if (head_) head_->prev = &s;
    head_ = &s;
  }
  if (at < wake_) arm(at);
}

void Sweeper::unwatch(State& s) noexcept {
  if (!s.listed) return;
  s.listed = false;
  if (s.prev) s.prev->next = s.next;
  else head_ = s.next;
  if (s.next) s.next->prev = s.prev;
  s.prev = s.next = nullptr;
  // The timer stays armed: it may wake once for a deadline no longer listed, and then, the
  // list empty, stays off.
}

void Sweeper::arm(Clock::time_point at) noexcept {
  // Not armed until the wait is queued: if queueing fails (out of memory), the next watch()
  // arms again, rather than trusting a wake that expires_at() has just cancelled.
  wake_ = Clock::time_point::max();
  const auto ex = timer_.get_executor();
  try {
    timer_.expires_at(at);  // (cancels the wait for a later wake: it completes as aborted)
    timer_.async_wait([this, ex](const boost::system::error_code& ec) {
      ex.on_work_started();  // the scheduler counts this handler's work as done when it returns
      if (!ec) sweep();
    });
  } catch (...) {
    return;
  }
  // Not the io_context's work (see the header). Called with an operation of a listed stream
  // started (watch() runs after the socket took it) or from the sweep's own handler, so the
  // count never reaches zero here.
  ex.on_work_finished();
  wake_ = at;
}

void Sweeper::sweep() {
  wake_ = Clock::time_point::max();
  const auto now = Clock::now();
  auto next = Clock::time_point::max();
  for (State* s = head_; s;) {
    State* n = s->next;
    bool expired = false;
    for (int d = kRead; d <= kWrite; ++d)
      if (s->pending[d] != 0 && s->deadline[d] <= now) expired = s->timed_out[d] = true;
    if (expired) {
      // As basic_stream does: the socket closed, so every pending operation completes (with
      // beast::error::timeout for those past their deadline, see end()).
      unwatch(*s);
      boost::system::error_code ignored;
      s->socket.close(ignored);
    } else {
      next = std::min({next, s->deadline[kRead], s->deadline[kWrite]});
    }
    s = n;
  }
  // Deadlines a millisecond apart are swept together.
  if (next != Clock::time_point::max()) arm(std::max(next, now + std::chrono::milliseconds(1)));
}

void begin(State& s, Direction d) {
  ++s.pending[d];
  // Two operations of one direction in flight (not done by this program's callers) share the
  // earlier deadline.
  s.deadline[d] = std::min(s.pending[d] == 1 ? Clock::time_point::max() : s.deadline[d], s.expiry);
}

void watch(State& s, Direction d) noexcept {
  if (s.deadline[d] != Clock::time_point::max() && s.pending[d] != 0) s.sweeper->watch(s, s.deadline[d]);
}

void end(State& s, Direction d, boost::system::error_code& ec) noexcept {
  if (--s.pending[d] == 0) s.deadline[d] = Clock::time_point::max();
  if (s.timed_out[d]) {
    ec = boost::beast::error::timeout;
    if (s.pending[d] == 0) s.timed_out[d] = false;
  }
  if (s.pending[kRead] == 0 && s.pending[kWrite] == 0) s.sweeper->unwatch(s);
}

void release(State* s) noexcept {
  if (--s->refs != 0) return;
  s->sweeper->unwatch(*s);
  delete s;
}

}  // namespace timed

TcpStream::TcpStream(socket_type&& s) : s_(new timed::State(std::move(s))) {}
TcpStream::TcpStream(const executor_type& ex) : TcpStream(socket_type(ex)) {}

void TcpStream::reset() noexcept {
  if (!s_) return;
  close();  // pending operations complete (aborted) and then let the state go
  timed::release(std::exchange(s_, nullptr));
}

void TcpStream::close() noexcept {
  boost::system::error_code ignored;
  s_->socket.close(ignored);
}

}  // namespace sidekey::io
