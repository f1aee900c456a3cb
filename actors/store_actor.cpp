// Store workers and their pool.
#include "actors/store_actor.hpp"

#include "messages/registry.hpp"
#include "persistence/store_error.hpp"

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

using fence_list = std::vector<std::pair<int64_t, int64_t>>;

template <class Entry> fence_list fences_of(const std::vector<Entry>& batch) {
  fence_list out;
  out.reserve(batch.size());
  for (const auto& e : batch)
    out.emplace_back(e.fence.message_id, e.fence.epoch);
  return out;
}

/// Runs one store operation; a store_error becomes an error reply. With an
/// outage log, an unreachable database is told there (once, then summed up)
/// rather than once per failed operation, and every success ends an outage;
/// `written` names the results a write carried, the outage's "writes waiting".
template <class F>
auto guarded(const std::shared_ptr<outage_log>& outage, const char* what, F&& operation,
             const fence_list* written = nullptr) -> caf::result<decltype(operation())> {
  try {
    auto result = operation();
    if (outage) {
      outage->reachable();
      if (written)
        outage->writes_done(*written);
    }
    return result;
  } catch (const std::exception& e) {
    auto* failure = dynamic_cast<const store_error*>(&e);
    if (outage && failure && failure->code() == store_errc::unavailable) {
      outage->unreachable(what, e.what());
      if (written)
        outage->writes_failed(*written);
    } else {
      spdlog::warn("store: {} failed: {}", what, e.what());
    }
    return caf::make_error(caf::sec::runtime_error, std::string(what) + ": " + e.what());
  }
}

// -- isolating a refused entry ---------------------------------------------------
//
// A batch the database refuses for its data (a byte it cannot store, a
// constraint) would be refused again at every retry and block its stage. It
// is split in halves until the offending entry is alone; every other entry
// commits, and the offender's attempt is recorded as failed with the reason.

std::vector<fence_result> fail_isolating(store& db, const std::vector<failure>& batch);

failure as_refused_failure(const completion& c, const std::string& reason) {
  failure f;
  f.fence = c.fence;
  f.attempt = c.attempt;
  f.node = c.node;
  f.started_at = c.started_at;
  f.result = attempt_result::failed;
  f.error = "result refused by the database: " + reason;
  f.model = c.model;
  f.retryable = false; // the same output would be refused again
  return f;
}

template <class Entry, class Write, class Alone>
std::vector<fence_result> write_isolating(const std::vector<Entry>& batch, Write write,
                                          Alone alone) {
  try {
    return write(batch);
  } catch (const store_error& e) {
    if (e.code() != store_errc::refused)
      throw;
    if (batch.size() == 1)
      return alone(batch.front(), e.what());
    auto mid = batch.begin() + static_cast<std::ptrdiff_t>(batch.size() / 2);
    auto out = write_isolating(std::vector<Entry>(batch.begin(), mid), write, alone);
    auto rest = write_isolating(std::vector<Entry>(mid, batch.end()), write, alone);
    out.insert(out.end(), rest.begin(), rest.end());
    return out;
  }
}

std::vector<fence_result> complete_isolating(store& db, const std::vector<completion>& batch) {
  return write_isolating(
      batch, [&](const auto& b) { return db.complete(b); },
      [&](const completion& c, const std::string& why) {
        spdlog::error("store: completion of message {} epoch {} refused by the database ({}); "
                      "its attempt is recorded as failed and the message dead-lettered",
                      c.fence.message_id, c.fence.epoch, why);
        return fail_isolating(db, {as_refused_failure(c, why)});
      });
}

/// A claiming completion: a batch the database refuses is split as
/// complete_isolating splits it, and then claims nothing (its handoffs are
/// ready for any claim).
completion_outcome complete_claiming_isolating(store& db, const claiming_completion& c) {
  try {
    return db.complete_claiming(c.batch, c.claims);
  } catch (const store_error& e) {
    if (e.code() != store_errc::refused)
      throw;
    return {complete_isolating(db, c.batch), {}};
  }
}

