// Runtime control messages: work appearing in a stage, lease ownership
// reported to the lease keeper, and the graceful drain at shutdown.
#pragma once

#include "messages/store.hpp"

#include <caf/actor_addr.hpp>
#include <caf/meta/type_name.hpp>

namespace turing {

/// Work may be ready in `stage` (a NOTIFY arrived, or a poll timer fired).
struct work_available {
  std::string stage;
};

/// The group writer to a stage's pump, once a completion batch that
/// reserved `reserved` of the room the pump offered (handoff_room, its
/// incarnation `room`) is answered: `jobs` (at most `reserved`) were handed
/// off already claimed for this node and are the pump's to run; the rest of
/// the reservation is the pump's again.
struct handoffs_claimed {
  std::string stage;
  uint64_t room = 0;
  int reserved = 0;
  std::vector<persistence::claimed_message> jobs;
};

/// The sender now owns these leases: keep them alive until leases_ended.
struct leases_taken {
  std::vector<persistence::lease> leases;
};

/// The sender no longer owns these leases (finished, failed, released).
struct leases_ended {
  std::vector<persistence::lease> leases;
};

/// A named actor was started again while its previous incarnation may still
/// live (a stalled actor, killed but not yet dead): the lease keeper returns
/// the leases `owner` held as crashed instead of heartbeating them forever.
struct owner_replaced {
  caf::actor_addr owner;
};

/// Stop claiming; finish in-flight work for up to `grace`, then
/// release what is left. The reply is a drain_report once nothing is owned.
struct drain_request {
  persistence::millis grace{0};
};

struct drain_report {
  std::string stage;
  int64_t finished = 0; ///< completed or failed during the drain
  int64_t released = 0; ///< returned to ready, attempt not consumed
};

/// No work is ready, delayed or running in any stage that is still alive;
/// `failed_stages` lists stages that gave up (their work stays where it is).
struct pipeline_drained {
  std::vector<std::string> failed_stages;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, pipeline_drained& x) {
  return f(caf::meta::type_name("turing::pipeline_drained"), x.failed_stages);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, work_available& x) {
  return f(caf::meta::type_name("turing::work_available"), x.stage);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, handoffs_claimed& x) {
  return f(caf::meta::type_name("turing::handoffs_claimed"), x.stage, x.room, x.reserved, x.jobs);
}

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, leases_taken& x) {
  return f(caf::meta::type_name("turing::leases_taken"), x.leases);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, owner_replaced& x) {
  return f(caf::meta::type_name("turing::owner_replaced"), x.owner);
}

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, leases_ended& x) {
  return f(caf::meta::type_name("turing::leases_ended"), x.leases);
}

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, drain_request& x) {
  return f(caf::meta::type_name("turing::drain_request"), x.grace);
}

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, drain_report& x) {
  return f(caf::meta::type_name("turing::drain_report"), x.stage, x.finished, x.released);
}

} // namespace turing
