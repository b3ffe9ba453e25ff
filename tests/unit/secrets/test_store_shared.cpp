// One store file shared by several processes (a running server and the `sidekey secrets` CLI).
// Two Store objects on one file stand in for two processes: each has its own in-memory copy
// and its own open file description for the flock, exactly as separate processes would.
#include <boost/test/unit_test.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <set>
#include <thread>

#include "secrets/store.hpp"
#include "secrets_test_util.hpp"

using namespace sidekey;
using namespace sidekey::secrets;
namespace fs = std::filesystem;

namespace {

struct Fixture {
  test::TempDir dir;
  fs::path data = dir / "data";
  fs::path db = data / "secrets.db";
  SecretValue key = test::random_key();

  Store open() const { return Store(db, key.clone()); }
  std::string raw() const { return read_file(db); }
};

// Checks a stored value without ever printing it.
bool has_value(const Store& s, const std::string& name, std::string_view expected) {
  for (const auto& item : *s.snapshot())
    if (item.meta.scope.empty() && item.meta.name == name) return item.value->equals(expected);
  return false;
}

std::set<std::string> names(const Store& s) {
  std::set<std::string> out;
  for (const auto& m : s.list("")) out.insert(m.name);
  return out;
}

std::string flip_middle_byte(std::string bytes) {
  bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x01);
  return bytes;
}

bool contains(const std::string& s, std::string_view part) { return s.find(part) != std::string::npos; }

std::set<std::string> listing(const fs::path& folder) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(folder)) out.insert(e.path().filename().string());
  return out;
}

