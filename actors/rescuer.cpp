// The rescuer.
#include "actors/rescuer.hpp"

#include "actors/store_actor.hpp"
#include "messages/registry.hpp"
#include "metrics/node_metrics.hpp"

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

namespace turing::actors {

namespace {

using rescue_tick_atom = caf::atom_constant<caf::atom("rsctick")>;

} // namespace

caf::behavior rescuer(caf::event_based_actor* self, rescuer_options options,
                      std::shared_ptr<actor_directory> dir) {
  struct counters {
    int64_t passes = 0;
    int64_t quiet_since_report = 0;
    std::chrono::steady_clock::time_point last_report;
  };
  auto seen = std::make_shared<counters>();
  self->send(self, rescue_tick_atom::value);
  return {
      [=](rescue_tick_atom) {
        auto store = dir->get(liveness_store_name); // beside the heartbeats, away from bulk
        if (!store) {
          self->delayed_send(self, options.interval, rescue_tick_atom::value);
          return;
        }
        auto pass = ++seen->passes;
        self->request(store, std::max(options.interval, persistence::millis{30000}),
                      rescue_request{options.node, options.max_lost})
            .then(
                [=](const std::vector<persistence::rescued_message>& rescued) {
                  self->delayed_send(self, options.interval, rescue_tick_atom::value);
                  if (rescued.empty()) {
                    // Every pass is logged; quiet ones are summed up at info once a
                    // minute, so a rescuer that stopped running shows by its silence.
                    auto now = self->clock().now(); // virtual in the simulation
                    ++seen->quiet_since_report;
                    if (pass == 1) {
                      spdlog::info("rescuer: startup pass found no expired leases");
                      seen->quiet_since_report = 0;
                      seen->last_report = now;
                    } else if (now - seen->last_report >= std::chrono::minutes(1)) {
                      spdlog::info(
                          "rescuer: {} pass(es) since the last report found no expired leases",
                          seen->quiet_since_report);
                      seen->quiet_since_report = 0;
                      seen->last_report = now;
                    } else {
                      spdlog::debug("rescuer: pass {} found no expired leases", pass);
                    }
                    return;
                  }
                  int64_t dead = 0;
                  std::string ids;
                  for (const auto& r : rescued) {
                    // Per stage, looked up per rescued message: rare, off the hot path.
                    auto stage = metrics::process_metrics().stage(r.stage);
                    stage.rescued->inc();
                    if (r.dead)
                      stage.dead->inc();
                    dead += r.dead ? 1 : 0;
                    if (ids.size() < 200)
                      ids += (ids.empty() ? "" : ",") + std::to_string(r.message_id) + "(" +
                             r.stage + ", was " + r.previous_owner + ")";
                  }
                  spdlog::warn(
                      "rescuer: pass {} returned {} expired lease(s) to ready, {} dead-lettered "
                      "on their last attempt: {}",
                      pass, rescued.size() - dead, dead, ids);
                },
                [=](caf::error& e) {
                  self->delayed_send(self, options.interval, rescue_tick_atom::value);
                  spdlog::log(persistence::secondhand_level(options.outage),
                              "rescuer: pass {} failed: {}", pass, self->system().render(e));
                });
      },
  };
}

} // namespace turing::actors
