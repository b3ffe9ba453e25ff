#include <boost/asio/signal_set.hpp>

#include <csignal>
#include <cstring>
#include <iostream>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include "cli/child_env.hpp"
#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "cli/runtime.hpp"
#include "core/log.hpp"
#include "core/yaml_util.hpp"
#include "secrets/secret_name.hpp"

extern char** environ;

namespace sidekey::cli {

namespace {

bool valid_env_name(const std::string& s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  return true;
}

// --ref-env VAR=NAME entries, validated; throws std::invalid_argument naming the bad one.
std::vector<std::pair<std::string, std::string>> ref_env_from(const po::variables_map& vm) {
  std::vector<std::pair<std::string, std::string>> refs;
  if (!vm.count("ref-env")) return refs;
  for (const auto& r : vm["ref-env"].as<std::vector<std::string>>()) {
    auto eq = r.find('=');
    std::string var = r.substr(0, eq), name = eq == std::string::npos ? "" : r.substr(eq + 1);
    if (!valid_env_name(var) || !secrets::valid_secret_name(name))
      throw std::invalid_argument("--ref-env takes VAR=NAME (e.g. OPENAI_API_KEY=openai), got '" + r + "'");
    // The child would get two values (which one a program reads varies), or none at all.
    if (var.rfind("SIDEKEY_", 0) == 0)
      throw std::invalid_argument("--ref-env cannot set " + var + ": SIDEKEY_* variables never reach the child");
    for (const auto& [set, value] : proxy_variables(ChildEnvInputs{}))
      if (set == var) throw std::invalid_argument("--ref-env cannot set " + var + ": sidekey sets it for the child");
    for (const auto& [earlier, n] : refs)
      if (earlier == var) throw std::invalid_argument("--ref-env sets " + var + " twice");
    refs.emplace_back(var, name);
  }
  return refs;
}

// PATH lookup done before fork, so the child only has to execve.
std::string find_program(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = std::getenv("PATH");
  std::string p = path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t i = 0;
  while (i <= p.size()) {
    size_t j = p.find(':', i);
    if (j == std::string::npos) j = p.size();
    std::string dir = p.substr(i, j - i);
    std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    i = j + 1;
  }
  return {};
}

// fork + execve; the child holds none of sidekey's descriptors (listeners, store lock).
pid_t spawn(const std::string& program, const std::vector<std::string>& argv, const std::vector<std::string>& env) {
  // Where close_range is missing (Linux < 5.9) or filtered (seccomp), every descriptor up to the
  // limit is closed one by one: a listener left open would let the agent accept the operator's
  // API requests, secrets in their bodies.
  struct rlimit files{};
  const int max_fd = ::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur != RLIM_INFINITY && files.rlim_cur < (1u << 20)
                         ? static_cast<int>(files.rlim_cur)
                         : (1 << 20);
  std::vector<char*> cargv, cenv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  for (const auto& e : env) cenv.push_back(const_cast<char*>(e.c_str()));
  cenv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid != 0) return pid;
  // Child: only async-signal-safe calls from here on.
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  // Every disposition back to default, including ignores inherited from whoever started
  // sidekey and the real-time signals glibc's sigaction() will not touch: the raw system call.
  struct {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)();
    unsigned long mask;
  } dfl{SIG_DFL, 0, nullptr, 0};
  for (int sig = 1; sig <= 64; ++sig)
    if (sig != SIGKILL && sig != SIGSTOP) ::syscall(SYS_rt_sigaction, sig, &dfl, nullptr, sizeof dfl.mask);
  if (::close_range(3, ~0U, 0) != 0)
    for (int fd = 3; fd < max_fd; ++fd) ::close(fd);
  ::execve(program.c_str(), cargv.data(), cenv.data());
  _exit(127);
}

}  // namespace

