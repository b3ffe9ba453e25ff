#include <boost/test/unit_test.hpp>

#include <map>
#include <string>
#include <vector>

#include "secrets/secret_view.hpp"
#include "secrets/sources.hpp"
#include "secrets_test_util.hpp"

using namespace sidekey;
using namespace sidekey::secrets;
namespace fs = std::filesystem;

namespace {

// A secrets folder in the kubelet's layout: NAME -> ..data/NAME, ..data -> ..genN/, a set
// swapped at once by renaming a new ..data symlink over the old one.
struct KubeVolume {
  test::TempDir tmp;
  fs::path dir = tmp / "secrets";
  int generations = 0;
  std::vector<std::string> events;  // what read_dir_source warned about
  SourceWarn warn = [this](std::string_view event, nlohmann::json) { events.emplace_back(event); };

  KubeVolume() { fs::create_directories(dir); }

  // A complete generation folder, not yet pointed to.
  std::string make(const std::map<std::string, std::string>& files) {
    std::string name = "..gen" + std::to_string(++generations);
    fs::create_directories(dir / name);
    for (const auto& [file, content] : files) test::write_plain(dir / name / file, content + "\n");
    return name;
  }
  void point(const std::string& generation) const {
    fs::create_symlink(generation, dir / "..data_tmp");
    fs::rename(dir / "..data_tmp", dir / "..data");
  }
  void link(const std::string& name) const { fs::create_symlink(fs::path("..data") / name, dir / name); }
  void remove(const std::string& generation) const { fs::remove_all(dir / generation); }
};

bool holds(const SourceValues& values, const std::string& name, std::string_view expected) {
  auto it = values.find(name);
  return it != values.end() && it->second && it->second->equals(expected);
}

std::vector<std::string> names_of(const SourceValues& values) {
  std::vector<std::string> out;
  for (const auto& [name, value] : values) out.push_back(name);
  return out;
}

using Names = std::vector<std::string>;

}  // namespace

BOOST_AUTO_TEST_SUITE(dir_source)

BOOST_AUTO_TEST_CASE(a_plain_folder_is_read_as_it_is) {
  KubeVolume v;
  DirGeneration g = dir_generation(v.dir);
  BOOST_CHECK_EQUAL(g.folder, v.dir);
  BOOST_CHECK(g.generation.empty());

  test::write_plain(v.dir / "a", "value-a\n");
  test::write_plain(v.dir / ".hidden", "hidden\n");
  auto values = read_dir_source(v.dir, v.warn);
  BOOST_REQUIRE(values);
  BOOST_CHECK(names_of(*values) == Names{"a"});
  BOOST_CHECK(holds(*values, "a", "value-a"));
}

BOOST_AUTO_TEST_CASE(the_kubernetes_layout_is_read_from_the_folder_data_points_to) {
  KubeVolume v;
  std::string g1 = v.make({{"a", "a1"}, {"b", "b1"}});
  v.point(g1);
  v.link("a");
  v.link("b");
  DirGeneration g = dir_generation(v.dir);
  BOOST_CHECK_EQUAL(g.folder, v.dir / g1);
  BOOST_CHECK_EQUAL(g.generation, g1);

  auto values = read_dir_source(v.dir, v.warn);
  BOOST_REQUIRE(values);
  BOOST_CHECK(names_of(*values) == Names({"a", "b"}));
  BOOST_CHECK(holds(*values, "a", "a1"));
  BOOST_CHECK(holds(*values, "b", "b1"));

  // The next set: b dropped, c added; the kubelet fixes the top-level links only after the swap.
  std::string g2 = v.make({{"a", "a2"}, {"c", "c2"}});
  v.point(g2);
  BOOST_CHECK_EQUAL(dir_generation(v.dir).folder, v.dir / g2);
  values = read_dir_source(v.dir, v.warn);
  BOOST_REQUIRE(values);
  BOOST_CHECK(names_of(*values) == Names({"a", "c"}));
  BOOST_CHECK(holds(*values, "a", "a2"));
  BOOST_CHECK(holds(*values, "c", "c2"));
  BOOST_CHECK(v.events.empty());
}

