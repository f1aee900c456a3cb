// Prompt convention parsing (see prompt_fields.hpp).
#include "prompt_fields.hpp"

#include "skill_text.hpp"

namespace turing::model_sim {

namespace {

bool iequals(std::string_view x, std::string_view y) {
  if (x.size() != y.size())
    return false;
  for (std::size_t i = 0; i < x.size(); ++i) {
    auto a = x[i] >= 'A' && x[i] <= 'Z' ? static_cast<char>(x[i] - 'A' + 'a') : x[i];
    if (a != y[i])
      return false;
  }
  return true;
}

void read_line(std::string_view line, prompt_fields& fields) {
  auto colon = line.find(':');
  if (colon == std::string_view::npos)
    return;
  auto key = collapse_whitespace(line.substr(0, colon));
  auto value = collapse_whitespace(line.substr(colon + 1));
  std::optional<std::string>* slot = nullptr;
  if (iequals(key, "task"))
    slot = &fields.task;
  else if (iequals(key, "skill"))
    slot = &fields.skill;
  else if (iequals(key, "proposal_a"))
    slot = &fields.proposal_a;
  else if (iequals(key, "proposal_b"))
    slot = &fields.proposal_b;
  if (slot != nullptr && !value.empty())
    *slot = std::move(value);
}

} // namespace

void read_prompt_fields(std::string_view text, prompt_fields& fields) {
  while (!text.empty()) {
    auto end = text.find('\n');
    read_line(text.substr(0, end), fields);
    text = end == std::string_view::npos ? std::string_view{} : text.substr(end + 1);
  }
}

prompt_fields read_prompt_fields(const std::vector<chat_message>& messages) {
  prompt_fields fields;
  for (const auto& m : messages)
    if (m.role == "system")
      read_prompt_fields(m.content, fields);
  for (auto i = messages.rbegin(); i != messages.rend(); ++i) {
    if (i->role == "user") {
      read_prompt_fields(i->content, fields);
      break;
    }
  }
  return fields;
}

} // namespace turing::model_sim
