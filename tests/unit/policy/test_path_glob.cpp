#include <boost/test/unit_test.hpp>

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
