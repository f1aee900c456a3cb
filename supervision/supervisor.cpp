// The supervisor actor: starts and monitors children, restarts them by
// strategy and restart type, and gives up past its restart intensity.
#include "supervision/supervisor.hpp"

#include <algorithm>
#include <caf/actor_clock.hpp>
#include <caf/actor_system.hpp>
#include <caf/atom.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/system_messages.hpp>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <spdlog/spdlog.h>
#include <string>
#include <utility>
#include <vector>

namespace turing::supervision {

namespace {

/// Self-sent when a stopping child's shutdown time is up. Carries the
/// generation of the stop it belongs to, because `delayed_send` cannot be
/// cancelled: a timer of an earlier stop must find a newer generation.
using sup_kill_atom = caf::atom_constant<caf::atom("supkill")>;

/// Self-sent every `stall_timeout / 2` per probed child: time to probe it.
/// Carries the child's id and incarnation, so the timer chain of an
/// incarnation that is gone ends by itself (timers cannot be cancelled).
using sup_probe_atom = caf::atom_constant<caf::atom("supprobe")>;

using time_point = caf::actor_clock::time_point;

struct child_rec {
  child_spec spec;
  /// Valid from a successful start until the child's down_msg is processed.
  caf::actor handle;
  /// Start attempts after the first one.
  int64_t restarts = 0;
  bool attempted = false;
  /// We sent it user_shutdown (or kill) and wait for its down_msg.
  bool stopping = false;
  /// Unique per successful start within a supervisor: probe timers and probe
  /// replies of an earlier incarnation find a newer one and are ignored.
  uint64_t incarnation = 0;
};

enum class phase {
  /// Idle: every exit is handled at once.
  running,
  /// Stopping `stop_queue` one by one, then starting `restart_set`.
  restarting,
  /// Stopping `stop_queue` one by one, then quitting with `final_reason`.
  shutting_down,
};

// How it works
//
// A supervisor monitors each child it starts, so every child's termination
// arrives exactly once, as a down_msg from the child. It does not link: CAF
// 0.17 unlinks from the sender of every exit_msg it receives, so a child
// stopped with send_exit would never report back through a link. Without
// links, any exit_msg the supervisor receives (it traps them) is a request to
// shut down, from its parent or anyone. What links would also give, children
// dying with a supervisor that is killed, an attached functor does: it sends
// the supervisor's exit reason to every child still alive.
//
// Invariants:
// - `children_` is in start order; a record's `handle` is valid exactly while
//   the supervisor has not yet processed that child's down_msg, so a child is
//   never forgotten (nor restarted) before it is really gone, and a down_msg
//   always finds its record (a down_msg that finds none is stale: ignored).
// - At most one child is `stopping` at a time: stops are sequential, in the
//   order of `stop_queue` (reverse start order), each bounded by the child's
//   shutdown timeout (user_shutdown first, kill when the timer of the current
//   stop generation fires).
// - Restarts happen only in phase `running`, i.e. never while a stop is in
//   flight. A child outside the current operation that exits meanwhile is
//   queued in `deferred_` and handled when the operation completes, as OTP
//   does by leaving the EXIT in its mailbox.
// - Each restart decision appends one timestamp of the actor system clock
//   (virtual under the test coordinator); more than `intensity` timestamps
//   within `period` make the supervisor stop everything and quit with
//   supervision_errc::intensity_exceeded, which its parent sees as an
//   abnormal child exit (escalation).
// - A failed start counts as an abnormal exit of that child
//   (supervision_errc::start_failed), so it is bounded by the intensity too.
// - A child with a stall_timeout is probed (a request) every half of it while
//   it is neither stopping nor queued to stop. A probe that times out means
//   its mailbox is no longer processed: the supervisor kills it and, without
//   waiting for a down_msg a blocked actor may never send, demonitors it and
//   treats it exactly as if its down_msg had arrived with
//   supervision_errc::stalled. A down_msg of that incarnation already queued
//   then finds no record (its handle is gone) and is ignored like any stale
//   one.
class supervisor_state {
public:
  /// Actor name in CAF's own logs (static: CAF may ask after the state died).
  static inline const char* name = "turing.supervisor";