BOOST_AUTO_TEST_CASE(a_swap_during_the_reading_does_not_mix_two_sets) {
  // Each file of one reading comes from the generation resolved at its start, even when ..data
  // moves on meanwhile (reading NAME through ..data/NAME file by file mixed the two).
  KubeVolume v;
  std::string g1 = v.make({{"a", "a1"}, {"b", "b1"}});
  std::string g2 = v.make({{"a", "a2"}, {"b", "b2"}});
  v.point(g1);
  v.link("a");
  v.link("b");
  int attempts = 0;
  auto values = read_dir_source(v.dir, v.warn, [&](const DirGeneration& g) {
    ++attempts;
    BOOST_CHECK_EQUAL(g.generation, g1);
    v.point(g2);  // the swap lands after the resolving, before any file is read
  });
  BOOST_REQUIRE(values);
  BOOST_CHECK_EQUAL(attempts, 1);
  BOOST_CHECK(holds(*values, "a", "a1"));
  BOOST_CHECK(holds(*values, "b", "b1"));
}

BOOST_AUTO_TEST_CASE(a_generation_removed_under_the_reading_is_read_again_from_the_new_one) {
  KubeVolume v;
  std::string g1 = v.make({{"a", "a1"}, {"b", "b1"}});
  std::string g2 = v.make({{"a", "a2"}, {"b", "b2"}});
  v.point(g1);
  v.link("a");
  v.link("b");
  std::vector<std::string> resolved;
  auto values = read_dir_source(v.dir, v.warn, [&](const DirGeneration& g) {
    resolved.push_back(g.generation);
    if (resolved.size() == 1) {  // swap, then the kubelet removes the old folder
      v.point(g2);
      v.remove(g1);
    }
  });
  BOOST_REQUIRE(values);
  BOOST_CHECK(resolved == Names({g1, g2}));
  BOOST_CHECK(holds(*values, "a", "a2"));
  BOOST_CHECK(holds(*values, "b", "b2"));
  BOOST_CHECK(v.events.empty());  // the abandoned attempt warns about nothing
}

BOOST_AUTO_TEST_CASE(a_generation_removed_under_every_attempt_gives_no_reading) {
  KubeVolume v;
  std::string current = v.make({{"a", "a1"}});
  v.point(current);
  v.link("a");
  int attempts = 0;
  auto values = read_dir_source(v.dir, v.warn, [&](const DirGeneration&) {
    ++attempts;
    std::string next = v.make({{"a", "a" + std::to_string(attempts + 1)}});
    v.point(next);
    v.remove(current);
    current = next;
  });
  BOOST_CHECK(!values);  // not an empty source: the caller keeps what it had
  BOOST_CHECK_GT(attempts, 1);
}

BOOST_AUTO_TEST_CASE(an_entry_missing_from_the_current_generation_is_simply_not_a_secret) {
  // Files missing while ..data still names their folder are no reason to read again.
  KubeVolume v;
  std::string g1 = v.make({{"a", "a1"}});
  fs::create_symlink("nowhere", v.dir / g1 / "dangling");
  v.point(g1);
  int attempts = 0;
  auto values = read_dir_source(v.dir, v.warn, [&](const DirGeneration&) { ++attempts; });
  BOOST_REQUIRE(values);
  BOOST_CHECK_EQUAL(attempts, 1);
  BOOST_CHECK(names_of(*values) == Names{"a"});
}

BOOST_AUTO_TEST_CASE(a_missing_folder_is_an_empty_source) {
  KubeVolume v;
  auto values = read_dir_source(v.dir / "not-mounted-yet", v.warn);
  BOOST_REQUIRE(values);
  BOOST_CHECK(values->empty());
  BOOST_CHECK(v.events == Names{"secret_source_dir_unavailable"});
}

BOOST_AUTO_TEST_CASE(the_registry_follows_kubernetes_swaps) {
  KubeVolume v;
  std::string g1 = v.make({{"a", "a1"}, {"b", "b1"}});
  v.point(g1);
  v.link("a");
  v.link("b");
  SecretRegistry reg(nullptr, {SourceConfig{SourceConfig::Kind::dir, {}, v.dir}});
  int changes = 0;  // on_change: once per refresh that changed the view
  reg.on_change([&] { ++changes; });
  auto value_is = [&](std::string_view name, std::string_view expected) {
    const SecretEntry* e = reg.current()->find(name);
    return e && e->origin == "dir" && e->value && e->value->equals(expected);
  };
  BOOST_CHECK(value_is("a", "a1"));
  BOOST_CHECK(value_is("b", "b1"));
  BOOST_CHECK_EQUAL(reg.current()->size(), 2u);

  std::string g2 = v.make({{"a", "a2"}});
  v.point(g2);
  v.remove(g1);
  fs::remove(v.dir / "b");
  BOOST_CHECK(reg.refresh());
  BOOST_CHECK(value_is("a", "a2"));
  BOOST_CHECK(!reg.current()->find("b"));
  BOOST_CHECK(!reg.refresh());
  BOOST_CHECK_EQUAL(changes, 1);
}

BOOST_AUTO_TEST_SUITE_END()
