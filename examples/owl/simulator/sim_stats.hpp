// Counters the simulator serves at GET /stats, so tests and demos can check
// what it actually did: requests per model and endpoint, faults injected,
// requests in flight and hung right now, clients that gave up.
#pragma once

#include "fault_plan.hpp"

#include <chrono>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

namespace turing::model_sim {

class sim_stats {
public:
  sim_stats() : started_(std::chrono::steady_clock::now()) {}

  /// A request for `model` on `endpoint` was admitted (it is in flight).
  void started(const std::string& model, const std::string& endpoint);
  /// The request drew `f` (also called for fault::none).
  void fault_drawn(const std::string& model, fault f);
  /// The request finished with HTTP `status` (it is no longer in flight).
  void finished(const std::string& model, int status);
  /// A request was refused before it reached a model (bad JSON, 404).
  void refused(int status);
  void hang_began();
  void hang_ended(bool client_gone);

  nlohmann::json snapshot() const;

private:
  struct per_model {
    long requests = 0;
    long in_flight = 0;
    /// The most requests for the model in flight at once since the start:
    /// a model's concurrency limit, seen from the server.
    long peak_in_flight = 0;
    std::map<std::string, long> statuses;
    std::map<std::string, long> faults;
  };

  mutable std::mutex mtx_;
  std::chrono::steady_clock::time_point started_;
  long requests_ = 0;
  long in_flight_ = 0;
  long hanging_ = 0;
  long clients_gone_ = 0;
  std::map<std::string, long> endpoints_;
  std::map<std::string, long> refused_;
  std::map<std::string, long> faults_;
  std::map<std::string, per_model> models_;
};

} // namespace turing::model_sim
