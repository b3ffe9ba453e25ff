#pragma once
// The read-only secret sources (SPEC section 9): `env` (variables with a prefix, taken once at
// start) and `dir` (one file per secret, in a plain folder or in the Kubernetes Secret volume
// layout). SecretRegistry merges what they give after the store.
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "secrets/secret_value.hpp"

namespace sidekey::secrets {

// name → value, as one source gives them.
using SourceValues = std::map<std::string, std::shared_ptr<const SecretValue>, std::less<>>;
// Receives a problem met while reading a source (event name and fields; never a value).
using SourceWarn = std::function<void(std::string_view event, nlohmann::json fields)>;

// ---- env ------------------------------------------------------------------------------------

// Takes the values of the variables named `prefix` + NAME out of the process environment, for
// each prefix (an empty prefix takes nothing): result[i] holds prefixes[i]'s. The values are
// copied into protected memory, then every variable that matched a prefix, usable or not, has
// its value bytes wiped in place (unsetenv alone would leave them in the environment block,
// /proc/<pid>/environ and core dumps) and is unset. So the environment is read once, at start;
// a second call finds nothing. Not thread-safe (nothing may use the environment meanwhile).
std::vector<SourceValues> take_env_sources(const std::vector<std::string>& prefixes, const SourceWarn& warn);

// ---- dir ------------------------------------------------------------------------------------

// The folder a dir source reads its files from at this moment. In the Kubernetes Secret volume
// layout (NAME -> ..data/NAME, ..data -> ..<timestamp>/; a whole set is swapped by renaming a
// new ..data symlink over the old one, and the old folder is removed afterwards) that is the
// folder ..data points to, resolved once, so every file of one reading comes from the same
// set; `generation` is ..data's target as read. For a plain folder (no ..data): the folder
// itself, `generation` empty.
struct DirGeneration {
  std::filesystem::path folder;
  std::string generation;
};
DirGeneration dir_generation(const std::filesystem::path& dir);

// Reads a dir source: every regular file whose name is usable (hidden entries skipped), the
// trailing newline trimmed; unusable files are reported to `warn` (by name, never content) and
// left out. A missing folder is an empty source. In the Kubernetes layout the files of one
// generation are read; when some of them vanish under the reading while ..data has moved on
// (the kubelet removed that folder after a swap), the reading starts over on the new
// generation. nullopt when that happened on every attempt: the caller keeps what it had.
// `after_resolve` (tests) runs after the generation is resolved and before its files are read.
std::optional<SourceValues> read_dir_source(const std::filesystem::path& dir, const SourceWarn& warn,
                                            const std::function<void(const DirGeneration&)>& after_resolve = {});

}  // namespace sidekey::secrets
