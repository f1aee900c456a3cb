// Scripted stand-ins for the model server and for script processes: each call
// plays the behaviour its scenario gives it (latency, reply, HTTP error,
// exit status, hang, crash) in virtual time, through the real message flow.
#pragma once

#include "actors/model_endpoint.hpp"
#include "actors/stage_pump.hpp"
#include "replay/scenario.hpp"
#include "replay/sim_world.hpp"

#include <memory>

namespace turing::replay {

/// The model_caller a simulated node's endpoints use.
actors::model_caller scripted_models(std::shared_ptr<sim_world> world,
                                     std::shared_ptr<const scenario> sc);

/// The script_caller a simulated node's script stages use.
actors::script_caller scripted_scripts(std::shared_ptr<sim_world> world,
                                       std::shared_ptr<const scenario> sc);

} // namespace turing::replay
