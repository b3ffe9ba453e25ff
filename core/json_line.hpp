#pragma once
// A flat JSON object written straight into a string, for the one line per request of the audit
// log: no intermediate tree, no allocation beyond the output. Strings are escaped as JSON
// requires; bytes that are not UTF-8 become U+FFFD, as the diagnostic log's writer does.
#include <cstdint>
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
  char* room(std::size_t n);
  char* write_key(char* p, std::string_view k);
  void commit(char* end);
  template <class Integer>
  ObjectWriter& integer(std::string_view k, Integer value);
  std::string& out_;
  std::size_t used_;
  bool first_ = true;
};

}  // namespace sidekey::json
