// The script worker pool actor and the per-child I/O actors it spawns: slots of long-lived
// children, a queue of calls, and the bookkeeping that reports each call exactly once.
#include "actors/script_worker_pool.hpp"

#include "messages/registry.hpp"

#include <algorithm>
#include <caf/all.hpp>
#include <deque>
#include <memory>
#include <optional>
#include <set>
#include <spdlog/spdlog.h>
#include <vector>

namespace turing::actors {

namespace {

// From a child's I/O actor to the pool, tagged with the slot and the child's generation so that
// news about an earlier child of the slot is recognised and dropped.
using worker_up_atom = caf::atom_constant<caf::atom("wrkup")>;
using worker_reply_atom = caf::atom_constant<caf::atom("wrkreply")>;
using worker_failed_atom = caf::atom_constant<caf::atom("wrkfail")>;
using worker_gone_atom = caf::atom_constant<caf::atom("wrkgone")>;

struct call {
  persistence::lease fence;
  script_worker_control::request input;
  caf::actor owner;
  /// The owner gave up on it: nothing more is reported for it.
  bool abandoned = false;
};

struct slot {
  enum class status {
    empty,    ///< no child
    starting, ///< child being spawned for `current`
    idle,     ///< child alive, waiting for a call
    busy,     ///< child working on `current`
    stopping, ///< child being ended; waiting for its I/O actor to say it is gone
  };
  status state = status::empty;
  int64_t generation = 0;
  pid_t pid = 0;
  std::shared_ptr<script_worker_control> control;
  caf::actor io;
  std::optional<call> current;
};

struct pool_state {
  std::vector<slot> slots;
  std::deque<call> queue;
  /// Owners this pool monitors: a dead owner's calls are abandoned at once.
  std::set<caf::actor_addr> owners;
  ~pool_state() {
    // The pool is exiting (stopped by its supervisor, or crashed): no child may outlive it.
    for (auto& s : slots)
      if (s.control)
        s.control->stop();
  }
  static inline const char* name = "script_worker_pool";
};

// One child's I/O thread: spawns the child and serves it until it is gone.
caf::behavior worker_io(caf::event_based_actor* self, caf::actor pool, int index,
                        int64_t generation, script_spec spec,
                        std::shared_ptr<script_worker_control> control, std::size_t max_line) {
  script_worker_callbacks callbacks;
  callbacks.started = [&](pid_t pid) {
    self->send(pool, worker_up_atom::value, index, generation, static_cast<int64_t>(pid));
  };
  callbacks.reply = [&](script_result reply, bool in_step) {
    if (reply.ok)
      self->send(pool, worker_reply_atom::value, index, generation,
                 execution_succeeded{{}, std::move(reply.outcome), std::move(reply.output), ""});
    else
      self->send(pool, worker_failed_atom::value, index, generation, std::move(reply.error),
                 in_step);
  };
  auto r = serve_script_worker(spec, *control, callbacks, max_line);
  self->send(pool, worker_gone_atom::value, index, generation, std::move(r.error));
  self->quit();
  return {};
}

caf::behavior script_worker_pool(caf::stateful_actor<pool_state>* self,
                                 script_worker_pool_options o) {
  self->state.slots.resize(static_cast<std::size_t>(std::max(1, o.size)));
  auto worker_name = [](const slot& s) { return "script worker pid " + std::to_string(s.pid); };

  auto fail = [=](const call& c, std::string error) {
    self->send(c.owner, execution_failed{c.fence, std::move(error), true, ""});
  };

  auto stop_child = [=](slot& s) {
    s.state = slot::status::stopping;
    s.control->stop();
  };

  auto start_child = [=](std::size_t index, call c) {
    auto& s = self->state.slots[index];
    s.current = std::move(c);
    s.pid = 0;
    ++s.generation;
    try {
      s.control = std::make_shared<script_worker_control>();
    } catch (const std::exception& e) {
      // No pipe (descriptors exhausted): this call fails; the slot stays empty for the next.
      auto failed = std::move(*s.current);
      s.current.reset();
      fail(failed, "cannot start a script worker: " + std::string(e.what()));
      return;
    }
    s.state = slot::status::starting;
    s.io = self->spawn<caf::detached + caf::monitored>(worker_io, caf::actor_cast<caf::actor>(self),
                                                       static_cast<int>(index), s.generation,
                                                       o.spec, s.control, o.max_reply_line);
  };

  auto hand_over = [=](slot& s, call c) {
    self->send(c.owner, execution_started{c.fence, static_cast<int64_t>(s.pid)});
    // Handed on, not copied: the child's writer thread serializes it into the pipe.
    s.control->send(std::move(c.input));
    s.current = std::move(c);
    s.state = slot::status::busy;
  };

  // Living idle children first, so that a lightly loaded stage keeps using the same child.
  auto serve = [=] {
    auto& st = self->state;
    auto find = [&](slot::status wanted) {
      return std::find_if(st.slots.begin(), st.slots.end(),
                          [&](const slot& s) { return s.state == wanted; });
    };
    while (!st.queue.empty()) {
      auto target = find(slot::status::idle);
      bool alive = target != st.slots.end();
      if (!alive && (target = find(slot::status::empty)) == st.slots.end())
        return; // every slot busy: the call waits for one
      auto next = std::move(st.queue.front());
      st.queue.pop_front();
      if (alive)
        hand_over(*target, std::move(next));
      else
        start_child(static_cast<std::size_t>(target - st.slots.begin()), std::move(next));
    }
  };

  // The slot's child is gone (its I/O actor said so, or that actor itself died): the call it
  // was working on, if still wanted, fails with the reason; the slot waits for the next call.
  auto child_gone = [=](slot& s, const std::string& reason) {
    bool expected = s.state == slot::status::stopping;
    auto name = worker_name(s);
    auto pid = s.pid;
    s.state = slot::status::empty;
    s.pid = 0;
    s.control.reset();
    s.io = caf::actor{};
    if (s.current) {
      auto c = std::move(*s.current);
      s.current.reset();
      if (!c.abandoned)
        fail(c, pid > 0 ? name + " died: " + reason : reason);
    } else if (!expected) {
      spdlog::warn("stage {}: {} ended while idle: {}", o.stage, name, reason);
    }
  };

  auto slot_of = [=](int index, int64_t generation) -> slot* {
    auto& slots = self->state.slots;
    if (index < 0 || static_cast<std::size_t>(index) >= slots.size())
      return nullptr;
    auto& s = slots[static_cast<std::size_t>(index)];
    return s.generation == generation && s.state != slot::status::empty ? &s : nullptr;
  };

  // The call a reply from the slot's child answers; nothing when the reply is void (an earlier
  // child's, or one being ended) or answers nothing (the slot is then restarted: with one reply
  // per request, later replies could no longer be matched to requests). The slot is idle after.
  auto take_reply = [=](int index, int64_t generation) -> std::optional<call> {
    auto* s = slot_of(index, generation);
    if (!s || s->state == slot::status::stopping)
      return std::nullopt;
    if (s->state != slot::status::busy || !s->current) {
      spdlog::warn("stage {}: {} wrote a line while idle; restarting it", o.stage, worker_name(*s));
      stop_child(*s);
      return std::nullopt;
    }
    auto c = std::move(*s->current);
    s->current.reset();
    s->state = slot::status::idle;
    return c;
  };

  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    if (st.owners.erase(dm.source) > 0) {
      st.queue.erase(std::remove_if(st.queue.begin(), st.queue.end(),
                                    [&](const call& c) { return c.owner.address() == dm.source; }),
                     st.queue.end());
      for (auto& s : st.slots)
        if (s.current && s.current->owner.address() == dm.source && !s.current->abandoned) {
          s.current->abandoned = true;
          if (s.state == slot::status::busy)
            stop_child(s);
        }
      return;
    }
    // An I/O actor that ended without saying its child is gone (it threw): the child was killed
    // and reaped while that thread unwound.
    for (auto& s : st.slots)
      if (s.io && s.io.address() == dm.source) {
        child_gone(s, "its I/O thread ended: " + self->system().render(dm.reason));
        serve();
        return;
      }
  });

