#include "secrets/sources.hpp"

#include <algorithm>

#include <stdlib.h>

#include <cstring>
#include <system_error>

#include "core/files.hpp"
#include "secrets/secret_name.hpp"

extern char** environ;

namespace sidekey::secrets {
namespace fs = std::filesystem;

namespace {

// Names in the "tasks/" namespace belong to task-scoped store secrets; a source must not
// be able to stand in for one.
bool usable_source_name(std::string_view name) { return valid_secret_name(name) && name.rfind("tasks/", 0) != 0; }

// Files written by editors and `echo` end in a newline that is not part of the secret; exactly
// one is dropped so content with more line breaks is still refused by value_problem().
void trim_one_newline(std::string& s) {
  if (s.size() >= 2 && s.compare(s.size() - 2, 2, "\r\n") == 0) s.resize(s.size() - 2);
  else if (!s.empty() && s.back() == '\n') s.pop_back();
}

// Reads one secret file; nullptr (after a warning naming the file, never its content) when it
// is unusable, or (with `gone` set, no warning) when it no longer exists. Every temporary copy
// of the content is wiped.
std::shared_ptr<const SecretValue> read_secret_file(const fs::path& file, const SourceWarn& warn, bool& gone) {
  std::error_code ec;
  auto size = fs::file_size(file, ec);
  if (!ec && size > kMaxValueBytes + 2) {
    warn("secret_source_file_skipped", {{"file", file.string()}, {"problem", "larger than 64 KiB"}});
    return nullptr;
  }
  std::optional<std::string> content;
  try {
    content = read_file_if_exists(file);
  } catch (const std::exception& e) {
    warn("secret_source_file_unreadable", {{"file", file.string()}, {"error", e.what()}});
    return nullptr;
  }
  if (!content) {  // removed between listing and reading
    gone = true;
    return nullptr;
  }
  trim_one_newline(*content);
  if (auto why = value_problem(*content); !why.empty()) {
    wipe(*content);
    warn("secret_source_file_skipped", {{"file", file.string()}, {"problem", why}});
    return nullptr;
  }
  return std::make_shared<const SecretValue>(SecretValue::take(*content));
}

struct FolderRead {
  SourceValues values;
  bool something_vanished = false;  // the folder, or a listed entry, was gone when read
};

// One pass over `folder`: every usable regular file.
FolderRead read_folder(const fs::path& folder, const fs::path& shown_as, const SourceWarn& warn) {
  FolderRead out;
  std::error_code ec;
  fs::directory_iterator it(folder, ec);
  if (ec) {
    // A missing folder is an empty source: the volume may be mounted later.
    out.something_vanished = ec == std::errc::no_such_file_or_directory;
    warn("secret_source_dir_unavailable", {{"path", shown_as.string()}, {"error", ec.message()}});
    return out;
  }
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    std::string name = it->path().filename().string();
    // "..data", "..2024_01_01…" and other dot entries are Kubernetes' atomic-swap machinery.
    if (name.empty() || name[0] == '.') continue;
    std::error_code type_ec;  // a dangling link is simply not a secret
    if (!fs::is_regular_file(it->path(), type_ec)) {  // follows symlinks
      if (type_ec == std::errc::no_such_file_or_directory) out.something_vanished = true;
      continue;
    }
    if (!usable_source_name(name)) {
      warn("secret_source_file_bad_name", {{"file", it->path().string()}});
      continue;
    }
    bool gone = false;
    if (auto value = read_secret_file(it->path(), warn, gone)) out.values.emplace(name, std::move(value));
    if (gone) out.something_vanished = true;
  }
  if (ec) {
    if (ec == std::errc::no_such_file_or_directory) out.something_vanished = true;
    warn("secret_source_dir_unreadable", {{"path", shown_as.string()}, {"error", ec.message()}});
  }
  return out;
}

constexpr int kDirAttempts = 5;

}  // namespace

