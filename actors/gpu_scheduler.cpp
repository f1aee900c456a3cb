// The GPU scheduler (see gpu_scheduler.hpp): who holds a turn, when a wave is
// over, when waiting has gone on long enough to drain a model for another.
#include "actors/gpu_scheduler.hpp"

#include "config/duration.hpp"
#include "messages/models.hpp"
#include "messages/registry.hpp"

#include <algorithm>
#include <caf/all.hpp>
#include <map>
#include <optional>
#include <spdlog/spdlog.h>
#include <vector>

namespace turing::actors {

namespace {

using check_atom = caf::atom_constant<caf::atom("gpucheck")>;
using time_point = caf::actor_clock::time_point;

std::string wait_text(caf::timespan d) {
  return config::format_duration(std::chrono::duration_cast<config::millis>(d));
}

} // namespace

struct gpu_scheduler_state {
  struct model_state {
    caf::actor endpoint;
    int64_t queued = 0;
    int64_t running = 0;
    /// Since when its calls wait without a turn; unset while it has a turn
    /// or nothing waits.
    std::optional<time_point> waiting_since;
    /// Since when nothing of it is queued or running (its wave is over).
    time_point idle_since;
    bool loaded = false;
    /// Loaded, but starts nothing: it is unloaded once its calls end.
    bool draining = false;
    time_point loaded_at;
    /// The turn last sent to its endpoint.
    std::optional<bool> told;
  };
  std::map<std::string, model_state> models;
  /// When the pending check timer fires; unset when none is pending.
  std::optional<time_point> check_at;
  double swap_cost_ms = 0;
  int64_t loads = 0;

