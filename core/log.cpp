#include "core/log.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fcntl.h>
#include <climits>
#include <cstring>
#include <stdexcept>
#include <unistd.h>

#include "core/json_text.hpp"

namespace sidekey::log {
namespace {
std::atomic<int> g_level{static_cast<int>(Level::info)};
// kAuditDiscarded: the target is /dev/null, and lines are not even composed.
constexpr int kAuditDiscarded = -1;
std::atomic<int> g_audit_fd{STDERR_FILENO};

const char* level_name(Level l) {
  switch (l) {
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::warn: return "warn";
    case Level::error: return "error";
  }
  return "info";
}

void write_all(int fd, const std::string& line) {
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // logging must never take the process down
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
}

void write_line(int fd, std::string line) {
  line.push_back('\n');
  write_all(fd, line);
}
}  // namespace

bool parse_level(std::string_view text, Level& out) {
  if (text == "debug") out = Level::debug;
  else if (text == "info") out = Level::info;
  else if (text == "warn" || text == "warning") out = Level::warn;
  else if (text == "error") out = Level::error;
  else return false;
  return true;
}

void set_level(Level level) { g_level.store(static_cast<int>(level)); }
bool enabled(Level level) { return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed); }

std::string now_rfc3339() {
  auto now = std::chrono::system_clock::now();
  auto secs = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

std::string_view now_rfc3339_view() {
  thread_local char buf[32];
  thread_local std::time_t cached = -1;
  auto now = std::chrono::system_clock::now();
  auto secs = std::chrono::system_clock::to_time_t(now);
  int ms = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
  if (secs != cached) {
    std::tm tm{};
    gmtime_r(&secs, &tm);
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.000Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                  tm.tm_hour, tm.tm_min, tm.tm_sec);
    cached = secs;
  }
  buf[20] = static_cast<char>('0' + ms / 100);
  buf[21] = static_cast<char>('0' + ms / 10 % 10);
  buf[22] = static_cast<char>('0' + ms % 10);
  return std::string_view(buf, 24);
}

void write(Level level, std::string_view event, nlohmann::json fields) {
  if (!enabled(level)) return;
  nlohmann::json line = nlohmann::json::object();
  line["ts"] = now_rfc3339();
  line["level"] = level_name(level);
  line["event"] = std::string(event);
  if (fields.is_object())
    for (auto& [k, v] : fields.items()) line[k] = std::move(v);
  write_line(STDERR_FILENO, json::text(line));
}

void set_audit_target(const std::string& target) {
  int fd = STDERR_FILENO;
  if (target == "/dev/null") {
    fd = kAuditDiscarded;
  } else if (!target.empty() && target != "stderr") {
    fd = ::open(target.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) throw std::runtime_error("cannot open audit log " + target + ": " + std::strerror(errno));
  }
  int old = g_audit_fd.exchange(fd);
  if (old > STDERR_FILENO) ::close(old);
}

bool audit_discarded() { return g_audit_fd.load(std::memory_order_relaxed) == kAuditDiscarded; }

namespace {
struct AuditBatch {
  std::string bytes;
  std::function<void()> schedule;  // empty: this thread writes each line at once
};
AuditBatch& audit_batch() {
  thread_local AuditBatch batch;
  return batch;
}
}  // namespace

void audit_line(std::string& line) {
  if (audit_discarded()) return;
  auto& batch = audit_batch();
  line.push_back('\n');
  if (!batch.schedule || line.size() > PIPE_BUF) {
    flush_audit_batch();  // keeps this thread's lines in order
    write_all(g_audit_fd.load(std::memory_order_relaxed), line);
  } else {
    if (batch.bytes.size() + line.size() > PIPE_BUF) flush_audit_batch();
    bool first = batch.bytes.empty();
    batch.bytes.append(line);
    if (first) batch.schedule();
  }
  line.pop_back();
}

void batch_audit_lines_on_this_thread(std::function<void()> schedule) {
  auto& batch = audit_batch();
  flush_audit_batch();
  batch.bytes.reserve(PIPE_BUF);
  batch.schedule = std::move(schedule);
}

void flush_audit_batch() {
  auto& batch = audit_batch();
  if (batch.bytes.empty()) return;
  if (const int fd = g_audit_fd.load(std::memory_order_relaxed); fd != kAuditDiscarded) write_all(fd, batch.bytes);
  batch.bytes.clear();
}

}  // namespace sidekey::log
