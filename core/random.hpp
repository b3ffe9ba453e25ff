#pragma once
#include <string>

namespace sidekey {
// Cryptographically secure random bytes (OpenSSL RAND_bytes); throws on failure.
std::string random_bytes(std::size_t n);
// RFC 4122 version 4 UUID, lower-case.
std::string uuid_v4();
// Short opaque id for requests: 16 random bytes, hex.
std::string request_id();
}  // namespace sidekey
