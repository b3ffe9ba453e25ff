// libFuzzer target for the Agent Protocol secrets API (api/secrets_api.hpp): POST of arbitrary
// body bytes to the secrets collection, agent-scoped or task-scoped, on a real store in a
// temporary folder (under /dev/shm when there is one, so the store's fsyncs stay cheap; see
// SIDEKEY_FUZZ_TMPDIR below).
//
// Input: one byte choosing the path (bit 0: the task form /ap/v1/agent/tasks/t1/secrets), then
// the body.
// Checks, aborting on failure:
// - handle() throws nothing (the server would answer 500) and answers 200 or 422 with a JSON
//   object body;
// - 422: the body is {"message": …} and it does not depend on the value: the same request with
//   every byte of the value changed (CR, LF and NUL kept, so the value stays as (in)valid)
//   gets the very same answer; a body that is not a JSON object gets the answer an empty body
//   gets;
// - 200: the answer holds exactly the documented fields, each equal to what it must be (name,
//   reference, allowed_hosts, an id, timestamps), so no value can hide in it; the store holds
//   the value; GET of the secret and of the collection return the same object; DELETE removes
//   it (the store is empty again for the next input).
#include <stdlib.h>
#include <unistd.h>

#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "api/secrets_api.hpp"
#include "core/log.hpp"
#include "secrets/secret_name.hpp"
#include "secrets/secret_view.hpp"
#include "secrets/store.hpp"

namespace http = boost::beast::http;
using nlohmann::json;
using namespace sidekey;

namespace {

[[noreturn]] void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "fuzz_api_body: %s %.*s\n", what, static_cast<int>(detail.size()), detail.data());
  std::abort();
}
void check(bool ok, const char* what, std::string_view detail = {}) {
  if (!ok) fail(what, detail);
}

// The allowed_hosts check `sidekey serve` installs (cli/runtime.cpp, host_problem).
std::string host_problem(std::string_view h) {
  if (h.empty() || h.size() > 300) return "host pattern must be 1 to 300 characters";
  for (char c : h)
    if (c <= ' ' || c == '"' || c == '\\' || static_cast<unsigned char>(c) >= 0x7f)
      return "host pattern contains a character that is not allowed";
  return {};
}

std::filesystem::path g_dir;

struct Env {
  std::shared_ptr<secrets::Store> store;
  std::unique_ptr<secrets::SecretRegistry> registry;
  std::unique_ptr<api::SecretsApi> api;
};

Env& env() {
  static Env* e = [] {
    log::set_level(log::Level::error);  // no secret_written lines on every input
    // SIDEKEY_FUZZ_TMPDIR (scripts/fuzz.sh sets it and removes it afterwards, also after a crash,
    // which skips the atexit below), else /dev/shm, else TMPDIR.
    const char* dir = getenv("SIDEKEY_FUZZ_TMPDIR");
    std::string base = dir && *dir ? dir
                       : ::access("/dev/shm", W_OK) == 0 ? "/dev/shm"
                       : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    std::string tmpl = base + "/sidekey-fuzz-api-XXXXXX";
    if (!::mkdtemp(tmpl.data())) fail("mkdtemp failed");
    g_dir = tmpl;
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(g_dir, ec);
    });
    auto* out = new Env;
    out->store = std::make_shared<secrets::Store>(g_dir / "secrets.db",
                                                  secrets::SecretValue(std::string_view("0123456789abcdef0123456789abcdef")));
    out->registry = std::make_unique<secrets::SecretRegistry>(out->store, std::vector<secrets::SourceConfig>{});
    out->api = std::make_unique<api::SecretsApi>(*out->registry, host_problem);
    return out;
  }();
  return *e;
}

api::Response call(http::verb method, const std::string& target, std::string body = {}) {
  api::Request req{method, target, 11};
  req.set(http::field::host, "127.0.0.1:8000");
  if (method == http::verb::post) req.set(http::field::content_type, "application/json");
  req.body().assign(body.begin(), body.end());
  req.prepare_payload();
  try {
    return env().api->handle(req);
  } catch (const std::exception& e) {
    fail("handle() threw (the server answers 500):", e.what());
  } catch (...) {
    fail("handle() threw a non-standard exception (the server answers 500)");
  }
}

json body_of(const api::Response& r) {
  json j = json::parse(r.body(), nullptr, false);
  check(!j.is_discarded() && j.is_object(), "response body is not a JSON object", r.body());
  return j;
}

