#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "core/encoding.hpp"
#include "policy/rewrite.hpp"
#include "policy/scrubber.hpp"

using namespace sidekey;
using namespace sidekey::policy;

namespace {

using Patterns = std::vector<ScrubPattern>;

bool contains(std::string_view hay, std::string_view needle) { return hay.find(needle) != std::string_view::npos; }

std::size_t occurrences(std::string_view hay, std::string_view needle) {
  std::size_t n = 0;
  for (std::size_t at = hay.find(needle); at != std::string_view::npos; at = hay.find(needle, at + 1)) ++n;
  return n;
}

// Feeds `body` cut at the (sorted) positions `cuts`, then finishes.
std::string run_stream(Scrubber& s, std::string_view body, const std::vector<std::size_t>& cuts,
                       std::size_t* count = nullptr) {
  std::string out;
  std::size_t at = 0, n = 0;
  for (std::size_t c : cuts) {
    n += s.feed(body.substr(at, c - at), out);
    at = c;
  }
  n += s.feed(body.substr(at), out);
  n += s.finish(out);
  if (count) *count = n;
  return out;
}

std::string one_shot(const Patterns& p, std::string_view body) {
  Scrubber s(p);
  return s.scrub_all(body);
}

// Every form of every pattern, distinct, first wins: what the Scrubber's automaton holds.
std::vector<ScrubForm> all_forms(const Patterns& patterns) {
  std::vector<ScrubForm> all;
  for (const auto& p : patterns)
    for (auto& f : scrub_forms(p.plaintext, p.replacement))
      if (std::none_of(all.begin(), all.end(), [&](const ScrubForm& g) { return g.bytes.reveal() == f.bytes.reveal(); }))
        all.push_back(std::move(f));
  return all;
}

const ScrubForm* form_of_kind(const std::vector<ScrubForm>& forms, std::string_view kind) {
  for (const auto& f : forms)
    if (f.kind == kind) return &f;
  return nullptr;
}

// The first form (if any) that occurs in `text`, for a readable failure.
std::string leaked_form(const std::vector<ScrubForm>& forms, std::string_view text) {
  for (const auto& f : forms)
    if (contains(text, f.bytes.reveal())) return f.kind;
  return "";
}

// A naive model of the documented semantics: the leftmost-longest match among those ending
// past the replaced bytes, scanning again from just after its start; a match overlapping the
// previous one adds its replacement unless it is the same text. Also checks that every
// occurrence of every form in `text` lies inside replaced bytes.
struct Model {
  std::string out;
  std::size_t count = 0;
  bool covered = true;
};

Model model_scrub(const std::vector<ScrubForm>& forms, std::string_view text) {
  const std::size_t n = text.size();
  std::vector<long> longest(n, -1);  // form index of the longest form starting at each position
  for (std::size_t s = 0; s < n; ++s)
    for (std::size_t f = 0; f < forms.size(); ++f) {
      auto b = forms[f].bytes.reveal();
      if (text.substr(s, b.size()) == b && (longest[s] < 0 || b.size() > forms[longest[s]].bytes.size()))
        longest[s] = static_cast<long>(f);
    }
  Model m;
  std::vector<bool> replaced(n, false);
  std::size_t emitted = 0, from = 0;
  std::string last;  // the replacement written last
  for (;;) {
    std::size_t s = from;
    while (s < n && !(longest[s] >= 0 && s + forms[longest[s]].bytes.size() > emitted)) ++s;
    if (s >= n) break;
    const auto& f = forms[longest[s]];
    if (s >= emitted) {
      m.out.append(text.substr(emitted, s - emitted));
      m.out += f.replacement;
    } else if (f.replacement != last) {
      m.out += f.replacement;
    }
    last = f.replacement;
    for (std::size_t k = s; k < s + f.bytes.size(); ++k) replaced[k] = true;
    emitted = s + f.bytes.size();
    from = s + 1;
    ++m.count;
  }
  if (emitted < n) m.out.append(text.substr(emitted));
  for (std::size_t s = 0; s < n; ++s)
    for (const auto& f : forms) {
      auto b = f.bytes.reveal();
      if (text.substr(s, b.size()) == b)
        for (std::size_t k = s; k < s + b.size(); ++k) m.covered = m.covered && replaced[k];
    }
  return m;
}

std::string b64(std::string_view bytes, bool url, bool pad) {
  std::string s = base64_encode(bytes);
  if (url)
    for (auto& c : s) c = c == '+' ? '-' : c == '/' ? '_' : c;
  if (!pad)
    while (!s.empty() && s.back() == '=') s.pop_back();
  return s;
}

// Decodes standard or URL-safe base64, padded or not.
std::optional<std::string> b64_decode_any(std::string s) {
  for (auto& c : s) c = c == '-' ? '+' : c == '_' ? '/' : c;
  while (s.size() % 4) s += '=';
  return base64_decode(s);
}

std::string random_bytes(std::mt19937& rng, std::size_t n) {
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

// A secret with non-ASCII, a quote, a slash, a backslash, HTML characters, a control byte,
// DEL and a tab: U+00E4, U+00F6, U+20AC, U+1F600.
const std::string kTricky = "p\xc3\xa4\"ss/w\xc3\xb6rd\xe2\x82\xac\xf0\x9f\x98\x80\\x<y&z'=+\x01\x7f\t";
const std::string kDel = "\x7f";

}  // namespace

BOOST_AUTO_TEST_SUITE(scrubber)

// --- basics ----------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(empty_scrubber_passes_through) {
  Scrubber s;
  BOOST_TEST(s.empty());
  std::string out;
  BOOST_TEST(s.feed("hello", out) == 0u);
  BOOST_TEST(s.finish(out) == 0u);
  BOOST_TEST(out == "hello");
  BOOST_TEST(s.scrub_all("x") == "x");
  Scrubber none(Patterns{{"", "{{secrets.e}}"}});  // empty plaintexts are ignored
  BOOST_TEST(none.empty());
  BOOST_TEST(none.scrub_all("abc") == "abc");
}

