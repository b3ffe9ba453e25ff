#pragma once
// `match.paths` globs: '*' matches any run of characters, '/' included ("/v1/*" matches
// "/v1/chat/completions"); everything else is literal. Globs are matched against the
// normalized request path (normalize_path), never the query.
#include <optional>
#include <string>
#include <string_view>

namespace sidekey::policy {

class PathGlob {
 public:
  // A glob starts with '/' (or is "*"), holds no whitespace or control characters, and none of
  // ? # [ ] { } — reserved so that a pattern written for another glob dialect is refused
  // rather than silently matched literally. "**" means the same as "*".
  static std::optional<PathGlob> parse(std::string_view text, std::string* why = nullptr);

  const std::string& text() const { return text_; }
  bool matches(std::string_view path) const;
  // Every path `other` matches, this matches too. Sound (never claims coverage wrongly), which
  // is what the shadowing warning needs.
  bool covers(const PathGlob& other) const;

 private:
  std::string text_;
  std::string glob_;  // with runs of '*' collapsed
};

// The path part of an origin-form target, as rules see it: the query dropped, percent-encoded
// unreserved characters decoded, "." and ".." segments removed (RFC 3986 5.2.4), so that
// "/v1/../admin" and "/%61dmin" cannot slip past a rule on "/admin/*". Encoded reserved
// characters (%2F…) stay encoded.
std::string normalize_path(std::string_view target);

// Whether `path` (no query) is already what normalize_path() makes of it: it begins with '/',
// holds no '%' and no "." or ".." segment. Most paths are: matched as they are, without a copy.
bool path_is_normal(std::string_view path);

}  // namespace sidekey::policy