  explicit supervisor_state(caf::event_based_actor* self) : self_(self) {
    // nop
  }

  const std::string& sup_name() const { return name_; }

  caf::behavior init(std::string name, supervisor_flags flags, std::vector<child_spec> specs,
                     caf::actor observer) {
    name_ = std::move(name);
    flags_ = flags;
    observer_ = std::move(observer);
    for (auto& spec : specs)
      children_.push_back(child_rec{std::move(spec), {}, 0, false, false, 0});
    self_->set_exit_handler([this](caf::exit_msg& em) { on_exit(em); });
    self_->set_down_handler([this](caf::down_msg& dm) { on_down(dm); });
    // Stands in for links if the supervisor dies without stopping its
    // children (killed, or a bug): they get its exit reason, as linked
    // processes would in OTP. After an orderly stop the set is empty.
    self_->attach_functor([live = live_, me = self_->address()](const caf::error& reason) {
      auto why = reason ? reason : caf::error{caf::exit_reason::kill};
      for (auto& hdl : *live)
        hdl->enqueue(nullptr, caf::make_message_id(), caf::make_message(caf::exit_msg{me, why}),
                     nullptr);
    });
    spdlog::debug("supervisor {}: starting {} children ({}, intensity {} in {}ms)", name_,
                  children_.size(), to_string(flags_.strategy), flags_.intensity,
                  flags_.period.count());
    start_initial();
    return {
        [this](which_children_atom) { return which_children(); },
        [this](sup_kill_atom, uint64_t gen) { on_kill_timer(gen); },
        [this](sup_probe_atom, const std::string& id, uint64_t incarnation) {
          on_probe_timer(id, incarnation);
        },
    };
  }

private:
  // -- lookup -----------------------------------------------------------------

  child_rec* find(const std::string& id) {
    auto i = std::find_if(children_.begin(), children_.end(),
                          [&](const child_rec& c) { return c.spec.id == id; });
    return i != children_.end() ? &*i : nullptr;
  }

  child_rec* find(const caf::actor_addr& addr) {
    auto i = std::find_if(children_.begin(), children_.end(), [&](const child_rec& c) {
      return c.handle && c.handle.address() == addr;
    });
    return i != children_.end() ? &*i : nullptr;
  }

  static bool contains(const std::vector<std::string>& xs, const std::string& x) {
    return std::find(xs.begin(), xs.end(), x) != xs.end();
  }

  // -- events -----------------------------------------------------------------

  template <class Event> void emit(Event&& x) {
    if (observer_)
      self_->send(observer_, std::forward<Event>(x));
  }

  void report_exit(const child_rec& c, const caf::error& reason, bool restarting) {
    auto why = describe_reason(reason);
    // A stall has had its warning when it was detected (on_stall).
    if (is_normal_exit(reason) || c.stopping || reason == supervision_errc::stalled)
      spdlog::debug("supervisor {}: child {} exited: {} ({})", name_, c.spec.id, why,
                    restarting ? "restarting" : "not restarted");
    else
      spdlog::warn("supervisor {}: child {} exited: {} ({})", name_, c.spec.id, why,
                   restarting ? "restarting" : "not restarted");
    emit(child_exited{name_, c.spec.id, why, restarting});
  }

  // -- starting ---------------------------------------------------------------

