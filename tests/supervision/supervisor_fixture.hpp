// Shared fixture for the supervisor tests: scripted workers that record
// starts and exits in a probe, and an observer that records events.
#pragma once

#include "messages/supervision.hpp"
#include "supervision/supervisor.hpp"

#include <algorithm>
#include <caf/all.hpp>
#include <caf/test/dsl.hpp>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace turing::supervision::testing {

using namespace std::chrono_literals;

/// Makes a worker quit with an error (a crash).
using crash_atom = caf::atom_constant<caf::atom("tcrash")>;
/// Makes a worker's handler throw (a crash through an exception).
using throw_atom = caf::atom_constant<caf::atom("tthrow")>;
/// Makes a worker quit normally.
using finish_atom = caf::atom_constant<caf::atom("tfinish")>;

/// What happened, in order. Workers hold it, so it keeps only addresses
/// (weak), never handles: no reference cycles between actors and probe.
struct probe {
  /// "start:<id>", "exit:<id>:<reason>", "ignored:<id>" in the order seen.
  std::vector<std::string> log;
  /// Events from the observer, rendered ("started root/a 0", ...).
  std::vector<std::string> events;
  std::vector<child_exited> exits;
  std::vector<supervisor_gave_up> give_ups;
  /// Successful starts per child id.
  std::map<std::string, int> starts;
  /// The running incarnation of each child id.
  std::map<std::string, caf::actor_addr> current;
  /// Start attempts per child id, for start functions that fail on purpose.
  std::map<std::string, int> attempts;
  /// Down reasons seen by `watch`, by name.
  std::map<std::string, caf::error> downs;
  /// Liveness probes answered per child id (probed workers only).
  std::map<std::string, int> probes;
};

using probe_ptr = std::shared_ptr<probe>;

inline caf::behavior worker(caf::event_based_actor* self, probe_ptr p, std::string id,
                            bool trap_exits) {
  p->starts[id] += 1;
  p->log.push_back("start:" + id);
  p->current[id] = self->address();
  if (trap_exits)
    self->set_exit_handler([p, id](caf::exit_msg&) { p->log.push_back("ignored:" + id); });
  self->attach_functor([p, id](const caf::error& reason) {
    p->log.push_back("exit:" + id + ":" + describe_reason(reason));
  });
  return {
      [self, id](crash_atom) {
        self->quit(caf::make_error(caf::sec::runtime_error, "crash " + id));
      },
      [id](throw_atom) { throw std::runtime_error("boom " + id); },
      [self](finish_atom) { self->quit(); },
  };
}

inline child_spec worker_spec(probe_ptr p, std::string id,
                              restart_type restart = restart_type::permanent,
                              std::chrono::milliseconds shutdown = 5000ms,
                              bool trap_exits = false) {
  child_spec spec;
  spec.id = id;
  spec.restart = restart;
  spec.shutdown = shutdown;
  spec.start = [p, id, trap_exits](caf::event_based_actor* sup) {
    return sup->spawn(worker, p, id, trap_exits);
  };
  return spec;
}

inline caf::behavior observer(caf::event_based_actor*, probe_ptr p) {
  return {
      [p](const child_started& x) {
        p->events.push_back("started " + x.supervisor + "/" + x.child + " " +
                            std::to_string(x.restart_count));
      },
      [p](const child_exited& x) {
        p->events.push_back("exited " + x.supervisor + "/" + x.child +
                            (x.restarting ? " restarting" : " final"));
        p->exits.push_back(x);
      },
      [p](const supervisor_gave_up& x) {
        p->events.push_back("gave_up " + x.supervisor);
        p->give_ups.push_back(x);
      },
  };
}

// Helpers get their inputs as spawn arguments, not lambda captures: CAF 0.17
// dereferences a null argument tuple when spawning a function without
// arguments, which UBSan reports (TURING_SANITIZE builds).