BOOST_AUTO_TEST_CASE(raw_plaintext_and_composed_value) {
  Patterns p{{"Bearer sk-live-123", "Bearer {{secrets.openai}}"}, {"sk-live-123", "{{secrets.openai}}"}};
  Scrubber s(p);
  BOOST_TEST(!s.empty());
  std::string body = "{\"auth\":\"Bearer sk-live-123\",\"key\":\"sk-live-123\",\"x\":\"Bearer sk-live-1234\"}";
  BOOST_TEST(s.scrub_all(body) ==
             "{\"auth\":\"Bearer {{secrets.openai}}\",\"key\":\"{{secrets.openai}}\",\"x\":\"Bearer {{secrets.openai}}4\"}");
  BOOST_TEST(s.replaced() == 3u);
}

namespace {
// A response head as it came, for finds_any: status line, fields, blank line.
std::string head_of(std::string_view reason, const Headers& fields) {
  std::string h = "HTTP/1.1 200 " + std::string(reason) + "\r\n";
  for (const auto& f : fields) h += f.name + ": " + f.value + "\r\n";
  return h + "\r\n";
}
bool finds(const Scrubber& s, const Headers& fields, std::string_view reason = "OK") {
  FieldViews views;
  for (const auto& f : fields) views.push_back({f.name, f.value});
  return s.finds_any(head_of(reason, fields), views);
}
}  // namespace

BOOST_AUTO_TEST_CASE(finds_any_searches_the_head_and_its_names_without_counting) {
  Scrubber s(Patterns{{"sk-live-123", "{{secrets.a}}"}});
  Headers clean = {{"Server", "x"}, {"Date", "today"}};
  BOOST_TEST(!finds(s, clean));
  BOOST_TEST(finds(s, clean, "OK sk-live-123"));                   // the reason phrase
  BOOST_TEST(finds(s, {{"X-Echo", "key=sk-live-123"}}));            // a value
  BOOST_TEST(finds(s, {{"X-sk-live-123", "1"}}));                   // a name
  BOOST_TEST(!finds(s, {{"A", "sk-live"}, {"-123", ""}}));          // the line break breaks it
  BOOST_TEST(s.replaced() == 0u);
  BOOST_TEST(!finds(Scrubber(), {{"A", "sk-live-123"}}));
  // A plaintext split across two fields is no match (no per-field scrub could replace it);
  // whole in one field, it is.
  Scrubber nl(Patterns{{"ab\ncd", "{{secrets.n}}"}});
  BOOST_TEST(!finds(nl, {{"A", "ab"}, {"B", "cd"}}));
  BOOST_TEST(finds(nl, {{"A", "xab\ncdx"}}));
  // Every field is searched, the last one too, its name in any letter case.
  BOOST_TEST(finds(s, {{"A", "1"}, {"B", "2"}, {"C", "sk-live-123"}}));
  BOOST_TEST(finds(s, {{"A", "1"}, {"B", "2"}, {"C-sk-LIVE-123", ""}}));
  // Names in any letter case; values and the reason as they are.
  BOOST_TEST(finds(s, {{"X-SK-LIVE-123", "1"}}));
  BOOST_TEST(!finds(s, {{"X", "SK-LIVE-123"}}));
  BOOST_TEST(!finds(s, clean, "SK-LIVE-123"));
  Scrubber mixed(Patterns{{"Sk-Live-XYZ", "{{secrets.m}}"}});
  BOOST_TEST(finds(mixed, {{"x-sk-live-xyz", "1"}}));
  // The names folded are those given: the head's own bytes are searched as they are.
  BOOST_TEST(!mixed.finds_any("HTTP/1.1 200 OK\r\nx-sk-live-xyz: 1\r\n\r\n", {}));
  BOOST_TEST(mixed.finds_any("HTTP/1.1 200 OK\r\nSk-Live-XYZ: 1\r\n\r\n", {}));
}

BOOST_AUTO_TEST_CASE(field_names_are_dropped_in_any_letter_case) {
  Scrubber s(Patterns{{"Sk-Live-XYZ", "{{secrets.m}}"}});
  BOOST_TEST(s.drops_name("x-sk-live-xyz"));
  BOOST_TEST(s.drops_name("X-SK-LIVE-XYZ-Echo"));
  BOOST_TEST(s.drops_name("Sk-Live-XYZ"));
  BOOST_TEST(!s.drops_name("x-sk-live-xy"));
  BOOST_TEST(s.replaced() == 3u);
  BOOST_TEST(!Scrubber().drops_name("anything"));
}

BOOST_AUTO_TEST_CASE(empty_input) {
  Scrubber s(Patterns{{"sk-live-123", "{{secrets.a}}"}});
  std::string out;
  BOOST_TEST(s.feed("", out) == 0u);
  BOOST_TEST(s.feed("", out) == 0u);
  BOOST_TEST(s.finish(out) == 0u);
  BOOST_TEST(out.empty());
  BOOST_TEST(s.scrub_all("").empty());
  BOOST_TEST(s.replaced() == 0u);
  std::string out2;
  s.finish(out2);
  BOOST_TEST(out2.empty());
}

BOOST_AUTO_TEST_CASE(no_first_byte_passes_whole_chunk) {
  Scrubber s(Patterns{{"sk-live-123", "{{secrets.a}}"}});
  // Bytes no form starts with: nothing is held back.
  std::string body(10000, '#');
  std::string out;
  s.feed(body, out);
  BOOST_TEST(out == body);
  BOOST_TEST(s.held() == 0u);
  // A tail that may begin a match is held back, at most max_pattern_length() - 1 bytes.
  out.clear();
  s.feed("abc sk-live-12", out);
  BOOST_TEST(out == "abc ");
  BOOST_TEST(s.held() == 10u);
  BOOST_TEST(s.held() < s.max_pattern_length());
  s.feed("3!", out);
  BOOST_TEST(out == "abc {{secrets.a}}!");
  s.finish(out);
  BOOST_TEST(out == "abc {{secrets.a}}!");
}

BOOST_AUTO_TEST_CASE(finish_flushes_partial_match) {
  Scrubber s(Patterns{{"sk-live-123", "{{secrets.a}}"}});
  std::string out;
  s.feed("x sk-live-12", out);
  BOOST_TEST(out == "x ");
  s.finish(out);
  BOOST_TEST(out == "x sk-live-12");
  // The scrubber takes a new stream after finish.
  out.clear();
  s.feed("sk-live-", out);
  s.feed("123", out);
  s.finish(out);
  BOOST_TEST(out == "{{secrets.a}}");
}

