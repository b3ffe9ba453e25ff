#include "proxy/workers.hpp"

#include <boost/asio/post.hpp>

#include "core/log.hpp"

namespace sidekey::proxy {

Workers::Workers(unsigned count) {
  if (count == 0) count = 1;
  for (unsigned i = 0; i < count; ++i) {
    // Concurrency hint 1: each context is run by exactly one thread. The reactor's
    // per-descriptor locks stay (BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO would save ~0.4 k
    // instructions per request): the accepting thread registers each new socket with its
    // worker's reactor, and the descriptor state it takes from the reactor's pool may be one the
    // worker still has a stale epoll event queued for.
    contexts_.push_back(std::make_unique<boost::asio::io_context>(1));
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

// io_context::run(), except that a worker that runs out of ready work looks again a few times
// (each a non-blocking epoll_wait, ~0.3 µs) before it sleeps in epoll_wait. Under load the next
// event is usually that close: a worker that sleeps must be woken for it, and on a busy host the
// core sending to it pays that wake-up (an inter-processor interrupt) and the round trip its
// latency. Measured on the 2-core bench host (profile doc, "Session 14"): with 50 connections a
// worker that slept at once did so 3 to 7 times as often per request as nginx, and requests/s
// stayed level with nginx's at lower CPU per request; polling 30 times first put it ahead in 8 of
// 8 alternating rounds at the same CPU per request. An idle worker polls 30 times once, then
// sleeps as before.
void Workers::run_polling_before_sleep(boost::asio::io_context& c) {
  constexpr int kPollsBeforeSleep = 30;
  while (!c.stopped()) {
    if (c.poll() != 0) continue;
    std::size_t ran = 0;
    for (int i = 0; i < kPollsBeforeSleep && ran == 0 && !c.stopped(); ++i) ran = c.poll();
    if (ran == 0) c.run_one();
  }
}

void Workers::start() {
  for (auto& ctx : contexts_)
    threads_.emplace_back([c = ctx.get()] {
      // One audit write per turn of the event loop, not one per request.
      log::batch_audit_lines_on_this_thread([c] { boost::asio::post(*c, [] { log::flush_audit_batch(); }); });
      run_polling_before_sleep(*c);
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
