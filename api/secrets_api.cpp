#include "api/secrets_api.hpp"

#include <cerrno>
#include <charconv>
#include <system_error>

#include "core/encoding.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "core/wipe_freed.hpp"
#include "policy/path_glob.hpp"
#include "secrets/secret_name.hpp"

namespace sidekey::api {
namespace {

constexpr std::string_view kAgentSecrets = "/ap/v1/agent/secrets";
constexpr std::string_view kTasks = "/ap/v1/agent/tasks/";

struct Route {
  std::string scope;      // "" agent-scoped, else task id
  std::string secret_id;  // empty for the collection
  bool task = false;
};

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> parts;
  size_t i = 0;
  while (i < path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    if (j > i) parts.push_back(path.substr(i, j - i));
    i = j + 1;
  }
  return parts;
}

// nullopt: not a secrets path at all.
std::optional<Route> route(std::string_view path) {
  auto p = split_path(path);
  if (p.size() < 4 || p[0] != "ap" || p[1] != "v1" || p[2] != "agent") return std::nullopt;
  if (p[3] == "secrets" && p.size() <= 5) return Route{"", p.size() == 5 ? std::string(p[4]) : "", false};
  if (p[3] == "tasks" && p.size() >= 6 && p.size() <= 7 && p[5] == "secrets")
    return Route{std::string(p[4]), p.size() == 7 ? std::string(p[6]) : "", true};
  return std::nullopt;
}

std::string_view path_of(std::string_view target) { return target.substr(0, target.find('?')); }

std::optional<long long> query_int(std::string_view query, std::string_view key, bool& bad) {
  size_t i = 0;
  while (i <= query.size()) {
    size_t amp = query.find('&', i);
    if (amp == std::string_view::npos) amp = query.size();
    auto pair = query.substr(i, amp - i);
    auto eq = pair.find('=');
    if (pair.substr(0, eq) == key) {
      auto v = eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
      long long n = 0;
      auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
      if (v.empty() || ec != std::errc() || ptr != v.data() + v.size() || n < 1 || n > 1'000'000'000) {
        bad = true;
        return std::nullopt;
      }
      return n;
    }
    i = amp + 1;
  }
  return std::nullopt;
}

Response not_found(std::string_view what) { return message_response(http::status::not_found, what); }
Response unprocessable(std::string_view what) { return message_response(http::status::unprocessable_entity, what); }

// A change the store could not make (nothing changed, on disk or in memory). Out of space
// (ENOSPC, EDQUOT): 507 Insufficient Storage; any other store failure (the folder not
// writable, the file unreadable): 503. The answer gives the reason, the log also the file;
// neither ever carries a value (StoreError never does).
Response store_write_failed(const secrets::StoreError& e, std::string_view secret) {
  log::error("secrets_store_write_failed", {{"secret", secret}, {"error", e.what()}});
  int err = e.error();
  bool full = err == ENOSPC || err == EDQUOT;
  std::string reason = err ? std::generic_category().message(err) : "the store file cannot be used (see the log)";
  return message_response(full ? http::status::insufficient_storage : http::status::service_unavailable,
                          "secrets store write failed: " + reason);
}

}  // namespace

SecretsApi::SecretsApi(secrets::SecretRegistry& registry, std::function<std::string(std::string_view)> host_problem)
    : registry_(registry), host_problem_(std::move(host_problem)) {}

// A path that names a secrets endpoint only once normalized (dot segments, escapes of unreserved
// characters, letter case: many servers route case-insensitively) is claimed too, and handle()
// answers it 404: forwarded by the gateway, it would reach the agent's own server, which may
// normalize it, with a secret's value in the body.
bool SecretsApi::serves(std::string_view path) {
  return route(path_of(path)).has_value() || route(ascii_lower(policy::normalize_path(path))).has_value();
}

std::optional<std::string> SecretsApi::task_of(std::string_view path) {
  auto r = route(path_of(path));
  if (!r || !r->task) return std::nullopt;
  return r->scope;
}

Response SecretsApi::handle(Request& req) {
  std::string_view target = req.target();
  auto r = route(path_of(target));
  if (!r) return not_found("Unable to find entity with the provided path");
  if (r->task && !secrets::valid_task_id(r->scope)) return not_found("Unable to find task with the provided id");
  std::string_view query = target.find('?') == std::string_view::npos ? std::string_view{} : target.substr(target.find('?') + 1);
  auto method = req.method();
  Response res;
  if (r->secret_id.empty()) {
    if (method == http::verb::get) return list(r->scope, query, r->task);
    if (method == http::verb::post) return create(r->scope, req, r->task);
    res = message_response(http::status::method_not_allowed, "method not allowed");
    res.set(http::field::allow, "GET, POST");
    return res;
  }
  if (method == http::verb::get) return get(r->scope, r->secret_id, r->task);
  if (method == http::verb::delete_) return remove(r->scope, r->secret_id);
  res = message_response(http::status::method_not_allowed, "method not allowed");
  res.set(http::field::allow, "GET, DELETE");
  return res;
}

