#include "core/yaml_util.hpp"

#include <algorithm>
#include <unordered_set>

#include "core/duration.hpp"

namespace sidekey {

PositionedError::PositionedError(std::string file, int line, int column, std::string message)
    : std::runtime_error(file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + message),
      file_(std::move(file)),
      line_(line),
      column_(column),
      message_(std::move(message)) {}

YAML::Node YamlReader::parse(const std::string& text) const {
  try {
    return YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw PositionedError(file_, e.mark.line + 1, e.mark.column + 1, e.msg);
  }
}

void YamlReader::fail(const YAML::Mark& at, const std::string& message) const {
  int line = at.line >= 0 ? at.line + 1 : 1;
  int col = at.column >= 0 ? at.column + 1 : 1;
  throw PositionedError(file_, line, col, message);
}

void YamlReader::fail(const YAML::Node& at, const std::string& message) const { fail(at.Mark(), message); }

void YamlReader::expect_map(const YAML::Node& node, std::string_view what) const {
  if (!node.IsMap() && !node.IsNull()) fail(node, std::string(what) + " must be a mapping");
  if (!node.IsMap()) return;
  // yaml-cpp keeps a repeated key and lookups find the first: the second (another `rules:`
  // block, a second `data_dir`) would be ignored without a word. Refused instead.
  std::unordered_set<std::string_view> seen;
  for (const auto& kv : node) {
    if (!kv.first.IsScalar()) continue;
    std::string_view key = kv.first.Scalar();
    if (!seen.insert(key).second) fail(kv.first, "duplicate key '" + std::string(key) + "' in " + std::string(what));
  }
}

void YamlReader::expect_map(const YAML::Node& node, std::string_view what,
                            std::initializer_list<std::string_view> allowed) const {
  expect_map(node, what);
  if (node.IsNull()) return;
  for (const auto& kv : node) {
    if (!kv.first.IsScalar()) fail(kv.first, std::string(what) + ": keys must be strings");
    const std::string& key = kv.first.Scalar();
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      std::string known;
      for (auto a : allowed) known += (known.empty() ? "" : ", ") + std::string(a);
      fail(kv.first, "unknown key '" + key + "' in " + std::string(what) + " (known: " + known + ")");
    }
  }
}

void YamlReader::expect_sequence(const YAML::Node& node, std::string_view what) const {
  if (!node.IsSequence()) fail(node, std::string(what) + " must be a list");
}

std::string YamlReader::string(const YAML::Node& node, std::string_view what) const {
  if (!node.IsScalar()) fail(node, std::string(what) + " must be a string");
  return node.Scalar();
}

bool YamlReader::boolean(const YAML::Node& node, std::string_view what) const {
  if (node.IsScalar()) {
    const std::string& s = node.Scalar();
    if (s == "true") return true;
    if (s == "false") return false;
  }
  fail(node, std::string(what) + " must be true or false");
}

std::int64_t YamlReader::integer(const YAML::Node& node, std::string_view what, std::int64_t min,
                                 std::int64_t max) const {
  if (node.IsScalar()) {
    const std::string& s = node.Scalar();
    try {
      size_t used = 0;
      long long v = std::stoll(s, &used, 10);
      if (used == s.size() && v >= min && v <= max) return v;
    } catch (const std::exception&) {
    }
  }
  fail(node, std::string(what) + " must be an integer from " + std::to_string(min) + " to " + std::to_string(max));
}

namespace {
std::string duration_text(std::chrono::milliseconds d) {
  auto ms = d.count();
  if (ms % 86'400'000 == 0) return std::to_string(ms / 86'400'000) + "d";
  if (ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
  if (ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}
}  // namespace

std::chrono::milliseconds YamlReader::duration(const YAML::Node& node, std::string_view what,
                                               std::chrono::milliseconds min, std::chrono::milliseconds max) const {
  if (node.IsScalar())
    if (auto d = parse_duration(node.Scalar()); d && *d >= min && *d <= max) return *d;
  fail(node, std::string(what) + " must be a duration from " + duration_text(min) + " to " + duration_text(max) +
                 ", such as 500ms, 10s, 5m, 24h");
}

std::vector<std::string> YamlReader::strings(const YAML::Node& node, std::string_view what) const {
  expect_sequence(node, what);
  std::vector<std::string> out;
  for (const auto& item : node) out.push_back(string(item, std::string(what) + " entries"));
  return out;
}

}  // namespace sidekey
