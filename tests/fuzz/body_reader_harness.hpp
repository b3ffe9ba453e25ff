#pragma once
// What the harnesses of the proxy's two head parsers (fuzz_request_parser, fuzz_response_parser)
// share: Beast's own parser run over the whole input as the reference, and a BodyReader fed the
// body in pieces through a window of any size.
#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace body_reader_harness {

// Beast's parser over the whole input, then the end of the stream. `on_head(p)` runs once the
// head is parsed, before any body byte (the framing answers as the head left them: a trailer may
// change Beast's). Returns the first error, head or body; `consumed` is how much of the input
// the parser took (what follows is the next message's).
template <class BeastParser, class OnHead>
boost::system::error_code run_reference(BeastParser& p, std::string_view in, std::size_t& consumed, bool& head_ok,
                                        OnHead on_head) {
  namespace http = boost::beast::http;
  p.eager(false);  // the head alone first
  p.header_limit(1 << 20);
  // string_body reserves a declared Content-Length up front: a limit keeps the reference from
  // running out of memory on a length of gigabytes (the harnesses skip such inputs).
  p.body_limit(1 << 20);
  std::size_t at = 0;
  head_ok = false;
  while (!p.is_done()) {
    boost::system::error_code ec;
    const std::size_t used = p.put(boost::asio::buffer(in.data() + at, in.size() - at), ec);
    at += used;
    consumed = at;
    if (p.is_header_done() && !head_ok) {
      head_ok = true;
      on_head(p);
      p.eager(true);
    }
    if (ec == http::error::need_more) {
      if (!p.got_some()) return http::error::partial_message;
      p.put_eof(ec);
      return ec;
    }
    if (ec) return ec;
    if (used == 0 && at < in.size()) std::abort();  // Beast made no progress
    if (at == in.size() && !p.is_done()) {
      p.put_eof(ec);
      return ec;
    }
  }
  return {};
}

// The body `rest` fed to `r` (head parsed) in pieces of `step` bytes through a window of
// `window` bytes, the end of `rest` as the end of the stream, as the relay feeds it: a piece
// too small for the next element is given what is left at once.
struct Fed {
  std::string body;
  boost::system::error_code ec;
  std::size_t consumed = 0;  // of `rest`
};

template <class Parser>
Fed feed_body(Parser& r, std::string_view rest, std::size_t step, std::size_t window) {
  namespace http = boost::beast::http;
  Fed out;
  std::string pending(rest);
  std::vector<char> win(window);
  auto& bec = out.ec;
  for (int guard = 0; guard < 1000000 && !r.is_done(); ++guard) {
    r.body.data = win.data();
    r.body.size = win.size();
    if (pending.empty()) {
      r.put_eof(bec);
      out.body.append(win.data(), window - r.body.size);
      break;
    }
    const std::size_t n = std::min(step, pending.size());
    const std::size_t used = r.put(boost::asio::buffer(pending.data(), n), bec);
    out.body.append(win.data(), window - r.body.size);
    if (bec == http::error::need_buffer) bec = {};
    if (bec == http::error::need_more) {
      bec = {};
      if (used == 0 && n == pending.size()) {  // all of it, and still not a whole element
        r.put_eof(bec);
        break;
      }
      if (used == 0) {  // a piece too small for the next element: give it more at once
        const std::size_t used_all = r.put(boost::asio::buffer(pending.data(), pending.size()), bec);
        out.body.append(win.data(), window - r.body.size);
        if (bec == http::error::need_buffer || bec == http::error::need_more) bec = {};
        if (bec) break;
        pending.erase(0, used_all);
        out.consumed += used_all;
        if (used_all == 0) {
          r.put_eof(bec);
          break;
        }
        continue;
      }
    }
    if (bec) break;
    pending.erase(0, used);
    out.consumed += used;
  }
  return out;
}

// Feeds the body after `head_end` of `in` to `r` and holds it to the reference's run over the
// same input (`ref`, its first error `ref_ec` and what it consumed): the same error (or none),
// the same completion, the same body bytes, and the same end of the body in the input (what
// follows is the next message on the connection). `check(ok, what)` reports.
template <class Parser, class BeastParser, class Check>
void compare_body(Parser& r, const BeastParser& ref, const boost::system::error_code& ref_ec, std::size_t ref_consumed,
                  std::string_view in, std::size_t head_end, std::size_t step, std::size_t window, Check check) {
  const Fed fed = feed_body(r, in.substr(head_end), step, window);
  check(fed.ec == ref_ec, "body error differs");
  if (fed.ec) return;
  check(r.is_done() == ref.is_done(), "completion differs");
  check(fed.body == ref.get().body(), "body bytes differ");
  check(head_end + fed.consumed == ref_consumed, "body end differs");
}

}  // namespace body_reader_harness