  return {
      [=](script_call& msg) {
        auto owner = caf::actor_cast<caf::actor>(self->current_sender());
        if (owner && self->state.owners.insert(owner.address()).second)
          self->monitor(owner);
        self->state.queue.push_back({msg.fence, std::move(msg.input), owner, false});
        serve();
      },
      [=](execution_abandoned& msg) {
        auto& st = self->state;
        for (auto it = st.queue.begin(); it != st.queue.end(); ++it)
          if (it->fence == msg.fence) {
            st.queue.erase(it);
            return;
          }
        for (auto& s : st.slots)
          if (s.current && s.current->fence == msg.fence && !s.current->abandoned) {
            s.current->abandoned = true;
            // Busy: the owner has most likely killed the child already; ending it here too
            // covers an owner that did not. Starting: worker_up hands the child on instead.
            if (s.state == slot::status::busy)
              stop_child(s);
            return;
          }
      },
      [=](worker_up_atom, int index, int64_t generation, int64_t pid) {
        auto* s = slot_of(index, generation);
        if (!s)
          return;
        s->pid = static_cast<pid_t>(pid);
        s->state = slot::status::idle;
        spdlog::debug("stage {}: {} started", o.stage, worker_name(*s));
        if (s->current) {
          auto c = std::move(*s->current);
          s->current.reset();
          if (!c.abandoned)
            hand_over(*s, std::move(c));
        }
        serve();
      },
      [=](worker_reply_atom, int index, int64_t generation, execution_succeeded& reply) {
        auto c = take_reply(index, generation);
        if (!c)
          return;
        reply.fence = c->fence;
        self->send(c->owner, std::move(reply));
        serve();
      },
      [=](worker_failed_atom, int index, int64_t generation, std::string& error, bool in_step) {
        auto c = take_reply(index, generation);
        if (!c)
          return;
        auto& s = self->state.slots[static_cast<std::size_t>(index)];
        if (in_step) {
          // Valid JSON that breaks the contract: this call fails, the stream is intact.
          fail(*c, worker_name(s) + ": " + error);
        } else {
          fail(*c, worker_name(s) + ": " + error + " (worker restarted)");
          stop_child(s);
        }
        serve();
      },
      [=](worker_gone_atom, int index, int64_t generation, std::string& reason) {
        auto* s = slot_of(index, generation);
        if (!s)
          return;
        child_gone(*s, reason);
        serve();
      },
  };
}

} // namespace

caf::actor spawn_script_worker_pool(caf::actor_system& sys, script_worker_pool_options options) {
  return sys.spawn(script_worker_pool, std::move(options));
}

} // namespace turing::actors
