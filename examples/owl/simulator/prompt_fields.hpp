// Reads the simulator's prompt convention: "key: value" lines such as
// "task: classify" and "skill: Kubernetes cluster administration", found in
// the system prompt and the last user message of a chat.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace turing::model_sim {

struct chat_message {
  std::string role;
  std::string content;
};

/// The fields a prompt may carry; absent lines stay empty.
struct prompt_fields {
  std::optional<std::string> task;
  std::optional<std::string> skill;
  std::optional<std::string> proposal_a;
  std::optional<std::string> proposal_b;
};

/// Scans `text` line by line for "task:", "skill:", "proposal_a:" and
/// "proposal_b:" (keys case-insensitive, leading whitespace allowed, values
/// trimmed); a later line overrides an earlier one. Writes into `fields`.
void read_prompt_fields(std::string_view text, prompt_fields& fields);

/// The fields of a chat: every system message first, then the last user
/// message, so the user turn (the rendered template) wins over the system
/// prompt. Earlier user turns are history, not the question.
prompt_fields read_prompt_fields(const std::vector<chat_message>& messages);

} // namespace turing::model_sim
