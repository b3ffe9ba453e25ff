// libFuzzer target for proxy/request_parser.hpp: RequestParser, which reads a client's request
// head in one pass and judges its framing itself, against what the proxy ran before it on the
// same bytes: the raw-head checks (bare LF, CR or NUL inside a line, obs-fold, whitespace before
// a colon, a line without a name), Beast's request_parser<string_body>, then the framing checks
// on the parsed fields (Content-Length twice, with Transfer-Encoding, Transfer-Encoding twice,
// in HTTP/1.0 or other than "chunked"). That pipeline is kept here as the reference.
//
// Input: a byte for the piece size, a byte for the window size, then the bytes the client sends
// (stray CRLFs before the request line are dropped first, as the session's head read does).
// Checks, aborting on failure:
// - never looser: a head the reference refuses is refused; a head RequestParser accepts, the
//   reference accepts;
// - stricter only where documented: a head the reference accepts may be refused only with
//   bad_content_length (a Content-Length of more than 19 digits);
// - both accept: the same method (and verb), target, version, fields (in order, names and values
//   as sent without surrounding whitespace; each name's values in order), keep_alive(), chunked(), content_length(); then the
//   body fed in pieces through a window of any size, the end of the input as the end of the
//   stream: the same error (or none), the same completion, the same body bytes, and the same end
//   of the body in the input (what follows is the next request).
//
// Build: scripts/fuzz.sh builds it with the others (build/fuzz).
#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/encoding.hpp"
#include "proxy/framing.hpp"
#include "proxy/request_parser.hpp"
#include "body_reader_harness.hpp"

namespace http = boost::beast::http;
using sidekey::iequals;
using sidekey::proxy::RequestParser;

namespace {
[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_request_parser: %s\n", what);
  std::abort();
}
void check(bool ok, const char* what) {
  if (!ok) fail(what);
}

// The reference's raw-head checks (proxy/framing.cpp's raw_head_problem before RequestParser).
bool raw_head_refused(std::string_view head) {
  std::size_t line_start = 0;
  bool first = true;
  while (line_start < head.size()) {
    std::size_t lf = head.find('\n', line_start);
    if (lf == std::string_view::npos) return true;
    if (lf == line_start || head[lf - 1] != '\r') return true;  // bare LF
    std::string_view line = head.substr(line_start, lf - 1 - line_start);
    if (line.empty()) break;  // the blank line
    for (char c : line)
      if (c == '\r' || c == '\0') return true;
    if (!first) {
      if (line[0] == ' ' || line[0] == '\t') return true;  // obs-fold
      auto colon = line.find(':');
      if (colon == std::string_view::npos || colon == 0) return true;
      char before = line[colon - 1];
      if (before == ' ' || before == '\t') return true;
    }
    first = false;
    line_start = lf + 1;
  }
  return false;
}

using Fields = std::vector<std::pair<std::string, std::string>>;

// The reference's framing checks on the parsed fields (framing_problem before RequestParser).
bool framing_refused(const Fields& fields, unsigned version) {
  int lengths = 0, codings = 0;
  std::string coding;
  for (const auto& [name, value] : fields) {
    if (iequals(name, "content-length")) ++lengths;
    if (iequals(name, "transfer-encoding")) {
      ++codings;
      coding = value;
    }
  }
  if (lengths > 1 || (codings && lengths) || codings > 1 || (codings && version < 11)) return true;
  return codings == 1 && !iequals(coding, "chunked");
}

// Each name (any letter case) with its values in order.
template <class Named>
std::map<std::string, std::vector<std::string>> grouped(const Named& fields) {
  std::map<std::string, std::vector<std::string>> out;
  for (const auto& f : fields) {
    const auto& [name, value] = f;
    out[sidekey::ascii_lower(name)].emplace_back(value);
  }
  return out;
}

struct Reference {
  http::request_parser<http::string_body> p;
  boost::system::error_code ec;  // the first error, head or body
  bool head_ok = false;
  std::size_t consumed = 0;  // of the input (what follows is the next request's)
  Fields fields;
  bool keep_alive = false, chunked = false;
  boost::optional<std::uint64_t> content_length;
};

void run_reference(Reference& b, std::string_view in) {
  b.ec = body_reader_harness::run_reference(b.p, in, b.consumed, b.head_ok, [&](auto& p) {
    for (const auto& f : p.get()) b.fields.emplace_back(std::string(f.name_string()), std::string(f.value()));
    b.keep_alive = p.keep_alive();
    b.chunked = p.chunked();
    b.content_length = p.content_length();
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::size_t step = 2 + data[0] % 63;  // (Beast 1.81 asserts on 1-byte pieces after a final chunk)
  const std::size_t window = 1 + data[1] % 48;
  std::string_view in(reinterpret_cast<const char*>(data) + 2, size - 2);
  while (in.size() >= 2 && in[0] == '\r' && in[1] == '\n') in.remove_prefix(2);  // as read_raw_head

  const std::size_t head_end = sidekey::proxy::find_head_end(in);
  if (head_end == std::string_view::npos) return 0;  // the proxy reads on (or refuses at its limit)
  const std::string_view raw = in.substr(0, head_end);

  Reference b;
  const bool raw_refused = raw_head_refused(raw);
  if (!raw_refused) run_reference(b, in);
  if (b.ec == http::error::body_limit) return 0;  // the reference's own limit, not a finding
  // What the reference's head verdict was: the raw checks, Beast's head (the whole of `raw`),
  // then the framing checks.
  const bool ref_ok = !raw_refused && b.head_ok && !framing_refused(b.fields, b.p.get().version());

  RequestParser r;
  const auto ec = r.put_head(raw);
  if (ec) {
    check(!r.problem().empty(), "refused without a reason for the client");
    check(!ref_ok || ec == http::error::bad_content_length, "refused a head the reference accepts, for a reason not documented");
    return 0;
  }
  check(ref_ok, "accepted a head the reference refuses");
  check(b.consumed >= head_end, "Beast's head is longer than the head");
  const auto& bh = b.p.get();
  check(r.version == bh.version(), "version");
  check(r.method_string == std::string_view(bh.method_string().data(), bh.method_string().size()), "method");
  check(r.method == bh.method(), "verb");
  check(r.target == std::string_view(bh.target().data(), bh.target().size()), "target");
  // Beast's fields keep a name's values together, after the first of that name; ours keep the
  // order they came in: compared by name, each name's values in order.
  check(grouped(r.fields) == grouped(b.fields), "fields");
  check(r.chunked() == b.chunked, "chunked()");
  const auto& bl = b.content_length;
  check(r.content_length().has_value() == bl.has_value() && (!bl || *r.content_length() == *bl), "content_length()");
  check(!r.need_eof(), "a request body runs to the end of the stream");
  check(r.keep_alive() == b.keep_alive, "keep_alive()");

  // The body, in pieces of `step` through a window of `window` bytes.
  body_reader_harness::compare_body(r, b.p, b.ec, b.consumed, in, head_end, step, window, check);
  return 0;
}