BOOST_AUTO_TEST_CASE(replaced_counts) {
  Scrubber s(Patterns{{"sk-live-123", "{{secrets.a}}"}, {"tok-999999", "{{secrets.b}}"}});
  std::string out;
  BOOST_TEST(s.feed("sk-live-123 and tok-99", out) == 1u);
  BOOST_TEST(s.replaced() == 1u);
  BOOST_TEST(s.feed("9999 sk-live-123 sk-li", out) == 2u);
  BOOST_TEST(s.replaced() == 3u);
  BOOST_TEST(s.feed("ve-123", out) == 1u);  // complete, and no longer form can grow from it
  BOOST_TEST(s.finish(out) == 0u);
  BOOST_TEST(s.replaced() == 4u);
  BOOST_TEST(out == "{{secrets.a}} and {{secrets.b}} {{secrets.a}} {{secrets.a}}");
  BOOST_TEST(s.scrub_all("tok-999999/tok-999999") == "{{secrets.b}}/{{secrets.b}}");
  BOOST_TEST(s.replaced() == 6u);
}

// --- overlap semantics -------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(longest_match_at_same_start_and_prefix_patterns) {
  Patterns p{{"sk-live", "{{secrets.short}}"}, {"sk-live-123456", "{{secrets.long}}"}};
  Scrubber s(p);
  BOOST_TEST(s.scrub_all("sk-live-123456 sk-live-9 sk-live") ==
             "{{secrets.long}} {{secrets.short}}-9 {{secrets.short}}");
  // Streaming: the short one is complete at a chunk end while the long one is still possible.
  std::string out;
  s.feed("sk-live", out);
  BOOST_TEST(out.empty());
  s.feed("-1234", out);
  BOOST_TEST(out.empty());
  s.feed("56", out);
  BOOST_TEST(out == "{{secrets.long}}");
  s.feed(" sk-live", out);
  s.feed("-12345!", out);  // the long one fails: the short one is taken
  s.finish(out);
  BOOST_TEST(out == "{{secrets.long}} {{secrets.short}}-12345!");
  // Order of the patterns does not matter.
  Patterns q{p[1], p[0]};
  BOOST_TEST(one_shot(q, "sk-live-123456 sk-live-9") == "{{secrets.long}} {{secrets.short}}-9");
}

BOOST_AUTO_TEST_CASE(leftmost_match_wins_then_overlapping_one_follows) {
  // P2 starts inside P1 and runs past it: both are replaced, in order, so neither survives in part.
  Patterns p{{"abcdefgh12", "{{secrets.one}}"}, {"gh12345678", "{{secrets.two}}"}};
  BOOST_TEST(one_shot(p, "xxabcdefgh12345678yy") == "xx{{secrets.one}}{{secrets.two}}yy");
  BOOST_TEST(one_shot(p, "xxabcdefgh1234567yy") == "xx{{secrets.one}}34567yy");
  BOOST_TEST(one_shot(p, "xxbcdefgh12345678yy") == "xxbcdef{{secrets.two}}yy");
  // The earlier-starting shorter match is preferred to a longer later one.
  Patterns q{{"1234abcd", "{{secrets.a}}"}, {"34abcdefghijkl", "{{secrets.b}}"}};
  BOOST_TEST(one_shot(q, "1234abcdefghijkl!") == "{{secrets.a}}{{secrets.b}}!");
  // A match inside a replaced one is not replaced again.
  Patterns r{{"Bearer sk-live-123", "Bearer {{secrets.a}}"}, {"sk-live-123", "{{secrets.a}}"}};
  Scrubber s(r);
  BOOST_TEST(s.scrub_all("Bearer sk-live-123") == "Bearer {{secrets.a}}");
  BOOST_TEST(s.replaced() == 1u);
}

BOOST_AUTO_TEST_CASE(periodic_pattern_overlapping_itself) {
  Patterns p{{"abababab", "{{secrets.p}}"}};
  Scrubber s(p);
  // Matches at 1 and at 3: the second overlaps the first and runs past it; both are covered by
  // one replacement (the same text), and both count.
  std::string out = s.scrub_all("xababababab!");
  BOOST_TEST(out == "x{{secrets.p}}!");
  BOOST_TEST(s.replaced() == 2u);
  // Matches at 0, 2, 4, 6, 8; then a separate one after a gap.
  BOOST_TEST(one_shot(p, "abababababababab-abababab") == "{{secrets.p}}-{{secrets.p}}");
  // Streaming agrees at every split.
  std::string body = "zabababababababab-ababababab";
  std::string expected = one_shot(p, body);
  BOOST_TEST(expected == "z{{secrets.p}}-{{secrets.p}}");
  for (std::size_t i = 0; i <= body.size(); ++i) {
    Scrubber t(s.set());
    BOOST_TEST(run_stream(t, body, {i}) == expected);
  }
}

BOOST_AUTO_TEST_CASE(adjacent_matches) {
  Patterns p{{"sk-AAAA1111", "{{secrets.a}}"}, {"tok-BBBB2222", "{{secrets.b}}"}};
  Scrubber s(p);
  std::string body = "sk-AAAA1111tok-BBBB2222sk-AAAA1111sk-AAAA1111";
  std::string expected = "{{secrets.a}}{{secrets.b}}{{secrets.a}}{{secrets.a}}";
  BOOST_TEST(s.scrub_all(body) == expected);
  BOOST_TEST(s.replaced() == 4u);
  for (std::size_t i = 0; i <= body.size(); ++i) {
    Scrubber t(p);
    std::size_t n = 0;
    BOOST_TEST(run_stream(t, body, {i}, &n) == expected);
    BOOST_TEST(n == 4u);
  }
}

// --- splits ------------------------------------------------------------------------------------

namespace {
struct SplitCase {
  std::string secret = "p\xc3\xa4\"ss/w\xc3\xb6rd\xe2\x82\xac 1+2";
  std::string composed = "Bearer " + secret;
  Patterns patterns{{composed, "Bearer {{secrets.pw}}"}, {secret, "{{secrets.pw}}"}};
  std::string body;
  SplitCase() {
    body = "raw:" + secret + ";hdr:" + composed +
           ";json:p\\u00e4\\\"ss/w\\u00f6rd\\u20ac 1+2"  // Python json.dumps
           ";pct:p%C3%A4%22ss%2Fw%C3%B6rd%E2%82%AC+1%2B2"   // quote_plus
           ";pctl:p%c3%a4%22ss%2fw%c3%b6rd%e2%82%ac%201%2b2" +
           std::string(";b64:") + b64(secret, false, true) + ";blob:" + b64("xy" + secret + "z", true, false) + ";end";
  }
};
}  // namespace

