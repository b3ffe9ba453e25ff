#pragma once
// The names and values sidekey accepts, shared by the API, the CLI, the store and the policy.
#include <string>
#include <string_view>

namespace sidekey::secrets {

constexpr std::size_t kMaxValueBytes = 64 * 1024;

// NAME = [A-Za-z0-9_][A-Za-z0-9_.\-/]{0,127}
bool valid_secret_name(std::string_view name);
// Task ids as sidekey accepts them in paths: [A-Za-z0-9_.-]{1,64} (UUIDs and the like).
bool valid_task_id(std::string_view id);
// Non-empty, at most 64 KiB, no CR, LF or NUL. Returns an empty string when valid, else why not.
std::string value_problem(std::string_view value);

// "{{secrets.NAME}}"
std::string reference_for(std::string_view name);
// Task-scoped secrets live in their own namespace: the name used in references is
// "tasks/<task_id>/<name>", which fits NAME since task ids are at most 64 characters and names
// of task secrets at most 57. Agent-scoped names may not start with "tasks/".
std::string task_secret_ref_name(std::string_view task_id, std::string_view name);

}  // namespace sidekey::secrets
