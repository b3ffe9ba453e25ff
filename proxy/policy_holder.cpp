#include "proxy/policy_holder.hpp"

#include "core/files.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "policy/loader.hpp"

namespace sidekey::proxy {

PolicyHolder::Stamp PolicyHolder::stamp() const {
  struct stat st {};
  if (::stat(file_.c_str(), &st) != 0) return {};
  return {st.st_ino, st.st_size, st.st_mtim};
}

void PolicyHolder::load() {
  last_ = stamp();
  auto result = policy::load_policy(read_file(file_), file_.string());
  for (const auto& w : result.warnings) log::warn("policy_warning", {{"warning", w.what()}});
  current_.store(result.policy, std::memory_order_release);
  log::info("policy_loaded", {{"file", file_.string()}, {"rules", result.policy->rules().size()}});
}

bool PolicyHolder::reload(const char* why) {
  auto& ok = metrics::registry().counter("sidekey_policy_reloads_total", {{"result", "ok"}});
  auto& failed = metrics::registry().counter("sidekey_policy_reloads_total", {{"result", "error"}});
  last_ = stamp();
  try {
    auto result = policy::load_policy(read_file(file_), file_.string());
    for (const auto& w : result.warnings) log::warn("policy_warning", {{"warning", w.what()}});
    current_.store(result.policy, std::memory_order_release);
    ok.inc();
    log::info("policy_reloaded", {{"file", file_.string()}, {"trigger", why}, {"rules", result.policy->rules().size()}});
    return true;
  } catch (const std::exception& e) {
    failed.inc();
    log::error("policy_reload_failed", {{"file", file_.string()}, {"trigger", why}, {"error", e.what()}});
    return false;
  }
}

void PolicyHolder::reload_if_changed() {
  if (!(stamp() == last_)) reload("file_changed");
}

}  // namespace sidekey::proxy
