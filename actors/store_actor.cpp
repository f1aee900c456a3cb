// Store workers and their pool.
#include "actors/store_actor.hpp"

#include "messages/registry.hpp"

#include <caf/actor_pool.hpp>
#include <caf/all.hpp>
#include <spdlog/spdlog.h>

namespace turing::actors {

namespace {

using namespace persistence;

struct store_worker_state {
  std::unique_ptr<store> db;
  static inline const char* name = "store_worker";
};

/// Runs one store operation; a store_error becomes an error reply.
template <class F>
auto guarded(const char* what, F&& operation) -> caf::result<decltype(operation())> {
  try {
    return operation();
  } catch (const std::exception& e) {
    spdlog::warn("store: {} failed: {}", what, e.what());
    return caf::make_error(caf::sec::runtime_error, std::string(what) + ": " + e.what());
  }
}

caf::behavior store_worker(caf::stateful_actor<store_worker_state>* self, store_factory make) {
  self->state.db = make();
  auto& db = *self->state.db;
  return {
      [&db](claim_request& r) { return guarded("claim", [&] { return db.claim(r); }); },
      [&db](std::vector<completion>& batch) {
        return guarded("complete", [&] { return db.complete(batch); });
      },
      [&db](std::vector<failure>& batch) {
        return guarded("fail", [&] { return db.fail(batch); });
      },
      [&db](heartbeat_request& r) {
        return guarded("heartbeat", [&] { return db.heartbeat(r.node, r.leases, r.lease_ttl); });
      },
      [&db](release_request& r) {
        return guarded("release", [&] { return db.release(r.node, r.leases); });
      },
      [&db](rescue_request& r) {
        return guarded("rescue", [&] { return db.rescue_expired(r.rescuer_node); });
      },
      [&db](node_report& r) {
        return guarded("report_node", [&] {
          db.report_node(r);
          return true;
        });
      },
      [&db](census_request&) {
        return guarded("census", [&] {
          work_census census;
          for (const auto& c : db.counts())
            census.stages.push_back({c.stage, c.ready, c.delayed, c.running, c.dead});
          return census;
        });
      },
  };
}

} // namespace

caf::actor spawn_store_pool(caf::actor_system& sys, const store_factory& make, size_t workers,
                            bool detached) {
  if (!detached)
    return sys.spawn(store_worker, make);
  auto spawn_one = [&sys, make] { return sys.spawn<caf::detached>(store_worker, make); };
  return caf::actor_pool::make(sys.dummy_execution_unit(), std::max<size_t>(workers, 1), spawn_one,
                               caf::actor_pool::round_robin());
}

} // namespace turing::actors