std::vector<SourceValues> take_env_sources(const std::vector<std::string>& prefixes, const SourceWarn& warn) {
  // Read by sidekey itself (the API token, the store key): never a secret, never wiped here,
  // whatever a prefix matches (`SIDEKEY_` would match both).
  static constexpr std::string_view kOwnVariables[] = {"SIDEKEY_API_TOKEN", "SIDEKEY_STORE_KEY"};
  std::vector<SourceValues> out(prefixes.size());
  std::vector<char*> taken;  // the environment strings of every variable that matched a prefix
  for (char** e = environ; e && *e; ++e) {
    std::string_view var(*e);
    auto eq = var.find('=');
    if (eq == std::string_view::npos) continue;
    std::string_view variable = var.substr(0, eq);
    std::string_view value = var.substr(eq + 1);
    const bool own = std::find(std::begin(kOwnVariables), std::end(kOwnVariables), variable) != std::end(kOwnVariables);
    bool matched = false;
    for (std::size_t i = 0; i < prefixes.size(); ++i) {
      const std::string& prefix = prefixes[i];
      if (prefix.empty() || variable.rfind(prefix, 0) != 0) continue;
      if (own) {
        warn("secret_source_env_reserved", {{"variable", std::string(variable)}});
        break;
      }
      matched = true;
      std::string_view name = variable.substr(prefix.size());
      if (!usable_source_name(name)) {
        warn("secret_source_env_bad_name", {{"variable", std::string(variable)}});
        continue;
      }
      if (auto why = value_problem(value); !why.empty()) {
        warn("secret_source_env_bad_value", {{"variable", std::string(variable)}, {"problem", why}});
        continue;
      }
      // The value goes straight from the environment block into protected memory. A name
      // twice in the environment: the first one counts, as for getenv().
      if (!out[i].count(name)) out[i].emplace(std::string(name), std::make_shared<const SecretValue>(value));
    }
    if (matched) taken.push_back(*e);
  }
  // Wipe every taken value first, then unset: unsetenv only drops the pointer from environ, the
  // bytes stay where they are (the initial environment block, or setenv's never-freed copies).
  std::vector<std::string> names;
  for (char* s : taken) {
    char* eq = std::strchr(s, '=');
    names.emplace_back(s, eq);
    wipe(eq + 1, std::strlen(eq + 1));
  }
  for (const auto& name : names) ::unsetenv(name.c_str());
  return out;
}

DirGeneration dir_generation(const fs::path& dir) {
  fs::path data = dir / "..data";
  std::error_code ec;
  fs::path target = fs::read_symlink(data, ec);
  if (!ec) return {target.is_absolute() ? target : dir / target, target.string()};
  // A real folder named ..data: nothing swaps it, read it as it is.
  if (std::error_code dir_ec; fs::is_directory(data, dir_ec)) return {data, data.filename().string()};
  return {dir, ""};
}

std::optional<SourceValues> read_dir_source(const fs::path& dir, const SourceWarn& warn,
                                            const std::function<void(const DirGeneration&)>& after_resolve) {
  for (int attempt = 0; attempt < kDirAttempts; ++attempt) {
    DirGeneration gen = dir_generation(dir);
    if (after_resolve) after_resolve(gen);
    // Problems are reported only for the reading that counts: a folder removed under an
    // attempt would otherwise log a warning about files that never had a problem.
    std::vector<std::pair<std::string, nlohmann::json>> problems;
    auto keep = [&](std::string_view event, nlohmann::json fields) { problems.emplace_back(event, std::move(fields)); };
    FolderRead read = read_folder(gen.folder, gen.generation.empty() ? dir : gen.folder, keep);
    // Plain folder: files come and go one by one; what is gone is gone from the source. In the
    // Kubernetes layout, a generation's folder is complete before ..data points to it and is
    // removed only after ..data has moved on: files missing while ..data still names it are
    // dangling entries, files missing after it moved on mean it was being removed under us.
    if (!gen.generation.empty() && read.something_vanished && dir_generation(dir).generation != gen.generation)
      continue;
    for (auto& [event, fields] : problems) warn(event, std::move(fields));
    return std::move(read.values);
  }
  return std::nullopt;
}

}  // namespace sidekey::secrets