BOOST_AUTO_TEST_CASE(every_split_across_two_chunks) {
  SplitCase c;
  auto forms = all_forms(c.patterns);
  std::string expected = one_shot(c.patterns, c.body);
  BOOST_TEST(occurrences(expected, "{{secrets.pw}}") == 3u);  // raw, in the header, JSON
  BOOST_TEST(occurrences(expected, "%7B%7Bsecrets.pw%7D%7D") == 1u);
  BOOST_TEST(occurrences(expected, "%7b%7bsecrets.pw%7d%7d") == 1u);
  BOOST_TEST(occurrences(expected, "Bearer {{secrets.pw}}") == 1u);
  BOOST_TEST(leaked_form(forms, expected) == "");
  BOOST_TEST(!contains(expected, c.secret));
  auto set = ScrubSet::build(c.patterns);
  for (std::size_t i = 0; i <= c.body.size(); ++i) {
    Scrubber s(set);
    std::string out = run_stream(s, c.body, {i});
    BOOST_TEST_REQUIRE(out == expected, "split at " << i);
    BOOST_TEST(s.replaced() == 7u);
  }
}

BOOST_AUTO_TEST_CASE(every_pair_of_splits_across_three_chunks) {
  SplitCase c;
  std::string expected = one_shot(c.patterns, c.body);
  Scrubber s(c.patterns);  // reused across streams: finish() resets it
  std::size_t failures = 0;
  for (std::size_t i = 0; i <= c.body.size(); ++i)
    for (std::size_t j = i; j <= c.body.size(); ++j) {
      std::string out = run_stream(s, c.body, {i, j});
      if (out != expected || contains(out, c.secret)) {
        if (++failures < 5) BOOST_ERROR("splits at " << i << ", " << j << ": " << out);
      }
    }
  BOOST_TEST(failures == 0u);
  BOOST_TEST(s.replaced() == 7u * (c.body.size() + 1) * (c.body.size() + 2) / 2);
}

BOOST_AUTO_TEST_CASE(every_split_of_each_form_alone) {
  // Each form of the tricky secret, alone between two markers, split at every position.
  std::string secret = kTricky;
  Patterns p{{secret, "{{secrets.t}}"}};
  auto forms = all_forms(p);
  BOOST_TEST(forms.size() > 20u);
  Scrubber s(p);
  for (const auto& f : forms) {
    std::string body = "<<" + std::string(f.bytes.reveal()) + ">>";
    std::string expected = "<<" + f.replacement + ">>";
    // Between non-base64 markers every form is found whole (base64 cores of a padded whole
    // value lose to the whole value, which starts earlier).
    BOOST_TEST_REQUIRE(s.scrub_all(body) == expected, f.kind);
    for (std::size_t i = 0; i <= body.size(); ++i)
      for (std::size_t j = i; j <= body.size(); j += 3) BOOST_TEST_REQUIRE(run_stream(s, body, {i, j}) == expected, f.kind);
  }
}

BOOST_AUTO_TEST_CASE(one_byte_feeds_of_a_long_body) {
  std::string secret = "sk-proj-0123456789abcdefXYZ/+=";
  std::string header = "Bearer " + secret;  // ScrubPattern borrows: the strings must outlive it
  Patterns p{{header, "Bearer {{secrets.k}}"}, {secret, "{{secrets.k}}"}};
  auto forms = all_forms(p);
  std::mt19937 rng(7);
  std::string body;
  while (body.size() < 60000) {
    body += "data: {\"chunk\":\"lorem ipsum dolor sit amet s sk sk- sk-proj\"}\n\n";
    if (rng() % 4 == 0) body += std::string(forms[rng() % forms.size()].bytes.reveal());
  }
  std::string expected = one_shot(p, body);
  BOOST_TEST(leaked_form(forms, expected) == "");
  Scrubber s(p);
  std::string out;
  std::size_t max_held = 0;
  for (char c : body) {
    s.feed(std::string_view(&c, 1), out);
    max_held = std::max(max_held, s.held());
  }
  s.finish(out);
  BOOST_TEST(out == expected);
  BOOST_TEST(max_held < s.max_pattern_length());
  BOOST_TEST(max_held > 0u);
}

// --- forms: JSON ------------------------------------------------------------------------------

namespace {
// `escaped` echoed in a JSON string must become `replacement`.
void check_json_echo(const std::string& secret, const std::string& escaped, const std::string& replacement,
                     const std::string& expected_replacement) {
  Patterns p{{secret, replacement}};
  auto forms = all_forms(p);
  bool listed = std::any_of(forms.begin(), forms.end(), [&](const ScrubForm& f) { return f.bytes.reveal() == escaped; });
  BOOST_TEST(listed, "form not generated: " << escaped);
  std::string out = one_shot(p, "{\"v\":\"" + escaped + "\"}");
  BOOST_TEST(out == "{\"v\":\"" + expected_replacement + "\"}");
}
}  // namespace

BOOST_AUTO_TEST_CASE(json_python_ensure_ascii) {
  // python3 -c 'import json; print(json.dumps(s))'
  check_json_echo(kTricky,
                  "p\\u00e4\\\"ss/w\\u00f6rd\\u20ac\\ud83d\\ude00\\\\x<y&z'=+\\u0001\\u007f\\t",
                  "{{secrets.team/pw}}", "{{secrets.team/pw}}");
}

BOOST_AUTO_TEST_CASE(json_node_and_python_unicode) {
  // node -e 'console.log(JSON.stringify(s))'; json.dumps(s, ensure_ascii=False)
  check_json_echo(kTricky,
                  "p\xc3\xa4\\\"ss/w\xc3\xb6rd\xe2\x82\xac\xf0\x9f\x98\x80\\\\x<y&z'=+\\u0001" + kDel + "\\t",
                  "{{secrets.team/pw}}", "{{secrets.team/pw}}");
}

