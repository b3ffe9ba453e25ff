#pragma once
// The composition root: builds the store, registry, listeners and workers from a Config and
// runs them. `serve` and (later) `exec` share it.
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include <csignal>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>

#include "api/admin.hpp"
#include "api/gateway.hpp"
#include "certs/ca.hpp"
#include "certs/cert_cache.hpp"
#include "api/secrets_api.hpp"
#include "config/config.hpp"
#include "proxy/listener.hpp"
#include "proxy/policy_holder.hpp"
#include "proxy/session.hpp"
#include "proxy/upstream.hpp"
#include "proxy/workers.hpp"
#include "secrets/secret_view.hpp"

namespace sidekey::cli {

// The CA and the trust bundle (system roots + CA) in the data folder, created when missing.
struct TrustFiles {
  std::filesystem::path ca, trust_bundle;
};

class Runtime {
 public:
  explicit Runtime(config::Config cfg);
  ~Runtime();

  // Opens everything and binds the listeners; throws with a clear message on any failure.
  void start();
  // {"event":"listening","proxy":…,"api":…,"admin":…}
  std::string listening_line() const;
  std::string proxy_address() const { return proxy_->local_address(); }
  std::string api_address() const { return api_->local_address(); }
  std::string admin_address() const { return admin_->local_address(); }
  const std::filesystem::path& ca_file() const { return trust_.ca; }
  const std::filesystem::path& trust_bundle_file() const { return trust_.trust_bundle; }

  // The control context (main thread): signals, periodic source refresh, accepting connections.
  boost::asio::io_context& control() { return control_; }
  // SIGHUP and file changes.
  void reload_policy(const char* why) { policy_->reload(why); }
  // Stop accepting, wait for in-flight requests (up to `deadline`), stop the workers. On the
  // control context's thread while that context is not running.
  void shutdown(std::chrono::milliseconds deadline);

 private:
  void stop_accepting();  // on the control thread, the control context not running
  void schedule_source_refresh();
  void schedule_policy_watch();
  void schedule_heap_trim();
  void every(std::unique_ptr<boost::asio::steady_timer>& timer, std::chrono::seconds period, std::function<void()> tick);

  config::Config cfg_;
  boost::asio::io_context control_;
  std::unique_ptr<boost::asio::steady_timer> refresh_timer_, policy_timer_, trim_timer_;
  std::shared_ptr<secrets::Store> store_;
  std::unique_ptr<secrets::SecretRegistry> registry_;
  std::unique_ptr<secrets::SecretValue> api_token_;
  std::unique_ptr<api::SecretsApi> secrets_api_;
  std::unique_ptr<api::Gateway> gateway_;
  api::Readiness readiness_;
  TrustFiles trust_;
  proxy::ConnectionTracker tracker_;
  api::HttpServerOptions api_options_, admin_options_;
  std::unique_ptr<proxy::PolicyHolder> policy_;
  std::unique_ptr<proxy::UpstreamTls> upstream_tls_;
  std::unique_ptr<certs::CertCache> cert_cache_;
  std::unique_ptr<proxy::ProxyContext> proxy_context_;
  std::unique_ptr<proxy::Workers> workers_;
  // Runs the secrets API's requests: a store write ends in fsync (milliseconds, more on a busy
  // disk), which on a worker would stall every proxied connection pinned to that worker.
  boost::asio::thread_pool store_io_{1};
  std::unique_ptr<proxy::Listener> proxy_, api_, admin_;
};

TrustFiles prepare_trust_files(const config::Config& cfg);
TrustFiles trust_files_for(const certs::CertificateAuthority& ca, const config::Config& cfg);

// Signals the control thread handles (signal_sets on Runtime::control()). Constructed before the
// Runtime, which starts threads: they inherit the mask with these blocked, so such a signal is
// only ever delivered to the control thread, once that unblocks them — after its handlers are
// registered (a signal that came meanwhile waits, pending, until then).
class ControlThreadSignals {
 public:
  explicit ControlThreadSignals(std::initializer_list<int> signals);
  void deliver_here() noexcept;
  void keep_from_this_thread() noexcept;  // for a thread started after deliver_here()

 private:
  sigset_t set_;
};

// Starts `runtime`; on failure prints why and returns the exit code (2 for a bad policy file,
// a configuration error; 1 otherwise). 0 when started.
int start_or_report(Runtime& runtime);

// Shared by subcommands that open the store offline (`sidekey secrets …`).
std::shared_ptr<secrets::Store> open_store(const config::Config& cfg);

}  // namespace sidekey::cli
