#include <boost/test/unit_test.hpp>

#include "policy/headers.hpp"
#include "secrets/secret_value.hpp"

using namespace sidekey::policy;

namespace {
std::vector<std::string> names(const Headers& h) {
  std::vector<std::string> out;
  for (const auto& f : h) out.push_back(f.name);
  return out;
}
using V = std::vector<std::string>;
}  // namespace

BOOST_AUTO_TEST_SUITE(headers)

BOOST_AUTO_TEST_CASE(strips_hop_by_hop) {
  Headers h = {{"Host", "a"},          {"Connection", "keep-alive, X-Custom"}, {"Keep-Alive", "timeout=5"},
               {"Proxy-Connection", "keep-alive"}, {"Proxy-Authorization", "Basic eA=="},
               {"Proxy-Authenticate", "x"}, {"TE", "trailers"}, {"Trailer", "X"}, {"Upgrade", "websocket"},
               {"x-custom", "1"},       {"Authorization", "Bearer t"}, {"Accept", "*/*"}};
  strip_hop_by_hop(h);
  BOOST_TEST(names(h) == (V{"Host", "Authorization", "Accept"}));
}

BOOST_AUTO_TEST_CASE(strips_the_same_from_views) {
  Headers owned = {{"Host", "a"}, {"Connection", "keep-alive, X-Custom, upgrade"}, {"x-custom", "1"},
                   {"Upgrade", "websocket"}, {"TE", "trailers"}, {"Accept", "*/*"}};
  FieldViews views;
  for (const auto& f : owned) views.push_back({f.name, f.value});
  for (bool keep_upgrade : {false, true}) {
    Headers h = owned;
    FieldViews v = views;
    strip_hop_by_hop(h, keep_upgrade);
    strip_hop_by_hop(v, keep_upgrade);
    BOOST_REQUIRE_EQUAL(h.size(), v.size());
    for (std::size_t i = 0; i < h.size(); ++i) {
      BOOST_TEST(h[i].name == v[i].name);
      BOOST_TEST(h[i].value == v[i].value);
    }
  }
}

BOOST_AUTO_TEST_CASE(many_connection_tokens) {
  // More tokens than are split up front: the lists are read again per field.
  Headers h = {{"Connection", "x-1, x-2,x-3 , x-4,x-5,x-6,x-7"}, {"Connection", "x-8,x-9, X-10"}, {"Host", "a"}};
  for (int i = 1; i <= 11; ++i) h.push_back({"X-" + std::to_string(i), "v"});
  strip_hop_by_hop(h);
  BOOST_TEST(names(h) == (V{"Host", "X-11"}));
}

BOOST_AUTO_TEST_CASE(eight_and_nine_connection_tokens) {
  // Eight tokens are split up front; the ninth sends every field back to reading the lists.
  for (int n : {8, 9}) {
    std::string listed;
    Headers h = {{"Host", "a"}};
    for (int i = 1; i <= n; ++i) {
      listed += (i > 1 ? "," : "") + std::string("x-") + std::to_string(i);
      h.push_back({"X-" + std::to_string(i), "v"});
    }
    h.push_back({"X-Kept", "v"});
    h.insert(h.begin(), Header{"Connection", listed});
    strip_hop_by_hop(h);
    BOOST_TEST(names(h) == (V{"Host", "X-Kept"}), n);
  }
}

BOOST_AUTO_TEST_CASE(removes_several_names_in_one_pass) {
  Headers h = {{"Host", "a"}, {"content-length", "5"}, {"Expect", "100-continue"}, {"X", "1"}, {"EXPECT", "x"}};
  remove_headers(h, {"Content-Length", "Expect", "Absent"});
  BOOST_TEST(names(h) == (V{"Host", "X"}));
}

BOOST_AUTO_TEST_CASE(connection_tokens_case_and_repeats) {
  Headers h = {{"connection", " X-A ,x-b"}, {"CONNECTION", "X-C"}, {"x-a", "1"}, {"X-B", "2"}, {"x-c", "3"}, {"x-d", "4"}};
  strip_hop_by_hop(h);
  BOOST_TEST(names(h) == V{"x-d"});
}

