#include <boost/test/unit_test.hpp>

#include <random>

#include "secrets/secret_name.hpp"
#include "secrets/store_codec.hpp"
#include "secrets_test_util.hpp"

using namespace sidekey;
using namespace sidekey::secrets;

namespace {

StoredSecret make(std::string id, std::string scope, std::string name, std::string_view value,
                  std::vector<std::string> hosts = {}) {
  SecretMeta m{std::move(id), std::move(scope), std::move(name), std::move(hosts), "2026-01-01T00:00:00.000Z",
               "2026-01-02T00:00:00.000Z"};
  return StoredSecret{std::move(m), std::make_shared<const SecretValue>(value)};
}

StoreSnapshot sample() {
  StoreSnapshot s;
  s.push_back(make("id-1", "", "openai", "sk-test-aaaaaaaa", {"api.openai.com", "*.example.com:8443"}));
  s.push_back(make("id-2", "task-7", "api_key", "value with spaces and \xc3\xa9"));
  s.push_back(make("id-3", "", "a.b/c-d", std::string(kMaxValueBytes, 'x')));
  return s;
}

std::string sample_plain() { return encode_records(sample()); }

void check_same(const StoreSnapshot& a, const StoreSnapshot& b) {
  BOOST_REQUIRE_EQUAL(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    BOOST_CHECK_EQUAL(a[i].meta.id, b[i].meta.id);
    BOOST_CHECK_EQUAL(a[i].meta.scope, b[i].meta.scope);
    BOOST_CHECK_EQUAL(a[i].meta.name, b[i].meta.name);
    BOOST_CHECK(a[i].meta.allowed_hosts == b[i].meta.allowed_hosts);
    BOOST_CHECK_EQUAL(a[i].meta.created_at, b[i].meta.created_at);
    BOOST_CHECK_EQUAL(a[i].meta.updated_at, b[i].meta.updated_at);
    BOOST_CHECK(a[i].value->equals(b[i].value->reveal()));  // never print values
  }
}

// Runs `f` and returns the StoreError message; fails the test if anything else happens.
template <class F>
std::string store_error(F f) {
  try {
    f();
  } catch (const StoreError& e) {
    return e.what();
  } catch (const std::exception& e) {
    BOOST_ERROR("expected StoreError, got std::exception: " << e.what());
    return {};
  }
  BOOST_ERROR("expected StoreError, nothing thrown");
  return {};
}

bool contains(const std::string& s, std::string_view part) { return s.find(part) != std::string::npos; }

constexpr std::size_t kHeader = 14, kNonce = 12, kTag = 16;

}  // namespace

BOOST_AUTO_TEST_SUITE(store_codec)

BOOST_AUTO_TEST_CASE(records_round_trip) {
  std::string plain = sample_plain();
  check_same(sample(), decode_records(plain));
}

BOOST_AUTO_TEST_CASE(empty_snapshot_round_trips) {
  std::string plain = encode_records({});
  BOOST_CHECK_EQUAL(plain.size(), 4u);
  BOOST_CHECK(decode_records(plain).empty());
}

BOOST_AUTO_TEST_CASE(seal_round_trip) {
  SecretValue key = test::random_key();
  std::string plain = sample_plain();
  std::string file = seal(key, plain);
  BOOST_CHECK_EQUAL(file.size(), kHeader + kNonce + plain.size() + kTag);
  BOOST_CHECK_EQUAL(file.substr(0, 13), "SIDEKEY-STORE");
  BOOST_CHECK_EQUAL(static_cast<int>(file[13]), 1);
  BOOST_CHECK(unseal(key, file) == plain);
  check_same(sample(), decode_records(unseal(key, file)));
}

BOOST_AUTO_TEST_CASE(each_seal_uses_a_fresh_nonce) {
  SecretValue key = test::random_key();
  std::string a = seal(key, "same"), b = seal(key, "same");
  BOOST_CHECK(a.substr(kHeader, kNonce) != b.substr(kHeader, kNonce));
  BOOST_CHECK(a != b);
}

BOOST_AUTO_TEST_CASE(plaintext_is_not_in_the_sealed_bytes) {
  SecretValue key = test::random_key();
  std::string file = seal(key, sample_plain());
  BOOST_CHECK(!contains(file, "sk-test-aaaaaaaa"));
  BOOST_CHECK(!contains(file, "openai"));  // names are encrypted too
}

BOOST_AUTO_TEST_CASE(wrong_key_is_detected) {
  std::string file = seal(test::random_key(), sample_plain());
  std::string msg = store_error([&] { unseal(test::random_key(), file); });
  BOOST_CHECK(contains(msg, "wrong key or tampered file"));
}

BOOST_AUTO_TEST_CASE(key_must_be_32_bytes) {
  std::string msg = store_error([&] { seal(SecretValue("short"), "x"); });
  BOOST_CHECK(contains(msg, "32 bytes"));
}

