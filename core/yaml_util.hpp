#pragma once
// Strict YAML reading shared by the configuration and the policy loaders: every error names
// file:line:column, unknown keys are refused, and scalars are type-checked.
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace sidekey {

class PositionedError : public std::runtime_error {
 public:
  PositionedError(std::string file, int line, int column, std::string message);
  const std::string& file() const { return file_; }
  int line() const { return line_; }
  int column() const { return column_; }
  const std::string& message() const { return message_; }

 private:
  std::string file_;
  int line_, column_;
  std::string message_;
};

class YamlReader {
 public:
  explicit YamlReader(std::string file_name) : file_(std::move(file_name)) {}

  // Parses text (the file's content); a syntax error becomes a PositionedError.
  YAML::Node parse(const std::string& text) const;

  [[noreturn]] void fail(const YAML::Node& at, const std::string& message) const;
  [[noreturn]] void fail(const YAML::Mark& at, const std::string& message) const;

  // `node` must be a map (or null, meaning empty) whose keys are all in `allowed`.
  void expect_map(const YAML::Node& node, std::string_view what, std::initializer_list<std::string_view> allowed) const;
  void expect_map(const YAML::Node& node, std::string_view what) const;  // any keys
  void expect_sequence(const YAML::Node& node, std::string_view what) const;

  std::string string(const YAML::Node& node, std::string_view what) const;
  bool boolean(const YAML::Node& node, std::string_view what) const;
  std::int64_t integer(const YAML::Node& node, std::string_view what, std::int64_t min, std::int64_t max) const;
  // A duration from `min` to `max` (both inclusive).
  std::chrono::milliseconds duration(const YAML::Node& node, std::string_view what,
                                     std::chrono::milliseconds min = std::chrono::milliseconds(1),
                                     std::chrono::milliseconds max = std::chrono::hours(24 * 30)) const;
  std::vector<std::string> strings(const YAML::Node& node, std::string_view what) const;

  const std::string& file() const { return file_; }

 private:
  std::string file_;
};

}  // namespace sidekey
