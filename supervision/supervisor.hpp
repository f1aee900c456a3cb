// Erlang/OTP-style supervisors on CAF 0.17: strategies, restart types,
// restart intensity and timed shutdown for trees of actors.
#pragma once

#include "messages/supervision.hpp"

#include <caf/actor.hpp>
#include <caf/error.hpp>
#include <caf/fwd.hpp>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace turing::supervision {

/// Which children a supervisor restarts when one of them must be restarted.
enum class restart_strategy {
  /// Only the child that exited.
  one_for_one,
  /// All children: the others are stopped (reverse start order), then all
  /// are started again (start order), as in OTP also transient ones that had
  /// ended normally; temporary ones are stopped and dropped.
  one_for_all,
  /// The child that exited and every child started after it.
  rest_for_one,
};

/// When a child that exited is started again.
enum class restart_type {
  /// Always.
  permanent,
  /// Only after an abnormal exit (a non-empty reason other than
  /// `exit_reason::normal`).
  transient,
  /// Never: the child is removed from the supervisor once it exits.
  temporary,
};

/// `child_spec::shutdown` value: kill at once, without `user_shutdown` first.
constexpr std::chrono::milliseconds brutal_kill{0};

/// `child_spec::shutdown` value: wait for the child as long as it takes (the
/// default for child supervisors, which stop their own children first).
constexpr std::chrono::milliseconds shutdown_infinity = std::chrono::milliseconds::max();

/// How to start one child and what to do when it exits.
struct child_spec {
  /// Unique within a supervisor; names the child in logs and events.
  std::string id;
  /// Spawns the child from the supervisor with a plain
  /// `supervisor->spawn(...)` (not `linked`: the supervisor monitors it and
  /// drops links). Throwing or returning an invalid handle counts as an
  /// abnormal exit (`supervision_errc::start_failed`).
  std::function<caf::actor(caf::event_based_actor* supervisor)> start;
  /// When the child is restarted.
  restart_type restart = restart_type::permanent;
  /// How long a stopping child may take after `exit_reason::user_shutdown`
  /// before it is killed (`brutal_kill`, `shutdown_infinity` or a duration).
  std::chrono::milliseconds shutdown{5000};
  /// Liveness probe; 0 (the default) means none. A probed child gets a
  /// `probe_atom` request every `stall_timeout / 2` (from its start until it
  /// is stopped or exits); any reply, even an error, counts as alive. A probe
  /// left unanswered for `stall_timeout` means the child stopped processing
  /// its mailbox: it is killed, forgotten at once (a blocked actor may never
  /// process the kill) and handled as an abnormal exit with
  /// `supervision_errc::stalled`, counting toward the restart intensity.
  std::chrono::milliseconds stall_timeout{0};
};

/// Restart policy of one supervisor.
struct supervisor_flags {
  /// Which children to restart.
  restart_strategy strategy = restart_strategy::one_for_one;
  /// At most this many restarts within `period`; one more and the
  /// supervisor gives up.
  int intensity = 3;
  /// The sliding window for `intensity`, measured on the actor system clock.
  std::chrono::milliseconds period{5000};
};

/// Spawns a supervisor that spawns `children` in order (each child then
/// initialises asynchronously, as any CAF actor). `name` is used in logs and
/// events; `observer` (optional) receives `child_started`, `child_exited` and
/// `supervisor_gave_up`. The supervisor answers `which_children_atom` with a
/// `std::vector<child_status>` and stops (children in reverse order) on any
/// non-normal exit_msg, e.g. `exit_reason::user_shutdown`. Keep the returned
/// handle: CAF ends an actor nobody references (`exit_reason::unreachable`).
caf::actor spawn_supervisor(caf::actor_system& sys, std::string name, supervisor_flags flags,
                            std::vector<child_spec> children, caf::actor observer = {});

/// A child spec that starts a nested supervisor. Its name is the parent's
/// name, a slash and `id` ("root/pipeline"). It waits for its own children
/// when stopped (`shutdown_infinity`).
child_spec supervisor_child(std::string id, supervisor_flags flags,
                            std::vector<child_spec> children, restart_type restart,
                            caf::actor observer = {});

/// Whether `reason` is the exit reason of a supervisor that gave up.
bool is_intensity_exceeded(const caf::error& reason);

/// Whether `reason` counts as a normal exit (empty or `exit_reason::normal`).
bool is_normal_exit(const caf::error& reason);

/// Renders an exit reason for logs and events: "normal" for a normal exit,
/// "supervision_error(intensity_exceeded, ...)" for `supervision_errc`, and
/// CAF's own rendering otherwise.
std::string describe_reason(const caf::error& reason);

/// @relates restart_strategy
std::string to_string(restart_strategy x);

/// @relates restart_type
std::string to_string(restart_type x);

} // namespace turing::supervision
