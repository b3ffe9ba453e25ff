#include "core/random.hpp"

#include <openssl/rand.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "core/encoding.hpp"

namespace sidekey {

std::string random_bytes(std::size_t n) {
  std::string out(n, '\0');
  if (n && RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1)
    throw std::runtime_error("random number generator failed");
  return out;
}

std::string uuid_v4() {
  std::string b = random_bytes(16);
  b[6] = static_cast<char>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<char>((b[8] & 0x3f) | 0x80);
  std::string h = hex_encode(b);
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) + "-" + h.substr(20);
}

namespace {
// splitmix64's finalizer: a bijection on 64 bits, so distinct counters give distinct outputs.
std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Two hex digits per byte value, looked up a byte at a time.
constexpr auto kHexPairs = [] {
  constexpr char kHex[] = "0123456789abcdef";
  std::array<char, 512> t{};
  for (int b = 0; b < 256; ++b) {
    t[2 * b] = kHex[b >> 4];
    t[2 * b + 1] = kHex[b & 0xf];
  }
  return t;
}();

void put_hex64(char* out, std::uint64_t v) {
  for (int i = 7; i >= 0; --i, v >>= 8) std::memcpy(out + 2 * i, &kHexPairs[2 * (v & 0xff)], 2);
}
}  // namespace

// Request ids need to be unique and unguessable across restarts, not secret: a random 64-bit
// prefix drawn once per thread, then a mixed per-thread counter. RAND_bytes per request cost a
// getpid() system call and a DRBG round on the request path.
std::string request_id() {
  struct State {
    std::uint64_t key, counter = 0;
    char prefix[16];  // the prefix's hex digits
    State() {
      std::string seed = random_bytes(16);
      std::uint64_t prefix_bits;
      std::memcpy(&prefix_bits, seed.data(), 8);
      std::memcpy(&key, seed.data() + 8, 8);
      put_hex64(prefix, prefix_bits);
    }
  };
  thread_local State st;
  std::string out(32, '0');
  std::memcpy(out.data(), st.prefix, 16);
  put_hex64(out.data() + 16, mix64(st.key + ++st.counter));
  return out;
}

}  // namespace sidekey
