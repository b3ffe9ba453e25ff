#pragma once
// The store's file format, as pure functions (fuzzed and unit-tested without files).
//
// file   = magic "SIDEKEY-STORE" | u8 version (1) | 12-byte nonce | ciphertext | 16-byte GCM tag
//          (magic and version are authenticated as AAD)
// plain  = u32 count | record*           (all integers big-endian)
// record = str id | str scope | str name | str value | u32 n | str host * n | str created | str updated
// str    = u32 length | bytes
#include <string>
#include <string_view>
#include <vector>

#include "secrets/store.hpp"

namespace sidekey::secrets {

// Serializes records. The returned buffer holds plaintext: the caller wipes it.
std::string encode_records(const StoreSnapshot& records);
// Throws StoreError on any malformation (never reads past the input).
StoreSnapshot decode_records(std::string_view plain);

std::string seal(const SecretValue& key, std::string_view plain);
// Throws StoreError: "not a sidekey store", "unsupported version", "truncated",
// "wrong key or tampered file". The returned buffer holds plaintext: the caller wipes it.
std::string unseal(const SecretValue& key, std::string_view file);

}  // namespace sidekey::secrets
