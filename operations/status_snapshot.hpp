// One picture of a pipeline, read from the store and the config: what
// `turing status --json` prints, `status --watch` draws and the dashboard polls.
#pragma once

#include "config/pipeline_config.hpp"
#include "operations/run_rate_tracker.hpp"
#include "persistence/pg_store.hpp"

#include <nlohmann/json.hpp>
#include <string>

namespace turing::operations {

/// Keys: database, generated_at_ms, stages[], models[], runs[], sinks{},
/// nodes[], edges[] (README "Status" lists each field). Its queries read
/// tallies, live rows and the newest attempts only, so its cost does not grow
/// with the history. A caller that takes snapshots repeatedly (watch, the
/// HTTP server) passes one `rates` across calls: runs then carry
/// items_per_s_last_minute and an ETA from it; otherwise both come from the
/// run's rate since it was created.
nlohmann::json status_snapshot(persistence::pg_store& store, const config::pipeline_config& config,
                               const std::string& database_description,
                               run_rate_tracker* rates = nullptr);

/// The attempts of the last minute that the snapshot's rates count, at most
/// this many (the newest): enough for 1,600 attempts/s.
inline constexpr int64_t recent_attempts_bound = 100000;

} // namespace turing::operations