std::vector<fence_result> fail_isolating(store& db, const std::vector<failure>& batch) {
  return write_isolating(
      batch, [&](const auto& b) { return db.fail(b); },
      [&](const failure& f, const std::string& why) {
        // Error texts are sanitised already; what is left
        // is a constraint. Keep the reason, drop the text.
        spdlog::error("store: failure of message {} epoch {} refused by the "
                      "database ({}); recording it without its error text",
                      f.fence.message_id, f.fence.epoch, why);
        auto plain = f;
        plain.error = "error text refused by the database: " + why;
        return db.fail({plain});
      });
}

caf::behavior store_worker(caf::stateful_actor<store_worker_state>* self, store_factory make,
                           std::shared_ptr<outage_log> outage) {
  self->state.db = make();
  auto& db = *self->state.db;
  return {
      [&db, outage](claim_request& r) {
        return guarded(outage, "claim", [&] { return db.claim(r); });
      },
      [&db, outage](std::vector<completion>& batch) {
        auto written = fences_of(batch);
        return guarded(
            outage, "complete", [&] { return complete_isolating(db, batch); }, &written);
      },
      [&db, outage](claiming_completion& c) {
        auto written = fences_of(c.batch);
        return guarded(
            outage, "complete", [&] { return complete_claiming_isolating(db, c); }, &written);
      },
      [&db, outage](std::vector<failure>& batch) {
        auto written = fences_of(batch);
        return guarded(
            outage, "fail", [&] { return fail_isolating(db, batch); }, &written);
      },
      [&db, outage](heartbeat_request& r) {
        return guarded(outage, "heartbeat",
                       [&] { return db.heartbeat(r.node, r.leases, r.lease_ttl); });
      },
      [&db, outage](release_request& r) {
        return guarded(outage, "release", [&] { return db.release(r.node, r.leases); });
      },
      [&db, outage](rescue_request& r) {
        return guarded(outage, "rescue",
                       [&] { return db.rescue_expired(r.rescuer_node, r.max_lost); });
      },
      [&db, outage](rescue_node_request& r) {
        return guarded(outage, "rescue_node",
                       [&] { return db.rescue_node(r.dead_node, r.rescuer_node, r.max_lost); });
      },
      [&db, outage](nodes_request&) {
        return guarded(outage, "nodes", [&] { return db.nodes(); });
      },
      [&db, outage](prune_request& r) {
        return guarded(outage, "prune_history",
                       [&] { return db.prune_history(r.older_than, r.limit); });
      },
      [&db, outage](node_report& r) {
        return guarded(outage, "report_node", [&] {
          db.report_node(r);
          return true;
        });
      },
      [&db, outage](latency_request& r) {
        return guarded(outage, "recent_latencies", [&] {
          latency_history h;
          for (auto d : db.recent_latencies(r.stage, r.limit, r.window))
            h.ms.push_back(d.count());
          return h;
        });
      },
      [&db, outage](census_request&) {
        return guarded(outage, "census", [&] {
          work_census census;
          for (const auto& c : db.live_counts())
            census.stages.push_back({c.stage, c.ready, c.delayed, c.running, c.dead});
          return census;
        });
      },
  };
}

} // namespace

caf::actor spawn_store_pool(caf::actor_system& sys, const store_factory& make, size_t workers,
                            bool detached, std::shared_ptr<persistence::outage_log> outage) {
  if (!detached)
    return sys.spawn(store_worker, make, outage);
  auto spawn_one = [&sys, make, outage] {
    return sys.spawn<caf::detached>(store_worker, make, outage);
  };
  return caf::actor_pool::make(sys.dummy_execution_unit(), std::max<size_t>(workers, 1), spawn_one,
                               caf::actor_pool::round_robin());
}

} // namespace turing::actors
