#include <boost/asio/signal_set.hpp>

#include <csignal>
#include <iostream>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "cli/runtime.hpp"
#include "core/log.hpp"
#include "core/yaml_util.hpp"

namespace sidekey::cli {

int cmd_serve(const Args& args) {
  po::options_description desc("sidekey serve");
  add_config_options(desc, true);
  config::Config cfg;
  try {
    cfg = config_from(parse(args, desc));
  } catch (const std::exception& e) {
    print_error(e.what());
    return 2;
  }

  ControlThreadSignals signals{SIGTERM, SIGINT, SIGHUP};
  Runtime runtime(cfg);
  if (int rc = start_or_report(runtime)) return rc;
  auto& control = runtime.control();
  boost::asio::signal_set stop_signals(control, SIGTERM, SIGINT);
  boost::asio::signal_set hup(control, SIGHUP);
  signals.deliver_here();
  std::function<void()> wait_hup = [&] {
    hup.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;
      runtime.reload_policy("sighup");
      wait_hup();
    });
  };
  wait_hup();
  int signal_number = 0;
  stop_signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    signal_number = sig;
    hup.cancel();
    control.stop();
  });
  std::signal(SIGPIPE, SIG_IGN);
  // Announced only once the signal handlers are in place: a script that stops us right after
  // reading this line gets a graceful shutdown.
  std::cout << runtime.listening_line() << std::endl;
  log::info("started", {{"version", SIDEKEY_VERSION}, {"workers", cfg.effective_workers()}});
  control.run();
  log::info("stopping", {{"signal", signal_number}});
  runtime.shutdown(std::chrono::seconds(30));
  log::info("stopped", {});
  return 0;
}

}  // namespace sidekey::cli
