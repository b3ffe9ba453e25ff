#pragma once
// One io_context per worker thread; a connection is handed to one worker at accept and stays
// there, so per-connection state needs no locks.
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

namespace sidekey::proxy {

class Workers {
 public:
  explicit Workers(unsigned count);
  ~Workers();

  unsigned size() const { return static_cast<unsigned>(contexts_.size()); }
  boost::asio::io_context& at(unsigned i) { return *contexts_[i]; }
  boost::asio::io_context& next();  // round-robin, for new connections

  void start();  // one thread per context
  void stop();   // stops every context (pending handlers are dropped)
  void join();

 private:
  static void run_polling_before_sleep(boost::asio::io_context& c);
  std::vector<std::unique_ptr<boost::asio::io_context>> contexts_;
  std::vector<std::unique_ptr<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>> guards_;
  std::vector<std::thread> threads_;
  std::atomic<unsigned> next_{0};
};

}  // namespace sidekey::proxy
