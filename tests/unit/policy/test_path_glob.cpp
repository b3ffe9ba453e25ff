#include <boost/test/unit_test.hpp>

#include <random>

#include "policy/path_glob.hpp"

using namespace sidekey::policy;

namespace {
PathGlob G(std::string_view t) {
  std::string why;
  auto g = PathGlob::parse(t, &why);
  BOOST_REQUIRE_MESSAGE(g, why);
  return *g;
}
}  // namespace

BOOST_AUTO_TEST_SUITE(path_glob)

BOOST_AUTO_TEST_CASE(star_matches_any_run_including_slash) {
  auto g = G("/v1/*");
  BOOST_TEST(g.matches("/v1/"));
  BOOST_TEST(g.matches("/v1/models"));
  BOOST_TEST(g.matches("/v1/chat/completions"));
  BOOST_TEST(!g.matches("/v1"));
  BOOST_TEST(!g.matches("/v2/models"));
  BOOST_TEST(!g.matches("/x/v1/models"));
}

BOOST_AUTO_TEST_CASE(literal_and_inner_stars) {
  BOOST_TEST(G("/health").matches("/health"));
  BOOST_TEST(!G("/health").matches("/health/"));
  BOOST_TEST(!G("/health").matches("/healthz"));
  auto g = G("/repos/*/issues");
  BOOST_TEST(g.matches("/repos/a/b/issues"));
  BOOST_TEST(!g.matches("/repos/a/b/issues/1"));
  BOOST_TEST(G("/a*b*c").matches("/abc"));
  BOOST_TEST(G("/a*b*c").matches("/axxbyyc"));
  BOOST_TEST(!G("/a*b*c").matches("/axxbyy"));
  BOOST_TEST(G("*").matches("/anything"));
  BOOST_TEST(G("/**").matches("/deep/path"));
  BOOST_TEST(G("/v1/**/x").matches("/v1/a/b/x"));
}

BOOST_AUTO_TEST_CASE(no_catastrophic_backtracking) {
  auto g = G("/*a*a*a*a*a*a*a*a*a*a*b");
  std::string path = "/" + std::string(20000, 'a');
  BOOST_TEST(!g.matches(path));
}

BOOST_AUTO_TEST_CASE(bad_globs) {
  for (std::string bad : {"", "v1/*", "/v1/?", "/v1/#x", "/a b", "/[ab]", "/{a,b}", "/a\tb", "/x]", "?"}) {
    std::string why;
    BOOST_TEST(!PathGlob::parse(bad, &why), bad);
    BOOST_TEST(why.find("path glob") != std::string::npos, bad);
  }
}

BOOST_AUTO_TEST_CASE(glob_cover) {
  BOOST_TEST(G("/v1/*").covers(G("/v1/models")));
  BOOST_TEST(G("/v1/*").covers(G("/v1/chat/*")));
  BOOST_TEST(G("*").covers(G("/v1/*")));
  BOOST_TEST(G("/v1/*").covers(G("/v1/*")));
  BOOST_TEST(!G("/v1/models").covers(G("/v1/*")));
  BOOST_TEST(!G("/v1/*").covers(G("/v2/*")));
  BOOST_TEST(!G("/v1/*/x").covers(G("/v1/*")));
  BOOST_TEST(G("/*/x").covers(G("/a/*/x")));
}

BOOST_AUTO_TEST_CASE(a_normal_path_is_its_own_normal_form) {
  BOOST_TEST(path_is_normal("/v1/models"));
  BOOST_TEST(path_is_normal("/"));
  BOOST_TEST(path_is_normal("//a/.b/..c/b../"));
  BOOST_TEST(!path_is_normal(""));
  BOOST_TEST(!path_is_normal("v1"));
  BOOST_TEST(!path_is_normal("/a/./b"));
  BOOST_TEST(!path_is_normal("/a/.."));
  BOOST_TEST(!path_is_normal("/a/%61"));
  BOOST_TEST(!path_is_normal("/a?x"));
  // Whatever it says yes to, normalize_path() leaves as it is (random paths over the bytes
  // that matter).
  std::mt19937 rng(12);
  const char alphabet[] = {'/', '.', 'a', '%', '2', 'F'};
  for (int round = 0; round < 200000; ++round) {
    std::string p(rng() % 12, 'a');
    for (auto& c : p) c = alphabet[rng() % sizeof alphabet];
    if (path_is_normal(p)) BOOST_TEST_REQUIRE(normalize_path(p) == p, p);
  }
}

BOOST_AUTO_TEST_CASE(normalize_paths) {
  BOOST_TEST(normalize_path("/v1/models?x=1") == "/v1/models");
  BOOST_TEST(normalize_path("") == "/");
  BOOST_TEST(normalize_path("/") == "/");
  BOOST_TEST(normalize_path("/v1/../admin") == "/admin");
  BOOST_TEST(normalize_path("/v1/./x/") == "/v1/x/");
  BOOST_TEST(normalize_path("/a/b/..") == "/a/");
  BOOST_TEST(normalize_path("/../../etc") == "/etc");
  BOOST_TEST(normalize_path("/%61dmin") == "/admin");
  BOOST_TEST(normalize_path("/%2e%2e/admin") == "/admin");
  BOOST_TEST(normalize_path("/a%2fb") == "/a%2Fb");  // reserved stays encoded
  BOOST_TEST(normalize_path("/a%zz") == "/a%zz");
  BOOST_TEST(normalize_path("/a//b") == "/a//b");
}

BOOST_AUTO_TEST_SUITE_END()