inline caf::behavior watcher(caf::event_based_actor* self, probe_ptr p, caf::actor whom,
                             std::string name) {
  self->set_down_handler([self, p, name](caf::down_msg& dm) {
    p->downs[name] = dm.reason;
    self->quit();
  });
  self->monitor(whom);
  return {[](int) {}};
}

inline void asker(caf::event_based_actor* self, caf::actor sup,
                  std::shared_ptr<std::vector<child_status>> result) {
  self->request(sup, caf::infinite, which_children_atom::value)
      .then([result](std::vector<child_status>& xs) { *result = xs; });
}

struct supervision_config : caf::actor_system_config {
  supervision_config() { add_supervision_message_types(*this); }
};

struct fixture : test_coordinator_fixture<supervision_config> {
  probe_ptr p = std::make_shared<probe>();
  caf::actor obs = sys.spawn(observer, p);
  std::vector<caf::actor> sups;
  std::vector<caf::actor> watchers;

  fixture() { sched.run(); }

  ~fixture() override {
    // Stop what is left, timers included, so no actor outlives the system.
    for (auto& s : sups)
      caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
    for (auto& w : watchers)
      caf::anon_send_exit(w, caf::exit_reason::kill);
    caf::anon_send_exit(obs, caf::exit_reason::kill);
    run();
  }

  /// Spawns a top-level supervisor reporting to `obs` and lets it start.
  caf::actor start_sup(std::string name, supervisor_flags flags, std::vector<child_spec> children) {
    auto s = spawn_supervisor(sys, std::move(name), flags, std::move(children), obs);
    sups.push_back(s);
    sched.run();
    return s;
  }

  /// Records the exit reason of `whom` under `name` in `p->downs`.
  void watch(const caf::actor& whom, std::string name) {
    // Keep the handle: CAF ends an actor nobody references (unreachable).
    watchers.push_back(sys.spawn(watcher, p, whom, std::move(name)));
    sched.run();
  }

  /// The running incarnation of child `id` (invalid if it is gone).
  caf::actor child(const std::string& id) { return caf::actor_cast<caf::actor>(p->current[id]); }

  void crash(const std::string& id) {
    auto hdl = child(id);
    CAF_REQUIRE(hdl != nullptr);
    self->send(hdl, crash_atom::value);
    sched.run();
  }

  /// Lets `total` of virtual time pass in steps of `step`, running what each
  /// step makes due: a timer re-armed in its handler counts from its handler.
  void pass(std::chrono::milliseconds total, std::chrono::milliseconds step = 100ms) {
    for (auto t = std::chrono::milliseconds::zero(); t < total; t += step) {
      advance_time(std::min(step, total - t));
      sched.run();
    }
  }

  void finish(const std::string& id) {
    auto hdl = child(id);
    CAF_REQUIRE(hdl != nullptr);
    self->send(hdl, finish_atom::value);
    sched.run();
  }

  /// Asks `sup` for its children through a helper actor, so the reply goes
  /// through the deterministic scheduler.
  std::vector<child_status> which(const caf::actor& sup) {
    auto result = std::make_shared<std::vector<child_status>>();
    sys.spawn(asker, sup, result);
    sched.run();
    return *result;
  }

  size_t count_log(const std::string& prefix) const {
    return static_cast<size_t>(
        std::count_if(p->log.begin(), p->log.end(), [&](const std::string& x) {
          return x.compare(0, prefix.size(), prefix) == 0;
        }));
  }

  size_t count_events(const std::string& x) const {
    return static_cast<size_t>(std::count(p->events.begin(), p->events.end(), x));
  }

  /// The probe log entries that start with `kind`.
  std::vector<std::string> log_of(const std::string& kind) const {
    std::vector<std::string> result;
    for (auto& x : p->log)
      if (x.compare(0, kind.size(), kind) == 0)
        result.push_back(x);
    return result;
  }
};

} // namespace turing::supervision::testing
