// The lease keeper.
#include "actors/lease_keeper.hpp"

#include "actors/store_actor.hpp"
#include "messages/registry.hpp"
#include "metrics/node_metrics.hpp"

#include <caf/all.hpp>
#include <map>
#include <set>
#include <spdlog/spdlog.h>

namespace turing::actors {

namespace {

using heartbeat_tick_atom = caf::atom_constant<caf::atom("hbtick")>;
using persistence::lease;

std::string describe(const std::vector<lease>& leases) {
  std::string out;
  for (size_t i = 0; i < leases.size() && i < 10; ++i)
    out += (i ? "," : "") + std::to_string(leases[i].message_id) + "@" +
           std::to_string(leases[i].epoch);
  if (leases.size() > 10)
    out += ",…";
  return out;
}

} // namespace

struct lease_keeper_state {
  std::map<caf::actor_addr, std::map<int64_t, int64_t>> by_owner; // owner -> id -> epoch
  bool heartbeat_in_flight = false;
  static inline const char* name = "lease_keeper";
};

namespace {

caf::behavior lease_keeper(caf::stateful_actor<lease_keeper_state>* self,
                           lease_keeper_options options, std::shared_ptr<actor_directory> dir) {
  auto fail_crashed = [=](const caf::actor_addr& owner, const std::string& reason) {
    auto it = self->state.by_owner.find(owner);
    if (it == self->state.by_owner.end())
      return;
    std::vector<persistence::failure> batch;
    std::vector<lease> leases;
    for (const auto& [id, epoch] : it->second) {
      persistence::failure f;
      f.fence = {id, epoch};
      f.node = options.node;
      f.started_at = options.wall_clock();
      f.result = persistence::attempt_result::crashed;
      f.error = "owner crashed: " + reason;
      batch.push_back(f);
      leases.push_back(f.fence);
    }
    self->state.by_owner.erase(it);
    if (batch.empty())
      return;
    spdlog::warn("lease keeper: owner {} crashed ({}); returning messages {} to ready",
                 caf::to_string(owner), reason, describe(leases));
    auto store = dir->get("store");
    if (!store) {
      spdlog::error("lease keeper: no store to return messages {}; they return when their "
                    "leases expire",
                    describe(leases));
      return;
    }
    self->request(store, std::chrono::seconds(60), std::move(batch))
        .then([=](const std::vector<persistence::fence_result>&) {},
              [=](caf::error& e) {
                spdlog::error("lease keeper: could not return messages {} ({}); they return when "
                              "their leases expire",
                              describe(leases), self->system().render(e));
              });
  };

  self->set_down_handler([=](caf::down_msg& dm) {
    bool crashed = dm.reason && dm.reason != caf::exit_reason::normal &&
                   dm.reason != caf::exit_reason::user_shutdown;
    auto it = self->state.by_owner.find(dm.source);
    if (it == self->state.by_owner.end())
      return;
    if (crashed || !it->second.empty())
      fail_crashed(dm.source, crashed ? self->system().render(dm.reason)
                                      : "exited while still owning messages");
    self->state.by_owner.erase(dm.source);
  });

  self->send(self, heartbeat_tick_atom::value);
  return {
      [=](leases_taken& msg) {
        auto owner = self->current_sender();
        auto addr = caf::actor_cast<caf::actor_addr>(owner);
        auto [it, fresh] = self->state.by_owner.try_emplace(addr);
        if (fresh)
          self->monitor(owner);
        for (const auto& l : msg.leases)
          it->second[l.message_id] = l.epoch;
      },
      [=](owner_replaced& msg) {
        auto it = self->state.by_owner.find(msg.owner);
        if (it == self->state.by_owner.end())
          return;
        self->demonitor(msg.owner);
        if (!it->second.empty())
          fail_crashed(msg.owner, "its supervisor started a new incarnation");
        self->state.by_owner.erase(msg.owner);
      },
      [=](leases_ended& msg) {
        auto addr = caf::actor_cast<caf::actor_addr>(self->current_sender());
        auto it = self->state.by_owner.find(addr);
        if (it == self->state.by_owner.end())
          return;
        for (const auto& l : msg.leases) {
          auto held = it->second.find(l.message_id);
          if (held != it->second.end() && held->second == l.epoch)
            it->second.erase(held);
        }
      },
      [=](heartbeat_tick_atom) {
        self->delayed_send(self, options.heartbeat_interval, heartbeat_tick_atom::value);
        if (self->state.heartbeat_in_flight)
          return;
        heartbeat_request req{options.node, {}, options.lease_ttl};
        for (const auto& [owner, leases] : self->state.by_owner)
          for (const auto& [id, epoch] : leases)
            req.leases.push_back({id, epoch});
        if (req.leases.empty())
          return;
        // Its own connection: a heartbeat never queues behind a bulk write.
        auto store = dir->get(liveness_store_name);
        if (!store)
          return;
        auto count = req.leases.size();
        self->state.heartbeat_in_flight = true;
        self->request(store, options.heartbeat_interval, std::move(req))
            .then(
                [=](const std::vector<lease>& lost) {
                  self->state.heartbeat_in_flight = false;
                  metrics::process_metrics().lease_heartbeats().inc();
                  spdlog::debug("lease keeper: extended {} leases, {} lost", count - lost.size(),
                                lost.size());
                  // One line per heartbeat however many were lost: an outage
                  // longer than the lease loses every lease at once.
                  std::vector<lease> told;
                  for (const auto& l : lost) {
                    for (auto& [owner, leases] : self->state.by_owner) {
                      auto it = leases.find(l.message_id);
                      if (it == leases.end() || it->second != l.epoch)
                        continue;
                      leases.erase(it);
                      told.push_back(l);
                      if (auto h = caf::actor_cast<caf::actor>(owner))
                        self->send(h, lease_lost{l});
                    }
                  }
                  metrics::process_metrics().leases_lost().inc(told.size());
                  if (!told.empty())
                    spdlog::warn("lease keeper: {} lease(s) lost (rescued meanwhile): {}; telling "
                                 "their owners to stop",
                                 told.size(), describe(told));
                },
                [=](caf::error& e) {
                  self->state.heartbeat_in_flight = false;
                  spdlog::log(persistence::secondhand_level(options.outage),
                              "lease keeper: heartbeat of {} leases failed ({}); retrying in {} ms",
                              count, self->system().render(e), options.heartbeat_interval.count());
                });
      },
  };
}

} // namespace

caf::actor spawn_lease_keeper(caf::actor_system& sys, lease_keeper_options options,
                              std::shared_ptr<actor_directory> dir) {
  return sys.spawn(lease_keeper, std::move(options), std::move(dir));
}

} // namespace turing::actors
