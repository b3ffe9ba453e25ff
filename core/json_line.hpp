#pragma once
// A flat JSON object written straight into a string, for the one line per request of the audit
// log: no intermediate tree, no allocation beyond the output. Strings are escaped as JSON
// requires; bytes that are not UTF-8 become U+FFFD, as the diagnostic log's writer does.
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace sidekey::json {

// Appends `text` as a JSON string literal (with its quotes).
void append_quoted(std::string& out, std::string_view text);

// Keys are names the code chooses ("request_id", "status"): written without escaping. Values
// are escaped.
class ObjectWriter {
 public:
  // Appends to `out`; the object is complete once close() is called (until then `out` may hold
  // more bytes than written).
  explicit ObjectWriter(std::string& out);
  ObjectWriter& str(std::string_view key, std::string_view value);
  ObjectWriter& str_or_null(std::string_view key, std::string_view value);  // "" -> null
  ObjectWriter& num(std::string_view key, std::int64_t value);
  ObjectWriter& num(std::string_view key, std::uint64_t value);
  ObjectWriter& num(std::string_view key, int value) { return num(key, static_cast<std::int64_t>(value)); }
  ObjectWriter& num(std::string_view key, double value);  // shortest round-trip form; NaN/inf -> null
  // Rounded to three decimals (milliseconds to the microsecond): the text num() would give for
  // the rounded value, e.g. 12.5 for 12.4996; NaN/inf -> null.
  ObjectWriter& millis(std::string_view key, double value);
  ObjectWriter& null(std::string_view key);
  ObjectWriter& strings(std::string_view key, const std::vector<std::string>& values);
  void close();

 private:
  // The small steps are inline, so that a key the caller spells as a literal is copied as a
  // constant (a few moves, not a call to memcpy): a line has twenty of them.
  char* room(std::size_t n) {
    if (used_ + n > out_.size()) [[unlikely]]
      grow(n);
    return out_.data() + used_;
  }
  void grow(std::size_t n);
  // `,"key":` at p (room for k.size() + 4 bytes); returns the end. Keys are the caller's own
  // names (see above): written as they are.
  char* write_key(char* p, std::string_view k) {
    *p = ',';
    p += first_ ? 0 : 1;
    first_ = false;
    *p++ = '"';
    std::memcpy(p, k.data(), k.size());
    p += k.size();
    *p++ = '"';
    *p++ = ':';
    return p;
  }
  void commit(char* end) { used_ = static_cast<std::size_t>(end - out_.data()); }
  template <class Integer>
  ObjectWriter& integer(std::string_view k, Integer value);
  std::string& out_;
  std::size_t used_;
  bool first_ = true;
};

// Writes `text` as a JSON string literal at p, which has room for quoted_bound(text.size())
// bytes; returns the end.
char* write_quoted(char* p, std::string_view text);
// The most bytes write_quoted() writes for `size` bytes of text: six per byte (\u00XX), quotes.
constexpr std::size_t quoted_bound(std::size_t size) { return 6 * size + 2; }

inline ObjectWriter& ObjectWriter::str(std::string_view k, std::string_view value) {
  char* p = room(k.size() + 4 + quoted_bound(value.size()));
  commit(write_quoted(write_key(p, k), value));
  return *this;
}

}  // namespace sidekey::json
