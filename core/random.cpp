#include "core/random.hpp"

#include <openssl/rand.h>

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

void put_hex64(char* out, std::uint64_t v) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = 15; i >= 0; --i, v >>= 4) out[i] = kHex[v & 0xf];
}
}  // namespace

// Request ids need to be unique and unguessable across restarts, not secret: a random 64-bit
// prefix drawn once per thread, then a mixed per-thread counter. RAND_bytes per request cost a
// getpid() system call and a DRBG round on the request path.
std::string request_id() {
  struct State {
    std::uint64_t prefix, key, counter = 0;
    State() {
      std::string seed = random_bytes(16);
      std::memcpy(&prefix, seed.data(), 8);
      std::memcpy(&key, seed.data() + 8, 8);
    }
  };
  thread_local State st;
  std::string out(32, '0');
  put_hex64(out.data(), st.prefix);
  put_hex64(out.data() + 16, mix64(st.key + ++st.counter));
  return out;
}

}  // namespace sidekey