BOOST_AUTO_TEST_CASE(json_go_html_safe) {
  // Go encoding/json: <, >, & as \u003c…; DEL raw; \b and \f short since Go 1.22.
  check_json_echo(kTricky,
                  "p\xc3\xa4\\\"ss/w\xc3\xb6rd\xe2\x82\xac\xf0\x9f\x98\x80\\\\x\\u003cy\\u0026z'=+\\u0001" + kDel + "\\t",
                  "{{secrets.a}}", "{{secrets.a}}");
  check_json_echo("a\bb\fc-secret", "a\\u0008b\\u000cc-secret", "{{secrets.a}}", "{{secrets.a}}");  // before 1.22
  check_json_echo("a\bb\fc-secret", "a\\bb\\fc-secret", "{{secrets.a}}", "{{secrets.a}}");
  // Ill-formed UTF-8 becomes \ufffd in Go.
  check_json_echo("ab\xff" "cd-secret", "ab\\ufffdcd-secret", "{{secrets.a}}", "{{secrets.a}}");
  // U+2028 escaped by Go even with raw UTF-8.
  check_json_echo("line\xe2\x80\xa8sep", "line\\u2028sep", "{{secrets.a}}", "{{secrets.a}}");
}

BOOST_AUTO_TEST_CASE(json_php_slash_and_escaped_replacement) {
  // PHP json_encode: "\/" and \u escapes; the replacement is escaped the same way.
  check_json_echo(kTricky,
                  "p\\u00e4\\\"ss\\/w\\u00f6rd\\u20ac\\ud83d\\ude00\\\\x<y&z'=+\\u0001" + kDel + "\\t",
                  "{{secrets.team/pw}}", "{{secrets.team\\/pw}}");
  check_json_echo("https://user:pw@host/x", "https:\\/\\/user:pw@host\\/x", "https://user:{{secrets.p}}@host/x",
                  "https:\\/\\/user:{{secrets.p}}@host\\/x");
}

BOOST_AUTO_TEST_CASE(json_dotnet_and_gson) {
  // System.Text.Json (default encoder): upper-case hex, HTML-sensitive characters and '"' escaped.
  check_json_echo(kTricky,
                  "p\\u00E4\\u0022ss/w\\u00F6rd\\u20AC\\uD83D\\uDE00\\\\x\\u003Cy\\u0026z\\u0027=\\u002B\\u0001\\u007F\\t",
                  "{{secrets.a}}", "{{secrets.a}}");
  // Gson: also '=' and '\''.
  check_json_echo(kTricky,
                  "p\xc3\xa4\\\"ss/w\xc3\xb6rd\xe2\x82\xac\xf0\x9f\x98\x80\\\\x\\u003cy\\u0026z\\u0027\\u003d+\\u0001" + kDel +
                      "\\t",
                  "{{secrets.a}}", "{{secrets.a}}");
}

BOOST_AUTO_TEST_CASE(json_control_characters_and_quotes) {
  check_json_echo("q\"uo\\te\nnl\rcr\x1f", "q\\\"uo\\\\te\\nnl\\rcr\\u001f", "{{secrets.a}}", "{{secrets.a}}");
  check_json_echo("q\"uo\\te\nnl\rcr\x1f", "q\\\"uo\\\\te\\nnl\\rcr\\u001F", "{{secrets.a}}", "{{secrets.a}}");  // Jackson
}

// --- forms: percent-encoding -----------------------------------------------------------------

BOOST_AUTO_TEST_CASE(percent_encodings) {
  const std::string secret = "s3cr3t pa/ss+w\xc3\xb6rd~*";
  Patterns p{{secret, "{{secrets.pw}}"}};
  struct Echo {
    const char* how;
    std::string text, replacement;
  };
  const std::string upper = "%7B%7Bsecrets.pw%7D%7D", lower = "%7b%7bsecrets.pw%7d%7d";
  std::vector<Echo> echoes = {
      {"python quote", "s3cr3t%20pa/ss%2Bw%C3%B6rd~%2A", upper},
      {"python quote_plus", "s3cr3t+pa%2Fss%2Bw%C3%B6rd~%2A", upper},
      {"python quote safe=''", "s3cr3t%20pa%2Fss%2Bw%C3%B6rd~%2A", upper},
      {"encodeURIComponent", "s3cr3t%20pa%2Fss%2Bw%C3%B6rd~*", upper},
      {"encodeURI", "s3cr3t%20pa/ss+w%C3%B6rd~*", upper},
      {"URLSearchParams", "s3cr3t+pa%2Fss%2Bw%C3%B6rd%7E*", upper},
      {"lower-case quote_plus", "s3cr3t+pa%2fss%2bw%c3%b6rd~%2a", lower},
      {"lower-case rfc3986", "s3cr3t%20pa%2fss%2bw%c3%b6rd~%2a", lower},
  };
  for (const auto& e : echoes) {
    std::string out = one_shot(p, "GET /echo?q=" + e.text + "&x=1");
    BOOST_TEST(out == "GET /echo?q=" + e.replacement + "&x=1", e.how);
  }
  // A percent-encoded form inside a JSON string (a URL echoed in JSON, PHP escaping "/").
  std::string out = one_shot(p, "{\"url\":\"https:\\/\\/h\\/?q=s3cr3t%20pa\\/ss%2Bw%C3%B6rd~%2A\"}");
  BOOST_TEST(out == "{\"url\":\"https:\\/\\/h\\/?q=" + upper + "\"}");
}

BOOST_AUTO_TEST_CASE(neutral_secret_has_no_redundant_forms) {
  auto forms = scrub_forms("sk-live_0123.abc", "{{secrets.a}}");
  // No JSON or percent variant of the plaintext itself (only of its padded base64, for '=').
  for (const auto& f : forms) BOOST_TEST((f.kind.find('(') != std::string::npos || f.kind.rfind("base64", 0) == 0 || f.kind == "raw"), f.kind);
  BOOST_TEST(forms.front().kind == "raw");
  BOOST_TEST(form_of_kind(forms, "base64:std") != nullptr);
  BOOST_TEST(form_of_kind(forms, "base64:std-core2") != nullptr);
  BOOST_TEST(form_of_kind(forms, "base64:url-core2") == nullptr);  // same bytes as std-core2: kept once
}

