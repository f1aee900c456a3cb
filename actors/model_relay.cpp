// The model relay.
#include "actors/model_relay.hpp"

#include "config/duration.hpp"
#include "messages/registry.hpp"

#include <caf/all.hpp>
#include <deque>
#include <map>
#include <spdlog/spdlog.h>

namespace turing::actors {

namespace {

using relay_tick_atom = caf::atom_constant<caf::atom("relaytick")>;
// The actor clock: virtual in the simulation, steady in a real run.
using clock_point = caf::actor_clock::time_point;
using call_key = std::pair<int64_t, int64_t>; // message id, epoch

call_key key_of(const persistence::lease& fence) {
  return {fence.message_id, fence.epoch};
}

struct relayed_call {
  model_call call;
  caf::actor owner;
  clock_point waiting_since;
};

} // namespace

struct model_relay_state {
  caf::actor remote;
  std::deque<relayed_call> waiting;
  std::map<call_key, relayed_call> forwarded;
  std::set<caf::actor_addr> owners;
  bool tick_armed = false;
  static inline const char* name = "model_relay";
};

namespace {

using relay_actor = caf::stateful_actor<model_relay_state>;

caf::behavior model_relay(relay_actor* self, model_relay_options o) {
  const auto& model = o.model;
  auto unreachable =
      "model " + model.name + " is hosted by node " + o.host_node + ", which is not connected";

  auto arm_tick = [=] {
    if (!self->state.tick_armed) {
      self->state.tick_armed = true;
      self->delayed_send(self, o.retry_interval, relay_tick_atom::value);
    }
  };

  auto forward = [=](relayed_call rc) {
    auto& st = self->state;
    self->send(st.remote, rc.call);
    st.forwarded.emplace(key_of(rc.call.fence), std::move(rc));
  };

  // The remote endpoint, if the cluster member knows it; monitored, so that
  // a dropped connection puts its calls back in the queue.
  auto connect = [=]() -> bool {
    auto& st = self->state;
    if (st.remote)
      return true;
    auto remote = o.find_remote ? o.find_remote() : caf::actor{};
    if (!remote)
      return false;
    st.remote = remote;
    self->monitor(remote);
    spdlog::info("model {}: relaying calls to its endpoint on node {} ({} waiting)", model.name,
                 o.host_node, st.waiting.size());
    while (!st.waiting.empty()) {
      auto rc = std::move(st.waiting.front());
      st.waiting.pop_front();
      forward(std::move(rc));
    }
    return true;
  };

  auto wait = [=](relayed_call rc) {
    self->send(rc.owner, model_waiting{rc.call.fence, model.name, unreachable});
    self->state.waiting.push_back(std::move(rc));
    arm_tick();
  };

  // What the endpoint says about a call goes to the pump that made it.
  auto to_owner = [=](const persistence::lease& fence, bool finished) -> caf::actor {
    auto& st = self->state;
    auto it = st.forwarded.find(key_of(fence));
    if (it == st.forwarded.end())
      return {};
    auto owner = it->second.owner;
    if (finished)
      st.forwarded.erase(it);
    return owner;
  };

  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    if (st.remote && dm.source == st.remote.address()) {
      st.remote = nullptr;
      spdlog::warn("model {}: lost its endpoint on node {} ({}); {} call(s) in flight wait for "
                   "it to return",
                   model.name, o.host_node, self->system().render(dm.reason), st.forwarded.size());
      // The endpoint abandoned them with the connection (it monitors its
      // owners, this relay among them): sent again, they count once.
      for (auto& [key, rc] : st.forwarded) {
        rc.waiting_since = self->clock().now();
        self->send(rc.owner, model_waiting{rc.call.fence, model.name, unreachable});
        st.waiting.push_front(std::move(rc));
      }
      st.forwarded.clear();
      arm_tick();
      return;
    }
    if (st.owners.erase(dm.source) == 0)
      return;
    st.waiting.erase(
        std::remove_if(st.waiting.begin(), st.waiting.end(),
                       [&](const relayed_call& rc) { return rc.owner.address() == dm.source; }),
        st.waiting.end());
    for (auto it = st.forwarded.begin(); it != st.forwarded.end();) {
      if (it->second.owner.address() == dm.source) {
        if (st.remote)
          self->send(st.remote, execution_abandoned{it->second.call.fence});
        it = st.forwarded.erase(it);
      } else {
        ++it;
      }
    }
  });

  return {
      [=](model_call& call) {
        auto& st = self->state;
        auto owner = caf::actor_cast<caf::actor>(self->current_sender());
        if (!owner)
          return;
        if (st.owners.insert(owner.address()).second)
          self->monitor(owner);
        relayed_call rc{std::move(call), owner, self->clock().now()};
        if (connect())
          forward(std::move(rc));
        else
          wait(std::move(rc));
      },
      [=](execution_abandoned& msg) {
        auto& st = self->state;
        for (auto it = st.waiting.begin(); it != st.waiting.end(); ++it)
          if (it->call.fence == msg.fence) {
            st.waiting.erase(it);
            return;
          }
        if (st.forwarded.erase(key_of(msg.fence)) > 0 && st.remote)
          self->send(st.remote, std::move(msg));
      },
      [=](execution_started& msg) {
        if (auto owner = to_owner(msg.fence, false))
          self->send(owner, std::move(msg));
      },
      [=](model_waiting& msg) {
        if (auto owner = to_owner(msg.fence, false))
          self->send(owner, std::move(msg));
      },
      [=](model_answer& msg) {
        if (auto owner = to_owner(msg.fence, true))
          self->send(owner, std::move(msg));
      },
      [=](execution_failed& msg) {
        if (auto owner = to_owner(msg.fence, true))
          self->send(owner, std::move(msg));
      },
      [=](relay_tick_atom) {
        auto& st = self->state;
        st.tick_armed = false;
        if (connect() || st.waiting.empty())
          return;
        // Bounded like an outage of the model's own server.
        auto now = self->clock().now();
        for (auto it = st.waiting.begin(); it != st.waiting.end();) {
          if (now - it->waiting_since < model.max_unavailable) {
            ++it;
            continue;
          }
          auto reason = "model " + model.name + " [" + model_fault::unavailable +
                        "]: hosted by node " + o.host_node + ", not connected for " +
                        config::format_duration(model.max_unavailable) + " (max_unavailable)";
          spdlog::warn("model {}: call for message {} failed: {}", model.name,
                       it->call.fence.message_id, reason);
          self->send(it->owner, execution_failed{it->call.fence, reason, false, model.name});
          it = st.waiting.erase(it);
        }
        arm_tick();
      },
  };
}

} // namespace

caf::actor spawn_model_relay(caf::actor_system& sys, model_relay_options options) {
  return sys.spawn(model_relay, std::move(options));
}

} // namespace turing::actors