int cmd_exec(const Args& all) {
  auto dashdash = std::find(all.begin(), all.end(), "--");
  Args opts(all.begin(), dashdash);
  Args command(dashdash == all.end() ? all.end() : dashdash + 1, all.end());
  po::options_description desc("sidekey exec");
  add_config_options(desc, false);
  desc.add_options()("policy", po::value<std::string>(), "policy file")(
      "ref-env", po::value<std::vector<std::string>>()->composing(), "VAR=NAME: set VAR={{secrets.NAME}} in the child");
  config::Config cfg;
  std::vector<std::pair<std::string, std::string>> refs;
  try {
    auto vm = parse(opts, desc);
    cfg = config_from(vm);
    refs = ref_env_from(vm);
  } catch (const std::exception& e) {
    print_error(e.what());
    return 2;
  }
  if (command.empty()) {
    print_error("usage: sidekey exec [--config F] [--policy F] [--data-dir D] [--ref-env VAR=NAME]... -- COMMAND [ARGS]...");
    return 2;
  }
  std::string program = find_program(command[0]);
  if (program.empty()) {
    print_error("command not found: " + command[0]);
    return 127;
  }
  // In-process, on free loopback ports: several `sidekey exec` can run side by side.
  cfg.listen_proxy = {"127.0.0.1", 0};
  cfg.listen_api = {"127.0.0.1", 0};
  cfg.listen_admin = {"127.0.0.1", 0};

  ControlThreadSignals signals{SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};
  Runtime runtime(cfg);
  if (int rc = start_or_report(runtime)) return rc;
  ChildEnvInputs in{runtime.proxy_address(), runtime.trust_bundle_file().string(), runtime.ca_file().string(), refs};
  std::vector<std::string> parent_env;
  for (char** e = environ; *e; ++e) parent_env.emplace_back(*e);

  auto& control = runtime.control();
  // Signals go to the child; its exit ends sidekey. Registered before the child exists so no
  // signal is lost in between.
  boost::asio::signal_set forwarded(control, SIGINT, SIGTERM, SIGHUP);
  forwarded.add(SIGQUIT);
  forwarded.add(SIGUSR1);
  forwarded.add(SIGUSR2);
  forwarded.add(SIGWINCH);
  signals.deliver_here();  // before the child exists, which starts with no signal blocked
  std::signal(SIGPIPE, SIG_IGN);
  pid_t child = spawn(program, command, child_environment(parent_env, in));
  if (child < 0) {
    print_error(std::string("cannot start the command: ") + std::strerror(errno));
    runtime.shutdown(std::chrono::seconds(1));
    return 1;
  }
  log::info("exec_started", {{"pid", child}, {"proxy", runtime.proxy_address()}, {"api", runtime.api_address()},
                             {"admin", runtime.admin_address()}});
  std::function<void()> forward = [&] {
    forwarded.async_wait([&](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      ::kill(child, sig);
      forward();
    });
  };
  forward();
  int status = 0;
  std::thread reaper([&] {
    signals.keep_from_this_thread();  // they are for the control thread to forward
    while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    boost::asio::post(control, [&] {
      forwarded.cancel();
      control.stop();
    });
  });
  control.run();
  reaper.join();
  runtime.shutdown(std::chrono::seconds(5));
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

int cmd_env(const Args& args) {
  po::options_description desc("sidekey env");
  add_config_options(desc, false);
  desc.add_options()("ref-env", po::value<std::vector<std::string>>()->composing(), "VAR=NAME");
  config::Config cfg;
  std::vector<std::pair<std::string, std::string>> refs;
  try {
    auto vm = parse(args, desc);
    cfg = config_from(vm);
    refs = ref_env_from(vm);
  } catch (const std::exception& e) {
    print_error(e.what());
    return 2;
  }
  if (cfg.listen_proxy.port == 0) {
    print_error("listen.proxy has port 0: `sidekey env` needs the fixed address of a running sidekey");
    return 2;
  }
  try {
    auto files = prepare_trust_files(cfg);
    ChildEnvInputs in{cfg.listen_proxy.to_string(), files.trust_bundle.string(), files.ca.string(), refs};
    for (const auto& [k, v] : proxy_variables(in)) std::cout << "export " << k << "=" << shell_quote(v) << "\n";
  } catch (const std::exception& e) {
    print_error(e.what());
    return 1;
  }
  return 0;
}

}  // namespace sidekey::cli
