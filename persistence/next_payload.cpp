// next_payload and its size, computed without a copy of the input.
#include "persistence/next_payload.hpp"

#include "persistence/payload_size.hpp"

namespace turing::persistence {

nlohmann::json next_payload(const nlohmann::json& input, const nlohmann::json& output) {
  if (!output.is_object())
    return output.is_null() ? input : output;
  if (!input.is_object())
    return output;
  auto merged = input;
  for (auto it = output.begin(); it != output.end(); ++it)
    merged[it.key()] = it.value();
  return merged;
}

std::uint64_t next_payload_text_size(const nlohmann::json& input, const nlohmann::json& output) {
  if (!output.is_object())
    return json_text_size(output.is_null() ? input : output);
  if (!input.is_object())
    return json_text_size(output);
  // "{" + members joined by "," + "}", each member "key":value.
  auto member = [](const std::string& key, const nlohmann::json& value) {
    return json_text_size(nlohmann::json(key)) + 1 + json_text_size(value);
  };
  std::uint64_t size = 2, members = 0;
  for (auto it = input.begin(); it != input.end(); ++it)
    if (!output.contains(it.key())) {
      size += member(it.key(), it.value());
      ++members;
    }
  for (auto it = output.begin(); it != output.end(); ++it) {
    size += member(it.key(), it.value());
    ++members;
  }
  return size + (members > 0 ? members - 1 : 0);
}

} // namespace turing::persistence