  /// Starts `c`; returns the failure reason if the start function threw or
  /// returned an invalid handle.
  caf::error start_child(child_rec& c) {
    if (c.attempted)
      ++c.restarts;
    c.attempted = true;
    caf::actor hdl;
    std::string why;
    try {
      hdl = c.spec.start ? c.spec.start(self_) : caf::actor{};
      if (!hdl)
        why = "start function returned an invalid actor";
    } catch (const std::exception& e) {
      why = std::string{"start function threw: "} + e.what();
    } catch (...) {
      why = "start function threw a non-standard exception";
    }
    if (!hdl) {
      spdlog::error("supervisor {}: child {} failed to start: {}", name_, c.spec.id, why);
      return make_error(supervision_errc::start_failed, "child " + c.spec.id + ": " + why);
    }
    // A child the start function linked to us would send us an exit_msg when
    // it dies, which would read as a shutdown request: drop such a link.
    self_->unlink_from(hdl);
    self_->monitor(hdl);
    live_->push_back(hdl);
    c.handle = std::move(hdl);
    c.stopping = false;
    c.incarnation = ++incarnations_;
    spdlog::debug("supervisor {}: started child {} (restarts {})", name_, c.spec.id, c.restarts);
    emit(child_started{name_, c.spec.id, c.restarts});
    arm_probe(c);
    return caf::none;
  }

  void start_initial() {
    std::vector<std::string> ids;
    for (auto& c : children_)
      ids.push_back(c.spec.id);
    for (auto& id : ids) {
      auto c = find(id);
      // Skipped: removed (temporary), or already started by a restart
      // triggered by an earlier child's failed start.
      if (c == nullptr || c->handle || c->attempted)
        continue;
      if (auto err = start_child(*c))
        handle_exit(id, std::move(err));
      if (phase_ != phase::running)
        return; // the operation in flight starts the rest
    }
  }

  // -- exits ------------------------------------------------------------------

  void on_exit(caf::exit_msg& em) {
    // The parent (or anyone) asks us to stop. A normal reason never stops an
    // actor in CAF, so it does not stop a supervisor either.
    if (is_normal_exit(em.reason) || find(em.source) != nullptr) {
      spdlog::debug("supervisor {}: ignoring exit_msg from {}: {}", name_,
                    caf::to_string(em.source), describe_reason(em.reason));
      return;
    }
    begin_shutdown(std::move(em.reason));
  }

  void on_down(caf::down_msg& dm) {
    auto c = find(dm.source);
    if (c == nullptr)
      return; // not (or no longer) one of ours
    child_gone(c, std::move(dm.reason));
  }

  /// The current incarnation of `c` is gone: its down_msg arrived, or it
  /// stalled and was killed.
  void child_gone(child_rec* c, caf::error reason) {
    auto addr = c->handle.address();
    live_->erase(std::remove_if(live_->begin(), live_->end(),
                                [&](const caf::actor& x) { return x.address() == addr; }),
                 live_->end());
    auto id = c->spec.id;
    bool was_stopping = c->stopping;
    c->handle = nullptr;
    if (phase_ == phase::running) {
      handle_exit(id, std::move(reason));
      return;
    }
    bool in_operation =
        was_stopping || std::find(stop_queue_.begin(), stop_queue_.end(), id) != stop_queue_.end();
    if (in_operation || phase_ == phase::shutting_down) {
      bool restarting = phase_ == phase::restarting && contains(restart_set_, id);
      report_exit(*c, reason, restarting);
      c->stopping = false;
      if (was_stopping) {
        stop_queue_.pop_front();
        stop_next();
      }
      return;
    }
    // Restarting, and this child is not part of it: decide after the
    // operation, as OTP would find this EXIT only once its restart is done.
    spdlog::debug("supervisor {}: child {} exited during a restart; deferred", name_, id);
    deferred_.emplace_back(std::move(id), std::move(reason));
  }

  // -- liveness probes --------------------------------------------------------

  /// Schedules the next probe of `c`'s current incarnation, if it is probed.
  void arm_probe(const child_rec& c) {
    if (c.spec.stall_timeout <= std::chrono::milliseconds::zero())
      return;
    auto interval = std::max(c.spec.stall_timeout / 2, std::chrono::milliseconds{1});
    self_->delayed_send(self_, interval, sup_probe_atom::value, c.spec.id, c.incarnation);
  }

  /// Whether `c` is on its way out, so probing it is pointless: shutting
  /// down, being stopped, or queued to be stopped by the current operation.
  bool leaving(const child_rec& c) const {
    return phase_ == phase::shutting_down || c.stopping ||
           std::find(stop_queue_.begin(), stop_queue_.end(), c.spec.id) != stop_queue_.end();
  }

