#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <atomic>
#include <thread>

#include "secrets/secret_name.hpp"
#include "secrets/secret_view.hpp"
#include "secrets_test_util.hpp"

using namespace sidekey;
using namespace sidekey::secrets;
namespace fs = std::filesystem;

namespace {

using Sources = std::vector<SourceConfig>;
constexpr const char* kPrefix = "SKTEST_SECRET_";

struct Fixture {
  test::TempDir dir;
  fs::path secrets_dir = dir / "secrets";
  SecretValue key = test::random_key();
  std::shared_ptr<Store> store = std::make_shared<Store>(dir / "secrets.db", key.clone());

  Fixture() { fs::create_directories(secrets_dir); }

  SourceConfig env_src() const { return {SourceConfig::Kind::env, kPrefix, {}}; }
  SourceConfig dir_src() const { return {SourceConfig::Kind::dir, {}, secrets_dir}; }
  void file(const std::string& name, const std::string& content) const { test::write_plain(secrets_dir / name, content); }
};

// Checks an entry's value without ever printing it.
bool value_is(const SecretRegistry& reg, std::string_view name, std::string_view expected) {
  auto view = reg.current();
  const SecretEntry* e = view->find(name);
  return e && e->value && e->value->equals(expected);
}

std::string origin_of(const SecretRegistry& reg, std::string_view name) {
  const SecretEntry* e = reg.current()->find(name);
  return e ? e->origin : "(missing)";
}

}  // namespace

BOOST_AUTO_TEST_SUITE(secret_view)

BOOST_AUTO_TEST_CASE(find_on_a_plain_view) {
  std::map<std::string, SecretEntry, std::less<>> m;
  m.emplace("a", SecretEntry{"a", "a", "env", {}, std::make_shared<const SecretValue>("x")});
  SecretView v(std::move(m));
  BOOST_CHECK(v.find("a"));
  BOOST_CHECK(!v.find("b"));
  BOOST_CHECK_EQUAL(v.size(), 1u);
}

BOOST_FIXTURE_TEST_CASE(store_comes_first_then_sources_in_order, Fixture) {
  store->put("", "shared", SecretValue("from-store"), {"api.example.com"});
  test::EnvVar e1(std::string(kPrefix) + "shared", "from-env");
  test::EnvVar e2(std::string(kPrefix) + "env_dir", "from-env");
  test::EnvVar e3(std::string(kPrefix) + "env_only", "from-env");
  file("shared", "from-dir\n");
  file("env_dir", "from-dir\n");
  file("dir_only", "from-dir\n");

  SecretRegistry reg(store, Sources{env_src(), dir_src()});
  BOOST_CHECK_EQUAL(origin_of(reg, "shared"), "store");
  BOOST_CHECK(value_is(reg, "shared", "from-store"));
  BOOST_CHECK(reg.current()->find("shared")->allowed_hosts == std::vector<std::string>{"api.example.com"});
  BOOST_CHECK_EQUAL(origin_of(reg, "env_dir"), "env");
  BOOST_CHECK(value_is(reg, "env_dir", "from-env"));
  BOOST_CHECK_EQUAL(origin_of(reg, "env_only"), "env");
  BOOST_CHECK_EQUAL(origin_of(reg, "dir_only"), "dir");
  BOOST_CHECK(value_is(reg, "dir_only", "from-dir"));

  SecretRegistry reversed(store, Sources{dir_src(), env_src()});
  BOOST_CHECK_EQUAL(origin_of(reversed, "shared"), "store");
  BOOST_CHECK_EQUAL(origin_of(reversed, "env_dir"), "dir");
}

