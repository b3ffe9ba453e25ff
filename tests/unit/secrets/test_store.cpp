#include <boost/test/unit_test.hpp>

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <thread>

#include "secrets/store.hpp"
#include "secrets/store_codec.hpp"
#include "secrets_test_util.hpp"

using namespace sidekey;
using namespace sidekey::secrets;
namespace fs = std::filesystem;

namespace {

struct Fixture {
  test::TempDir dir;
  fs::path db = dir / "data" / "secrets.db";
  SecretValue key = test::random_key();

  Store open() const { return Store(db, key.clone()); }
  std::string raw() const { return read_file(db); }
};

std::string store_error(const fs::path& db, const SecretValue& key) {
  try {
    Store s(db, key.clone());
  } catch (const StoreError& e) {
    return e.what();
  }
  BOOST_ERROR("opening the store should have failed");
  return {};
}

bool contains(const std::string& s, std::string_view part) { return s.find(part) != std::string::npos; }

// Checks a stored value without ever printing it.
bool has_value(const Store& s, const std::string& scope, const std::string& name, std::string_view expected) {
  auto snap = s.snapshot();
  for (const auto& item : *snap)
    if (item.meta.scope == scope && item.meta.name == name) return item.value->equals(expected);
  return false;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(store)

BOOST_FIXTURE_TEST_CASE(missing_file_is_an_empty_store_created_on_first_write, Fixture) {
  Store s = open();
  BOOST_CHECK_EQUAL(s.size(), 0u);
  BOOST_CHECK(s.list("").empty());
  BOOST_CHECK(!fs::exists(db));
  s.put("", "openai", SecretValue("sk-one"), {});
  BOOST_CHECK(fs::exists(db));
  struct stat st {};
  BOOST_REQUIRE_EQUAL(::stat(db.c_str(), &st), 0);
  BOOST_CHECK_EQUAL(st.st_mode & 0777, 0600u);
  BOOST_REQUIRE_EQUAL(::stat(db.parent_path().c_str(), &st), 0);
  BOOST_CHECK_EQUAL(st.st_mode & 0777, 0700u);
}

BOOST_FIXTURE_TEST_CASE(empty_store_round_trips, Fixture) {
  {
    Store s = open();
    auto m = s.put("", "a", SecretValue("v"), {});
    BOOST_CHECK(s.remove("", m.id));
  }
  Store again = open();
  BOOST_CHECK_EQUAL(again.size(), 0u);
}

BOOST_FIXTURE_TEST_CASE(round_trip_across_reopen, Fixture) {
  SecretMeta a, b;
  {
    Store s = open();
    a = s.put("", "openai", SecretValue("sk-openai-123"), {"api.openai.com"});
    b = s.put("task-1", "api_key", SecretValue("task-value"), {});
    s.put("", "github", SecretValue("ghp-xyz"), {"api.github.com", "uploads.github.com"});
  }
  Store s = open();
  BOOST_CHECK_EQUAL(s.size(), 3u);
  auto agent = s.list("");
  BOOST_REQUIRE_EQUAL(agent.size(), 2u);
  BOOST_CHECK_EQUAL(agent[0].name, "openai");  // creation order
  BOOST_CHECK_EQUAL(agent[1].name, "github");
  BOOST_CHECK(agent[1].allowed_hosts == (std::vector<std::string>{"api.github.com", "uploads.github.com"}));
  auto got = s.get("", a.id);
  BOOST_REQUIRE(got);
  BOOST_CHECK_EQUAL(got->name, "openai");
  BOOST_CHECK_EQUAL(got->created_at, a.created_at);
  BOOST_CHECK(!s.get("task-1", a.id));  // ids are looked up within their scope
  auto task = s.find("task-1", "api_key");
  BOOST_REQUIRE(task);
  BOOST_CHECK_EQUAL(task->id, b.id);
  BOOST_CHECK(!s.find("", "api_key"));
  BOOST_CHECK(has_value(s, "", "openai", "sk-openai-123"));
  BOOST_CHECK(has_value(s, "task-1", "api_key", "task-value"));
  BOOST_CHECK(has_value(s, "", "github", "ghp-xyz"));
}

BOOST_FIXTURE_TEST_CASE(metadata_shapes, Fixture) {
  Store s = open();
  auto m = s.put("", "openai", SecretValue("v1"), {});
  BOOST_CHECK_EQUAL(m.id.size(), 36u);
  BOOST_CHECK_EQUAL(m.id[14], '4');  // UUID v4
  BOOST_CHECK_EQUAL(m.created_at, m.updated_at);
  BOOST_CHECK_EQUAL(m.created_at.back(), 'Z');
  BOOST_CHECK_EQUAL(m.created_at[10], 'T');
  auto other = s.put("", "other", SecretValue("v2"), {});
  BOOST_CHECK(other.id != m.id);
}

BOOST_FIXTURE_TEST_CASE(rotation_keeps_id_and_created_at_and_unions_hosts, Fixture) {
  SecretMeta first;
  {
    Store s = open();
    first = s.put("", "openai", SecretValue("old-value"), {"a.example.com", "b.example.com"});
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    auto second = s.put("", "openai", SecretValue("new-value"), {"b.example.com", "c.example.com", "a.example.com"});
    BOOST_CHECK_EQUAL(second.id, first.id);
    BOOST_CHECK_EQUAL(second.created_at, first.created_at);
    BOOST_CHECK(second.updated_at > first.updated_at);
    BOOST_CHECK(second.allowed_hosts ==
                (std::vector<std::string>{"a.example.com", "b.example.com", "c.example.com"}));
    BOOST_CHECK_EQUAL(s.size(), 1u);
  }
  Store s = open();
  auto m = s.find("", "openai");
  BOOST_REQUIRE(m);
  BOOST_CHECK_EQUAL(m->id, first.id);
  BOOST_CHECK_EQUAL(m->allowed_hosts.size(), 3u);
  BOOST_CHECK(has_value(s, "", "openai", "new-value"));
  BOOST_CHECK(!has_value(s, "", "openai", "old-value"));
}

BOOST_FIXTURE_TEST_CASE(same_name_in_two_scopes_are_two_secrets, Fixture) {
  Store s = open();
  auto a = s.put("task-a", "api_key", SecretValue("a"), {});
  auto b = s.put("task-b", "api_key", SecretValue("b"), {});
  BOOST_CHECK(a.id != b.id);
  BOOST_CHECK_EQUAL(s.list("task-a").size(), 1u);
  BOOST_CHECK(s.remove_by_name("task-a", "api_key"));
  BOOST_CHECK(!s.remove_by_name("task-a", "api_key"));
  BOOST_CHECK(s.find("task-b", "api_key"));
  BOOST_CHECK(!s.remove("task-a", b.id));  // wrong scope
}

BOOST_FIXTURE_TEST_CASE(invalid_input_is_refused_without_echoing_the_value, Fixture) {
  Store s = open();
  BOOST_CHECK_THROW(s.put("", "bad name", SecretValue("v"), {}), StoreError);
  BOOST_CHECK_THROW(s.put("../etc", "ok", SecretValue("v"), {}), StoreError);
  BOOST_CHECK_THROW(s.put("", "ok", SecretValue(""), {}), StoreError);
  try {
    s.put("", "ok", SecretValue("line1-secret\nline2"), {});
    BOOST_ERROR("multi-line value accepted");
  } catch (const StoreError& e) {
    BOOST_CHECK(!contains(e.what(), "line1-secret"));
  }
  BOOST_CHECK_EQUAL(s.size(), 0u);
  BOOST_CHECK(!fs::exists(db));
}

BOOST_FIXTURE_TEST_CASE(plaintext_never_appears_in_the_file, Fixture) {
  Store s = open();
  s.put("", "openai", SecretValue("sk-PLAINTEXT-MARKER-0123456789"), {"api.openai.com"});
  s.put("t1", "other", SecretValue("SECOND-PLAINTEXT-MARKER"), {});
  std::string bytes = raw();
  BOOST_CHECK(!contains(bytes, "PLAINTEXT-MARKER"));
  BOOST_CHECK(!contains(bytes, "openai"));
  BOOST_CHECK(!contains(bytes, "api.openai.com"));
  BOOST_CHECK_EQUAL(bytes.substr(0, 13), "SIDEKEY-STORE");
  // and no temporary files are left next to it (only the lock file, which holds nothing)
  std::vector<std::string> files;
  for (auto& e : fs::directory_iterator(db.parent_path())) files.push_back(e.path().filename().string());
  std::sort(files.begin(), files.end());
  BOOST_CHECK(files == (std::vector<std::string>{"secrets.db", "secrets.db.lock"}));
  BOOST_CHECK_EQUAL(fs::file_size(db.string() + ".lock"), 0u);
}

BOOST_FIXTURE_TEST_CASE(wrong_key_is_a_clear_error, Fixture) {
  open().put("", "a", SecretValue("v"), {});
  std::string msg = store_error(db, test::random_key());
  BOOST_CHECK(contains(msg, "secrets store " + db.string()));
  BOOST_CHECK(contains(msg, "wrong key or tampered file (authentication failed)"));
}

BOOST_FIXTURE_TEST_CASE(flipped_bytes_are_a_clear_error, Fixture) {
  {
    Store s = open();
    s.put("", "a", SecretValue("value-a"), {"h"});
    s.put("", "b", SecretValue("value-b"), {});
  }
  const std::string good = raw();
  const std::size_t n = good.size();
  struct Case {
    std::size_t pos;
    const char* expect;
  };
  for (Case c : {Case{0, "not a sidekey store"}, Case{12, "not a sidekey store"}, Case{13, "unsupported version"},
                 Case{14, "tampered"}, Case{25, "tampered"}, Case{26, "tampered"}, Case{n / 2, "tampered"},
                 Case{n - 17, "tampered"}, Case{n - 16, "tampered"}, Case{n - 1, "tampered"}}) {
    std::string bad = good;
    bad[c.pos] = static_cast<char>(bad[c.pos] ^ 0x20);
    test::write_plain(db, bad);
    BOOST_TEST_CONTEXT("position " << c.pos) {
      std::string msg = store_error(db, key);
      BOOST_CHECK(contains(msg, db.string()));
      BOOST_CHECK(contains(msg, c.expect));
    }
  }
  test::write_plain(db, good);
  BOOST_CHECK_EQUAL(open().size(), 2u);
}

BOOST_FIXTURE_TEST_CASE(truncated_files_are_a_clear_error, Fixture) {
  open().put("", "a", SecretValue("value-a"), {});
  const std::string good = raw();
  for (std::size_t len : {std::size_t{0}, std::size_t{1}, std::size_t{13}, std::size_t{14}, std::size_t{30},
                          std::size_t{41}, std::size_t{42}, good.size() / 2, good.size() - 1}) {
    test::write_plain(db, good.substr(0, len));
    BOOST_TEST_CONTEXT("length " << len) {
      std::string msg = store_error(db, key);
      BOOST_CHECK(contains(msg, "truncated") || contains(msg, "tampered"));
    }
  }
}

BOOST_FIXTURE_TEST_CASE(a_failed_write_leaves_memory_and_file_unchanged, Fixture) {
  Store s = open();
  s.put("", "a", SecretValue("value-a"), {});
  const std::string before = raw();
  // Put a folder where the file is: the atomic rename onto it must fail.
  fs::remove(db);
  fs::create_directories(db / "blocker");
  BOOST_CHECK_THROW(s.put("", "b", SecretValue("value-b"), {}), StoreError);
  BOOST_CHECK_THROW(s.put("", "a", SecretValue("value-a2"), {"new.host"}), StoreError);
  BOOST_CHECK_THROW(s.remove_by_name("", "a"), StoreError);
  BOOST_CHECK_EQUAL(s.size(), 1u);
  BOOST_CHECK(!s.find("", "b"));
  BOOST_CHECK(has_value(s, "", "a", "value-a"));
  BOOST_CHECK(s.find("", "a")->allowed_hosts.empty());
  fs::remove_all(db);
  test::write_plain(db, before);
  s.put("", "c", SecretValue("value-c"), {});
  BOOST_CHECK_EQUAL(open().size(), 2u);
}

// The API tells a full disk (ENOSPC: 507) from other store failures (503) by StoreError::error().
BOOST_FIXTURE_TEST_CASE(a_failed_write_names_its_errno, Fixture) {
  auto error_of = [](auto&& write) {
    try {
      write();
    } catch (const StoreError& e) {
      return e.error();
    }
    BOOST_ERROR("the write should have failed");
    return -1;
  };
  Store s = open();
  s.put("", "a", SecretValue("value-a"), {});
  const std::string before = raw();
  fs::remove(db);
  fs::create_directories(db / "blocker");  // a folder where the file is: reading it fails
  BOOST_CHECK_EQUAL(error_of([&] { s.put("", "b", SecretValue("value-b"), {}); }), EISDIR);
  fs::remove_all(db);
  std::string tampered = before;
  tampered.back() ^= 0x01;
  test::write_plain(db, tampered);  // not a file operation that failed: no errno
  BOOST_CHECK_EQUAL(error_of([&] { s.remove_by_name("", "a"); }), 0);
}

BOOST_FIXTURE_TEST_CASE(snapshots_are_immutable, Fixture) {
  Store s = open();
  s.put("", "a", SecretValue("value-a"), {});
  auto snap = s.snapshot();
  s.put("", "a", SecretValue("value-a2"), {});
  s.put("", "b", SecretValue("value-b"), {});
  BOOST_CHECK_EQUAL(snap->size(), 1u);
  BOOST_CHECK((*snap)[0].value->equals("value-a"));
  BOOST_CHECK_EQUAL(s.snapshot()->size(), 2u);
}

BOOST_FIXTURE_TEST_CASE(concurrent_writers_are_serialized, Fixture) {
  Store s = open();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i)
        s.put("", "t" + std::to_string(t) + "-" + std::to_string(i), SecretValue("v"), {});
    });
  for (auto& th : threads) th.join();
  BOOST_CHECK_EQUAL(s.size(), 40u);
  BOOST_CHECK_EQUAL(open().size(), 40u);
}

BOOST_AUTO_TEST_CASE(key_of_wrong_length_is_refused) {
  test::TempDir dir;
  BOOST_CHECK_THROW(Store(dir / "secrets.db", SecretValue("too-short")), StoreError);
}

BOOST_AUTO_TEST_SUITE_END()
