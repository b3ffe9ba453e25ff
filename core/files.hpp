#pragma once
// File helpers with the durability the store and the generated key files need.
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace sidekey {

// Reads a whole (small) file; throws std::runtime_error naming the path on failure.
std::string read_file(const std::filesystem::path& path);
std::optional<std::string> read_file_if_exists(const std::filesystem::path& path);

// Crash-safe replace: write a temp file in the same folder, fsync it, rename over `path`,
// fsync the folder. After a crash at any point the file holds the old or the new content.
// Throws std::runtime_error (with errno text) on any failure, leaving the old file intact.
void write_file_atomic(const std::filesystem::path& path, std::string_view data, unsigned mode = 0600);

// Creates a folder (and parents) with `mode` if missing; throws on failure.
void ensure_dir(const std::filesystem::path& path, unsigned mode = 0700);

// Resolves `p` against `base` when relative (config paths resolve against the config's folder).
std::filesystem::path resolve_against(const std::filesystem::path& base, const std::filesystem::path& p);

}  // namespace sidekey
