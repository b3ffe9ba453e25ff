#pragma once
// Scrubbing of WebSocket frames from the upstream (after a 101 on an inject rule). Frames are
// parsed so that the scrubber sees each message's payload as one stream — a secret split across
// fragments is still caught — and re-framed with the scrubbed lengths. Control frames are
// scrubbed whole. Pure code: bytes in, bytes out.
//
// The upgrade request loses Sec-WebSocket-Extensions when scrubbing applies, so no
// permessage-deflate payload (which the scrubber could not read) is ever negotiated; a frame
// with RSV bits set is therefore a protocol error and fails the stream.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "policy/scrubber.hpp"

namespace sidekey::proxy {

class WsFrameScrubber {
 public:
  explicit WsFrameScrubber(std::shared_ptr<const policy::ScrubSet> set);
  ~WsFrameScrubber();
  WsFrameScrubber(const WsFrameScrubber&) = delete;
  WsFrameScrubber& operator=(const WsFrameScrubber&) = delete;
  static constexpr std::uint64_t kMaxFrame = 16u << 20;  // a larger frame fails the stream

  // Appends the frames that can be emitted so far to `out`. Returns false on a malformed or
  // compressed frame (the caller closes both sides).
  bool feed(std::string_view in, std::string& out);
  std::size_t replaced() const { return scrubber_.replaced(); }

 private:
  bool parse(std::string& out);
  void emit(std::string& out, std::uint8_t opcode, bool fin, std::string_view payload) const;

  policy::Scrubber scrubber_;
  std::string pending_;        // bytes of an incomplete frame header or payload
  bool in_message_ = false;    // inside a fragmented data message
  bool emitted_first_ = false;  // the message's first frame (with its opcode) has gone out
  std::uint8_t message_opcode_ = 0;
};

}  // namespace sidekey::proxy
