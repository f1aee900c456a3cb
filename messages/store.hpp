// Store messages: the persistence types actors send to and receive from a
// store actor, with their inspect(); JSON members travel as text.
#pragma once

#include "persistence/types.hpp"

#include <caf/error.hpp>
#include <caf/meta/load_callback.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/none.hpp>
#include <caf/sec.hpp>

namespace turing::persistence {

namespace detail {

/// Parses JSON text loaded from the wire into its member.
inline caf::error parse_json_into(const std::string& text, json& out) {
  out = json::parse(text, nullptr, false);
  if (out.is_discarded())
    return caf::make_error(caf::sec::invalid_argument, "malformed JSON in message");
  return caf::none;
}

} // namespace detail

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, prune_result& x) {
  return f(caf::meta::type_name("turing::prune_result"), x.messages, x.attempts);
}

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, lease& x) {
  return f(caf::meta::type_name("turing::lease"), x.message_id, x.epoch);
}

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, claim_request& x) {
  return f(caf::meta::type_name("turing::claim_request"), x.stage, x.node, x.limit, x.lease_ttl,
           x.max_bytes);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, claimed_message& x) {
  std::string payload = x.payload.dump();
  auto parse = caf::meta::load_callback(
      [&]() -> caf::error { return detail::parse_json_into(payload, x.payload); });
  return f(caf::meta::type_name("turing::claimed_message"), x.id, x.item_id, x.run_id, x.stage,
           payload, parse, x.attempt, x.max_attempts, x.lost, x.epoch, x.started_at);
}

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, delivery& x) {
  std::string payload = x.payload.dump();
  auto parse = caf::meta::load_callback(
      [&]() -> caf::error { return detail::parse_json_into(payload, x.payload); });
  return f(caf::meta::type_name("turing::delivery"), x.type, x.target, payload, parse,
           x.max_attempts, x.join_inputs);
}

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, completion& x) {
  std::string output = x.output.dump();
  auto parse = caf::meta::load_callback(
      [&]() -> caf::error { return detail::parse_json_into(output, x.output); });
  return f(caf::meta::type_name("turing::completion"), x.fence, x.attempt, x.node, x.started_at,
           x.outcome, output, parse, x.model, x.tokens, x.deliveries, x.derived_payloads);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, handoff_claims& x) {
  return f(caf::meta::type_name("turing::handoff_claims"), x.node, x.lease_ttl, x.limits);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, completion_outcome& x) {
  return f(caf::meta::type_name("turing::completion_outcome"), x.results, x.claimed);
}

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, failure& x) {
  return f(caf::meta::type_name("turing::failure"), x.fence, x.attempt, x.node, x.started_at,
           x.result, x.error, x.model, x.retry_after, x.retryable);
}

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, model_outage& x) {
  return f(caf::meta::type_name("turing::model_outage"), x.since, x.error, x.waiting);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, call_in_flight& x) {
  return f(caf::meta::type_name("turing::call_in_flight"), x.stage, x.message_id, x.started_at,
           x.tokens);
}

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, node_report& x) {
  // std::optional is not inspectable in CAF 0.17: a flag and a time point.
  bool stopped = x.stopped_at.has_value();
  time_point stopped_at = x.stopped_at.value_or(time_point{});
  auto load = caf::meta::load_callback([&]() -> caf::error {
    x.stopped_at = stopped ? std::optional<time_point>{stopped_at} : std::nullopt;
    return caf::none;
  });
  return f(caf::meta::type_name("turing::node_report"), x.name, x.started_at, x.seen_at, stopped,
           stopped_at, load, x.failed_stages, x.unavailable_models, x.running_calls, x.address,
           x.peers);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, rescued_message& x) {
  return f(caf::meta::type_name("turing::rescued_message"), x.message_id, x.stage, x.previous_owner,
           x.dead);
}

} // namespace turing::persistence

namespace turing {

/// Extend these leases of `node`; the reply is the std::vector<lease> it no
/// longer holds.
struct heartbeat_request {
  std::string node;
  std::vector<persistence::lease> leases;
  persistence::millis lease_ttl{0};
};

/// Complete `batch` and claim its handoffs as `claims` allows
/// (store::complete_claiming); the reply is a completion_outcome.
struct claiming_completion {
  std::vector<persistence::completion> batch;
  persistence::handoff_claims claims;
};

/// Release these leases of `node` (graceful stop); the reply is a
/// std::vector<fence_result>.
struct release_request {
  std::string node;
  std::vector<persistence::lease> leases;
};

/// Return every expired lease to ready; the reply is a
/// std::vector<rescued_message>.
struct rescue_request {
  std::string rescuer_node;
  int max_lost = persistence::default_max_lost_attempts;
};

/// History retention, one batch: remove up to `limit` done messages (and
/// their attempts) of items finished over `older_than` ago; the reply is a
/// prune_result.
/// Return every lease `dead_node` holds to ready now (its process is known
/// to be gone); the reply is a std::vector<rescued_message>.
struct rescue_node_request {
  std::string dead_node;
  std::string rescuer_node;
  int max_lost = persistence::default_max_lost_attempts;
};

/// Every node's last report; the reply is a std::vector<node_report>.
struct nodes_request {};

struct prune_request {
  persistence::millis older_than{0};
  int limit = 0;
};

/// How much work is ready, delayed or running in all stages; the reply is a
/// work_census.
struct census_request {};

/// The durations of a stage's most recent completed attempts (store::
/// recent_latencies); the reply is a latency_history.
struct latency_request {
  std::string stage;
  int limit = 0;
  persistence::millis window{0};
};

/// Milliseconds per attempt, newest first.
struct latency_history {
  std::vector<int64_t> ms;
};

/// Per stage: (stage, ready, delayed, running). A cheap summary for the drain
/// watcher and the dry-stage signal, not the full status.
struct stage_work {
  std::string stage;
  int64_t ready = 0;
  int64_t delayed = 0;
  int64_t running = 0;
  int64_t dead = 0;
};

struct work_census {
  std::vector<stage_work> stages;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, heartbeat_request& x) {
  return f(caf::meta::type_name("turing::heartbeat_request"), x.node, x.leases, x.lease_ttl);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, claiming_completion& x) {
  return f(caf::meta::type_name("turing::claiming_completion"), x.batch, x.claims);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, release_request& x) {
  return f(caf::meta::type_name("turing::release_request"), x.node, x.leases);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, rescue_request& x) {
  return f(caf::meta::type_name("turing::rescue_request"), x.rescuer_node, x.max_lost);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, rescue_node_request& x) {
  return f(caf::meta::type_name("turing::rescue_node_request"), x.dead_node, x.rescuer_node,
           x.max_lost);
}

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, nodes_request&) {
  return f(caf::meta::type_name("turing::nodes_request"));
}

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, prune_request& x) {
  return f(caf::meta::type_name("turing::prune_request"), x.older_than, x.limit);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, latency_request& x) {
  return f(caf::meta::type_name("turing::latency_request"), x.stage, x.limit, x.window);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, latency_history& x) {
  return f(caf::meta::type_name("turing::latency_history"), x.ms);
}

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, census_request&) {
  return f(caf::meta::type_name("turing::census_request"));
}

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, stage_work& x) {
  return f(caf::meta::type_name("turing::stage_work"), x.stage, x.ready, x.delayed, x.running,
           x.dead);
}

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, work_census& x) {
  return f(caf::meta::type_name("turing::work_census"), x.stages);
}

} // namespace turing
