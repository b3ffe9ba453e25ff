// libFuzzer target for proxy/response_parser.hpp: ResponseParser, which reads an upstream's
// response head in one pass and judges its framing itself, against Beast's own
// parser<false, string_body> on the same bytes.
//
// Input: a byte for HEAD-style skipping, a byte for the piece size, a byte for the window size,
// then the response bytes. Checks, aborting on failure:
// - never looser: a head Beast refuses is refused; a head ResponseParser accepts, Beast accepts;
// - stricter only where documented: a head Beast accepts may be refused only with bad_obs_fold,
//   bad_content_length or bad_transfer_encoding (folded lines, Content-Length lists or long
//   numbers, two Transfer-Encodings, Transfer-Encoding with Content-Length);
// - both accept: the same version, status, reason; the same fields (each name's values in the
//   same order); the same keep_alive(), chunked(), content_length(), need_eof() as the head
//   left them; then, the body
//   fed in pieces through a window of any size and the end of the input as the end of the
//   stream: the same error (or none), the same completion, the same body bytes, and the same
//   end of the body in the input (what follows belongs to the next response).
//
// Build: scripts/fuzz.sh builds it with the others (build/fuzz).
#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/encoding.hpp"
#include "proxy/framing.hpp"
#include "proxy/response_parser.hpp"
#include "body_reader_harness.hpp"

namespace http = boost::beast::http;
using sidekey::proxy::ResponseParser;

namespace {
[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_response_parser: %s\n", what);
  std::abort();
}
void check(bool ok, const char* what) {
  if (!ok) fail(what);
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

struct Beast {
  http::response_parser<http::string_body> p;
  boost::system::error_code ec;  // the first error, head or body
  bool head_ok = false;
  std::size_t consumed = 0;  // of the input, by the parser (what follows is the next response's)
  std::map<std::string, std::vector<std::string>> fields;  // the head's (trailers join them later)
  // The framing answers as the head left them: Beast applies a trailer's Connection field to
  // its flags, while the proxy decides reuse from the head (a trailer may not carry framing or
  // connection fields, RFC 9110 6.5.1).
  bool keep_alive = false, chunked = false, need_eof = false;
  boost::optional<std::uint64_t> content_length;
};

// Beast's parser over the whole input, then the end of the stream.
void run_beast(Beast& b, std::string_view in, bool skip) {
  b.p.skip(skip);
  b.ec = body_reader_harness::run_reference(b.p, in, b.consumed, b.head_ok, [&](auto& p) {
    for (const auto& f : p.get())
      b.fields[lower(std::string_view(f.name_string().data(), f.name_string().size()))].emplace_back(f.value());
    b.keep_alive = p.keep_alive();
    b.chunked = p.chunked();
    b.need_eof = p.need_eof();
    b.content_length = p.content_length();
  });
}

bool stricter_refusal(const boost::system::error_code& ec) {
  return ec == http::error::bad_obs_fold || ec == http::error::bad_content_length ||
         ec == http::error::bad_transfer_encoding;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return 0;
  const bool skip = data[0] & 1;
  const std::size_t step = 2 + data[1] % 63;  // (see fuzz_message_parser: Beast 1.81 asserts on 1-byte pieces
                                              // after a final chunk, in builds with assertions)
  const std::size_t window = 1 + data[2] % 48;
  const std::string_view in(reinterpret_cast<const char*>(data) + 3, size - 3);

  Beast b;
  run_beast(b, in, skip);
  if (b.ec == http::error::body_limit) return 0;  // the reference's own limit, not a finding

  const std::size_t head_end = sidekey::proxy::find_head_end(in);
  ResponseParser r;
  r.skip(skip);
  if (head_end == std::string_view::npos) {
    // The proxy would read on, and a stream that ends here is a partial message: Beast cannot
    // have finished a head either.
    check(!b.head_ok, "Beast parsed a head that has no blank line");
    return 0;
  }
  const auto ec = r.put_head(in.substr(0, head_end));
  if (ec) {
    check(!b.head_ok || stricter_refusal(ec), "refused a head Beast accepts, for a reason not documented");
    return 0;
  }
  check(b.head_ok, "accepted a head Beast refuses");
  const auto& bh = b.p.get();
  check(r.version == bh.version(), "version");
  check(r.status == static_cast<int>(bh.result_int()), "status");
  // (Beast's reason() stands in the status's obsolete reason for an empty one.)
  const std::string_view beast_reason(bh.reason().data(), bh.reason().size());
  const auto standard = http::obsolete_reason(bh.result());
  check(r.reason == beast_reason || (r.reason.empty() && beast_reason == std::string_view(standard.data(), standard.size())),
        "reason");
  std::map<std::string, std::vector<std::string>> ours;
  for (const auto& h : r.fields) ours[lower(h.name)].emplace_back(h.value);
  check(ours == b.fields, "fields");
  check(r.chunked() == b.chunked, "chunked()");
  const auto& bl = b.content_length;
  check(r.content_length().has_value() == bl.has_value() && (!bl || *r.content_length() == *bl), "content_length()");
  check(r.need_eof() == b.need_eof, "need_eof()");
  check(r.keep_alive() == b.keep_alive, "keep_alive()");

  // The body, in pieces of `step` through a window of `window` bytes.
  body_reader_harness::compare_body(r, b.p, b.ec, b.consumed, in, head_end, step, window, check);
  return 0;
}
