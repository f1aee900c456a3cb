// Routing: turns a handler's outcome into the deliveries the store carries
// out (next stages, joins, sinks). The pump gives no payload: the store
// derives each one (persistence/next_payload.hpp).
#pragma once

#include "config/pipeline_config.hpp"
#include "persistence/types.hpp"

#include <string>
#include <vector>

namespace turing::actors {

struct routing_result {
  bool ok = false;
  std::vector<persistence::delivery> deliveries;
  std::string error; ///< when !ok: names the stage and the unrouted outcome
};

/// The deliveries for `outcome` of `stage`: one per route target. A target
/// stage with a join list becomes a join arrival; a sink keeps the payload
/// as the item's result.
routing_result route(const config::pipeline_config& pipeline, const config::stage_config& stage,
                     const std::string& outcome, const persistence::json& payload);

} // namespace turing::actors