  void on_probe_timer(const std::string& id, uint64_t incarnation) {
    auto c = find(id);
    // The chain ends with the incarnation; a restart starts a new one.
    if (c == nullptr || !c->handle || c->incarnation != incarnation || leaving(*c))
      return;
    auto timeout = c->spec.stall_timeout;
    // Any reply counts: an empty one from an explicit handler, or an error
    // such as unexpected_message from CAF's default handler, which still
    // proves the mailbox is read. A dead child is the down_msg's business.
    self_->request(c->handle, timeout, probe_atom::value)
        .then([] {},
              [this, id, incarnation, timeout](caf::error& err) {
                if (err == caf::sec::request_timeout)
                  on_stall(id, incarnation, timeout);
              });
    arm_probe(*c);
  }

  void on_stall(const std::string& id, uint64_t incarnation, std::chrono::milliseconds timeout) {
    auto c = find(id);
    if (c == nullptr || !c->handle || c->incarnation != incarnation || leaving(*c))
      return; // gone, restarted, or being stopped (with its own kill timer)
    auto hdl = c->handle;
    spdlog::warn("supervisor {}: child {} (actor {}) did not answer a liveness probe within {}ms: "
                 "stalled, killing it",
                 name_, id, hdl.id(), timeout.count());
    // Demonitor first: a stalled actor may never process the kill, and if it
    // does, its down_msg must not report a second exit.
    self_->demonitor(hdl);
    self_->send_exit(hdl, caf::exit_reason::kill);
    child_gone(c, make_error(supervision_errc::stalled,
                             "child " + id + ": no reply to a liveness probe within " +
                                 std::to_string(timeout.count()) + "ms"));
  }

  /// Decides what to do about a child that exited (or failed to start) while
  /// the supervisor was running. Precondition: phase_ == running and the
  /// child's handle is invalid.
  void handle_exit(const std::string& id, caf::error reason) {
    auto c = find(id);
    if (c == nullptr)
      return;
    bool normal = is_normal_exit(reason);
    switch (c->spec.restart) {
    case restart_type::temporary:
      report_exit(*c, reason, false);
      children_.erase(children_.begin() + (c - children_.data()));
      return;
    case restart_type::transient:
      if (normal) {
        report_exit(*c, reason, false);
        return;
      }
      break;
    case restart_type::permanent:
      break;
    }
    if (!add_restart()) {
      report_exit(*c, reason, false);
      give_up(id, reason);
      return;
    }
    report_exit(*c, reason, true);
    // Children to stop (reverse start order) and to start (start order).
    stop_queue_.clear();
    restart_set_.clear();
    if (flags_.strategy == restart_strategy::one_for_one) {
      restart_set_.push_back(id);
    } else {
      size_t first = flags_.strategy == restart_strategy::one_for_all
                         ? 0
                         : static_cast<size_t>(c - children_.data());
      for (auto i = children_.size(); i > first; --i)
        if (children_[i - 1].handle)
          stop_queue_.push_back(children_[i - 1].spec.id);
      for (auto i = first; i < children_.size(); ++i)
        if (children_[i].spec.restart != restart_type::temporary)
          restart_set_.push_back(children_[i].spec.id);
    }
    phase_ = phase::restarting;
    stop_next();
  }

  /// Records one restart; returns false if it exceeds the intensity.
  bool add_restart() {
    auto now = self_->clock().now();
    restarts_.push_back(now);
    // As OTP: a restart counts while now <= then + period.
    while (!restarts_.empty() && now - restarts_.front() > flags_.period)
      restarts_.pop_front();
    return restarts_.size() <= static_cast<size_t>(std::max(flags_.intensity, 0));
  }

