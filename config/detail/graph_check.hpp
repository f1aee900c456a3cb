// Checks the stage graph of a parsed config: route targets exist, outcomes
// and routes match, joins are consistent, every stage is reachable from an
// entry stage, every sink is used, and there are no cycles.
#pragma once

#include "config/detail/diagnostics.hpp"
#include "config/pipeline_config.hpp"

#include <map>
#include <string>
#include <vector>

namespace turing::config::detail {

/// Where the graph-relevant parts of one stage are, for error positions.
struct stage_sources {
  source_location table;
  /// The routes table, else the stage table.
  source_location routes;
  /// outcome -> position of its key in the routes table.
  std::map<std::string, source_location> route_keys;
  /// outcome -> position of each target, parallel to stage_config::routes.
  std::map<std::string, std::vector<source_location>> route_targets;
  source_location entry;
  source_location join;
  /// Parallel to stage_config::join.
  std::vector<source_location> join_entries;
  /// False when the outcomes could not be determined (an unknown builtin, a
  /// malformed list): outcome/route matching is skipped rather than flooding
  /// the user with errors that follow from the one already reported.
  bool outcomes_known = true;
};

struct graph_sources {
  /// The [stages] table, else the start of the file.
  source_location stages;
  /// Parallel to pipeline_config::stages.
  std::vector<stage_sources> stages_at;
  /// Parallel to pipeline_config::sinks.
  std::vector<source_location> sinks_at;
};

/// Resolves each route target to a stage or sink and reports every problem.
void check_graph(pipeline_config& config, const graph_sources& sources, diagnostics& diag);

} // namespace turing::config::detail