BOOST_AUTO_TEST_CASE(upgrade_kept_only_when_upgrading) {
  Headers h = {{"Connection", "Upgrade, keep-alive"}, {"Upgrade", "websocket"}, {"Sec-WebSocket-Key", "k"}};
  BOOST_TEST(is_upgrade_request(h));
  Headers kept = h;
  strip_hop_by_hop(kept, true);
  BOOST_TEST(names(kept) == (V{"Upgrade", "Sec-WebSocket-Key", "Connection"}));
  BOOST_TEST(find_header(kept, "connection")->value == "upgrade");
  Headers dropped = h;
  strip_hop_by_hop(dropped, false);
  BOOST_TEST(names(dropped) == V{"Sec-WebSocket-Key"});
  // Upgrade without Connection: upgrade is no upgrade: stripped even with keep_upgrade.
  Headers lone = {{"Upgrade", "websocket"}};
  BOOST_TEST(!is_upgrade_request(lone));
  strip_hop_by_hop(lone, true);
  BOOST_TEST(lone.empty());
}

BOOST_AUTO_TEST_CASE(upgrade_listed_among_many_tokens) {
  // "upgrade" and "keep-alive" name fields that go anyway, and are not among the tokens split up
  // front; an upgrade is still seen behind eight others (split) and behind nine (read again).
  for (int n : {8, 9}) {
    std::string listed = "keep-alive";
    Headers h = {{"Upgrade", "websocket"}, {"Keep-Alive", "timeout=5"}};
    for (int i = 1; i <= n; ++i) {
      listed += ", x-" + std::to_string(i);
      h.push_back({"X-" + std::to_string(i), "v"});
    }
    listed += ", Upgrade";
    h.push_back({"X-Kept", "v"});
    h.insert(h.begin(), Header{"Connection", listed});
    Headers kept = h;
    strip_hop_by_hop(kept, true);
    BOOST_TEST(names(kept) == (V{"Upgrade", "X-Kept", "Connection"}), n);
    strip_hop_by_hop(h, false);
    BOOST_TEST(names(h) == V{"X-Kept"}, n);
  }
}

BOOST_AUTO_TEST_CASE(many_fields_keep_their_order) {
  // More fields than the inline bookkeeping holds; every third one named by Connection.
  Headers h;
  std::string listed;
  V expected;
  for (int i = 0; i < 150; ++i) {
    std::string name = "X-F" + std::to_string(i);
    h.push_back({name, "v" + std::to_string(i)});
    if (i % 3 == 0) listed += (listed.empty() ? "" : ", ") + name;
    else expected.push_back(name);
    if (i == 70) h.push_back({"Keep-Alive", "timeout=5"});
  }
  h.push_back({"Connection", listed});
  strip_hop_by_hop(h);
  BOOST_TEST(names(h) == expected);
  BOOST_TEST(h[0].value == "v1");
  BOOST_TEST(h.back().value == "v149");
}

BOOST_AUTO_TEST_CASE(many_connection_fields) {
  Headers h;
  for (int i = 0; i < 6; ++i) h.push_back({i % 2 ? "connection" : "Connection", "X-N" + std::to_string(i)});
  for (int i = 0; i < 7; ++i) h.push_back({"x-n" + std::to_string(i), "v"});
  strip_hop_by_hop(h);
  BOOST_TEST(names(h) == V{"x-n6"});
}

BOOST_AUTO_TEST_CASE(find_and_remove) {
  Headers h = {{"A", "1"}, {"a", "2"}, {"B", "3"}};
  BOOST_TEST(find_header(h, "A")->value == "1");
  BOOST_TEST(!find_header(h, "C"));
  remove_header(h, "a");
  BOOST_TEST(names(h) == V{"B"});
}

// A removed field's slot keeps a short value (moved, not cleared): wipe_spare reaches it.
BOOST_AUTO_TEST_CASE(wipe_spare_zeroes_the_slots_fields_left) {
  auto holds = [](const Headers& h, std::string_view needle) {
    std::string_view raw(reinterpret_cast<const char*>(h.data()), h.capacity() * sizeof(Header));
    return raw.find(needle) != std::string_view::npos;
  };
  Headers h;
  h.reserve(4);
  h.push_back({"A", "x"});
  h.push_back({"B", "sk-ECHO-abc12"});  // 13 bytes: inside the string object
  remove_header(h, "a");
  BOOST_REQUIRE(h.size() == 1u);
  for (auto& f : h) sidekey::secrets::wipe(f.value);
  BOOST_TEST(holds(h, "ECHO-abc12"));  // the removed slot still holds it (a move clears the first byte)
  wipe_spare(h);
  BOOST_TEST(!holds(h, "ECHO-abc12"));
  BOOST_TEST(h.size() == 1u);
  BOOST_TEST(h[0].name == "B");
}

BOOST_AUTO_TEST_SUITE_END()
