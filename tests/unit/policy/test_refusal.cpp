#include <boost/test/unit_test.hpp>

#include <string>
#include <utility>
#include <vector>

#include "policy/refusal.hpp"

using namespace sidekey::policy;

BOOST_AUTO_TEST_SUITE(refusal)

// Every code and its status, as SPEC section 5 and README's table of error codes give them.
BOOST_AUTO_TEST_CASE(each_code_has_its_documented_status) {
  const std::vector<std::pair<std::string_view, int>> table = {
      {code::policy_denied, 403},           {code::secret_not_bound, 403},
      {code::unknown_secret, 403},          {code::reference_not_allowed, 403},
      {code::reference_required, 403},      {code::misdirected_request, 421},
      {code::egress_blocked, 403},          {code::bad_request, 400},
      {code::upstream_connect_failed, 502}, {code::upstream_tls_failed, 502},
      {code::upstream_timeout, 504},        {code::secret_invalid, 500},
  };
  for (const auto& [c, status] : table) {
    BOOST_TEST_CONTEXT(c) {
      BOOST_TEST(status_for(c) == status);
      BOOST_TEST(Refusal::make(c, "m").status == status);
    }
  }
  BOOST_TEST(status_for("no_such_code") == 500);
}

BOOST_AUTO_TEST_CASE(json_leaves_out_empty_fields) {
  auto r = Refusal::make(code::secret_invalid, "a secret's value cannot be written into header X").with_secret("s");
  auto j = r.to_json("req-1");
  BOOST_TEST(j["error"]["code"] == "secret_invalid");
  BOOST_TEST(j["error"]["secret"] == "s");
  BOOST_TEST(j["error"]["request_id"] == "req-1");
  BOOST_TEST(!j["error"].contains("rule"));
  BOOST_TEST(!j["error"].contains("host"));
}

BOOST_AUTO_TEST_SUITE_END()
