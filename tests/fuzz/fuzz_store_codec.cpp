// libFuzzer target for the store file format (secrets/store_codec.hpp).
//
// Input: arbitrary bytes, used four ways: as plaintext records, as a sealed file, as the body of
// a file with a valid header (so GCM itself sees it), and as plaintext to seal.
// Checks, aborting on failure:
// - decode_records and unseal throw nothing but StoreError (never read past the input: ASan);
// - records that decode re-encode to exactly the input (the format is canonical), with valid
//   names, task ids and non-empty values;
// - seal then unseal round-trips; flipping any one byte of the sealed file, or cutting it
//   anywhere, makes unseal refuse.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "secrets/secret_name.hpp"
#include "secrets/store_codec.hpp"

using namespace sidekey::secrets;

namespace {

[[noreturn]] void fail(const char* what, const char* detail = "") {
  std::fprintf(stderr, "fuzz_store_codec: %s %s\n", what, detail);
  std::abort();
}
void check(bool ok, const char* what) {
  if (!ok) fail(what);
}

const SecretValue& key() {
  static const SecretValue k(std::string_view("0123456789abcdef0123456789ABCDEF"));
  return k;
}

// Runs f; true when it returned, false on StoreError; aborts on anything else.
template <class F>
bool only_store_error(const char* what, F f) {
  try {
    f();
    return true;
  } catch (const StoreError&) {
    return false;
  } catch (const std::exception& e) {
    fail(what, e.what());
  } catch (...) {
    fail(what, "non-standard exception");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 65536) return 0;
  std::string_view in(reinterpret_cast<const char*>(data), size);

  // Plaintext records.
  StoreSnapshot records;
  if (only_store_error("decode_records threw something other than StoreError:", [&] { records = decode_records(in); })) {
    for (const auto& r : records) {
      check(!r.meta.id.empty(), "decoded a record without id");
      check(valid_secret_name(r.meta.name), "decoded an invalid name");
      check(r.meta.scope.empty() || valid_task_id(r.meta.scope), "decoded an invalid task id");
      check(r.value && !r.value->empty(), "decoded an empty value");
    }
    std::string again = encode_records(records);
    check(again == in, "decoded records do not re-encode to the input");
    wipe(again);
  }

  // As a sealed file, and behind a valid header so that decryption itself runs. (A seed that
  // was sealed with the fuzz key opens: its content then goes through decode_records too.)
  for (const std::string& file : {std::string(in), std::string("SIDEKEY-STORE\x01", 14) + std::string(in)}) {
    std::string plain;
    if (only_store_error("unseal threw something other than StoreError:", [&] { plain = unseal(key(), file); })) {
      only_store_error("decode_records threw something other than StoreError:", [&] { (void)decode_records(plain); });
      wipe(plain);
    }
  }

  // Round trip, then tampering.
  std::string sealed = seal(key(), in);
  std::string plain;
  check(only_store_error("unseal of a sealed file threw:", [&] { plain = unseal(key(), sealed); }),
        "unseal refused what seal wrote");
  check(plain == in, "seal/unseal round trip");
  wipe(plain);
  std::size_t pos = size ? (static_cast<std::size_t>(data[0]) * 131 + size) % sealed.size() : sealed.size() / 2;
  std::string flipped = sealed;
  flipped[pos] = static_cast<char>(flipped[pos] ^ (size ? (data[size - 1] | 1) : 0x80));
  check(!only_store_error("unseal of a tampered file threw:", [&] { plain = unseal(key(), flipped); }),
        "unseal accepted a tampered file");
  std::string cut = sealed.substr(0, pos);
  check(!only_store_error("unseal of a truncated file threw:", [&] { plain = unseal(key(), cut); }),
        "unseal accepted a truncated file");
  return 0;
}
