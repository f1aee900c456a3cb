// Names of message states and attempt results as the database spells them.
#include "persistence/types.hpp"

namespace turing::persistence {

const char* to_string(message_state s) {
  switch (s) {
  case message_state::ready:
    return "ready";
  case message_state::running:
    return "running";
  case message_state::done:
    return "done";
  case message_state::dead:
    return "dead";
  }
  return "?";
}

const char* to_string(attempt_result r) {
  switch (r) {
  case attempt_result::completed:
    return "completed";
  case attempt_result::failed:
    return "failed";
  case attempt_result::timeout:
    return "timeout";
  case attempt_result::lost:
    return "lost";
  case attempt_result::crashed:
    return "crashed";
  case attempt_result::late_result:
    return "late_result";
  case attempt_result::released:
    return "released";
  }
  return "?";
}

std::optional<attempt_result> parse_attempt_result(const std::string& s) {
  for (auto r : {attempt_result::completed, attempt_result::failed, attempt_result::timeout,
                 attempt_result::lost, attempt_result::crashed, attempt_result::late_result,
                 attempt_result::released})
    if (s == to_string(r))
      return r;
  return std::nullopt;
}

std::string lost_too_often(int lost, int max_lost, const std::string& last_reason) {
  return "lost " + std::to_string(lost) + " times with its node (max_lost_attempts " +
         std::to_string(max_lost) + "), not failed; the last: " + last_reason;
}

json dead_filter::to_json() const {
  json out = json::object();
  if (stage)
    out["stage"] = *stage;
  if (run_id)
    out["run"] = *run_id;
  if (reason)
    out["reason"] = *reason;
  return out;
}

} // namespace turing::persistence