// Holds the store's lock the way another process would, for as long as it lives.
struct ForeignLock {
  int fd;
  explicit ForeignLock(const fs::path& lock_file) : fd(::open(lock_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600)) {
    BOOST_REQUIRE(fd >= 0);
    BOOST_REQUIRE_EQUAL(::flock(fd, LOCK_EX), 0);
  }
  ~ForeignLock() { release(); }
  void release() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(store_shared)

BOOST_FIXTURE_TEST_CASE(writes_from_two_stores_are_both_kept, Fixture) {
  Store a = open();
  Store b = open();  // opened before a's write: its copy is stale when it writes
  auto x = a.put("", "x", SecretValue("value-x"), {"x.example.com"});
  auto y = b.put("", "y", SecretValue("value-y"), {});
  BOOST_CHECK(names(b) == (std::set<std::string>{"x", "y"}));  // b built on a's write
  a.put("", "z", SecretValue("value-z"), {});                    // and a on b's
  BOOST_CHECK(names(a) == (std::set<std::string>{"x", "y", "z"}));

  Store again = open();
  BOOST_CHECK(names(again) == (std::set<std::string>{"x", "y", "z"}));
  BOOST_CHECK(has_value(again, "x", "value-x"));
  BOOST_CHECK(has_value(again, "y", "value-y"));
  BOOST_CHECK(has_value(again, "z", "value-z"));
  BOOST_CHECK_EQUAL(again.find("", "x")->id, x.id);
  BOOST_CHECK_EQUAL(again.find("", "y")->id, y.id);
  BOOST_CHECK(again.find("", "x")->allowed_hosts == std::vector<std::string>{"x.example.com"});
}

BOOST_FIXTURE_TEST_CASE(rotation_and_removal_apply_to_the_current_file, Fixture) {
  Store a = open();
  Store b = open();
  auto first = a.put("", "shared", SecretValue("value-1"), {"one.example.com"});
  // b has not seen "shared": its put must rotate a's secret (same id, hosts merged), not
  // create a second one.
  auto rotated = b.put("", "shared", SecretValue("value-2"), {"two.example.com"});
  BOOST_CHECK_EQUAL(rotated.id, first.id);
  BOOST_CHECK_EQUAL(rotated.created_at, first.created_at);
  BOOST_CHECK(rotated.allowed_hosts == (std::vector<std::string>{"one.example.com", "two.example.com"}));
  BOOST_CHECK_EQUAL(b.size(), 1u);

  auto other = a.put("", "other", SecretValue("value-o"), {});
  BOOST_CHECK(b.remove_by_name("", "other"));  // b never saw it, but the file has it
  BOOST_CHECK(!a.remove("", other.id));        // already gone from the file
  BOOST_CHECK(names(a) == std::set<std::string>{"shared"});
  BOOST_CHECK(has_value(a, "shared", "value-2"));
  Store again = open();
  BOOST_CHECK(names(again) == std::set<std::string>{"shared"});
  BOOST_CHECK(has_value(again, "shared", "value-2"));
}

BOOST_FIXTURE_TEST_CASE(reload_if_changed_sees_the_other_stores_changes, Fixture) {
  Store a = open();
  Store b = open();
  BOOST_CHECK(!b.reload_if_changed());  // no file yet, none before
  a.put("", "x", SecretValue("value-x"), {});
  BOOST_CHECK(!b.find("", "x"));  // nothing is re-read behind the caller's back
  BOOST_CHECK(b.reload_if_changed());
  BOOST_CHECK(has_value(b, "x", "value-x"));
  BOOST_CHECK(!b.reload_if_changed());  // unchanged since

  // Same name, same value length, straight after: a rewrite that inode, size and a coarse
  // mtime may not tell apart. The content hash does.
  a.put("", "x", SecretValue("value-X"), {});
  BOOST_CHECK(b.reload_if_changed());
  BOOST_CHECK(has_value(b, "x", "value-X"));

  b.put("", "y", SecretValue("value-y"), {});
  BOOST_CHECK(!b.reload_if_changed());  // its own write is not a change
  BOOST_CHECK(a.reload_if_changed());
  BOOST_CHECK(names(a) == (std::set<std::string>{"x", "y"}));

  auto snap = a.snapshot();
  BOOST_CHECK(b.remove_by_name("", "x"));
  BOOST_CHECK(a.reload_if_changed());
  BOOST_CHECK(names(a) == std::set<std::string>{"y"});
  BOOST_CHECK_EQUAL(snap->size(), 2u);  // snapshots taken before stay as they were

  fs::remove(db);  // the file removed by hand: the store is empty, as at first start
  BOOST_CHECK(a.reload_if_changed());
  BOOST_CHECK_EQUAL(a.size(), 0u);
}

BOOST_FIXTURE_TEST_CASE(a_bad_file_between_writes_fails_the_write_and_is_left_alone, Fixture) {
  Store a = open();
  a.put("", "x", SecretValue("value-x"), {});
  Store b = open();
  const std::string good = raw();
  const std::string tampered = flip_middle_byte(good);
  test::write_plain(db, tampered);

  try {
    b.put("", "y", SecretValue("value-y"), {});
    BOOST_ERROR("a write on top of a tampered file succeeded");
  } catch (const StoreError& e) {
    BOOST_CHECK(contains(e.what(), "tampered"));
    BOOST_CHECK(contains(e.what(), db.string()));
    BOOST_CHECK(!contains(e.what(), "value-y"));
  }
  BOOST_CHECK(raw() == tampered);  // never overwritten: the evidence stays as it was left
  BOOST_CHECK_THROW(a.remove_by_name("", "x"), StoreError);
  BOOST_CHECK_THROW(a.put("", "x", SecretValue("value-x2"), {}), StoreError);
  BOOST_CHECK(raw() == tampered);
  // The last good content stays in force in memory.
  BOOST_CHECK_THROW(b.reload_if_changed(), StoreError);
  BOOST_CHECK(has_value(b, "x", "value-x"));
  BOOST_CHECK(has_value(a, "x", "value-x"));
  BOOST_CHECK(!b.find("", "y"));

  // A file sealed with another key is refused the same way.
  fs::remove(db);
  Store(db, test::random_key()).put("", "foreign", SecretValue("value-f"), {});
  const std::string foreign = raw();
  BOOST_CHECK_THROW(b.put("", "y", SecretValue("value-y"), {}), StoreError);
  BOOST_CHECK_THROW(b.reload_if_changed(), StoreError);
  BOOST_CHECK(raw() == foreign);

  // Once the good file is back, writes go on from it.
  test::write_plain(db, good);
  b.put("", "y", SecretValue("value-y"), {});
  BOOST_CHECK(a.reload_if_changed());
  BOOST_CHECK(names(open()) == (std::set<std::string>{"x", "y"}));
}

BOOST_FIXTURE_TEST_CASE(two_stores_writing_at_once_lose_nothing, Fixture) {
  Store a = open();
  Store b = open();
  auto writer = [](Store& s, const std::string& prefix) {
    for (int i = 0; i < 15; ++i) s.put("", prefix + std::to_string(i), SecretValue("v-" + prefix), {});
  };
  std::thread ta(writer, std::ref(a), "a");
  std::thread tb(writer, std::ref(b), "b");
  ta.join();
  tb.join();
  BOOST_CHECK_EQUAL(open().size(), 30u);
  a.reload_if_changed();
  b.reload_if_changed();
  BOOST_CHECK_EQUAL(a.size(), 30u);
  BOOST_CHECK_EQUAL(b.size(), 30u);
}

BOOST_FIXTURE_TEST_CASE(writers_wait_for_the_lock_held_elsewhere, Fixture) {
  Store s = open();
  s.put("", "first", SecretValue("value-1"), {});
  const fs::path lock_file = db.string() + ".lock";
  struct stat st {};
  BOOST_REQUIRE_EQUAL(::stat(lock_file.c_str(), &st), 0);
  BOOST_CHECK_EQUAL(st.st_mode & 0777, 0600u);

  ForeignLock other(lock_file);
  const std::string before = raw();
  std::atomic<bool> done{false};
  std::thread t([&] {
    s.put("", "second", SecretValue("value-2"), {});
    done = true;
  });
  // Correctness does not depend on this pause; it only gives a broken lock a chance to show.
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  BOOST_CHECK(!done.load());
  BOOST_CHECK(raw() == before);
  other.release();
  t.join();
  BOOST_CHECK(done.load());
  BOOST_CHECK(names(open()) == (std::set<std::string>{"first", "second"}));
}

BOOST_FIXTURE_TEST_CASE(stale_temp_files_are_removed_at_open_and_nothing_else, Fixture) {
  open().put("", "x", SecretValue("value-x"), {});
  const std::string good = raw();
  auto put_file = [&](const std::string& name) { test::write_plain(data / name, "leftover"); };
  // Left by writes killed before their rename: exactly write_file_atomic's pattern.
  put_file(".secrets.db.tmp-0123456789ab");
  put_file(".secrets.db.tmp-ffffffffffff");
  // Not ours, or not that pattern: untouched.
  const std::vector<std::string> keep = {
      ".secrets.db.tmp-0123456789a",    // 11 digits
      ".secrets.db.tmp-0123456789abc",  // 13 digits
      ".secrets.db.tmp-0123456789AB",   // not lowercase hex
      ".secrets.db.tmp-0123456789xy",   // not hex
      "secrets.db.tmp-0123456789ab",    // no leading dot
      ".other.db.tmp-0123456789ab",     // another file's temp
      ".store.key.tmp-0123456789ab",    // the key file's temp
      ".secrets.db.tmp-",               // no digits
      "notes.txt",
  };
  for (const auto& name : keep) put_file(name);
  fs::create_directory(data / ".secrets.db.tmp-aaaaaaaaaaaa");  // a folder is not a temp file
  fs::create_symlink(data / "notes.txt", data / ".secrets.db.tmp-bbbbbbbbbbbb");  // nor is a link

  Store s = open();
  BOOST_CHECK(has_value(s, "x", "value-x"));
  std::set<std::string> expected(keep.begin(), keep.end());
  expected.insert({"secrets.db", "secrets.db.lock", ".secrets.db.tmp-aaaaaaaaaaaa", ".secrets.db.tmp-bbbbbbbbbbbb"});
  BOOST_CHECK(listing(data) == expected);
  BOOST_CHECK(raw() == good);
  for (const auto& name : keep) BOOST_CHECK_EQUAL(read_file(data / name), "leftover");
}

BOOST_FIXTURE_TEST_CASE(open_of_a_missing_folder_creates_nothing, Fixture) {
  Store s = open();
  BOOST_CHECK(!fs::exists(data));
  BOOST_CHECK(!s.reload_if_changed());
  BOOST_CHECK(!fs::exists(data));
  s.put("", "x", SecretValue("value-x"), {});
  BOOST_CHECK(listing(data) == (std::set<std::string>{"secrets.db", "secrets.db.lock"}));
}

BOOST_AUTO_TEST_SUITE_END()
