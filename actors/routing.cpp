// Routing of outcomes to deliveries.
#include "actors/routing.hpp"

namespace turing::actors {

routing_result route(const config::pipeline_config& pipeline, const config::stage_config& stage,
                     const std::string& outcome, const persistence::json& payload) {
  routing_result out;
  auto it = stage.routes.find(outcome);
  if (it == stage.routes.end()) {
    out.error = "stage " + stage.name + " produced outcome '" + outcome + "', which is not routed";
    return out;
  }
  for (const auto& target : it->second) {
    persistence::delivery d;
    d.target = target.name;
    d.payload = payload;
    if (target.type == config::route_target::kind::sink) {
      d.type = persistence::delivery::kind::sink;
    } else {
      const auto* next = pipeline.find_stage(target.name);
      if (!next) {
        out.error = "stage " + stage.name + " routes to unknown stage " + target.name;
        return out;
      }
      d.max_attempts = next->retry.max_attempts;
      if (next->join.empty()) {
        d.type = persistence::delivery::kind::stage;
      } else {
        d.type = persistence::delivery::kind::join;
        d.join_inputs = next->join;
      }
    }
    out.deliveries.push_back(std::move(d));
  }
  out.ok = true;
  return out;
}

} // namespace turing::actors
