// Assembly of a node's supervision tree.
#include "actors/node_runtime.hpp"

#include "actors/gpu_scheduler.hpp"
#include "actors/group_writer.hpp"
#include "actors/history_pruner.hpp"
#include "actors/lease_keeper.hpp"
#include "actors/model_endpoint.hpp"
#include "actors/model_relay.hpp"
#include "actors/ready_listener.hpp"
#include "actors/rescuer.hpp"
#include "actors/script_worker_pool.hpp"
#include "actors/stage_pump.hpp"
#include "messages/registry.hpp"
#include "supervision/supervisor.hpp"

#include <algorithm>
#include <caf/all.hpp>
#include <map>
#include <memory>

namespace turing::actors {

namespace {

using supervision::child_spec;
using supervision::restart_strategy;
using supervision::restart_type;
using supervision::supervisor_flags;

/// A child whose every incarnation is registered under `name`.
template <class Spawn>
child_spec named_child(std::shared_ptr<actor_directory> dir, std::string name, Spawn spawn) {
  child_spec spec;
  spec.id = name;
  spec.start = [dir, name, spawn](caf::event_based_actor* sup) {
    caf::actor previous = dir->get(name);
    caf::actor handle = spawn(sup);
    dir->put(name, handle);
    // A crashed predecessor is gone already; a stalled one may still hold
    // leases, which must not be kept alive for an actor nobody supervises.
    if (previous)
      if (auto keeper = dir->get("lease_keeper"))
        caf::anon_send(keeper, owner_replaced{previous.address()});
    return handle;
  };
  return spec;
}

/// A nested supervisor, registered as "supervisor/<id>" in every
/// incarnation, so that a simulated SIGKILL can end it with the rest.
child_spec named_supervisor(std::shared_ptr<actor_directory> dir, child_spec spec) {
  auto name = "supervisor/" + spec.id;
  spec.start = [dir, name, start = std::move(spec.start)](caf::event_based_actor* sup) {
    caf::actor handle = start(sup);
    dir->put(name, handle);
    return handle;
  };
  return spec;
}

} // namespace

void configure_scheduler(caf::actor_system_config& cfg) {
  cfg.set("scheduler.policy", caf::atom("sharing"));
  cfg.set("scheduler.max-threads", size_t{4});
}

caf::actor spawn_node(caf::actor_system& sys, const node_options& o,
                      std::shared_ptr<actor_directory> dir) {
  const auto& runtime = o.pipeline->runtime;

  std::vector<child_spec> persistence;
  persistence.push_back(named_child(dir, "store", [o](caf::event_based_actor* sup) {
    return spawn_store_pool(sup->system(), o.make_store, o.store_workers, o.detached, o.outage);
  }));
  // One per node, outliving the pumps' restarts; each pump opens its room.
  auto rooms = runtime.claim_handoffs ? std::make_shared<handoff_rooms>() : nullptr;
  group_writer_options writer;
  writer.rooms = rooms;
  writer.node = o.node;
  writer.lease_ttl = runtime.lease_ttl;
  persistence.push_back(
      named_child(dir, group_writer_name, [dir, writer](caf::event_based_actor* sup) {
        return spawn_group_writer(sup->system(), writer, dir);
      }));
  persistence.push_back(named_child(dir, liveness_store_name, [o](caf::event_based_actor* sup) {
    return spawn_store_pool(sup->system(), o.make_store, 1, o.detached, o.outage);
  }));
  if (!o.listen_connection_string.empty())
    persistence.push_back(named_child(dir, "ready_listener", [o](caf::event_based_actor* sup) {
      return sup->spawn(ready_listener, o.listen_connection_string, o.node, o.outage);
    }));
  persistence.push_back(
      named_child(dir, "lease_keeper", [o, dir, runtime](caf::event_based_actor* sup) {
        return spawn_lease_keeper(sup->system(),
                                  lease_keeper_options{o.node, runtime.heartbeat_interval,
                                                       runtime.lease_ttl, o.wall_clock, o.outage},
                                  dir);
      }));
  persistence.push_back(named_child(dir, "rescuer", [o, dir, runtime](caf::event_based_actor* sup) {
    return sup->spawn(
        rescuer,
        rescuer_options{o.node, runtime.rescue_interval, runtime.max_lost_attempts, o.outage}, dir);
  }));

  if (runtime.retain_done.count() > 0)
    persistence.push_back(
        named_child(dir, "history_pruner", [o, dir, runtime](caf::event_based_actor* sup) {
          history_pruner_options pruner;
          pruner.retain = runtime.retain_done;
          pruner.outage = o.outage;
          return sup->spawn(history_pruner, pruner, dir);
        }));

  std::vector<child_spec> models;
  // Placement ([nodes.<name>] models): a model another node hosts is a relay here.
  auto hosted_elsewhere = [&](const std::string& model) {
    auto host = o.pipeline->model_host(model);
    return !host.empty() && host != o.node;
  };
  // GPU schedulers first: their endpoints report to them from the start.
  for (const auto& g : o.pipeline->gpus) {
    if (std::all_of(g.models.begin(), g.models.end(), hosted_elsewhere))
      continue; // its scheduler lives with its models
    models.push_back(named_child(dir, "gpu/" + g.name, [g, dir](caf::event_based_actor* sup) {
      gpu_scheduler_options scheduler;
      scheduler.gpu = g;
      scheduler.find_endpoint = [weak =
                                     std::weak_ptr<actor_directory>(dir)](const std::string& name) {
        auto d = weak.lock();
        return d ? d->get("model/" + name) : caf::actor{};
      };
      return spawn_gpu_scheduler(sup->system(), std::move(scheduler));
    }));
  }
  // One budget per API key, shared by its models' endpoints (and kept across
  // their restarts: the minute's spending does not start over).
  std::map<std::string, std::shared_ptr<shared_model_budget>> key_budgets;
  for (const auto& k : o.pipeline->api_keys)
    key_budgets[k.env] = std::make_shared<shared_model_budget>(
        k.env, k.requests_per_minute, k.tokens_per_minute, k.budget_window);
  for (const auto& m : o.pipeline->models) {
    if (hosted_elsewhere(m.name)) {
      models.push_back(
          named_child(dir, "model/" + m.name, [m, o, dir](caf::event_based_actor* sup) {
            model_relay_options relay;
            relay.model = m;
            relay.host_node = o.pipeline->model_host(m.name);
            // Set by the cluster member while the hosting node is connected.
            relay.find_remote = [weak = std::weak_ptr<actor_directory>(dir), name = m.name] {
              auto d = weak.lock();
              return d ? d->get(remote_endpoint_name(name)) : caf::actor{};
            };
            return spawn_model_relay(sup->system(), std::move(relay));
          }));
      continue;
    }
    std::shared_ptr<shared_model_budget> key_budget;
    if (auto it = key_budgets.find(m.api_key_env);
        !m.api_key_env.empty() && it != key_budgets.end())
      key_budget = it->second;
    models.push_back(
        named_child(dir, "model/" + m.name, [m, o, dir, key_budget](caf::event_based_actor* sup) {
          model_endpoint_options endpoint;
          endpoint.model = m;
          endpoint.caller = o.simulated_models;
          endpoint.observer = o.observer;
          endpoint.wall_clock = o.wall_clock;
          // Weak: the directory holds the endpoint, which must not hold it back.
          endpoint.find_endpoint =
              [weak = std::weak_ptr<actor_directory>(dir)](const std::string& name) {
                auto d = weak.lock();
                return d ? d->get("model/" + name) : caf::actor{};
              };
          endpoint.key_budget = key_budget;
          if (!m.gpu.empty())
            endpoint.find_gpu = [weak = std::weak_ptr<actor_directory>(dir), gpu = m.gpu] {
              auto d = weak.lock();
              return d ? d->get("gpu/" + gpu) : caf::actor{};
            };
          return spawn_model_endpoint(sup->system(), std::move(endpoint));
        }));
  }

  std::vector<child_spec> stages;
  for (const auto& s : o.pipeline->stages) {
    if (!o.pipeline->runs_stage(o.node, s.name))
      continue; // placed on other nodes
    stage_pump_options pump;
    pump.pipeline = o.pipeline;
    pump.stage = s.name;
    pump.node = o.node;
    pump.builtins = o.builtins;
    pump.dir = dir;
    pump.simulated_scripts = o.simulated_scripts;
    pump.wall_clock = o.wall_clock;
    pump.outage = o.outage;
    pump.rooms = rooms;
    if (o.random_seed != 0)
      pump.random_seed = o.random_seed + stages.size();
    std::vector<child_spec> stage_children{
        named_child(dir, "pump/" + s.name, [pump](caf::event_based_actor* sup) {
          return spawn_stage_pump(sup->system(), pump);
        })};
    stage_children.front().stall_timeout = runtime.stall_timeout;
    // Worker mode: the stage's long-lived children, first so that they outlive the pump at
    // shutdown (children stop in reverse order) and survive its restarts. The simulation
    // replaces script children altogether, so it needs no pool.
    if (s.handler == config::handler_kind::script && s.mode == config::script_mode::worker &&
        !o.simulated_scripts)
      stage_children.insert(
          stage_children.begin(),
          named_child(dir, script_pool_name(s.name), [s, runtime](caf::event_based_actor* sup) {
            // A reply line may hold the whole payload, plus its outcome.
            auto max_line = runtime.max_payload + (std::size_t{1} << 20);
            return spawn_script_worker_pool(
                sup->system(),
                {s.name, script_spec{s.command, s.working_dir, s.env}, s.concurrency, max_line});
          }));
    stages.push_back(named_supervisor(
        dir, supervision::supervisor_child(
                 "stage/" + s.name,
                 supervisor_flags{restart_strategy::one_for_one, 3, std::chrono::seconds(30)},
                 std::move(stage_children), restart_type::temporary, o.observer)));
  }

  std::vector<child_spec> root{
      named_supervisor(
          dir, supervision::supervisor_child(
                   "persistence",
                   supervisor_flags{restart_strategy::one_for_one, 5, std::chrono::seconds(10)},
                   std::move(persistence), restart_type::permanent, o.observer)),
      named_supervisor(
          dir, supervision::supervisor_child(
                   "models",
                   supervisor_flags{restart_strategy::one_for_one, 5, std::chrono::seconds(10)},
                   std::move(models), restart_type::permanent, o.observer)),
      named_supervisor(
          dir, supervision::supervisor_child(
                   "pipeline",
                   supervisor_flags{restart_strategy::one_for_one, 3, std::chrono::seconds(30)},
                   std::move(stages), restart_type::permanent, o.observer)),
  };
  return supervision::spawn_supervisor(
      sys, "root", supervisor_flags{restart_strategy::one_for_one, 3, std::chrono::seconds(60)},
      std::move(root), o.observer);
}

} // namespace turing::actors
