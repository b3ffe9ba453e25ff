#include "proxy/ws_scrubber.hpp"

#include "secrets/secret_value.hpp"

namespace sidekey::proxy {

WsFrameScrubber::WsFrameScrubber(std::shared_ptr<const policy::ScrubSet> set) : scrubber_(std::move(set)) {}

WsFrameScrubber::~WsFrameScrubber() { secrets::wipe(pending_); }

void WsFrameScrubber::emit(std::string& out, std::uint8_t opcode, bool fin, std::string_view payload) const {
  out.push_back(static_cast<char>((fin ? 0x80 : 0x00) | opcode));
  std::uint64_t n = payload.size();
  if (n < 126) {
    out.push_back(static_cast<char>(n));
  } else if (n <= 0xffff) {
    out.push_back(126);
    out.push_back(static_cast<char>(n >> 8));
    out.push_back(static_cast<char>(n & 0xff));
  } else {
    out.push_back(127);
    for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  }
  out.append(payload);  // server frames are not masked
}

bool WsFrameScrubber::feed(std::string_view in, std::string& out) {
  pending_.append(in);
  return parse(out);
}

bool WsFrameScrubber::parse(std::string& out) {
  std::size_t pos = 0;
  for (;;) {
    std::string_view rest(pending_.data() + pos, pending_.size() - pos);
    if (rest.size() < 2) break;
    auto b0 = static_cast<std::uint8_t>(rest[0]), b1 = static_cast<std::uint8_t>(rest[1]);
    bool fin = b0 & 0x80;
    std::uint8_t opcode = b0 & 0x0f;
    if (b0 & 0x70) return false;  // RSV bits: an extension we did not negotiate
    bool masked = b1 & 0x80;
    std::uint64_t len = b1 & 0x7f;
    std::size_t head = 2;
    if (len == 126) {
      if (rest.size() < 4) break;
      len = (static_cast<std::uint8_t>(rest[2]) << 8) | static_cast<std::uint8_t>(rest[3]);
      head = 4;
    } else if (len == 127) {
      if (rest.size() < 10) break;
      len = 0;
      for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<std::uint8_t>(rest[2 + i]);
      head = 10;
      if (len >> 62) return false;
    }
    if (masked) head += 4;
    if (len > kMaxFrame) return false;  // frames are held whole: bounded
    if (rest.size() < head || rest.size() - head < len) break;
    std::string payload(rest.substr(head, len));
    if (masked) {
      const char* key = rest.data() + head - 4;
      for (std::size_t i = 0; i < payload.size(); ++i) payload[i] ^= key[i % 4];
    }
    pos += head + len;
    std::string clean;
    if (opcode >= 0x8) {
      // Control frames: at most 125 bytes, never fragmented; scrubbed whole.
      clean = scrubber_.scrub_all(payload);
      if (clean.size() > 125) clean.resize(125);
      emit(out, opcode, true, clean);
    } else {
      if (opcode != 0x0) {  // a new data message
        if (in_message_) return false;
        in_message_ = true;
        emitted_first_ = false;
        message_opcode_ = opcode;
      } else if (!in_message_) {
        return false;  // a continuation without a message
      }
      scrubber_.feed(payload, clean);
      if (fin) scrubber_.finish(clean);
      // Held-back bytes go out with a later fragment; an empty fragment is valid.
      if (!clean.empty() || fin) {
        emit(out, emitted_first_ ? 0x0 : message_opcode_, fin, clean);
        emitted_first_ = true;
      }
      if (fin) in_message_ = false;
    }
    secrets::wipe(payload);
    secrets::wipe(clean);
  }
  pending_.erase(0, pos);
  return true;
}

}  // namespace sidekey::proxy
