// Simulator counters (see sim_stats.hpp).
#include "sim_stats.hpp"

#include <algorithm>

namespace turing::model_sim {

void sim_stats::started(const std::string& model, const std::string& endpoint) {
  std::lock_guard<std::mutex> guard{mtx_};
  ++requests_;
  ++in_flight_;
  ++endpoints_[endpoint];
  auto& m = models_[model];
  ++m.requests;
  ++m.in_flight;
  m.peak_in_flight = std::max(m.peak_in_flight, m.in_flight);
}

void sim_stats::fault_drawn(const std::string& model, fault f) {
  if (f == fault::none)
    return;
  std::lock_guard<std::mutex> guard{mtx_};
  auto name = std::string{to_string(f)};
  ++faults_[name];
  ++models_[model].faults[name];
}

void sim_stats::finished(const std::string& model, int status) {
  std::lock_guard<std::mutex> guard{mtx_};
  --in_flight_;
  auto& m = models_[model];
  --m.in_flight;
  ++m.statuses[std::to_string(status)];
}

void sim_stats::refused(int status) {
  std::lock_guard<std::mutex> guard{mtx_};
  ++requests_;
  ++refused_[std::to_string(status)];
}

void sim_stats::hang_began() {
  std::lock_guard<std::mutex> guard{mtx_};
  ++hanging_;
}

void sim_stats::hang_ended(bool client_gone) {
  std::lock_guard<std::mutex> guard{mtx_};
  --hanging_;
  if (client_gone)
    ++clients_gone_;
}

nlohmann::json sim_stats::snapshot() const {
  std::lock_guard<std::mutex> guard{mtx_};
  auto uptime = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - started_);
  nlohmann::json models = nlohmann::json::object();
  for (const auto& [name, m] : models_)
    models[name] = {{"requests", m.requests},
                    {"in_flight", m.in_flight},
                    {"peak_in_flight", m.peak_in_flight},
                    {"statuses", m.statuses},
                    {"faults", m.faults}};
  return {{"uptime_ms", uptime.count()},
          {"requests", requests_},
          {"in_flight", in_flight_},
          {"hanging", hanging_},
          {"clients_gone", clients_gone_},
          {"endpoints", endpoints_},
          {"refused", refused_},
          {"faults", faults_},
          {"models", models}};
}

} // namespace turing::model_sim