BOOST_AUTO_TEST_CASE(flipped_byte_anywhere_is_detected) {
  SecretValue key = test::random_key();
  std::string plain = sample_plain();
  std::string file = seal(key, plain);
  const std::size_t n = file.size();
  // magic, version, nonce (first/last), ciphertext (first/middle/last), tag (first/last)
  std::vector<std::size_t> positions = {0, 5, 12, 13, kHeader, kHeader + kNonce - 1, kHeader + kNonce,
                                        kHeader + kNonce + plain.size() / 2, n - kTag - 1, n - kTag, n - 1};
  for (std::size_t pos : positions) {
    for (unsigned char bit : {0x01, 0x80}) {
      std::string bad = file;
      bad[pos] = static_cast<char>(bad[pos] ^ bit);
      std::string msg = store_error([&] { unseal(key, bad); });
      BOOST_TEST_CONTEXT("position " << pos) {
        if (pos < 13) BOOST_CHECK(contains(msg, "not a sidekey store"));
        else if (pos == 13) BOOST_CHECK(contains(msg, "unsupported version"));
        else BOOST_CHECK(contains(msg, "wrong key or tampered file"));
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(every_single_bit_flip_in_a_small_file_is_detected) {
  SecretValue key = test::random_key();
  std::string file = seal(key, encode_records({make("i", "", "n", "v")}));
  for (std::size_t pos = 0; pos < file.size(); ++pos) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = file;
      bad[pos] = static_cast<char>(bad[pos] ^ (1 << bit));
      BOOST_CHECK_THROW(unseal(key, bad), StoreError);
    }
  }
}

BOOST_AUTO_TEST_CASE(truncation_is_detected_at_every_length) {
  SecretValue key = test::random_key();
  std::string file = seal(key, sample_plain());
  for (std::size_t len = 0; len < file.size(); len += (len < 64 ? 1 : 997)) {
    std::string msg = store_error([&] { unseal(key, std::string_view(file).substr(0, len)); });
    BOOST_TEST_CONTEXT("length " << len) {
      if (len < kHeader + kNonce + kTag) BOOST_CHECK(contains(msg, "truncated"));
      else BOOST_CHECK(contains(msg, "wrong key or tampered file"));
    }
  }
  BOOST_CHECK_THROW(unseal(key, std::string_view(file).substr(0, file.size() - 1)), StoreError);
}

BOOST_AUTO_TEST_CASE(appended_bytes_are_detected) {
  SecretValue key = test::random_key();
  std::string file = seal(key, sample_plain()) + "x";
  BOOST_CHECK_THROW(unseal(key, file), StoreError);
}

BOOST_AUTO_TEST_CASE(wrong_magic_and_version) {
  SecretValue key = test::random_key();
  BOOST_CHECK(contains(store_error([&] { unseal(key, "{\"json\": \"not a store\"} padding padding padding"); }),
                       "not a sidekey store"));
  std::string file = seal(key, "x");
  file[13] = 2;
  BOOST_CHECK(contains(store_error([&] { unseal(key, file); }), "unsupported version 2"));
}

BOOST_AUTO_TEST_CASE(decode_rejects_every_truncation_of_valid_content) {
  std::string plain = encode_records({make("i", "t", "n", "v", {"h1", "h2"}), make("j", "", "m", "w")});
  for (std::size_t len = 0; len < plain.size(); ++len)
    BOOST_CHECK_THROW(decode_records(std::string_view(plain).substr(0, len)), StoreError);
  BOOST_CHECK_THROW(decode_records(plain + '\0'), StoreError);  // trailing bytes
}

BOOST_AUTO_TEST_CASE(decode_rejects_huge_counts_without_allocating) {
  BOOST_CHECK_THROW(decode_records(std::string("\xff\xff\xff\xff", 4)), StoreError);
  // one record whose host count claims 4 billion entries
  std::string plain = encode_records({make("i", "", "n", "v", {"h"})});
  std::size_t hosts_at = 4 + (4 + 1) + 4 + (4 + 1) + (4 + 1);
  plain.replace(hosts_at, 4, std::string("\xff\xff\xff\xff", 4));
  BOOST_CHECK_THROW(decode_records(plain), StoreError);
  // a string length past the end
  std::string bad = encode_records({make("i", "", "n", "v")});
  bad.replace(4, 4, std::string("\x7f\xff\xff\xff", 4));
  BOOST_CHECK_THROW(decode_records(bad), StoreError);
}

BOOST_AUTO_TEST_CASE(decode_rejects_invalid_names) {
  BOOST_CHECK_THROW(decode_records(encode_records({make("i", "", "bad name", "v")})), StoreError);
  BOOST_CHECK_THROW(decode_records(encode_records({make("i", "../x", "n", "v")})), StoreError);
  BOOST_CHECK_THROW(decode_records(encode_records({make("", "", "n", "v")})), StoreError);
}

BOOST_AUTO_TEST_CASE(decode_survives_random_garbage) {
  std::mt19937 rng(12345);
  StoreSnapshot small = sample();
  small.pop_back();  // without the 64 KiB value, so mutations land in the structure
  std::string valid = encode_records(small);
  for (int round = 0; round < 20000; ++round) {
    std::string input;
    if (round % 2 == 0) {
      // pure noise of random length
      input.resize(rng() % 96);
      for (auto& c : input) c = static_cast<char>(rng());
    } else {
      // valid content with a few random byte changes (mostly reaches deep into the parser)
      input = valid.substr(0, valid.size() - rng() % 3);
      for (int k = 0; k < 1 + static_cast<int>(rng() % 4); ++k)
        input[rng() % input.size()] = static_cast<char>(rng());
    }
    try {
      decode_records(input);
    } catch (const StoreError&) {
    } catch (...) {
      BOOST_FAIL("decode_records threw something other than StoreError at round " << round);
    }
  }
}

BOOST_AUTO_TEST_CASE(unseal_survives_random_garbage) {
  SecretValue key = test::random_key();
  std::mt19937 rng(777);
  for (int round = 0; round < 2000; ++round) {
    std::string input = round % 3 == 0 ? std::string("SIDEKEY-STORE\x01") : std::string();
    input.resize(input.size() + rng() % 80);
    for (std::size_t i = round % 3 == 0 ? 14 : 0; i < input.size(); ++i) input[i] = static_cast<char>(rng());
    BOOST_CHECK_THROW(unseal(key, input), StoreError);
  }
}

BOOST_AUTO_TEST_SUITE_END()
