// Scripted calls: one short-lived actor per call, reporting to the owner
// exactly as the real executors do.
#include "replay/scripted_handlers.hpp"

#include "actors/model_client.hpp"
#include "config/duration.hpp"
#include "messages/registry.hpp"

#include <algorithm>
#include <caf/all.hpp>

namespace turing::replay {

namespace {

using finish_atom = caf::atom_constant<caf::atom("simfinish")>;

call_key key_of(const sim_world& world, int64_t message_id, const std::string& stage, int call) {
  call_key k;
  k.stage = stage;
  k.call = call;
  if (auto it = world.messages.find(message_id); it != world.messages.end()) {
    k.item = world.item_key(it->second.item_id);
    k.attempt = it->second.attempt;
  }
  return k;
}

std::string describe_effect(const call_effect& e, bool is_model) {
  if (e.hang)
    return "hangs";
  auto after = " after " + config::format_duration(e.latency);
  if (e.crash)
    return "crashes" + after;
  if (is_model && e.refused)
    return "is refused (server down)" + after;
  if (is_model && e.http_status != 0)
    return "answers HTTP " + std::to_string(e.http_status) + after;
  if (!is_model && e.exit_status != 0)
    return "exits with status " + std::to_string(e.exit_status) + after;
  return (is_model ? "answers" : "exits 0") + after;
}

caf::behavior model_call_sim(caf::event_based_actor* self, caf::actor owner, model_call call,
                             std::string model, call_effect effect, millis load,
                             std::shared_ptr<sim_world> world) {
  self->send(owner, execution_started{call.fence, 0});
  // A hung call is still a call in flight at the server until the HTTP
  // client's own timeout ends it, as with the real client.
  // call.timeout is already on the actor clock (the stage's timeout, scaled).
  self->delayed_send(self, effect.hang ? call.timeout : world->real(effect.latency),
                     finish_atom::value);
  return {[=](finish_atom) {
    {
      std::lock_guard<std::recursive_mutex> guard{world->mutex};
      world->in_flight[model] -= 1;
    }
    if (effect.hang) {
      self->send(owner, execution_failed{call.fence,
                                         "model " + model + ": no answer within the HTTP timeout " +
                                             config::format_duration(call.timeout),
                                         true, model});
    } else if (effect.crash) {
      self->quit(caf::make_error(caf::sec::runtime_error, "simulated crash of the model call"));
      return;
    } else if (effect.refused) {
      self->send(owner, execution_failed{call.fence,
                                         "model " + model +
                                             ": cannot connect to the simulated server "
                                             "(connection refused)",
                                         true, model, true});
    } else if (effect.http_status != 0) {
      // Judged as the real client judges the same status, body and header.
      actors::model_reply judged;
      config::model_config m;
      m.name = m.model = model;
      actors::classify_http_failure(m, "the simulated server", "", effect.http_status,
                                    effect.error_body, effect.retry_after.has_value(), judged);
      self->send(owner,
                 execution_failed{
                     call.fence, "model " + model + " [" + judged.fault + "]: " + judged.error,
                     judged.retryable, model, judged.unavailable, false, judged.fault,
                     effect.retry_after ? world->real(*effect.retry_after).count() : int64_t{-1}});
    } else {
      if (effect.tokens >= 0) {
        std::lock_guard<std::recursive_mutex> guard{world->mutex};
        world->answered_tokens[model].emplace_back(world->elapsed(), effect.tokens);
      }
      self->send(owner, model_answer{call.fence, effect.reply, model,
                                     static_cast<double>(effect.latency.count()),
                                     static_cast<double>(load.count()), effect.tokens});
    }
    self->quit();
  }};
}

caf::behavior script_sim(caf::event_based_actor* self, caf::actor owner,
                         persistence::claimed_message job, call_effect effect,
                         std::shared_ptr<sim_world> world) {
  auto fence = job.fencing();
  self->send(owner, execution_started{fence, 0});
  if (!effect.hang)
    self->delayed_send(self, world->real(effect.latency), finish_atom::value);
  else // a hung child: only its owner's deadline ends the execution
    self->delayed_send(self, std::chrono::hours(24 * 365), finish_atom::value);
  return {[=](finish_atom) {
    if (effect.crash) {
      self->quit(caf::make_error(caf::sec::runtime_error, "simulated crash of the script job"));
      return;
    }
    actors::script_result r;
    r.exit_status = effect.exit_status;
    r.stderr_tail = effect.stderr_text;
    r = actors::judge_script_exit(std::move(r), effect.reply);
    if (r.ok)
      self->send(owner, execution_succeeded{fence, r.outcome, std::move(r.output), ""});
    else
      self->send(owner, execution_failed{fence, r.error, true, ""});
    self->quit();
  }};
}

// A call to a model its simulated GPU does not hold loads it first: the
// least recently used model is unloaded once its calls in flight end, then
// the load takes its time. Returns how long the call waits before it runs
// (0 for a loaded model), as Ollama's load_duration would tell.
millis load_if_needed(sim_world& world, const scenario& sc, const std::string& model,
                      millis runs_for) {
  auto now = world.elapsed();
  auto finish = [&](caf::timespan wait) {
    auto& ready = world.model_ready_at[model];
    wait = std::max(wait, ready - now);
    auto& busy = world.model_busy_until[model];
    busy = std::max(busy, now + wait + runs_for);
    return std::chrono::duration_cast<millis>(std::max(wait, caf::timespan{0}));
  };
  for (const auto& [name, gpu] : sc.gpus) {
    if (std::find(gpu.models.begin(), gpu.models.end(), model) == gpu.models.end())
      continue;
    auto& loaded = world.gpu_loaded[name];
    auto it = std::find(loaded.begin(), loaded.end(), model);
    if (it != loaded.end()) {
      loaded.erase(it);
      loaded.push_back(model);
      return finish(caf::timespan{0});
    }
    std::string evicted;
    caf::timespan free_at = now;
    if (static_cast<int>(loaded.size()) >= gpu.max_loaded) {
      evicted = loaded.front();
      loaded.erase(loaded.begin());
      free_at = std::max(free_at, world.model_busy_until[evicted]);
    }
    loaded.push_back(model);
    ++world.gpu_loads[name];
    world.model_ready_at[model] = free_at + gpu.load;
    world.log("gpu " + name + ": loads model " + model +
              (evicted.empty() ? std::string{} : " (unloads " + evicted + ")") + ", " +
              config::format_duration(gpu.load) +
              (free_at > now ? " after waiting " +
                                   config::format_duration(
                                       std::chrono::duration_cast<millis>(free_at - now)) +
                                   " for its calls in flight"
                             : std::string{}));
    return finish(caf::timespan{0});
  }
  return millis{0};
}

} // namespace

actors::model_caller scripted_models(std::shared_ptr<sim_world> world,
                                     std::shared_ptr<const scenario> sc) {
  return [world, sc](caf::event_based_actor* endpoint, caf::actor owner, const model_call& call,
                     const config::model_config& model) {
    std::lock_guard<std::recursive_mutex> guard{world->mutex};
    auto n = ++world->model_calls[model.name];
    auto key = key_of(*world, call.fence.message_id, call.stage, static_cast<int>(n));
    auto it = sc->models.find(model.name);
    auto effect = it == sc->models.end() ? call_effect{} : resolve(it->second, key);
    if (world->model_down(model.name)) { // a refused connection fails at once
      effect.refused = true;
      effect.latency = millis{1};
    }
    auto& last = world->last_stage[model.name];
    if (!last.empty() && last != call.stage)
      ++world->stage_switches[model.name];
    last = call.stage;
    auto load =
        load_if_needed(*world, *sc, model.name, effect.hang ? call.timeout : effect.latency);
    effect.latency += load;
    if (auto m = world->messages.find(call.fence.message_id); m != world->messages.end()) {
      auto& longest = world->longest_call_wait[model.name];
      longest = std::max(longest, world->elapsed() - m->second.claimed_at);
    }
    world->call_starts[model.name].push_back(world->elapsed());
    auto& flying = ++world->in_flight[model.name];
    world->peak_in_flight[model.name] = std::max(world->peak_in_flight[model.name], flying);
    world->log("model " + model.name + ": call " + std::to_string(n) + " for " +
               world->describe(call.fence.message_id) + " " + describe_effect(effect, true) + " (" +
               std::to_string(flying) + " in flight)");
    auto actor = endpoint->spawn(model_call_sim, owner, call, model.name, effect, load, world);
    world->calls.push_back(actor);
    return actor;
  };
}

actors::script_caller scripted_scripts(std::shared_ptr<sim_world> world,
                                       std::shared_ptr<const scenario> sc) {
  return [world, sc](caf::event_based_actor* pump, caf::actor owner,
                     const persistence::claimed_message& job, const actors::script_spec&) {
    std::lock_guard<std::recursive_mutex> guard{world->mutex};
    auto n = ++world->script_runs[job.stage];
    auto key = key_of(*world, job.id, job.stage, static_cast<int>(n));
    auto it = sc->scripts.find(job.stage);
    auto effect = it == sc->scripts.end() ? call_effect{} : resolve(it->second, key);
    world->log("script " + job.stage + ": run " + std::to_string(n) + " for " +
               world->describe(job.id) + " " + describe_effect(effect, false));
    auto actor = pump->spawn(script_sim, owner, job, effect, world);
    world->calls.push_back(actor);
    return actor;
  };
}

} // namespace turing::replay