nlohmann::json SecretsApi::render(const secrets::SecretMeta& m, bool task_form) const {
  if (task_form) {
    // The draft's Secret.value carries the reference, never the plaintext.
    return {{"secret_id", m.id},
            {"name", m.name},
            {"value", secrets::reference_for(secrets::task_secret_ref_name(m.scope, m.name))}};
  }
  return {{"secret_id", m.id},           {"secret_key", m.name},
          {"reference", secrets::reference_for(m.name)},
          {"allowed_hosts", m.allowed_hosts}, {"created_at", m.created_at}, {"updated_at", m.updated_at}};
}

Response SecretsApi::list(const std::string& scope, std::string_view query, bool task_form) {
  bool bad = false;
  long long page = query_int(query, "current_page", bad).value_or(1);
  long long size = query_int(query, "page_size", bad).value_or(10);
  if (bad) return unprocessable("current_page and page_size must be integers of at least 1");
  auto all = registry_.store().list(scope);
  long long total = static_cast<long long>(all.size());
  nlohmann::json items = nlohmann::json::array();
  long long first = (page - 1) * size;
  for (long long i = first; i < total && i < first + size; ++i) items.push_back(render(all[static_cast<size_t>(i)], task_form));
  nlohmann::json body = {
      {task_form ? "secrets" : "secret_keys", items},
      {"pagination",
       {{"total_items", total}, {"total_pages", (total + size - 1) / size}, {"current_page", page}, {"page_size", size}}}};
  return json_response(http::status::ok, body);
}

Response SecretsApi::create(const std::string& scope, Request& req, bool task_form) {
  const char* name_key = task_form ? "name" : "secret_key";
  const char* value_key = task_form ? "value" : "secret_value";
  // The parser copies the value's raw bytes into buffers of its own, and into the message of a
  // parse error (built even with exceptions off): all of it, and the document, is freed inside
  // this scope, which zeroes what it frees.
  WipeFreedBlocks wipe_freed;
  nlohmann::json body = nlohmann::json::parse(req.body(), nullptr, false);
  struct Wipe {  // the parsed copy of the value is wiped whatever path we leave by
    nlohmann::json& j;
    const char* key;
    ~Wipe() {
      if (j.is_object() && j.contains(key) && j[key].is_string()) secrets::wipe(j[key].get_ref<std::string&>());
    }
  } wipe_guard{body, value_key};
  if (body.is_discarded() || !body.is_object()) return unprocessable("request body must be a JSON object");
  if (!body.contains(name_key) || !body[name_key].is_string())
    return unprocessable(std::string("missing string field '") + name_key + "'");
  if (!body.contains(value_key) || !body[value_key].is_string())
    return unprocessable(std::string("missing string field '") + value_key + "'");
  std::string name = body[name_key].get<std::string>();
  std::string ref_name = task_form ? secrets::task_secret_ref_name(scope, name) : name;
  if (!secrets::valid_secret_name(name) || !secrets::valid_secret_name(ref_name) ||
      (!task_form && name.rfind("tasks/", 0) == 0))
    return unprocessable("secret name must match [A-Za-z0-9_][A-Za-z0-9_.\\-/]{0,127} (and not start with tasks/)");
  std::string& value = body[value_key].get_ref<std::string&>();
  if (auto problem = secrets::value_problem(value); !problem.empty()) return unprocessable(problem);
  std::vector<std::string> hosts;
  if (body.contains("allowed_hosts")) {
    const auto& h = body["allowed_hosts"];
    if (!h.is_array()) return unprocessable("allowed_hosts must be a list of host patterns");
    for (const auto& item : h) {
      if (!item.is_string()) return unprocessable("allowed_hosts must be a list of host patterns");
      auto s = item.get<std::string>();
      if (auto problem = host_problem_(s); !problem.empty())
        return unprocessable("allowed_hosts: " + problem);
      hosts.push_back(std::move(s));
    }
  }
  secrets::SecretMeta meta;
  try {
    meta = registry_.store().put(scope, name, secrets::SecretValue::take(value), hosts);
  } catch (const secrets::StoreError& e) {
    return store_write_failed(e, ref_name);
  }
  changed();
  log::info("secret_written", {{"secret", ref_name}, {"secret_id", meta.id}, {"allowed_hosts", meta.allowed_hosts}});
  return json_response(http::status::ok, render(meta, task_form));
}

Response SecretsApi::get(const std::string& scope, const std::string& id, bool task_form) {
  auto meta = registry_.store().get(scope, id);
  if (!meta) return not_found("Unable to find secret with the provided id");
  return json_response(http::status::ok, render(*meta, task_form));
}

Response SecretsApi::remove(const std::string& scope, const std::string& id) {
  auto meta = registry_.store().get(scope, id);
  if (!meta) return not_found("Unable to find secret with the provided id");
  std::string ref_name = scope.empty() ? meta->name : secrets::task_secret_ref_name(scope, meta->name);
  try {
    if (!registry_.store().remove(scope, id)) return not_found("Unable to find secret with the provided id");
  } catch (const secrets::StoreError& e) {
    return store_write_failed(e, ref_name);
  }
  changed();
  log::info("secret_deleted", {{"secret", ref_name}, {"secret_id", id}});
  Response res{http::status::no_content, 11};
  return res;
}

void SecretsApi::changed() {
  registry_.refresh();
  metrics::registry().gauge("sidekey_secrets").set(static_cast<std::int64_t>(registry_.current()->size()));
}

}  // namespace sidekey::api
