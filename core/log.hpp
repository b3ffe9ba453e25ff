#pragma once
// Structured logging: one JSON object per line, written with a single write(2)
// so lines from different worker threads never interleave and no lock is taken.
// Values passed here must never be secret plaintext: callers log names, not values.
#include <nlohmann/json.hpp>
#include <functional>
#include <string>
#include <string_view>

namespace sidekey::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };

bool parse_level(std::string_view text, Level& out);
void set_level(Level level);
bool enabled(Level level);

// Diagnostic log (stderr): {"ts":…,"level":…,"event":…, fields…}
void write(Level level, std::string_view event, nlohmann::json fields = nlohmann::json::object());
inline void debug(std::string_view e, nlohmann::json f = nlohmann::json::object()) { write(Level::debug, e, std::move(f)); }
inline void info(std::string_view e, nlohmann::json f = nlohmann::json::object()) { write(Level::info, e, std::move(f)); }
inline void warn(std::string_view e, nlohmann::json f = nlohmann::json::object()) { write(Level::warn, e, std::move(f)); }
inline void error(std::string_view e, nlohmann::json f = nlohmann::json::object()) { write(Level::error, e, std::move(f)); }

// Audit log: "stderr" or a file path (opened for append). Throws std::runtime_error on failure.
// "/dev/null" discards audit lines: they are not composed at all (audit_discarded()).
void set_audit_target(const std::string& target);
bool audit_discarded();
// Writes one finished audit line (a JSON object, no newline; one is appended in place).
void audit_line(std::string& line);
// On a thread that called this, audit lines are gathered and written together: `schedule` is
// called when a batch starts and must make flush_audit_batch() run on this thread soon (a worker
// posts it to its event loop, so every request that finished in one turn shares one write(2)).
// A batch never exceeds PIPE_BUF bytes, so each write stays atomic on a pipe and lines from
// different threads never interleave.
void batch_audit_lines_on_this_thread(std::function<void()> schedule);
void flush_audit_batch();

// RFC 3339 UTC timestamp with milliseconds, e.g. 2026-11-27T02:14:21.123Z.
std::string now_rfc3339();
// The same, as a view of a per-thread buffer valid until the thread's next call; the date and
// time of day are formatted once per second.
std::string_view now_rfc3339_view();

}  // namespace sidekey::log