// --- forms: base64 -----------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(base64_whole_value_forms) {
  // 14 bytes (n % 3 == 2): padded forms end with "="; base64 "c2st+/+/Pj4+P2xpdmU=".
  const std::string secret = "sk-\xfb\xff\xbf>>>?live";
  const std::string repl = "{{secrets.k}}";
  Patterns p{{secret, repl}};
  for (bool url : {false, true})
    for (bool pad : {true, false}) {
      std::string enc = b64(secret, url, pad);
      BOOST_TEST(contains(enc, url ? "-" : "+"));
      std::string out = one_shot(p, "token=" + enc + ";");
      BOOST_TEST_REQUIRE(out.size() > 7u);
      std::string blob = out.substr(6, out.size() - 7);
      auto decoded = b64_decode_any(blob);
      BOOST_TEST_REQUIRE(decoded.has_value());
      if (pad) {
        BOOST_TEST(blob == b64(repl, url, true));  // exactly base64(R)
        BOOST_TEST(*decoded == repl);
      } else {
        BOOST_TEST(*decoded == repl + std::string((3 + secret.size() % 3 - repl.size() % 3) % 3, ' '));
      }
      BOOST_TEST(blob.find(url ? '+' : '-') == std::string::npos);  // same alphabet
    }
}

BOOST_AUTO_TEST_CASE(basic_credential_echo) {
  // httpbin-style echo of "Authorization: Basic base64(user:password)".
  const std::string password = "s3cr3t-password";
  const std::string cred = "alice:" + password;
  const std::string header = "Basic " + b64(cred, false, true);
  std::string body = "{\"headers\":{\"Authorization\":\"" + header + "\"}}";

  // The composed value known as a whole: decodes to the credential with the reference in it.
  Patterns whole{{cred, "alice:{{secrets.pw}}"}, {password, "{{secrets.pw}}"}};
  // 21 bytes: no '=' in the encoding, so the replacement keeps the alignment: R + 1 space.
  std::string out = one_shot(whole, body);
  BOOST_TEST(out == "{\"headers\":{\"Authorization\":\"Basic " + b64("alice:{{secrets.pw}} ", false, true) + "\"}}");
  // With a padded encoding the replacement is exactly base64(R).
  const std::string cred2 = "alice:s3cr3t-passwor";
  Patterns whole2{{cred2, "alice:{{secrets.pw}}"}};
  BOOST_TEST(one_shot(whole2, "Basic " + b64(cred2, false, true) + "\n") ==
             "Basic " + b64("alice:{{secrets.pw}}", false, true) + "\n");

  // Only the password known: its alignment core inside the credential's base64 is replaced.
  Patterns only{{password, "{{secrets.pw}}"}};
  out = one_shot(only, body);
  auto start = out.find("Basic ") + 6;
  std::string blob = out.substr(start, out.find('"', start) - start);
  BOOST_TEST(blob != b64(cred, false, true));
  auto decoded = b64_decode_any(blob);
  BOOST_TEST_REQUIRE(decoded.has_value());
  BOOST_TEST(decoded->rfind("alice:", 0) == 0u);
  BOOST_TEST(contains(*decoded, "{{secrets.pw}}"));
  BOOST_TEST(!contains(*decoded, password));
  BOOST_TEST(!contains(*decoded, "password"));
}

BOOST_AUTO_TEST_CASE(base64_all_alignments_inside_a_longer_blob) {
  std::mt19937 rng(42);
  const std::string repl = "{{secrets.blob}}";
  for (std::size_t n : {4u, 5u, 6u, 13u, 14u, 15u, 40u}) {
    std::string secret = random_bytes(rng, n);
    Patterns p{{secret, repl}};
    auto forms = all_forms(p);
    for (const char* k : {"base64:std-core0", "base64:std-core1", "base64:std-core2"})
      BOOST_TEST((form_of_kind(forms, k) != nullptr || (n % 3 == 0 && std::string(k) == "base64:std-core0")), k);
    Scrubber s(p);
    for (bool url : {false, true})
      for (bool pad : {true, false})
        for (std::size_t pre = 0; pre <= 8; ++pre)
          for (std::size_t suf = 0; suf <= 8; ++suf) {
            std::string prefix = random_bytes(rng, pre), suffix = random_bytes(rng, suf);
            std::string blob = b64(prefix + secret + suffix, url, pad);
            std::string out = s.scrub_all("\"" + blob + "\"");
            std::string what = "n=" + std::to_string(n) + " pre=" + std::to_string(pre) + " suf=" + std::to_string(suf) +
                               " url=" + std::to_string(url) + " pad=" + std::to_string(pad);
            BOOST_TEST_REQUIRE(leaked_form(forms, out) == "", what);
            std::string scrubbed = out.substr(1, out.size() - 2);
            BOOST_TEST_REQUIRE(scrubbed.size() % 4 == blob.size() % 4, what);
            auto decoded = b64_decode_any(scrubbed);
            BOOST_TEST_REQUIRE(decoded.has_value(), what);
            // The bytes around the secret decode unchanged; the reference sits in its place.
            BOOST_TEST_REQUIRE(decoded->substr(0, pre) == prefix, what);
            BOOST_TEST_REQUIRE(decoded->size() >= suf, what);
            BOOST_TEST_REQUIRE(decoded->substr(decoded->size() - suf) == suffix, what);
            BOOST_TEST_REQUIRE(contains(*decoded, repl), what);
            BOOST_TEST_REQUIRE(!contains(*decoded, secret), what);
            if (pre == 0 && suf == 0 && pad && n % 3 != 0) BOOST_TEST(*decoded == repl);
            // Streaming agrees (split in the middle of the blob).
            Scrubber t(s.set());
            BOOST_TEST_REQUIRE(run_stream(t, "\"" + blob + "\"", {blob.size() / 2, blob.size() / 2 + 3}) == out, what);
          }
  }
}

BOOST_AUTO_TEST_CASE(base64_forms_json_escaped_and_percent_encoded) {
  const std::string secret = "sk-\xfb\xff\xbf>>>?live";  // base64 "c2st+/+/Pj4+P2xpdmU="
  Patterns p{{secret, "{{secrets.k}}"}};
  auto forms = all_forms(p);
  std::string std_b64 = b64(secret, false, true);
  BOOST_TEST(contains(std_b64, "/"));
  BOOST_TEST(contains(std_b64, "+"));
  auto escape_slash = [](std::string s) {
    std::string o;
    for (char c : s) o += c == '/' ? std::string("\\/") : std::string(1, c);
    return o;
  };
  // PHP's json_encode of the base64 value.
  std::string out = one_shot(p, "{\"b\":\"" + escape_slash(std_b64) + "\"}");
  BOOST_TEST(leaked_form(forms, out) == "");
  BOOST_TEST(out == "{\"b\":\"" + escape_slash(b64("{{secrets.k}}", false, true)) + "\"}");
  // In a query string: %2B, %2F, %3D, both cases.
  std::string pct = percent_encode(std_b64);
  out = one_shot(p, "?t=" + pct + "&");
  BOOST_TEST(out == "?t=" + percent_encode(b64("{{secrets.k}}", false, true)) + "&");
  std::string lower = pct;
  for (std::size_t i = 0; i + 2 < lower.size(); ++i)
    if (lower[i] == '%') lower[i + 1] = static_cast<char>(std::tolower(lower[i + 1])), lower[i + 2] = static_cast<char>(std::tolower(lower[i + 2]));
  out = one_shot(p, "?t=" + lower + "&");
  BOOST_TEST(!contains(out, lower));
  BOOST_TEST(leaked_form(forms, out) == "");
}

