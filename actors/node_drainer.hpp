// The node drainer: the first half of a graceful stop. Asks every pump of a
// node to drain at once and answers with the summed drain reports.
#pragma once

#include "actors/actor_directory.hpp"
#include "config/pipeline_config.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/atom.hpp>
#include <memory>

namespace turing::actors {

using drain_all_atom = caf::atom_constant<caf::atom("drainall")>;

/// Answers drain_all_atom with a drain_report once every pump of the
/// pipeline reported its drain (or failed to within its grace + 15 s). The
/// caller then stops the supervision tree with `exit_reason::user_shutdown`:
/// by then nothing is owned, so nothing is left "interrupted".
caf::actor spawn_node_drainer(caf::actor_system& sys,
                              std::shared_ptr<const config::pipeline_config> pipeline,
                              std::shared_ptr<actor_directory> dir);

} // namespace turing::actors
