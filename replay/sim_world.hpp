// What one scenario run shares between the harness, the traced store and the
// scripted handlers: virtual time, the trace, who is who, fault switches.
#pragma once

#include "persistence/types.hpp"
#include "replay/scenario.hpp"

#include <caf/timespan.hpp>
#include <cstdio>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace turing::replay {

struct sim_world {
  /// Virtual time since the scenario started.
  std::function<caf::timespan()> elapsed = [] { return caf::timespan{0}; };
  /// The wall clock's reading at the start; fixed, so runs repeat exactly.
  persistence::time_point base;
  /// Sum of the clock jumps so far.
  millis clock_offset{0};
  /// While set and not reached, every store call fails as unavailable.
  std::optional<caf::timespan> outage_until;
  /// Operations refused during the current outage (each traced once).
  std::set<std::string> refused;

  std::vector<std::string> trace;

  struct message_info {
    std::string stage;
    int64_t item_id = 0;
    int attempt = 0;
    int max_attempts = 0;
  };
  std::map<int64_t, message_info> messages; ///< by message id, as claimed
  std::map<int64_t, std::string> item_keys; ///< by item id

  std::map<std::string, int64_t> model_calls; ///< started, by model
  std::map<std::string, int64_t> in_flight;   ///< by model
  std::map<std::string, int64_t> peak_in_flight;
  std::map<std::string, int64_t> script_runs; ///< started, by stage
  /// By model: how often a call was for another stage than the one before
  /// (each a model swap on a GPU that holds one model's context at a time).
  std::map<std::string, int64_t> stage_switches;
  std::map<std::string, std::string> last_stage; ///< by model

  /// Wakes the pumps of a stage (what NOTIFY does in a real run).
  std::function<void(const std::string& stage)> notify_ready;

  persistence::time_point wall_now() const {
    return base + std::chrono::duration_cast<persistence::wall_clock::duration>(elapsed()) +
           clock_offset;
  }

  bool database_down() const { return outage_until && elapsed() < *outage_until; }

  static std::string stamp(caf::timespan t) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "[%9.3f s] ", std::chrono::duration<double>(t).count());
    return buf;
  }

  void log(const std::string& line) { trace.push_back(stamp(elapsed()) + line); }

  std::string item_key(int64_t item_id) const {
    auto it = item_keys.find(item_id);
    return it == item_keys.end() ? "#" + std::to_string(item_id) : it->second;
  }

  /// "ask message 3 (item k0, attempt 1/2)" for the trace.
  std::string describe(int64_t message_id) const {
    auto it = messages.find(message_id);
    if (it == messages.end())
      return "message " + std::to_string(message_id);
    const auto& m = it->second;
    return m.stage + " message " + std::to_string(message_id) + " (item " + item_key(m.item_id) +
           ", attempt " + std::to_string(m.attempt) + "/" + std::to_string(m.max_attempts) + ")";
  }
};

} // namespace turing::replay
