// A model endpoint actor: one per configured model; holds its concurrency
// limit, queues calls beyond it, runs each call on its own thread, and waits
// out an outage of the model's server instead of failing the calls.
#pragma once

#include "actors/model_budget.hpp"
#include "config/pipeline_config.hpp"
#include "messages/execution.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <functional>
#include <memory>

namespace turing::actors {

/// Starts one call: the returned actor reports to `reporter` (the endpoint)
/// execution_started, then model_answer or execution_failed, and exits. The
/// default makes the HTTP call on its own thread; a simulation answers from a
/// script in virtual time instead.
using model_caller =
    std::function<caf::actor(caf::event_based_actor* endpoint, caf::actor reporter,
                             const model_call& call, const config::model_config& model)>;

struct model_endpoint_options {
  config::model_config model;
  /// Empty: real HTTP calls.
  model_caller caller;
  /// Receives model_availability when the server goes away and comes back
  /// (the node monitor, for the log and `turing status`); may be empty.
  caf::actor observer;
  /// The endpoint of another model by name (the fallback for a context
  /// overflow); empty, or a null actor, when there is none.
  std::function<caf::actor(const std::string&)> find_endpoint;
  /// The scheduler of the model's GPU (gpu_scheduler.hpp), when it is on
  /// one: the endpoint reports its demand there and starts calls only while
  /// it holds a turn. Looked up at each report (the scheduler may restart).
  std::function<caf::actor()> find_gpu;
  /// The budget of the model's API key ([api_keys.<api_key_env>]), shared
  /// with the other models of that key; null when there is none.
  std::shared_ptr<shared_model_budget> key_budget;
  /// The wall clock of an outage's start as reported (virtual in simulation).
  std::function<persistence::time_point()> wall_clock = [] {
    return persistence::wall_clock::now();
  };
};

/// How it works: stages send model_call on behalf of a claimed message; at
/// most `concurrency` calls run at once (capacity is per model, not global:
/// two stages on two models run in parallel), the rest wait in arrival
/// order. Every call reports through the endpoint, which forwards to the
/// call's owner: execution_started when the call leaves the queue (the
/// owner's deadline counts from there), then model_answer or
/// execution_failed. An abandoned call frees its slot at once; its thread
/// ends at the HTTP timeout and its answer is stale.
///
/// Outages: a call that finds the server unavailable (connection refused or
/// timed out, HTTP 502/503/504) is not failed: it goes back to the head of
/// the queue and its owner gets model_waiting (the deadline stops, no
/// attempt is spent). The endpoint then lets one call through at a time as a
/// probe, after 1 s, 2 s, 4 s, … up to 30 s; the first answer of any kind
/// ends the outage and the queue runs again. Logged once when it starts, as
/// a summary every 30 s, and once when it ends. An outage longer than the
/// model's max_unavailable dead-letters the waiting calls with that reason,
/// and every call that finds the server down after that, until it answers.
///
/// Back-pressure: a call the server throttles (HTTP 429, or 503 with a
/// Retry-After) goes back to the head of the queue unspent (model_waiting)
/// and the whole model slows down: no call starts before the Retry-After
/// (else 1 s, 2 s, … 30 s), then at most half as many run at once as before,
/// one more after each answer, until the model's concurrency is reached.
/// A call throttled more than max_throttled times fails (its attempt counts).
///
/// GPU turns: a model on a [gpus] entry starts calls only while the GPU's
/// scheduler gives it a turn; its calls wait in the queue meanwhile, their
/// deadlines not started. Each change of its queued and running counts goes
/// to the scheduler, and each load_duration a reply reports.
///
/// Context overflow: a call whose prompt the server says is beyond the
/// model's context goes to the model's fallback_model on behalf of the same
/// owner (which answers, and is recorded as the attempt's model), or fails
/// at once, not retryable, with that reason.
caf::actor spawn_model_endpoint(caf::actor_system& sys, model_endpoint_options options);

inline caf::actor spawn_model_endpoint(caf::actor_system& sys, config::model_config model,
                                       model_caller caller = {}) {
  model_endpoint_options o;
  o.model = std::move(model);
  o.caller = std::move(caller);
  return spawn_model_endpoint(sys, std::move(o));
}

} // namespace turing::actors
