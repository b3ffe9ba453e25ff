#include <boost/test/unit_test.hpp>

#include <filesystem>

#include "core/files.hpp"
#include "policy/explain.hpp"
#include "policy/loader.hpp"

using namespace sidekey::policy;
namespace fs = std::filesystem;

namespace {
fs::path source_dir() {
#ifdef SIDEKEY_SOURCE_DIR
  return SIDEKEY_SOURCE_DIR;
#else
  return fs::path(__FILE__).parent_path().parent_path().parent_path().parent_path();  // tests/unit/policy/ → root
#endif
}

LoadResult load_file(const fs::path& p) { return load_policy(sidekey::read_file(p), p.string()); }
}  // namespace

BOOST_AUTO_TEST_SUITE(examples)

BOOST_AUTO_TEST_CASE(every_example_policy_loads_without_warnings) {
  fs::path dir = source_dir() / "config" / "examples";
  BOOST_REQUIRE(fs::is_directory(dir));
  int count = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    auto ext = entry.path().extension();
    if (ext != ".yaml" && ext != ".yml") continue;
    // Configuration examples (sidekey.yaml and the like) live beside the policies.
    std::string text = sidekey::read_file(entry.path());
    if (text.find("\nrules:") == std::string::npos && !text.starts_with("rules:")) continue;
    BOOST_TEST_CONTEXT(entry.path().string()) {
      LoadResult r;
      BOOST_CHECK_NO_THROW(r = load_file(entry.path()));
      BOOST_TEST(r.warnings.empty());
      ++count;
    }
  }
  BOOST_TEST(count >= 4);
}

BOOST_AUTO_TEST_CASE(default_policy_loads_and_decides) {
  auto r = load_file(source_dir() / "config" / "policy.yaml");
  BOOST_TEST(r.warnings.empty());
  const auto& p = *r.policy;
  BOOST_TEST((p.default_action() == Action::deny));
  auto openai = explain(p, nullptr, "POST", "https://api.openai.com/v1/chat/completions");
  BOOST_TEST(openai["decision"] == "inject");
  BOOST_TEST(openai["injected"] == nlohmann::json({"header:Authorization"}));
  BOOST_TEST(explain(p, nullptr, "CONNECT", "pypi.org:443")["decision"] == "tunnel");
  BOOST_TEST(explain(p, nullptr, "GET", "http://169.254.169.254/latest/meta-data/")["refusal"]["code"] ==
             "policy_denied");
  BOOST_TEST(explain(p, nullptr, "GET", "https://example.com/")["refusal"]["code"] == "policy_denied");
}

BOOST_AUTO_TEST_CASE(example_decisions) {
  fs::path dir = source_dir() / "config" / "examples";
  auto anthropic = load_file(dir / "anthropic.yaml");
  auto a = explain(*anthropic.policy, nullptr, "POST", "https://api.anthropic.com/v1/messages");
  BOOST_TEST(a["injected"] == nlohmann::json({"header:x-api-key"}));
  auto github = load_file(dir / "github.yaml");
  auto g = explain(*github.policy, nullptr, "GET", "https://api.github.com/repos/o/r/issues");
  BOOST_TEST(g["decision"] == "inject");
  auto maps = load_file(dir / "google-maps.yaml");
  auto m = explain(*maps.policy, nullptr, "GET", "https://maps.googleapis.com/maps/api/geocode/json?address=x");
  BOOST_TEST(m["injected"] == nlohmann::json({"query:key"}));
  auto openai = load_file(dir / "openai.yaml");
  auto o = explain(*openai.policy, nullptr, "GET", "/openai/v1/models");
  BOOST_TEST(o["decision"] == "inject");
}

BOOST_AUTO_TEST_SUITE_END()
