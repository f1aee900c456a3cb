// The model endpoint actor and its per-call actors.
#include "actors/model_endpoint.hpp"

#include "actors/model_client.hpp"
#include "messages/registry.hpp"

#include <algorithm>
#include <caf/all.hpp>
#include <cstdlib>
#include <deque>
#include <map>
#include <set>
#include <spdlog/spdlog.h>

namespace turing::actors {

namespace {

struct queued_call {
  model_call call;
  caf::actor owner;
};

caf::behavior model_call_job(caf::event_based_actor* self, caf::actor owner, model_call call,
                             config::model_config model, std::string api_key) {
  self->send(owner, execution_started{call.fence, 0});
  auto reply = call_model(model, api_key, call.system_prompt, call.prompt, call.timeout);
  if (reply.ok)
    self->send(owner,
               model_answer{call.fence, std::move(reply.content), model.name, reply.latency_ms});
  else
    self->send(owner, execution_failed{call.fence, "model " + model.name + ": " + reply.error,
                                       reply.retryable, model.name});
  self->quit();
  return {};
}

} // namespace

struct model_endpoint_state {
  std::deque<queued_call> queue;
  struct running_call {
    persistence::lease fence;
    caf::actor owner;
    bool abandoned = false;
    /// Keeps the call alive: an actor nobody references is ended as
    /// unreachable, even while its call is outstanding.
    caf::actor worker;
  };
  std::map<caf::actor_addr, running_call> running;
  /// Owners (pumps) this endpoint monitors: when one dies, its calls are
  /// abandoned at once, so a crashed pump's calls do not hold the model's
  /// slots until they finish.
  std::set<caf::actor_addr> owners;
  int active = 0;
  static inline const char* name = "model_endpoint";
};

namespace {

caf::behavior model_endpoint(caf::stateful_actor<model_endpoint_state>* self,
                             config::model_config model, model_caller caller) {
  // Once per model at start, not per call: the setting is deliberate (a test
  // server), but nobody should run with it unknowingly.
  if (!model.tls_verify)
    spdlog::warn("model {}: tls_verify = false: the certificate of {} is not checked, so anyone "
                 "on the network path can read its prompts and api key",
                 model.name, model.endpoint);
  std::string api_key;
  if (!model.api_key_env.empty())
    if (const char* v = std::getenv(model.api_key_env.c_str()))
      api_key = v;
  auto dispatch = [=] {
    auto& st = self->state;
    while (st.active < model.concurrency && !st.queue.empty()) {
      auto next = std::move(st.queue.front());
      st.queue.pop_front();
      auto worker = caller ? caller(self, next.owner, next.call, model)
                           : self->spawn<caf::detached>(model_call_job, next.owner, next.call,
                                                        model, api_key);
      self->monitor(worker);
      st.running[worker.address()] = {next.call.fence, next.owner, false, worker};
      ++st.active;
    }
  };
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    if (st.owners.erase(dm.source) > 0) {
      st.queue.erase(
          std::remove_if(st.queue.begin(), st.queue.end(),
                         [&](const queued_call& q) { return q.owner.address() == dm.source; }),
          st.queue.end());
      for (auto& [addr, call] : st.running)
        if (call.owner.address() == dm.source && !call.abandoned) {
          call.abandoned = true;
          --st.active;
          spdlog::debug("model {}: owner of message {} died; slot freed", model.name,
                        call.fence.message_id);
        }
      dispatch();
      return;
    }
    auto it = st.running.find(dm.source);
    if (it == st.running.end())
      return;
    if (!it->second.abandoned) {
      --st.active;
      if (dm.reason && dm.reason != caf::exit_reason::normal)
        self->send(it->second.owner, execution_failed{it->second.fence,
                                                      "model " + model.name + ": call crashed: " +
                                                          self->system().render(dm.reason),
                                                      true, model.name});
    }
    st.running.erase(it);
    dispatch();
  });
  return {
      [=](model_call& call) {
        auto owner = caf::actor_cast<caf::actor>(self->current_sender());
        if (owner && self->state.owners.insert(owner.address()).second)
          self->monitor(owner);
        self->state.queue.push_back({std::move(call), owner});
        dispatch();
      },
      [=](execution_abandoned& msg) {
        auto& st = self->state;
        for (auto it = st.queue.begin(); it != st.queue.end(); ++it)
          if (it->call.fence == msg.fence) {
            st.queue.erase(it);
            return;
          }
        for (auto& [addr, call] : st.running)
          if (call.fence == msg.fence && !call.abandoned) {
            call.abandoned = true;
            --st.active;
            spdlog::debug("model {}: call for message {} abandoned by its owner; slot freed",
                          model.name, msg.fence.message_id);
            dispatch();
            return;
          }
      },
  };
}

} // namespace

caf::actor spawn_model_endpoint(caf::actor_system& sys, config::model_config model,
                                model_caller caller) {
  return sys.spawn(model_endpoint, std::move(model), std::move(caller));
}

} // namespace turing::actors
