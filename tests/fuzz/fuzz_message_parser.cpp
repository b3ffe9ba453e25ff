// libFuzzer target for proxy/message_parser.hpp: MessageParser, whose callbacks put a head
// straight into policy::Headers and a body through a window, against Beast's own
// parser<isRequest, string_body> on the same bytes, fed in the same pieces.
//
// Input: a byte choosing request or response and HEAD-style skipping, a byte for the piece size,
// a byte for the window size, then the message bytes. Checks, aborting on failure:
// - both parsers stop with the same error (or none), at the same point of the input;
// - on success: the same method, target, version, status, reason; the same head fields: each
//   name's values in the same order (Beast's fields keep equal names together, MessageParser
//   keeps the order they came in), none of the trailers that Beast adds later;
//   the same keep_alive(), chunked(), content_length(), need_eof(); the same body bytes, however
//   small the window.
//
// Build: scripts/fuzz.sh builds it with the others (build/fuzz).
#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "core/encoding.hpp"
#include "proxy/message_parser.hpp"

namespace http = boost::beast::http;

namespace {
[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_message_parser: %s\n", what);
  std::abort();
}
void check(bool ok, const char* what) {
  if (!ok) fail(what);
}

struct Outcome {
  boost::system::error_code ec;
  std::size_t consumed = 0;
  bool done = false;
};

// Feeds `input` in pieces of `step` bytes to `put` (which returns the bytes used, setting ec);
// `drain` is called on need_buffer (the window is full), `head` once the head is parsed (put()
// stops there first, as the proxy's head read does). Stops at the end, an error or done.
template <class Parser, class Drain, class Head>
Outcome feed(Parser& p, std::string_view input, std::size_t step, Drain drain, Head head) {
  Outcome out;
  std::string pending;
  std::size_t at = 0;
  for (int guard = 0; guard < 100000; ++guard) {
    if (p.is_done()) {
      out.done = true;
      return out;
    }
    boost::system::error_code ec;
    const bool had_head = p.is_header_done();
    std::size_t used = pending.empty() ? 0 : p.put(boost::asio::buffer(pending), ec);
    if (pending.empty()) ec = http::error::need_more;
    pending.erase(0, used);
    out.consumed += used;
    if (!had_head && p.is_header_done()) {
      head();
      p.eager(true);
    }
    if (ec == http::error::need_buffer) {
      drain();
      continue;
    }
    if (ec == http::error::need_more) {
      if (at >= input.size()) {
        boost::system::error_code eof = http::error::need_more;
        if (p.got_some()) p.put_eof(eof);  // (Beast's reads call it only then: it asserts so)
        out.ec = eof;
        out.done = !eof && p.is_done();
        return out;
      }
      const std::size_t n = std::min(step, input.size() - at);
      pending.append(input.substr(at, n));
      at += n;
      continue;
    }
    if (ec) {
      out.ec = ec;
      return out;
    }
  }
  fail("a parser made no progress");
}

template <bool isRequest>
void compare(std::string_view input, std::size_t step, std::size_t window, bool skip) {
  http::parser<isRequest, http::string_body> beast;
  beast.eager(false);
  // The same limit on both: Beast's string_body reserves a declared Content-Length up front, and
  // a length of tens of gigabytes ran the harness out of memory (not the code under test).
  beast.body_limit(1 << 20);
  beast.header_limit(8192);
  sidekey::proxy::MessageParser<isRequest> ours;
  ours.eager(false);
  ours.body_limit(1 << 20);
  ours.header_limit(8192);
  if constexpr (!isRequest) {
    beast.skip(skip);
    ours.skip(skip);
  }

  // (name in lower case, name, value) of each head field, grouped by name in a stable order.
  using Fields = std::vector<std::tuple<std::string, std::string, std::string>>;
  auto grouped = [](Fields f) {
    std::stable_sort(f.begin(), f.end(), [](const auto& x, const auto& y) { return std::get<0>(x) < std::get<0>(y); });
    return f;
  };
  Fields beast_head;
  Outcome b = feed(
      beast, input, step, [] { fail("Beast's string_body asked for a buffer"); },
      [&] {
        for (const auto& f : beast.get())
          beast_head.emplace_back(sidekey::ascii_lower(f.name_string()), std::string(f.name_string()), std::string(f.value()));
      });
  std::string body, buf(window, '\0');
  ours.body.data = buf.data();
  ours.body.size = window;
  auto take = [&] {
    body.append(buf.data(), window - ours.body.size);
    ours.body.data = buf.data();
    ours.body.size = window;
  };
  Outcome o = feed(ours, input, step, take, [] {});
  take();

  check(b.ec == o.ec, "the parsers stopped with different errors");
  check(b.consumed == o.consumed, "the parsers consumed different amounts");
  check(b.done == o.done, "one parser finished and the other did not");
  check(beast.is_header_done() == ours.is_header_done(), "heads done differ");
  if (!ours.is_header_done()) return;

  const auto& m = beast.get();
  check(m.version() == ours.version, "version differs");
  if constexpr (isRequest) {
    check(m.method() == ours.method, "method differs");
    check(std::string_view(m.method_string()) == ours.method_string, "method string differs");
    check(std::string_view(m.target()) == ours.target, "target differs");
  } else {
    check(m.result_int() == static_cast<unsigned>(ours.status), "status differs");
    // Beast reads an empty reason phrase as the standard one; so does render_response_head.
    const std::string_view reason = ours.reason.empty()
                                        ? std::string_view(http::obsolete_reason(static_cast<http::status>(ours.status)))
                                        : std::string_view(ours.reason);
    check(std::string_view(m.reason()) == reason, "reason differs");
  }
  Fields ours_head;
  for (const auto& f : ours.fields) ours_head.emplace_back(sidekey::ascii_lower(f.name), f.name, f.value);
  check(grouped(beast_head) == grouped(ours_head), "the head fields differ (or trailers were kept)");
  check(beast.keep_alive() == ours.keep_alive(), "keep_alive differs");
  check(beast.chunked() == ours.chunked(), "chunked differs");
  check(beast.content_length() == ours.content_length(), "content_length differs");
  check(beast.need_eof() == ours.need_eof(), "need_eof differs");
  if (b.done) check(m.body() == body, "the body differs");
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3 || size > 8192) return 0;
  const std::uint8_t mode = data[0];
  // Pieces of at least 2 bytes: Beast 1.81's parser asserts (in builds with assertions, as this
  // one) when the bytes after a final chunk ("0\r\n") grow one at a time, its own parser as
  // much as ours; release builds parse such input correctly.
  const std::size_t step = 2 + data[1] % 63;
  const std::size_t window = 1 + data[2] % 32;
  std::string_view input(reinterpret_cast<const char*>(data + 3), size - 3);
  if (mode & 1) compare<true>(input, step, window, false);
  else compare<false>(input, step, window, (mode & 2) != 0);
  return 0;
}
