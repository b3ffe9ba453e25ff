#include "proxy/workers.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "core/log.hpp"

namespace sidekey::proxy {
namespace {
// Each context is run by exactly one thread, and every operation on a worker's sockets and timers
// starts on that thread (a connection is pinned to its worker; the accepting thread only
// registers the new socket, which keeps its lock, and hands the connection over with co_spawn,
// a post under the scheduler's lock). So the reactor's per-descriptor locks guard nothing: off,
// they are ~5 lock/unlock pairs less per proxied request. ThreadSanitizer cannot see the
// ordering epoll_ctl/epoll_wait give a socket registered on the accepting thread: its builds keep
// the locks.
#if defined(__SANITIZE_THREAD__)
constexpr int kWorkerConcurrencyHint = 1;
#else
constexpr int kWorkerConcurrencyHint = BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO;
#endif
}  // namespace

Workers::Workers(unsigned count) {
  if (count == 0) count = 1;
  for (unsigned i = 0; i < count; ++i) {
    contexts_.push_back(std::make_unique<boost::asio::io_context>(kWorkerConcurrencyHint));
    guards_.push_back(std::make_unique<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>(
        contexts_.back()->get_executor()));
  }
}

Workers::~Workers() {
  stop();
  join();
}

boost::asio::io_context& Workers::next() {
  return *contexts_[next_.fetch_add(1, std::memory_order_relaxed) % contexts_.size()];
}

void Workers::start() {
  for (auto& ctx : contexts_)
    threads_.emplace_back([c = ctx.get()] {
      // One audit write per turn of the event loop, not one per request.
      log::batch_audit_lines_on_this_thread([c] { boost::asio::post(*c, [] { log::flush_audit_batch(); }); });
      c->run();
      log::flush_audit_batch();  // what the last turn gathered, also when stopped
    });
}

void Workers::stop() {
  guards_.clear();
  for (auto& ctx : contexts_) ctx->stop();
}

void Workers::join() {
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

}  // namespace sidekey::proxy
