#include <boost/test/unit_test.hpp>

#include <sys/stat.h>

#include "core/encoding.hpp"
#include "secrets/store.hpp"
#include "secrets_test_util.hpp"

using namespace sidekey;
using namespace sidekey::secrets;
namespace fs = std::filesystem;

namespace {

// Each test starts without SIDEKEY_STORE_KEY, whatever the caller's environment holds.
struct Fixture {
  test::EnvVar no_env{"SIDEKEY_STORE_KEY", std::nullopt};
  test::TempDir dir;
};

std::string key_error(const fs::path& key_file, const fs::path& data_dir) {
  try {
    load_store_key(key_file, data_dir);
  } catch (const StoreError& e) {
    return e.what();
  }
  BOOST_ERROR("load_store_key should have failed");
  return {};
}

unsigned mode_of(const fs::path& p) {
  struct stat st {};
  BOOST_REQUIRE_EQUAL(::stat(p.c_str(), &st), 0);
  return st.st_mode & 0777;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(store_key)

BOOST_FIXTURE_TEST_CASE(from_environment, Fixture) {
  std::string raw = random_bytes(32);
  test::EnvVar env("SIDEKEY_STORE_KEY", base64_encode(raw));
  SecretValue key = load_store_key(dir / "ignored.key", dir / "data");
  BOOST_CHECK(key.equals(raw));
  BOOST_CHECK(!fs::exists(dir / "data"));  // nothing generated
}

BOOST_FIXTURE_TEST_CASE(environment_wins_over_key_file, Fixture) {
  std::string env_raw = random_bytes(32), file_raw = random_bytes(32);
  test::write_plain(dir / "k", base64_encode(file_raw));
  test::EnvVar env("SIDEKEY_STORE_KEY", base64_encode(env_raw));
  BOOST_CHECK(load_store_key(dir / "k", dir.path()).equals(env_raw));
}

BOOST_FIXTURE_TEST_CASE(malformed_environment_key, Fixture) {
  for (std::string bad : {std::string(""), std::string("not base64!"), base64_encode(random_bytes(16)),
                          base64_encode(random_bytes(33)), base64_encode(random_bytes(32)).substr(1)}) {
    test::EnvVar env("SIDEKEY_STORE_KEY", bad);
    std::string msg = key_error({}, dir.path());
    BOOST_CHECK_EQUAL(msg, "SIDEKEY_STORE_KEY must be base64 of 32 bytes");
  }
  BOOST_CHECK(!fs::exists(dir / "store.key"));  // a bad key never falls back to another one
}

BOOST_FIXTURE_TEST_CASE(from_key_file_with_trailing_whitespace, Fixture) {
  std::string raw = random_bytes(32);
  test::write_plain(dir / "store-key", base64_encode(raw) + " \r\n\n");
  BOOST_CHECK(load_store_key(dir / "store-key", dir / "data").equals(raw));
  BOOST_CHECK(!fs::exists(dir / "data" / "store.key"));
}

BOOST_FIXTURE_TEST_CASE(malformed_key_file, Fixture) {
  test::write_plain(dir / "k", base64_encode(random_bytes(31)) + "\n");
  std::string msg = key_error(dir / "k", dir.path());
  BOOST_CHECK(msg.find((dir / "k").string()) != std::string::npos);
  BOOST_CHECK(msg.find("base64 of 32 bytes") != std::string::npos);
  test::write_plain(dir / "k", "");
  BOOST_CHECK_THROW(load_store_key(dir / "k", dir.path()), StoreError);
}

BOOST_FIXTURE_TEST_CASE(missing_explicit_key_file_is_an_error, Fixture) {
  std::string msg = key_error(dir / "nope.key", dir / "data");
  BOOST_CHECK(msg.find("nope.key") != std::string::npos);
  BOOST_CHECK(!fs::exists(dir / "data"));  // and no key is generated in its place
}

BOOST_FIXTURE_TEST_CASE(generated_once_with_mode_0600, Fixture) {
  fs::path data = dir / "nested" / "data";
  SecretValue first = load_store_key({}, data);
  BOOST_CHECK_EQUAL(first.size(), 32u);
  fs::path key_path = data / "store.key";
  BOOST_REQUIRE(fs::exists(key_path));
  BOOST_CHECK_EQUAL(mode_of(key_path), 0600u);
  BOOST_CHECK_EQUAL(mode_of(data), 0700u);
  // base64 text, one line
  auto decoded = base64_decode(read_file(key_path).substr(0, 44));
  BOOST_REQUIRE(decoded);
  BOOST_CHECK(first.equals(*decoded));
  // the second start reuses it
  SecretValue second = load_store_key({}, data);
  BOOST_CHECK(second.equals(first.reveal()));
  // and no temporary files are left behind
  BOOST_CHECK_EQUAL(std::distance(fs::directory_iterator(data), fs::directory_iterator()), 1);
}

BOOST_FIXTURE_TEST_CASE(corrupt_generated_key_is_an_error_not_replaced, Fixture) {
  test::write_plain(dir / "store.key", "garbage\n");
  BOOST_CHECK_THROW(load_store_key({}, dir.path()), StoreError);
  BOOST_CHECK_EQUAL(read_file(dir / "store.key"), "garbage\n");
}

BOOST_AUTO_TEST_SUITE_END()
