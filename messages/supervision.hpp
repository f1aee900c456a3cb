// Messages a turing supervisor sends to its observer and answers to queries,
// plus the error category it exits with when it gives up. All of them may
// cross nodes, so they are plain serialisable structs registered by name.
#pragma once

#include <caf/actor_system_config.hpp>
#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/make_message.hpp>
#include <caf/message.hpp>
#include <caf/meta/type_name.hpp>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace turing {

// -- errors -------------------------------------------------------------------

/// Why a supervisor (or one of its children) ended abnormally.
enum class supervision_errc : uint8_t {
  /// More than `intensity` restarts within `period`: the supervisor stopped
  /// all its children and gave up. Its parent sees this as a child crash.
  intensity_exceeded = 1,
  /// A child's start function threw or returned an invalid actor.
  start_failed,
  /// A probed child left a liveness probe unanswered for its
  /// `stall_timeout`: it no longer processes its mailbox, so it was killed.
  stalled,
};

/// The CAF error category of `supervision_errc` (atom text <= 10 chars).
constexpr caf::atom_value supervision_category = caf::atom("supervisor");

// `make_error` must be declared before anything compares two
// `supervision_errc` values: such a comparison instantiates
// `caf::has_make_error<supervision_errc>`, which is then frozen as false and
// `error == supervision_errc::x` stops compiling.

/// @relates supervision_errc
inline caf::error make_error(supervision_errc x) {
  return {static_cast<uint8_t>(x), supervision_category};
}

/// @relates supervision_errc
inline caf::error make_error(supervision_errc x, std::string context) {
  return {static_cast<uint8_t>(x), supervision_category, caf::make_message(std::move(context))};
}

/// @relates supervision_errc
inline std::string to_string(supervision_errc x) {
  switch (x) {
  case supervision_errc::intensity_exceeded:
    return "intensity_exceeded";
  case supervision_errc::start_failed:
    return "start_failed";
  case supervision_errc::stalled:
    return "stalled";
  }
  return "unknown_supervision_error";
}

// -- atoms --------------------------------------------------------------------

/// Asks a supervisor for its children; the reply is a
/// `std::vector<child_status>` in start order.
using which_children_atom = caf::atom_constant<caf::atom("whichchld")>;

/// A supervisor's liveness probe, sent as a request to children with a
/// `stall_timeout`. Any reply, even an error, proves the child still reads
/// its mailbox; probed actors answer it explicitly (an empty reply) so the
/// probe is not logged as an unexpected message.
using probe_atom = caf::atom_constant<caf::atom("liveprobe")>;

// -- events and replies -------------------------------------------------------

/// A supervisor started (or restarted) a child.
struct child_started {
  std::string supervisor;
  std::string child;
  /// 0 for the first start, then one more for each restart.
  int64_t restart_count = 0;
};

/// A child of a supervisor terminated.
struct child_exited {
  std::string supervisor;
  std::string child;
  /// "normal" for an empty exit reason, otherwise the rendered caf::error.
  std::string reason;
  /// Whether the supervisor is going to start it again.
  bool restarting = false;
};

/// A supervisor exceeded its restart intensity and is shutting down.
struct supervisor_gave_up {
  std::string supervisor;
  std::string reason;
};

/// One entry of the reply to `which_children_atom`.
struct child_status {
  std::string id;
  bool alive = false;
  /// How often the child has been restarted so far.
  int64_t restarts = 0;
};

/// @relates child_started
template <class Inspector> typename Inspector::result_type inspect(Inspector& f, child_started& x) {
  return f(caf::meta::type_name("turing::child_started"), x.supervisor, x.child, x.restart_count);
}

/// @relates child_exited
template <class Inspector> typename Inspector::result_type inspect(Inspector& f, child_exited& x) {
  return f(caf::meta::type_name("turing::child_exited"), x.supervisor, x.child, x.reason,
           x.restarting);
}

/// @relates supervisor_gave_up
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, supervisor_gave_up& x) {
  return f(caf::meta::type_name("turing::supervisor_gave_up"), x.supervisor, x.reason);
}

/// @relates child_status
template <class Inspector> typename Inspector::result_type inspect(Inspector& f, child_status& x) {
  return f(caf::meta::type_name("turing::child_status"), x.id, x.alive, x.restarts);
}

/// @relates child_started
inline bool operator==(const child_started& x, const child_started& y) {
  return x.supervisor == y.supervisor && x.child == y.child && x.restart_count == y.restart_count;
}

/// @relates child_exited
inline bool operator==(const child_exited& x, const child_exited& y) {
  return x.supervisor == y.supervisor && x.child == y.child && x.reason == y.reason &&
         x.restarting == y.restarting;
}

/// @relates supervisor_gave_up
inline bool operator==(const supervisor_gave_up& x, const supervisor_gave_up& y) {
  return x.supervisor == y.supervisor && x.reason == y.reason;
}

/// @relates child_status
inline bool operator==(const child_status& x, const child_status& y) {
  return x.id == y.id && x.alive == y.alive && x.restarts == y.restarts;
}

// -- registration -------------------------------------------------------------

/// Registers the supervision messages (and, through CAF, `std::vector<T>` of
/// each, which covers the `which_children_atom` reply) and a renderer for
/// `supervision_errc`, so `actor_system::render` prints it by name.
void add_supervision_message_types(caf::actor_system_config& cfg); // supervision.cpp

} // namespace turing
