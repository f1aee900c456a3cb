// What one transaction does to its items' open-branch counts and sinks; both
// stores fold their per-message effects through it so they count alike.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace turing::persistence::detail {

struct item_effect {
  int branch_delta = 0;
  std::optional<std::string> sink; ///< the sink reached, with its result
  nlohmann::json result;
  /// Instead of `result`: the message whose payload with its output laid
  /// over is the result (pg_store derives it in SQL).
  std::optional<int64_t> result_of;
  bool dead = false;
};

/// Per item, in id order (the order rows are locked in).
class item_effects : public std::map<int64_t, item_effect> {
public:
  /// A message of the item completed or died: its branch ends.
  void branch_ended(int64_t item) { (*this)[item].branch_delta -= 1; }
  /// A new message (a route or a fired join) opens a branch.
  void branch_started(int64_t item) { (*this)[item].branch_delta += 1; }
  void reached_sink(int64_t item, const std::string& sink, const nlohmann::json& result) {
    auto& e = (*this)[item];
    e.sink = sink;
    e.result = result;
    e.result_of.reset();
  }
  void reached_sink_derived(int64_t item, const std::string& sink, int64_t message_id) {
    auto& e = (*this)[item];
    e.sink = sink;
    e.result = nullptr;
    e.result_of = message_id;
  }
  void dead_branch(int64_t item) {
    auto& e = (*this)[item];
    e.branch_delta -= 1;
    e.dead = true;
  }
};

} // namespace turing::persistence::detail