// --- short patterns ------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(short_patterns) {
  BOOST_TEST(!scrub_length_warning(4).has_value());
  BOOST_TEST(!scrub_length_warning(100).has_value());
  BOOST_TEST(scrub_length_warning(3).has_value());
  BOOST_TEST(scrub_length_warning(1).has_value());
  BOOST_TEST(scrub_length_warning(0).has_value());
  // Under 4 bytes: raw, JSON and percent forms, no base64.
  auto forms = scrub_forms("a/b", "{{secrets.s}}");
  BOOST_TEST(form_of_kind(forms, "raw") != nullptr);
  BOOST_TEST(form_of_kind(forms, "json:php") != nullptr);  // "a\/b", also json:slash's
  BOOST_TEST(form_of_kind(forms, "percent") != nullptr);
  for (const auto& f : forms) BOOST_TEST(f.kind.rfind("base64", 0) != 0, f.kind);
  Patterns p{{"a/b", "{{secrets.s}}"}};
  BOOST_TEST(one_shot(p, "xa/by a\\/b a%2Fb YS9i") == "x{{secrets.s}}y {{secrets.s}} %7B%7Bsecrets.s%7D%7D YS9i");
  // One byte: every occurrence goes (the invariant wins over readability).
  BOOST_TEST(one_shot(Patterns{{"z", "{{secrets.z}}"}}, "zoo") == "{{secrets.z}}oo");
  // Four bytes: base64 forms too.
  auto four = scrub_forms("abcd", "{{secrets.f}}");
  BOOST_TEST(form_of_kind(four, "base64:std") != nullptr);
  BOOST_TEST(form_of_kind(four, "base64:std-core1") != nullptr);
  for (const auto& f : four) BOOST_TEST(f.bytes.size() >= 4u, f.kind);
}

// --- construction --------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(from_written_values) {
  std::vector<WrittenValue> written;
  std::string a = "Bearer sk-live-123", b = "sk-live-123";
  written.push_back({"openai", "Bearer {{secrets.openai}}", SensitiveString::take(a)});
  written.push_back({"openai", "{{secrets.openai}}", SensitiveString::take(b)});
  Scrubber s(written);
  BOOST_TEST(s.scrub_all("Bearer sk-live-123 / c2stbGl2ZS0xMjM=") ==
             "Bearer {{secrets.openai}} / " + b64("{{secrets.openai}}", false, true));
  // Move keeps the automaton and the stream.
  std::string out;
  s.feed("x sk-live", out);
  Scrubber moved = std::move(s);
  moved.feed("-123", out);
  moved.finish(out);
  BOOST_TEST(out == "x {{secrets.openai}}");
  Scrubber assigned;
  assigned = std::move(moved);
  BOOST_TEST(assigned.scrub_all("sk-live-123") == "{{secrets.openai}}");
  BOOST_TEST(assigned.replaced() == 4u);
}

BOOST_AUTO_TEST_CASE(shared_set_between_streams) {
  std::string secret = "sk-live-123";
  auto forms = scrub_forms(secret, "{{secrets.a}}");
  auto set = ScrubSet::build(Patterns{{secret, "{{secrets.a}}"}});
  secret.assign(secret.size(), 'x');  // the set keeps no reference to the plaintext
  BOOST_TEST(set->form_count() == forms.size());
  std::size_t longest = 0;
  for (const auto& f : forms) longest = std::max(longest, f.bytes.size());
  BOOST_TEST(set->max_pattern_length() == longest);  // "c2stbGl2ZS0xMjM\u003d" (Gson)
  BOOST_TEST(longest == 21u);
  Scrubber a(set), b(set);
  BOOST_TEST(a.set() == set);
  std::string out_a, out_b;
  a.feed("1 sk-live-", out_a);
  b.feed("2 sk-li", out_b);
  a.feed("123", out_a);
  b.feed("ve-123 c2stbGl2ZS0xMjM=", out_b);
  a.finish(out_a);
  b.finish(out_b);
  BOOST_TEST(out_a == "1 {{secrets.a}}");
  BOOST_TEST(out_b == "2 {{secrets.a}} " + b64("{{secrets.a}}", false, true));
  BOOST_TEST(a.replaced() == 1u);
  BOOST_TEST(b.replaced() == 2u);
  Scrubber none(std::shared_ptr<const ScrubSet>{});
  BOOST_TEST(none.empty());
  BOOST_TEST(none.scrub_all("sk-live-123") == "sk-live-123");
}

BOOST_AUTO_TEST_CASE(from_forms_is_build_without_the_expansion) {
  // Two patterns whose raw forms are the same bytes: the earlier one's replacement wins, in
  // build() and in from_forms() over the concatenated forms alike.
  Patterns p{{"sk-live-123", "{{secrets.a}}"}, {"sk-live-123", "{{secrets.b}}"}, {"tok 99/x", "{{secrets.c}}"}};
  auto built = ScrubSet::build(p);
  std::vector<ScrubForm> forms;
  for (const auto& q : p)
    for (auto& f : scrub_forms(q.plaintext, q.replacement)) forms.push_back(std::move(f));
  auto from = ScrubSet::from_forms(forms);
  BOOST_TEST(from->form_count() == built->form_count());
  BOOST_TEST(from->form_count() < forms.size());  // the second pattern's forms are all duplicates
  BOOST_TEST(from->max_pattern_length() == built->max_pattern_length());
  const std::string body = "a sk-live-123 b tok%2099%2Fx c " + b64("sk-live-123", false, true) + " d \"tok 99\\/x\"";
  Scrubber x(built), y(from);
  const std::string out = x.scrub_all(body);
  BOOST_TEST(out == y.scrub_all(body));
  BOOST_TEST(out.find("{{secrets.b}}") == std::string::npos);
  BOOST_TEST(occurrences(out, "{{secrets.a}}") == 1u);
  BOOST_TEST(x.replaced() == 4u);
  BOOST_TEST(y.replaced() == 4u);
}

