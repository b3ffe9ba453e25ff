#include "policy/path_glob.hpp"

#include <cctype>
#include <vector>

namespace sidekey::policy {
namespace {

// Iterative wildcard match with single backtrack point: linear in practice, never exponential.
// In `covers` mode a '*' in `s` is a symbol only a '*' in `p` can absorb.
bool glob_match(std::string_view p, std::string_view s, bool s_star_special) {
  size_t pi = 0, si = 0, star = std::string_view::npos, mark = 0;
  while (si < s.size()) {
    bool s_is_star = s_star_special && s[si] == '*';
    if (pi < p.size() && p[pi] == '*') {
      star = pi++;
      mark = si;
    } else if (pi < p.size() && !s_is_star && p[pi] == s[si]) {
      ++pi;
      ++si;
    } else if (star != std::string_view::npos) {
      pi = star + 1;
      si = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_' || c == '~';
}

}  // namespace

std::optional<PathGlob> PathGlob::parse(std::string_view text, std::string* why) {
  auto bad = [&](std::string msg) -> std::optional<PathGlob> {
    if (why) *why = "path glob '" + std::string(text) + "' " + msg;
    return std::nullopt;
  };
  if (text.empty()) return bad("is empty");
  if (text.front() != '/' && text != "*" && text != "**") return bad("must start with '/'");
  for (unsigned char c : text) {
    if (c <= 0x20 || c == 0x7f) return bad("holds whitespace or a control character");
    if (c == '?' || c == '#') return bad("must not hold '?' or '#' (paths are matched without the query)");
    if (c == '[' || c == ']' || c == '{' || c == '}') return bad("uses unsupported glob syntax (only '*' is special)");
  }
  PathGlob g;
  g.text_ = std::string(text);
  for (char c : text)
    if (c != '*' || g.glob_.empty() || g.glob_.back() != '*') g.glob_ += c;
  return g;
}

bool PathGlob::matches(std::string_view path) const { return glob_match(glob_, path, false); }

bool PathGlob::covers(const PathGlob& other) const { return glob_match(glob_, other.glob_, true); }

bool path_is_normal(std::string_view path) {
  if (path.empty() || path[0] != '/' || path.find_first_of("%?") != std::string_view::npos) return false;
  for (std::size_t i = path.find("/."); i != std::string_view::npos; i = path.find("/.", i + 1)) {
    std::size_t end = i + 2;
    if (end < path.size() && path[end] == '.') ++end;
    if (end == path.size() || path[end] == '/') return false;  // a "." or ".." segment
  }
  return true;
}

std::string normalize_path(std::string_view target) {
  auto path = target.substr(0, target.find('?'));
  std::string decoded;
  decoded.reserve(path.size());
  for (size_t i = 0; i < path.size(); ++i) {
    if (path[i] == '%' && i + 2 < path.size()) {
      int h = hex(path[i + 1]), l = hex(path[i + 2]);
      if (h >= 0 && l >= 0 && unreserved(static_cast<unsigned char>(h << 4 | l))) {
        decoded += static_cast<char>(h << 4 | l);
        i += 2;
        continue;
      }
      if (h >= 0 && l >= 0) {  // keep reserved escapes, in one case, so globs compare stably
        decoded += '%';
        decoded += static_cast<char>(std::toupper(static_cast<unsigned char>(path[i + 1])));
        decoded += static_cast<char>(std::toupper(static_cast<unsigned char>(path[i + 2])));
        i += 2;
        continue;
      }
    }
    decoded += path[i];
  }
  if (decoded.empty() || decoded.front() != '/') decoded.insert(decoded.begin(), '/');
  // remove_dot_segments over '/'-separated segments.
  std::vector<std::string_view> out;
  std::string_view rest = std::string_view(decoded).substr(1);
  bool trailing_slash = false;
  while (true) {
    auto slash = rest.find('/');
    auto seg = rest.substr(0, slash);
    bool last = slash == std::string_view::npos;
    if (seg == ".") {
      trailing_slash = last;
    } else if (seg == "..") {
      if (!out.empty()) out.pop_back();
      trailing_slash = last;
    } else {
      out.push_back(seg);
      trailing_slash = false;
    }
    if (last) break;
    rest = rest.substr(slash + 1);
  }
  std::string result;
  for (auto seg : out) {
    result += '/';
    result += seg;
  }
  if (trailing_slash || result.empty()) result += '/';
  return result;
}

}  // namespace sidekey::policy