bool rfc3339(const json& j) {
  if (!j.is_string()) return false;
  const std::string& s = j.get_ref<const std::string&>();
  // 2026-11-27T02:14:21.123Z
  if (s.size() != 24 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[19] != '.' ||
      s[23] != 'Z')
    return false;
  for (std::size_t i : {0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22})
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}

bool uuid_like(const json& j) {
  if (!j.is_string()) return false;
  const std::string& s = j.get_ref<const std::string&>();
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !std::isxdigit(static_cast<unsigned char>(s[i]))) return false;
  }
  return true;
}

// Every byte changed, CR, LF and NUL kept (value_problem looks at those, emptiness and size).
std::string other_value(const std::string& v) {
  std::string o = v;
  for (char& c : o)
    if (c != '\r' && c != '\n' && c != '\0') c = c == 'k' ? 'j' : 'k';
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1 || size > 1 << 17) return 0;
  const bool task = data[0] & 1;
  const std::string collection = task ? "/ap/v1/agent/tasks/t1/secrets" : "/ap/v1/agent/secrets";
  const char* name_key = task ? "name" : "secret_key";
  const char* value_key = task ? "value" : "secret_value";
  std::string body(reinterpret_cast<const char*>(data + 1), size - 1);

  api::Response res = call(http::verb::post, collection, body);
  const unsigned status = res.result_int();
  check(status == 200 || status == 422, "POST answered neither 200 nor 422", std::to_string(status));
  json answer = body_of(res);

  json request = json::parse(body, nullptr, false);
  if (request.is_discarded() || !request.is_object()) {
    check(status == 422, "a body that is not a JSON object was accepted");
    check(res.body() == call(http::verb::post, collection, "").body(), "the answer to a non-object depends on it");
    return 0;
  }
  const bool has_value = request.contains(value_key) && request[value_key].is_string();

  if (status == 422) {
    check(answer.size() == 1 && answer.contains("message") && answer["message"].is_string(), "422 body is not {message}");
    if (has_value) {
      json other = request;
      other[value_key] = other_value(request[value_key].get<std::string>());
      api::Response res2 = call(http::verb::post, collection, other.dump());
      check(res2.result_int() == 422 && res2.body() == res.body(), "the 422 answer depends on the value", res.body());
    }
    return 0;
  }

  // 200: created. Exactly the documented fields.
  check(has_value && request.contains(name_key) && request[name_key].is_string(), "created without name and value");
  const std::string name = request[name_key].get<std::string>();
  const std::string value = request[value_key].get<std::string>();
  const std::string ref_name = task ? secrets::task_secret_ref_name("t1", name) : name;
  json hosts = json::array();  // as sent, duplicates dropped
  if (request.contains("allowed_hosts"))
    for (const auto& h : request["allowed_hosts"])
      if (std::find(hosts.begin(), hosts.end(), h) == hosts.end()) hosts.push_back(h);
  check(uuid_like(answer["secret_id"]), "secret_id is not a UUID");
  const std::string id = answer["secret_id"].get<std::string>();
  if (task) {
    check(answer.size() == 3 && answer["name"] == name && answer["value"] == secrets::reference_for(ref_name),
          "task-form answer is not {secret_id, name, value: reference}", res.body());
  } else {
    check(answer.size() == 6 && answer["secret_key"] == name && answer["reference"] == secrets::reference_for(name) &&
              answer["allowed_hosts"] == hosts && rfc3339(answer["created_at"]) && rfc3339(answer["updated_at"]),
          "answer is not {secret_id, secret_key, reference, allowed_hosts, created_at, updated_at}", res.body());
  }
  // The store holds the value.
  auto view = env().registry->current();
  const secrets::SecretEntry* entry = view->find(ref_name);
  check(entry && entry->value && entry->value->equals(value), "the store does not hold the posted value");

  // GET of the secret and of the collection: the same object.
  api::Response got = call(http::verb::get, collection + "/" + id);
  check(got.result_int() == 200 && body_of(got) == answer, "GET of the secret differs from the POST answer", got.body());
  api::Response list = call(http::verb::get, collection);
  json l = body_of(list);
  const char* items = task ? "secrets" : "secret_keys";
  check(list.result_int() == 200 && l[items].is_array() && l[items].size() == 1 && l[items][0] == answer,
        "the collection does not list exactly the secret", list.body());

  api::Response del = call(http::verb::delete_, collection + "/" + id);
  check(del.result_int() == 204, "DELETE did not answer 204", del.body());
  check(env().store->size() == 0, "the store is not empty after DELETE");
  return 0;
}
