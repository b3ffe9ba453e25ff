#include "secrets/secret_name.hpp"

namespace sidekey::secrets {
namespace {
bool word_char(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; }
}  // namespace

bool valid_secret_name(std::string_view n) {
  if (n.empty() || n.size() > 128 || !word_char(n[0])) return false;
  for (char c : n.substr(1))
    if (!word_char(c) && c != '.' && c != '-' && c != '/') return false;
  return true;
}

bool valid_task_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id)
    if (!word_char(c) && c != '.' && c != '-') return false;
  return id != "." && id != "..";
}

std::string value_problem(std::string_view v) {
  if (v.empty()) return "secret value must not be empty";
  if (v.size() > kMaxValueBytes) return "secret value is larger than 64 KiB";
  for (char c : v)
    if (c == '\r' || c == '\n' || c == '\0') return "secret value must not contain CR, LF or NUL";
  return {};
}

std::string reference_for(std::string_view name) {
  std::string r;
  r.reserve(name.size() + 12);
  r.append("{{secrets.").append(name).append("}}");
  return r;
}

std::string task_secret_ref_name(std::string_view task_id, std::string_view name) {
  return "tasks/" + std::string(task_id) + "/" + std::string(name);
}

}  // namespace sidekey::secrets