BOOST_FIXTURE_TEST_CASE(env_source, Fixture) {
  test::EnvVar good(std::string(kPrefix) + "openai", "sk-env");
  test::EnvVar dotted(std::string(kPrefix) + "team.svc-key", "v2");
  test::EnvVar bad_name(std::string(kPrefix) + "bad!name", "v");
  test::EnvVar task_name(std::string(kPrefix) + "tasks/t1/x", "v");
  test::EnvVar empty(std::string(kPrefix) + "empty", "");
  test::EnvVar other("SKTEST_OTHER_openai2", "v");
  SecretRegistry reg(nullptr, Sources{env_src()});
  auto view = reg.current();
  BOOST_CHECK(value_is(reg, "openai", "sk-env"));
  BOOST_CHECK(view->find("openai")->binding_name == "openai");
  BOOST_CHECK(view->find("openai")->allowed_hosts.empty());
  BOOST_CHECK(value_is(reg, "team.svc-key", "v2"));
  BOOST_CHECK(!view->find("bad!name"));
  BOOST_CHECK(!view->find("tasks/t1/x"));
  BOOST_CHECK(!view->find("empty"));
  BOOST_CHECK(!view->find("openai2"));
  BOOST_CHECK(!view->find("SKTEST_OTHER_openai2"));
}

// Env-source values are taken once, at start: into protected memory, and out of the
// environment, bytes included (unsetenv alone leaves them in place, in /proc/<pid>/environ and
// in core dumps).
BOOST_FIXTURE_TEST_CASE(env_source_is_taken_out_of_the_environment_at_start, Fixture) {
  // putenv() puts these very buffers into the environment, so the test sees what becomes of
  // their bytes. Static: the environment may point to them until they are unset.
  static char good[] = "SKTEST_SECRET_taken=sk-taken-value";
  static char bad[] = "SKTEST_SECRET_bad!name=sk-bad-value";
  constexpr std::size_t kGoodName = sizeof("SKTEST_SECRET_taken=") - 1;
  constexpr std::size_t kBadName = sizeof("SKTEST_SECRET_bad!name=") - 1;
  BOOST_REQUIRE_EQUAL(::putenv(good), 0);
  BOOST_REQUIRE_EQUAL(::putenv(bad), 0);
  test::EnvVar unrelated("SKTEST_OTHER_openai", "not-a-source-value");

  SecretRegistry reg(nullptr, Sources{env_src()});
  BOOST_CHECK(value_is(reg, "taken", "sk-taken-value"));
  BOOST_CHECK(!reg.current()->find("bad!name"));
  // Both variables of the prefix, usable or not, are unset and their value bytes wiped.
  BOOST_CHECK(!::getenv("SKTEST_SECRET_taken"));
  BOOST_CHECK(!::getenv("SKTEST_SECRET_bad!name"));
  BOOST_CHECK(std::all_of(good + kGoodName, good + sizeof good, [](char c) { return c == 0; }));
  BOOST_CHECK(std::all_of(bad + kBadName, bad + sizeof bad, [](char c) { return c == 0; }));
  BOOST_CHECK(std::string_view(good) == "SKTEST_SECRET_taken=");  // the name is no secret
  const char* other = ::getenv("SKTEST_OTHER_openai");
  BOOST_CHECK(other && std::string_view(other) == "not-a-source-value");

  // Read once: a later variable is not picked up, and the value taken stays in the view.
  test::EnvVar late(std::string(kPrefix) + "late", "v1");
  BOOST_CHECK(!reg.refresh());
  BOOST_CHECK(!reg.current()->find("late"));
  BOOST_CHECK(value_is(reg, "taken", "sk-taken-value"));
  // Another registry takes what is in the environment when it is built.
  SecretRegistry second(nullptr, Sources{env_src()});
  BOOST_CHECK(!second.current()->find("taken"));
  BOOST_CHECK(value_is(second, "late", "v1"));
}

BOOST_FIXTURE_TEST_CASE(env_sources_with_overlapping_prefixes_each_get_their_values, Fixture) {
  // All env sources are read in one pass before anything is unset: a variable two prefixes
  // match is not gone before the second source looks.
  test::EnvVar both(std::string(kPrefix) + "both", "v-both");
  test::EnvVar wide("SKTEST_wide", "v-wide");
  SourceConfig narrow = env_src();
  SourceConfig broad{SourceConfig::Kind::env, "SKTEST_", {}};
  SecretRegistry reg(nullptr, Sources{narrow, broad});
  BOOST_CHECK(value_is(reg, "both", "v-both"));
  BOOST_CHECK_EQUAL(origin_of(reg, "both"), "env");
  BOOST_CHECK(value_is(reg, "SECRET_both", "v-both"));  // the broad prefix's name for it
  BOOST_CHECK(value_is(reg, "wide", "v-wide"));
  BOOST_CHECK(!::getenv((std::string(kPrefix) + "both").c_str()));
  BOOST_CHECK(!::getenv("SKTEST_wide"));
}

