// The /api/status document: the status snapshot plus the newest dead
// letters, read at most once per `ttl` however many browsers poll.
#pragma once

#include "config/pipeline_config.hpp"
#include "operations/run_rate_tracker.hpp"
#include "persistence/pg_store.hpp"

#include <chrono>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <pqxx/pqxx>
#include <string>

namespace turing::http {

class status_cache {
public:
  status_cache(std::shared_ptr<const config::pipeline_config> pipeline,
               std::string connection_string, std::string database_description,
               std::chrono::milliseconds ttl = std::chrono::seconds(2));

  /// The snapshot (status_snapshot's keys plus `dead_letters`), at most
  /// `ttl` old. Throws what the database threw; the next call reconnects.
  std::shared_ptr<const nlohmann::json> get();

  /// Every run's progress for /metrics: one query of the run tallies (not
  /// the whole snapshot), at most once per `ttl`. Throws as get() does.
  std::vector<persistence::run_status> runs();

private:
  using clock = std::chrono::steady_clock;
  std::shared_ptr<const config::pipeline_config> pipeline_;
  std::string connection_string_;
  std::string database_description_;
  std::chrono::milliseconds ttl_;
  std::mutex mutex_; ///< one reader of the database at a time; the others wait for its result
  std::unique_ptr<persistence::pg_store> store_;
  std::unique_ptr<pqxx::connection> dead_letters_db_;
  operations::run_rate_tracker rates_;
  std::shared_ptr<const nlohmann::json> cached_;
  clock::time_point read_at_{};
  std::vector<persistence::run_status> runs_;
  std::optional<clock::time_point> runs_read_at_;
};

} // namespace turing::http