  int loaded_count() const {
    int n = 0;
    for (const auto& [name, m] : models)
      n += m.loaded ? 1 : 0;
    return n;
  }
  static inline const char* name = "gpu_scheduler";
};

namespace {

caf::behavior gpu_scheduler(caf::stateful_actor<gpu_scheduler_state>* self,
                            gpu_scheduler_options o) {
  const auto& gpu = o.gpu;
  self->state.swap_cost_ms = static_cast<double>(gpu.swap_cost.count());
  for (const auto& name : gpu.models)
    self->state.models[name].idle_since = self->clock().now();

  auto linger = [=]() -> caf::timespan {
    if (gpu.linger)
      return *gpu.linger;
    auto ms = std::clamp(self->state.swap_cost_ms / 10, 10.0, 2000.0);
    return config::millis{static_cast<int64_t>(ms)};
  };

  auto unload = [=](const std::string& name, time_point now) {
    auto& m = self->state.models[name];
    m.loaded = m.draining = false;
    if (m.queued > 0)
      m.waiting_since = now; // the wait for its next turn starts now
  };

  auto load = [=](const std::string& name, time_point now, const std::string& evicted) {
    auto& st = self->state;
    auto& m = st.models[name];
    auto waited = m.waiting_since ? now - *m.waiting_since : caf::timespan{0};
    m.loaded = true;
    m.draining = false;
    m.loaded_at = now;
    m.waiting_since.reset();
    ++st.loads;
    spdlog::info("gpu {}: model {} takes a turn ({} call(s) waiting, for {}){}", gpu.name, name,
                 m.queued, wait_text(waited),
                 evicted.empty() ? std::string{} : "; model " + evicted + " unloaded");
  };

  // Decides every model's turn from the demand now; arms a timer for the
  // next moment a decision may change without a message (a linger or the
  // fairness bound running out).
  auto decide = [=] {
    auto& st = self->state;
    auto now = self->clock().now();
    std::optional<time_point> next_check;
    auto check_by = [&](time_point t) {
      if (!next_check || t < *next_check)
        next_check = t;
    };
    for (auto& [name, m] : st.models)
      if (m.loaded && m.draining && m.running == 0)
        unload(name, now);

    std::vector<std::string> waiting;
    for (auto& [name, m] : st.models)
      if (!m.loaded && m.queued > 0)
        waiting.push_back(name);
    std::stable_sort(waiting.begin(), waiting.end(), [&](const auto& x, const auto& y) {
      return *st.models[x].waiting_since < *st.models[y].waiting_since;
    });
    // Each draining model frees a turn soon: that many waiting models wait for it.
    int freeing = 0;
    for (const auto& [name, m] : st.models)
      freeing += m.draining ? 1 : 0;

    for (const auto& name : waiting) {
      auto& w = st.models[name];
      if (st.loaded_count() < gpu.max_loaded) {
        load(name, now, "");
        continue;
      }
      // A loaded model whose wave is over, least recently busy first.
      std::string over;
      for (auto& [other, m] : st.models) {
        if (!m.loaded || m.draining || m.queued > 0 || m.running > 0)
          continue;
        if (now - m.idle_since < linger()) {
          check_by(m.idle_since + linger());
          continue;
        }
        if (over.empty() || m.idle_since < st.models[over].idle_since)
          over = other;
      }
      if (!over.empty()) {
        unload(over, now);
        load(name, now, over);
        continue;
      }
      if (freeing > 0) {
        --freeing; // its turn comes when a draining model's calls end
        continue;
      }
      if (now - *w.waiting_since < gpu.max_wait) {
        check_by(*w.waiting_since + gpu.max_wait);
        continue;
      }
      // The fairness bound: the model longest in its turn drains for this one
      // (an idle lingering one first: it has nothing left to run).
      std::string victim;
      for (auto& [other, m] : st.models) {
        if (!m.loaded || m.draining)
          continue;
        if (victim.empty())
          victim = other;
        auto& v = st.models[victim];
        bool idle = m.queued == 0 && m.running == 0;
        bool v_idle = v.queued == 0 && v.running == 0;
        if ((idle && !v_idle) || (idle == v_idle && m.loaded_at < v.loaded_at))
          victim = other;
      }
      if (victim.empty())
        continue;
      auto& v = st.models[victim];
      spdlog::info("gpu {}: model {} has waited {} (max_wait {}); model {} starts no more calls "
                   "and is unloaded once its {} call(s) in flight end ({} still queued)",
                   gpu.name, name, wait_text(now - *w.waiting_since), wait_text(gpu.max_wait),
                   victim, v.running, v.queued);
      if (v.running == 0) {
        unload(victim, now);
        load(name, now, victim);
      } else {
        v.draining = true;
      }
    }

    for (auto& [name, m] : st.models) {
      bool may_start = m.loaded && !m.draining;
      if (m.endpoint && m.told != may_start) {
        m.told = may_start;
        self->send(m.endpoint, gpu_turn{name, may_start});
      }
    }
    if (next_check && (!st.check_at || *next_check < *st.check_at)) {
      st.check_at = *next_check;
      // Never in the past: a check that decides nothing must not spin.
      auto delay = std::max(caf::timespan{*next_check - now}, caf::timespan{1000000});
      self->delayed_send(self, delay, check_atom::value, next_check->time_since_epoch().count());
    }
  };

  // A restarted scheduler learns the demand from its models' endpoints.
  if (o.find_endpoint)
    for (const auto& name : gpu.models)
      if (auto endpoint = o.find_endpoint(name))
        self->send(endpoint, gpu_sync_atom::value);

  self->set_down_handler([=](caf::down_msg& dm) {
    for (auto& [name, m] : self->state.models)
      if (m.endpoint && m.endpoint.address() == dm.source) {
        spdlog::debug("gpu {}: endpoint of model {} went down; its demand is gone", gpu.name, name);
        m.endpoint = nullptr;
        m.queued = m.running = 0;
        m.waiting_since.reset();
        m.idle_since = self->clock().now();
        m.told.reset();
      }
    decide();
  });

  return {
      [=](gpu_demand& d) {
        auto& st = self->state;
        auto it = st.models.find(d.model);
        if (it == st.models.end()) {
          spdlog::warn("gpu {}: demand from model {}, which is not on this GPU; ignored", gpu.name,
                       d.model);
          return;
        }
        auto& m = it->second;
        auto sender = caf::actor_cast<caf::actor>(self->current_sender());
        if (sender && m.endpoint != sender) {
          m.endpoint = sender;
          m.told.reset(); // a new endpoint knows no turn yet
          self->monitor(sender);
        }
        auto now = self->clock().now();
        if (m.queued == 0 && d.queued > 0 && !m.loaded)
          m.waiting_since = now;
        if (d.queued == 0)
          m.waiting_since.reset();
        if (d.queued == 0 && d.running == 0 && (m.queued > 0 || m.running > 0))
          m.idle_since = now;
        m.queued = d.queued;
        m.running = d.running;
        decide();
      },
      [=](gpu_load_observed& obs) {
        // A smoothed estimate: one cold load (a first read from disk) should
        // not set the linger for the rest of the run.
        auto& cost = self->state.swap_cost_ms;
        cost = cost * 0.7 + obs.load_ms * 0.3;
        spdlog::debug("gpu {}: model {} loaded in {:.0f} ms; swap cost now {:.0f} ms", gpu.name,
                      obs.model, obs.load_ms, cost);
      },
      [=](check_atom, int64_t at) {
        auto& st = self->state;
        if (st.check_at && st.check_at->time_since_epoch().count() == at)
          st.check_at.reset();
        decide();
      },
  };
}

} // namespace

caf::actor spawn_gpu_scheduler(caf::actor_system& sys, gpu_scheduler_options options) {
  return sys.spawn(gpu_scheduler, std::move(options));
}

} // namespace turing::actors