BOOST_FIXTURE_TEST_CASE(dir_source_trims_one_trailing_newline, Fixture) {
  file("lf", "value-lf\n");
  file("crlf", "value-crlf\r\n");
  file("bare", "value-bare");
  file("two_newlines", "value\n\n");
  file("inner_newline", "line1\nline2\n");
  file("empty", "");
  file("only_newline", "\n");
  file(".hidden", "hidden\n");
  file("bad name", "v\n");
  fs::create_directories(secrets_dir / "subdir");
  test::write_plain(secrets_dir / "subdir" / "nested", "v\n");
  test::write_plain(secrets_dir / "big", std::string(kMaxValueBytes + 10, 'x'));
  test::write_plain(secrets_dir / "max", std::string(kMaxValueBytes, 'y') + "\n");

  SecretRegistry reg(store, Sources{dir_src()});
  auto view = reg.current();
  BOOST_CHECK(value_is(reg, "lf", "value-lf"));
  BOOST_CHECK(value_is(reg, "crlf", "value-crlf"));
  BOOST_CHECK(value_is(reg, "bare", "value-bare"));
  BOOST_CHECK(value_is(reg, "max", std::string(kMaxValueBytes, 'y')));
  for (const char* skipped : {"two_newlines", "inner_newline", "empty", "only_newline", ".hidden", "hidden",
                              "bad name", "subdir", "nested", "subdir/nested", "big"})
    BOOST_CHECK_MESSAGE(!view->find(skipped), skipped);
  BOOST_CHECK_EQUAL(view->size(), 4u);
  BOOST_CHECK_EQUAL(view->find("lf")->origin, "dir");
}

BOOST_FIXTURE_TEST_CASE(dir_source_refresh_sees_changes_and_removals, Fixture) {
  file("token", "one\n");
  file("keep", "same\n");
  SecretRegistry reg(store, Sources{dir_src()});
  auto before = reg.current();
  BOOST_CHECK(value_is(reg, "token", "one"));

  BOOST_CHECK(!reg.refresh());  // nothing changed: the view (and its values) stay the same
  BOOST_CHECK(reg.current() == before);

  file("token", "two\n");
  BOOST_CHECK(reg.refresh());
  BOOST_CHECK(value_is(reg, "token", "two"));
  BOOST_CHECK(before->find("token")->value->equals("one"));  // old views are immutable

  file("token", "two");  // same value, newline dropped: no change
  BOOST_CHECK(!reg.refresh());

  fs::remove(secrets_dir / "token");
  BOOST_CHECK(reg.refresh());
  BOOST_CHECK(!reg.current()->find("token"));
  BOOST_CHECK(value_is(reg, "keep", "same"));
}

BOOST_FIXTURE_TEST_CASE(dir_source_kubernetes_layout, Fixture) {
  // What the kubelet writes: ..<timestamp>/ with the files, ..data -> it, and one symlink per key.
  fs::create_directories(secrets_dir / "..2026_01_01_00_00_00.1");
  test::write_plain(secrets_dir / "..2026_01_01_00_00_00.1" / "openai", "sk-k8s-one\n");
  fs::create_directory_symlink("..2026_01_01_00_00_00.1", secrets_dir / "..data");
  fs::create_symlink("..data/openai", secrets_dir / "openai");

  SecretRegistry reg(store, Sources{dir_src()});
  BOOST_CHECK(value_is(reg, "openai", "sk-k8s-one"));
  BOOST_CHECK_EQUAL(reg.current()->size(), 1u);

  // An update: a new timestamped folder and an atomic swap of ..data.
  fs::create_directories(secrets_dir / "..2026_01_02_00_00_00.2");
  test::write_plain(secrets_dir / "..2026_01_02_00_00_00.2" / "openai", "sk-k8s-two\n");
  fs::create_directory_symlink("..2026_01_02_00_00_00.2", secrets_dir / "..data_tmp");
  fs::rename(secrets_dir / "..data_tmp", secrets_dir / "..data");
  fs::remove_all(secrets_dir / "..2026_01_01_00_00_00.1");
  BOOST_CHECK(reg.refresh());
  BOOST_CHECK(value_is(reg, "openai", "sk-k8s-two"));

  // A key removed from the Secret: its symlink dangles, then goes.
  fs::remove(secrets_dir / "..2026_01_02_00_00_00.2" / "openai");
  BOOST_CHECK(reg.refresh());
  BOOST_CHECK(!reg.current()->find("openai"));
}