  void give_up(const std::string& id, const caf::error& last) {
    auto reason =
        make_error(supervision_errc::intensity_exceeded,
                   "supervisor " + name_ + ": more than " + std::to_string(flags_.intensity) +
                       " restarts in " + std::to_string(flags_.period.count()) +
                       "ms; last: child " + id + " exited with " + describe_reason(last));
    auto why = describe_reason(reason);
    spdlog::error("supervisor {}: giving up: {}", name_, why);
    emit(supervisor_gave_up{name_, why});
    begin_shutdown(std::move(reason));
  }

  // -- stopping ---------------------------------------------------------------

  void begin_shutdown(caf::error reason) {
    if (phase_ == phase::shutting_down) {
      spdlog::debug("supervisor {}: already shutting down, ignoring {}", name_,
                    describe_reason(reason));
      return;
    }
    spdlog::debug("supervisor {}: shutting down: {}", name_, describe_reason(reason));
    phase_ = phase::shutting_down;
    final_reason_ = std::move(reason);
    restart_set_.clear();
    deferred_.clear();
    // A stop in flight stays first (its timer is still armed), then every
    // other live child in reverse start order.
    stop_queue_.clear();
    for (auto& c : children_)
      if (c.stopping)
        stop_queue_.push_back(c.spec.id);
    for (auto i = children_.rbegin(); i != children_.rend(); ++i)
      if (i->handle && !i->stopping)
        stop_queue_.push_back(i->spec.id);
    stop_next();
  }

  /// Stops the next child of `stop_queue_`, or completes the operation.
  void stop_next() {
    while (!stop_queue_.empty()) {
      auto c = find(stop_queue_.front());
      if (c == nullptr || !c->handle) {
        stop_queue_.pop_front(); // already gone
        continue;
      }
      if (c->stopping)
        return; // wait for its down_msg
      c->stopping = true;
      ++stop_gen_;
      if (c->spec.shutdown <= std::chrono::milliseconds::zero()) {
        spdlog::debug("supervisor {}: killing child {} (brutal_kill)", name_, c->spec.id);
        self_->send_exit(c->handle, caf::exit_reason::kill);
      } else {
        spdlog::debug("supervisor {}: stopping child {}", name_, c->spec.id);
        self_->send_exit(c->handle, caf::exit_reason::user_shutdown);
        if (c->spec.shutdown != shutdown_infinity)
          self_->delayed_send(self_, c->spec.shutdown, sup_kill_atom::value, stop_gen_);
      }
      return;
    }
    complete();
  }

  void on_kill_timer(uint64_t gen) {
    if (gen != stop_gen_ || stop_queue_.empty())
      return; // a stop that has finished already
    auto c = find(stop_queue_.front());
    if (c == nullptr || !c->handle || !c->stopping)
      return;
    spdlog::warn("supervisor {}: child {} still alive {}ms after user_shutdown, killing it", name_,
                 c->spec.id, c->spec.shutdown.count());
    self_->send_exit(c->handle, caf::exit_reason::kill);
  }

  /// All children of the operation are stopped: quit, or start the restart
  /// set in start order.
  void complete() {
    if (phase_ == phase::shutting_down) {
      spdlog::debug("supervisor {}: stopped all children, exiting: {}", name_,
                    describe_reason(final_reason_));
      self_->quit(final_reason_);
      return;
    }
    // Temporary children stopped by this operation are gone for good.
    children_.erase(std::remove_if(children_.begin(), children_.end(),
                                   [](const child_rec& c) {
                                     return !c.handle && c.spec.restart == restart_type::temporary;
                                   }),
                    children_.end());
    phase_ = phase::running;
    auto ids = std::move(restart_set_);
    restart_set_.clear();
    for (auto& id : ids) {
      auto c = find(id);
      if (c == nullptr || c->handle)
        continue;
      if (auto err = start_child(*c))
        handle_exit(id, std::move(err));
      // A new operation (or the shutdown) handles the remaining children.
      if (phase_ != phase::running)
        return;
    }
    while (phase_ == phase::running && !deferred_.empty()) {
      auto [id, reason] = std::move(deferred_.front());
      deferred_.pop_front();
      auto c = find(id);
      if (c != nullptr && !c->handle)
        handle_exit(id, std::move(reason));
    }
  }

