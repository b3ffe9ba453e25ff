#pragma once
#include <string>

namespace sidekey {
// Cryptographically secure random bytes (OpenSSL RAND_bytes); throws on failure.
std::string random_bytes(std::size_t n);
// RFC 4122 version 4 UUID, lower-case.
std::string uuid_v4();
// Opaque id for requests, 32 hex digits: unique per process, unpredictable across processes.
std::string request_id();
}  // namespace sidekey