BOOST_FIXTURE_TEST_CASE(missing_dir_is_an_empty_source, Fixture) {
  SourceConfig src{SourceConfig::Kind::dir, {}, dir / "not-yet"};
  SecretRegistry reg(store, Sources{src});
  BOOST_CHECK_EQUAL(reg.current()->size(), 0u);
  BOOST_CHECK(!reg.refresh());
  fs::create_directories(dir / "not-yet");
  test::write_plain(dir / "not-yet" / "late", "v\n");
  BOOST_CHECK(reg.refresh());
  BOOST_CHECK(value_is(reg, "late", "v"));
  fs::remove_all(dir / "not-yet");
  BOOST_CHECK(reg.refresh());
  BOOST_CHECK_EQUAL(reg.current()->size(), 0u);
}

BOOST_FIXTURE_TEST_CASE(task_scoped_names, Fixture) {
  store->put("", "api_key", SecretValue("agent-value"), {});
  store->put("task-1", "api_key", SecretValue("task-1-value"), {"t1.example.com"});
  store->put("task-2", "api_key", SecretValue("task-2-value"), {});
  SecretRegistry reg(store, Sources{});
  auto view = reg.current();
  BOOST_CHECK_EQUAL(view->size(), 3u);
  const SecretEntry* t1 = view->find(task_secret_ref_name("task-1", "api_key"));
  BOOST_REQUIRE(t1);
  BOOST_CHECK_EQUAL(t1->name, "tasks/task-1/api_key");
  BOOST_CHECK_EQUAL(t1->binding_name, "api_key");
  BOOST_CHECK_EQUAL(t1->origin, "store");
  BOOST_CHECK(t1->allowed_hosts == std::vector<std::string>{"t1.example.com"});
  BOOST_CHECK(value_is(reg, "tasks/task-1/api_key", "task-1-value"));
  BOOST_CHECK(value_is(reg, "tasks/task-2/api_key", "task-2-value"));
  BOOST_CHECK(value_is(reg, "api_key", "agent-value"));
  BOOST_CHECK_EQUAL(view->find("api_key")->binding_name, "api_key");
}

BOOST_FIXTURE_TEST_CASE(refresh_follows_store_writes, Fixture) {
  SecretRegistry reg(store, Sources{});
  BOOST_CHECK_EQUAL(reg.current()->size(), 0u);
  store->put("", "a", SecretValue("v1"), {});
  BOOST_CHECK(reg.refresh());
  BOOST_CHECK(value_is(reg, "a", "v1"));
  BOOST_CHECK(!reg.refresh());
  store->put("", "a", SecretValue("v1"), {});  // same value and hosts: the view is the same
  BOOST_CHECK(!reg.refresh());
  store->put("", "a", SecretValue("v1"), {"new.host"});  // binding grew
  BOOST_CHECK(reg.refresh());
  store->put("", "a", SecretValue("v2"), {});
  BOOST_CHECK(reg.refresh());
  BOOST_CHECK(value_is(reg, "a", "v2"));
  BOOST_CHECK(store->remove_by_name("", "a"));
  BOOST_CHECK(reg.refresh());
  BOOST_CHECK(!reg.current()->find("a"));
}

