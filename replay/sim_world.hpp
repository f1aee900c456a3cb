// What one scenario run shares between the harness, the traced store and the
// scripted handlers: virtual time, the trace, who is who, fault switches.
#pragma once

#include "persistence/types.hpp"
#include "replay/scenario.hpp"

#include <algorithm>
#include <caf/actor.hpp>
#include <caf/timespan.hpp>
#include <cstdio>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace turing::replay {

struct sim_world {
  /// Guards everything below in a real-time run, where store workers,
  /// endpoints and the harness run on different threads (recursive: a traced
  /// store call logs and wakes stages while it holds it).
  std::recursive_mutex mutex;
  /// 0 in virtual time; else real seconds per scenario second (0.05 plays a
  /// scenario 20 times faster than written).
  double scale = 0;
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
  /// By store operation: how many of its next calls are in-doubt commits
  /// (applied, then the caller is told the connection was lost).
  std::map<std::string, int> in_doubt;
  /// By model: until when its server refuses every connection.
  std::map<std::string, caf::timespan> model_down_until;

  std::vector<std::string> trace;

  struct message_info {
    std::string stage;
    int64_t item_id = 0;
    int attempt = 0;
    int max_attempts = 0;
    caf::timespan claimed_at{0}; ///< virtual time of its latest claim
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
  /// By simulated GPU: its loaded models, least recently used first, and
  /// how many times a model was loaded on it.
  std::map<std::string, std::vector<std::string>> gpu_loaded;
  std::map<std::string, int64_t> gpu_loads;
  /// By model on a simulated GPU: when its calls in flight end, and when it
  /// is loaded (a call starting earlier waits until then).
  std::map<std::string, caf::timespan> model_busy_until;
  std::map<std::string, caf::timespan> model_ready_at;
  /// By model: when each call started, and each answer's (time, tokens).
  std::map<std::string, std::vector<caf::timespan>> call_starts;
  std::map<std::string, std::vector<std::pair<caf::timespan, int64_t>>> answered_tokens;
  /// By model: the longest a call waited from its message's claim to its start.
  std::map<std::string, caf::timespan> longest_call_wait;
  /// Scripted calls still running, stopped when the scenario ends.
  std::vector<caf::actor> calls;

  /// Wakes the pumps of a stage (what NOTIFY does in a real run).
  std::function<void(const std::string& stage)> notify_ready;

  persistence::time_point wall_now() const {
    if (scale > 0) // the real clock, with the scenario's jumps scaled
      return persistence::wall_clock::now() + real(clock_offset);
    return base + std::chrono::duration_cast<persistence::wall_clock::duration>(elapsed()) +
           clock_offset;
  }

  /// A duration measured on the store's clock, in scenario time.
  millis scenario_time(persistence::wall_clock::duration d) const {
    auto ms = std::chrono::duration_cast<millis>(d);
    return scale > 0 ? millis{static_cast<int64_t>(static_cast<double>(ms.count()) / scale)} : ms;
  }

  /// How long a scenario duration takes on the actor clock.
  millis real(millis d) const {
    if (scale <= 0 || d.count() == 0)
      return d;
    auto r = static_cast<int64_t>(static_cast<double>(d.count()) * scale + 0.5);
    return millis{std::max<int64_t>(r, d.count() > 0 ? 1 : -1)};
  }

  bool database_down() const { return outage_until && elapsed() < *outage_until; }

  bool model_down(const std::string& model) const {
    auto it = model_down_until.find(model);
    return it != model_down_until.end() && elapsed() < it->second;
  }

  static std::string stamp(caf::timespan t) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "[%9.3f s] ", std::chrono::duration<double>(t).count());
    return buf;
  }

  void log(const std::string& line) {
    std::lock_guard<std::recursive_mutex> guard{mutex};
    trace.push_back(stamp(elapsed()) + line);
  }

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
