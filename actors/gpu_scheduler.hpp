// The GPU scheduler: one per [gpus] entry; decides which of the GPU's models
// may start calls, so that work runs in per-model waves with few swaps and no
// call waits for its model's turn longer than the fairness bound.
#pragma once

#include "config/pipeline_config.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <functional>
#include <string>

namespace turing::actors {

struct gpu_scheduler_options {
  config::gpu_config gpu;
  /// The endpoint of a model by name, asked for its demand when the
  /// scheduler (re)starts; may be empty.
  std::function<caf::actor(const std::string&)> find_endpoint;
};

/// How it works: each model endpoint on the GPU reports gpu_demand (calls
/// queued, calls running) whenever it changes, and starts calls only while
/// its last gpu_turn says may_start. Up to max_loaded models hold a turn.
/// A model that is not loaded and has calls waiting gets a turn:
///   - at once while fewer than max_loaded models are loaded (no swap needed
///     beyond its own load);
///   - when a loaded model's wave is over: its queue is empty, nothing of it
///     runs, and it stayed so for `linger` (its stage hands over its next
///     call within milliseconds, so a wave is not cut by that gap);
///   - when its oldest call has waited max_wait since the model lost (or
///     never had) its turn: then the loaded model that has had its turn
///     longest drains (starts nothing, finishes what runs) and is unloaded.
/// Models with waiting calls get turns in the order they began to wait. The
/// swap cost starts from the config and follows the load_duration that
/// replies report (gpu_load_observed); the default linger is a tenth of it.
caf::actor spawn_gpu_scheduler(caf::actor_system& sys, gpu_scheduler_options options);

} // namespace turing::actors