BOOST_FIXTURE_TEST_CASE(values_held_by_an_old_view_outlive_the_store_change, Fixture) {
  store->put("", "a", SecretValue("v1"), {});
  SecretRegistry reg(store, Sources{});
  auto old = reg.current();
  store->remove_by_name("", "a");
  reg.refresh();
  BOOST_REQUIRE(old->find("a"));
  BOOST_CHECK(old->find("a")->value->equals("v1"));
}

// Another process (the CLI) writing the same store file: a second Store stands in for it.
BOOST_FIXTURE_TEST_CASE(refresh_picks_up_writes_from_another_process, Fixture) {
  SecretRegistry reg(store, Sources{});
  Store cli(store->path(), key.clone());
  cli.put("", "from_cli", SecretValue("cli-value"), {"cli.example.com"});
  BOOST_CHECK(reg.refresh());
  BOOST_CHECK(value_is(reg, "from_cli", "cli-value"));
  BOOST_CHECK_EQUAL(reg.current()->find("from_cli")->origin, "store");
  BOOST_CHECK(!reg.refresh());
  BOOST_CHECK(cli.remove_by_name("", "from_cli"));
  BOOST_CHECK(reg.refresh());
  BOOST_CHECK(!reg.current()->find("from_cli"));
}

BOOST_FIXTURE_TEST_CASE(refresh_keeps_the_last_good_store_content_when_the_file_goes_bad, Fixture) {
  store->put("", "a", SecretValue("v1"), {});
  SecretRegistry reg(store, Sources{});
  const std::string good = read_file(store->path());
  std::string bad = good;
  bad[bad.size() / 2] = static_cast<char>(bad[bad.size() / 2] ^ 0x01);
  test::write_plain(store->path(), bad);
  BOOST_CHECK_NO_THROW(reg.refresh());  // logged, not thrown
  BOOST_CHECK(value_is(reg, "a", "v1"));
  BOOST_CHECK_NO_THROW(reg.refresh());
  BOOST_CHECK(value_is(reg, "a", "v1"));
  test::write_plain(store->path(), good);
  BOOST_CHECK(!reg.refresh());  // the same content as before: no change
  BOOST_CHECK(value_is(reg, "a", "v1"));
}

// While serving, refresh() runs on the control thread (every 2 s) and store writes on worker
// threads (API requests): the store content refresh() iterates must stay alive while it does,
// even when a write replaces it meanwhile. A regression test for the TSan build, which reports a
// write that frees content a refresh read without holding it. TSan sees only what nothing orders,
// so the threads take turns through a relaxed atomic (in step, yet unordered, like two unrelated
// requests), and each refresh reads an empty store: refresh() and a write both copy every
// secret's value pointer, and those reference counts would order the two threads.
BOOST_FIXTURE_TEST_CASE(refresh_while_another_thread_writes_the_store, Fixture) {
  SecretRegistry reg(store, Sources{});
  constexpr int kTurns = 10;
  std::atomic<int> turn{0};  // even: refresh next; odd: write next
  auto wait_for = [&](int t) {
    while (turn.load(std::memory_order_relaxed) != t) std::this_thread::yield();
  };
  int removed = 0;  // checked after join(): Boost.Test's assertions are for the test's own thread
  std::thread writer([&] {
    for (int i = 0; i < kTurns; ++i) {
      wait_for(2 * i + 1);
      store->put("", "s", SecretValue("v"), {});  // frees the (empty) content the refresh read
      removed += store->remove_by_name("", "s");
      turn.store(2 * i + 2, std::memory_order_relaxed);
    }
  });
  for (int i = 0; i < kTurns; ++i) {
    wait_for(2 * i);
    reg.refresh();
    turn.store(2 * i + 1, std::memory_order_relaxed);
  }
  writer.join();
  BOOST_CHECK_EQUAL(removed, kTurns);
  store->put("", "last", SecretValue("v"), {});
  BOOST_CHECK(reg.refresh());
  BOOST_CHECK(value_is(reg, "last", "v"));
}

BOOST_AUTO_TEST_SUITE_END()