BOOST_AUTO_TEST_CASE(forms_are_distinct_and_never_contain_replacement_plaintext) {
  auto forms = scrub_forms(kTricky, "{{secrets.t}}");
  for (std::size_t i = 0; i < forms.size(); ++i) {
    for (std::size_t j = i + 1; j < forms.size(); ++j) BOOST_TEST(forms[i].bytes.reveal() != forms[j].bytes.reveal());
    BOOST_TEST(!contains(forms[i].replacement, kTricky));
    BOOST_TEST(!forms[i].replacement.empty());
  }
  BOOST_TEST(scrub_forms("", "x").empty());
}

// --- randomized: streaming = one-shot = the model, and nothing survives ---------------------------

BOOST_AUTO_TEST_CASE(randomized_streaming_matches_one_shot) {
  std::mt19937 rng(20240611);
  // Secrets and filler from overlapping alphabets, so partial matches are frequent.
  const std::string secret_chars = "ab12-_/+= \"\\<&\xc3\xa4";
  const std::string filler_chars = "ab12-_/+= xyzAB%\\u0\"";
  auto pick = [&](const std::string& chars, std::size_t n) {
    std::string s;
    for (std::size_t i = 0; i < n; ++i) s += chars[rng() % chars.size()];
    return s;
  };
  std::size_t total_matches = 0;
  for (int iter = 0; iter < 300; ++iter) {
    std::vector<std::string> secrets, refs;
    std::size_t count = 1 + rng() % 3;
    for (std::size_t i = 0; i < count; ++i) {
      std::string s = pick(secret_chars, 6 + rng() % 14);
      // Valid UTF-8 only in most runs; a stray continuation byte now and then.
      if (rng() % 5 != 0)
        for (auto& c : s)
          if (static_cast<unsigned char>(c) >= 0x80) c = 'q';
      secrets.push_back(s);
      refs.push_back("{{secrets.s" + std::to_string(i) + "}}");
    }
    if (rng() % 3 == 0) secrets.push_back("Bearer " + secrets[0]), refs.push_back("Bearer {{secrets.s0}}");
    Patterns p;
    for (std::size_t i = 0; i < secrets.size(); ++i) p.push_back({secrets[i], refs[i]});
    auto forms = all_forms(p);

    // A body of filler with forms planted at random places (possibly adjacent or overlapping).
    std::string body = pick(filler_chars, rng() % 400);
    std::size_t plants = rng() % 12;
    for (std::size_t k = 0; k < plants; ++k) {
      const auto& f = forms[rng() % forms.size()];
      std::size_t at = body.empty() ? 0 : rng() % (body.size() + 1);
      body.insert(at, f.bytes.reveal());
      if (rng() % 3 == 0) body.insert(at, pick(filler_chars, rng() % 4));
    }

    Model m = model_scrub(forms, body);
    BOOST_TEST_REQUIRE(m.covered, "iteration " << iter);
    Scrubber s(p);
    std::string whole = s.scrub_all(body);
    BOOST_TEST_REQUIRE(whole == m.out, "iteration " << iter);
    BOOST_TEST_REQUIRE(s.replaced() == m.count);
    total_matches += m.count;
    // "A matcher never misses a pattern that is present."
    BOOST_TEST_REQUIRE(leaked_form(forms, whole) == "", "iteration " << iter);
    for (const auto& sec : secrets) BOOST_TEST_REQUIRE(!contains(whole, sec));

    for (int chunking = 0; chunking < 8; ++chunking) {
      std::vector<std::size_t> cuts;
      std::size_t at = 0;
      while (at < body.size()) {
        std::size_t step = chunking == 0 ? 1 : 1 + rng() % (chunking * 8);
        at = std::min(body.size(), at + step);
        cuts.push_back(at);
        if (rng() % 10 == 0) cuts.push_back(at);  // empty feeds too
      }
      Scrubber t(s.set());
      std::size_t n = 0;
      std::string out;
      std::size_t prev = 0;
      for (std::size_t c : cuts) {
        n += t.feed(std::string_view(body).substr(prev, c - prev), out);
        BOOST_TEST_REQUIRE(t.held() < t.max_pattern_length());
        prev = c;
      }
      n += t.finish(out);
      BOOST_TEST_REQUIRE(out == whole, "iteration " << iter << " chunking " << chunking);
      BOOST_TEST_REQUIRE(n == m.count);
    }
  }
  BOOST_TEST(total_matches > 300u);
}

BOOST_AUTO_TEST_CASE(randomized_binary_bodies) {
  // Arbitrary bytes, random secrets: streaming equals one-shot equals the model.
  std::mt19937 rng(99);
  for (int iter = 0; iter < 200; ++iter) {
    Patterns p;
    std::vector<std::string> secrets, refs;
    std::size_t count = 1 + rng() % 2;
    for (std::size_t i = 0; i < count; ++i) {
      std::string s = random_bytes(rng, 1 + rng() % 12);
      for (auto& c : s) c = static_cast<char>('a' + static_cast<unsigned char>(c) % 4);  // tiny alphabet: many overlaps
      secrets.push_back(s);
      refs.push_back("<R" + std::to_string(i) + ">");
    }
    for (std::size_t i = 0; i < count; ++i) p.push_back({secrets[i], refs[i]});
    auto forms = all_forms(p);
    std::string body;
    std::size_t len = rng() % 300;
    for (std::size_t i = 0; i < len; ++i) body += static_cast<char>('a' + rng() % 5);
    Model m = model_scrub(forms, body);
    BOOST_TEST_REQUIRE(m.covered);
    Scrubber s(p);
    BOOST_TEST_REQUIRE(s.scrub_all(body) == m.out, "iteration " << iter);
    std::vector<std::size_t> cuts;
    for (std::size_t at = 0; at < body.size();) {
      at = std::min(body.size(), at + 1 + rng() % 7);
      cuts.push_back(at);
    }
    Scrubber t(p);
    BOOST_TEST_REQUIRE(run_stream(t, body, cuts) == m.out, "iteration " << iter);
    BOOST_TEST_REQUIRE(t.replaced() == m.count);
  }
}

BOOST_AUTO_TEST_SUITE_END()