  // -- queries ----------------------------------------------------------------

  std::vector<child_status> which_children() const {
    std::vector<child_status> result;
    for (auto& c : children_)
      result.push_back(child_status{c.spec.id, static_cast<bool>(c.handle), c.restarts});
    return result;
  }

  // -- member variables -------------------------------------------------------

  caf::event_based_actor* self_;
  std::string name_;
  supervisor_flags flags_;
  caf::actor observer_;
  std::vector<child_rec> children_;
  std::deque<time_point> restarts_;
  phase phase_ = phase::running;
  std::deque<std::string> stop_queue_;
  std::vector<std::string> restart_set_;
  std::deque<std::pair<std::string, caf::error>> deferred_;
  caf::error final_reason_;
  uint64_t stop_gen_ = 0;
  /// The last `child_rec::incarnation` handed out.
  uint64_t incarnations_ = 0;
  /// The running children, shared with the functor that stops them if the
  /// supervisor dies first. Strong handles: CAF destroys the state before it
  /// runs attached functors, and children referenced by nobody else would
  /// otherwise end as `unreachable` instead of getting the supervisor's
  /// exit reason.
  std::shared_ptr<std::vector<caf::actor>> live_ = std::make_shared<std::vector<caf::actor>>();
};

using supervisor_actor = caf::stateful_actor<supervisor_state>;

caf::behavior supervisor_fun(supervisor_actor* self, std::string name, supervisor_flags flags,
                             std::vector<child_spec> children, caf::actor observer) {
  return self->state.init(std::move(name), flags, std::move(children), std::move(observer));
}

} // namespace

caf::actor spawn_supervisor(caf::actor_system& sys, std::string name, supervisor_flags flags,
                            std::vector<child_spec> children, caf::actor observer) {
  return sys.spawn(supervisor_fun, std::move(name), flags, std::move(children),
                   std::move(observer));
}

child_spec supervisor_child(std::string id, supervisor_flags flags,
                            std::vector<child_spec> children, restart_type restart,
                            caf::actor observer) {
  child_spec result;
  result.id = id;
  result.restart = restart;
  result.shutdown = shutdown_infinity;
  result.start = [id, flags, children = std::move(children),
                  observer = std::move(observer)](caf::event_based_actor* parent) {
    // Name nested supervisors by their path in the tree when we can.
    auto name = id;
    if (auto sup = dynamic_cast<supervisor_actor*>(parent))
      name = sup->state.sup_name() + "/" + id;
    return parent->spawn(supervisor_fun, std::move(name), flags, children, observer);
  };
  return result;
}

bool is_intensity_exceeded(const caf::error& reason) {
  return reason == supervision_errc::intensity_exceeded;
}

bool is_normal_exit(const caf::error& reason) {
  return !reason || reason == caf::exit_reason::normal;
}

std::string describe_reason(const caf::error& reason) {
  if (is_normal_exit(reason))
    return "normal";
  if (reason.category() == supervision_category) {
    auto result = "supervision_error(" + to_string(static_cast<supervision_errc>(reason.code()));
    auto& ctx = reason.context();
    if (ctx.match_elements<std::string>())
      result += ", " + ctx.get_as<std::string>(0);
    else if (!ctx.empty())
      result += ", " + caf::to_string(ctx);
    return result + ")";
  }
  return caf::to_string(reason);
}

std::string to_string(restart_strategy x) {
  switch (x) {
  case restart_strategy::one_for_one:
    return "one_for_one";
  case restart_strategy::one_for_all:
    return "one_for_all";
  case restart_strategy::rest_for_one:
    return "rest_for_one";
  }
  return "unknown";
}

std::string to_string(restart_type x) {
  switch (x) {
  case restart_type::permanent:
    return "permanent";
  case restart_type::transient:
    return "transient";
  case restart_type::temporary:
    return "temporary";
  }
  return "unknown";
}

} // namespace turing::supervision
