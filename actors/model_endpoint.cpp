// The model endpoint actor: per-model slots and queue, the per-call actors,
// and the wait through an outage of the model's server (probe, backoff, give up).
#include "actors/model_endpoint.hpp"

#include "actors/model_budget.hpp"
#include "actors/model_client.hpp"
#include "config/duration.hpp"
#include "messages/models.hpp"
#include "messages/registry.hpp"
#include "metrics/node_metrics.hpp"

#include <algorithm>
#include <caf/all.hpp>
#include <cstdlib>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <spdlog/spdlog.h>

namespace turing::actors {

namespace {

using probe_atom = caf::atom_constant<caf::atom("mprobe")>;
using give_up_atom = caf::atom_constant<caf::atom("mgiveup")>;
using resume_atom = caf::atom_constant<caf::atom("mresume")>;
using budget_atom = caf::atom_constant<caf::atom("mbudget")>;
using activity_atom = caf::atom_constant<caf::atom("mactivity")>;

/// How often the calls in flight and their tokens go to the node monitor.
constexpr config::millis activity_interval{2000};

constexpr config::millis first_probe_delay{1000};
constexpr config::millis max_probe_delay{30000};
constexpr config::millis summary_interval{30000};
/// The pause after a throttle without a Retry-After: doubled each time.
constexpr config::millis first_throttle_pause{1000};
constexpr config::millis max_throttle_pause{30000};

std::pair<int64_t, int64_t> key_of(const persistence::lease& fence) {
  return {fence.message_id, fence.epoch};
}

struct queued_call {
  model_call call;
  caf::actor owner;
};

caf::behavior model_call_job(caf::event_based_actor* self, caf::actor reporter, model_call call,
                             config::model_config model, std::string api_key) {
  self->send(reporter, execution_started{call.fence, 0});
  // Streamed pieces so far, passed on once a second at most (for status).
  auto last_progress = std::chrono::steady_clock::now();
  auto on_tokens = [&](int64_t pieces) {
    auto now = std::chrono::steady_clock::now();
    if (now - last_progress < std::chrono::seconds(1))
      return;
    last_progress = now;
    self->send(reporter, model_progress{call.fence, pieces});
  };
  auto reply = call_model(model, api_key, call.system_prompt, call.prompt, call.timeout, on_tokens);
  if (reply.ok)
    self->send(reporter, model_answer{call.fence, std::move(reply.content), model.name,
                                      reply.latency_ms, reply.load_ms, reply.tokens});
  else
    self->send(reporter,
               execution_failed{
                   call.fence, "model " + model.name + " [" + reply.fault + "]: " + reply.error,
                   reply.retryable, model.name, reply.unavailable, reply.connection_dropped,
                   reply.fault, reply.retry_after ? reply.retry_after->count() : -1});
  self->quit();
  return {};
}

} // namespace

struct model_endpoint_state {
  std::deque<queued_call> queue;
  struct running_call {
    model_call call;
    caf::actor owner;
    /// The owner gave up on it: its answer is stale (still forwarded, so the
    /// owner records it as a late result).
    bool abandoned = false;
    /// Its slot is free already: abandoned, or put back in the queue.
    bool slot_freed = false;
    bool probe = false;
    /// Tokens reserved in the budget, and whether the budget still counts
    /// the call as in flight.
    int64_t reservation = 0;
    int64_t key_reservation = 0;
    bool in_budget = false;
    /// For status: when it started (wall clock) and its tokens so far.
    persistence::time_point started_at;
    /// The start on the actor clock: the call's duration for the metrics.
    caf::actor_clock::time_point began;
    int64_t tokens = 0;
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
  /// Looked up once per incarnation: each event is then one relaxed atomic.
  metrics::model_metrics metrics;

  /// The server is unreachable since `since`; calls wait in the queue.
  struct outage {
    int64_t id = 0; ///< tells this outage's timers from an earlier one's
    caf::actor_clock::time_point since;
    persistence::time_point wall_since;
    std::string error;
    config::millis probe_delay = first_probe_delay;
    bool probe_due = false;
    bool probe_in_flight = false;
    /// Past max_unavailable: calls go through and a refusal is final.
    bool gave_up = false;
    caf::actor_clock::time_point last_summary;
  };
  std::optional<outage> down;
  int64_t outages = 0;
  /// Calls whose connection the server dropped once: run again once, then
  /// their failure is passed on (a prompt that crashes the server must not
  /// hold the queue forever).
  std::set<std::pair<int64_t, int64_t>> dropped_once; ///< (message id, epoch)

  /// The server pushes back (HTTP 429, 503 with Retry-After): no call starts
  /// before `until`, and at most `admit` run at once.
  struct backpressure {
    caf::actor_clock::time_point until;
    int admit = 1;
    config::millis next_pause = first_throttle_pause;
    int64_t throttled = 0; ///< calls throttled since it began
    caf::actor_clock::time_point since;
  };
  std::optional<backpressure> slowed;
  /// Throttles per call (message id, epoch), bounded by max_throttled.
  std::map<std::pair<int64_t, int64_t>, int> throttles;

  /// requests_per_minute and tokens_per_minute; unset without either.
  std::optional<model_budget> budget;
  /// When the budget's timer fires (one at a time), and when waiting for
  /// the budget was last logged.
  std::optional<caf::actor_clock::time_point> budget_timer_at;
  std::optional<caf::actor_clock::time_point> budget_logged_at;

  /// The activity timer runs while calls do.
  bool activity_armed = false;

  /// May start calls (always, for a model on no GPU).
  bool gpu_turn = true;
  /// The demand last reported to the GPU's scheduler: (queued, running).
  std::pair<int64_t, int64_t> gpu_reported{-1, -1};

  /// The call is over (answered, failed for good, abandoned): its second
  /// chance after a dropped connection and its throttle count go with it.
  void settled(const persistence::lease& fence) {
    dropped_once.erase(key_of(fence));
    throttles.erase(key_of(fence));
  }
  static inline const char* name = "model_endpoint";
};

namespace {

caf::behavior model_endpoint(caf::stateful_actor<model_endpoint_state>* self,
                             model_endpoint_options o) {
  const auto& model = o.model;
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

  auto elapsed = [=] {
    return std::chrono::duration_cast<config::millis>(self->clock().now() -
                                                      self->state.down->since);
  };

  auto report = [=] {
    if (!o.observer)
      return;
    auto& st = self->state;
    model_availability msg;
    msg.model = model.name;
    msg.available = !st.down;
    if (st.down)
      msg.outage = {st.down->wall_since, st.down->error, static_cast<int64_t>(st.queue.size())};
    self->send(o.observer, std::move(msg));
  };

  // "alma, clara_a": the stages whose calls wait, for the log.
  auto waiting_stages = [=] {
    std::set<std::string> names;
    for (const auto& q : self->state.queue)
      names.insert(q.call.stage);
    std::string out;
    for (const auto& n : names)
      out += (out.empty() ? "" : ", ") + n;
    return out.empty() ? std::string{"none"} : out;
  };

  auto start = [=](queued_call next, bool probe) {
    auto& st = self->state;
    auto reporter = caf::actor_cast<caf::actor>(self);
    auto worker =
        o.caller ? o.caller(self, reporter, next.call, model)
                 : self->spawn<caf::detached>(model_call_job, reporter, next.call, model, api_key);
    self->monitor(worker);
    model_endpoint_state::running_call rc;
    rc.call = std::move(next.call);
    rc.owner = std::move(next.owner);
    rc.probe = probe;
    rc.worker = worker;
    rc.started_at = o.wall_clock();
    rc.began = self->clock().now();
    if (o.observer && !st.activity_armed) {
      st.activity_armed = true;
      self->delayed_send(self, activity_interval, activity_atom::value);
    }
    auto now = self->clock().now();
    if (st.budget)
      rc.reservation = st.budget->started(now);
    if (o.key_budget)
      rc.key_reservation = o.key_budget->with([&](model_budget& b) { return b.started(now); });
    rc.in_budget = st.budget || o.key_budget;
    st.running[worker.address()] = std::move(rc);
    ++st.active;
  };

  // Tells the metrics what runs, and the GPU's scheduler what waits and
  // runs when that changed. Every change of `active` ends here.
  auto sync_gpu = [=](bool force) {
    auto& st = self->state;
    st.metrics.in_flight->set(st.active);
    if (!o.find_gpu)
      return;
    std::pair<int64_t, int64_t> now{static_cast<int64_t>(st.queue.size()), st.active};
    if (!force && now == st.gpu_reported)
      return;
    if (auto gpu = o.find_gpu()) {
      st.gpu_reported = now;
      self->send(gpu, gpu_demand{model.name, now.first, now.second});
    }
  };

  // Whether the budgets let one more call start now; if not, a timer (or
  // the end of a call in flight) tries again. Logged once a minute at most.
  auto budget_allows = [=] {
    auto& st = self->state;
    if (!st.budget && !o.key_budget)
      return true;
    auto now = self->clock().now();
    using when_t = std::optional<model_budget::time_point>;
    when_t own = st.budget ? st.budget->next_start(now) : when_t{now};
    when_t key = o.key_budget
                     ? o.key_budget->with([&](model_budget& b) { return b.next_start(now); })
                     : when_t{now};
    if (own && key && *own <= now && *key <= now)
      return true;
    // A later time, or (nullopt) the end of a call in flight: this model's
    // tell the endpoint, other models' of the same key do not, so poll those.
    when_t retry;
    if (own && key)
      retry = std::max(*own, *key);
    else if (!key)
      retry = now + std::chrono::milliseconds(250);
    if (retry && (!st.budget_timer_at || *retry < *st.budget_timer_at)) {
      st.budget_timer_at = *retry;
      self->delayed_send(self, *retry - now, budget_atom::value);
    }
    if (!st.budget_logged_at || now - *st.budget_logged_at >= std::chrono::minutes(1)) {
      st.budget_logged_at = now;
      bool own_bound = !own || *own > now;
      if (own_bound)
        spdlog::info("model {}: budget reached ({} of {} requests, {} of {} tokens in the last "
                     "minute); {} call(s) wait unspent for it",
                     model.name, st.budget->requests_in_window(now), model.requests_per_minute,
                     st.budget->tokens_in_window(now), model.tokens_per_minute, st.queue.size());
      else
        o.key_budget->with([&](model_budget& b) {
          spdlog::info("model {}: budget of api key {} reached ({} of {} requests, {} of {} "
                       "tokens in the last minute, all its models); {} call(s) wait unspent for it",
                       model.name, o.key_budget->name(), b.requests_in_window(now),
                       b.requests_per_minute(), b.tokens_in_window(now), b.tokens_per_minute(),
                       st.queue.size());
        });
    }
    return false;
  };

  // The call no longer runs on the budget: what it spent is counted.
  auto budget_ended = [=](model_endpoint_state::running_call& rc, int64_t tokens) {
    auto& st = self->state;
    if (!rc.in_budget)
      return;
    rc.in_budget = false;
    auto now = self->clock().now();
    if (st.budget)
      st.budget->ended(now, rc.reservation, tokens);
    if (o.key_budget)
      o.key_budget->with([&](model_budget& b) { b.ended(now, rc.key_reservation, tokens); });
  };

  auto start_what_may_start = [=] {
    auto& st = self->state;
    if (!st.gpu_turn)
      return;
    if (st.down && !st.down->gave_up) {
      // One call at a time tests whether the server is back.
      if (st.down->probe_due && !st.down->probe_in_flight && !st.queue.empty() &&
          st.active < model.concurrency) {
        st.down->probe_due = false;
        st.down->probe_in_flight = true;
        auto next = std::move(st.queue.front());
        st.queue.pop_front();
        start(std::move(next), true);
      }
      return;
    }
    int limit = model.concurrency;
    if (st.slowed) {
      if (self->clock().now() < st.slowed->until)
        return; // resume_atom comes at `until`
      limit = std::min(limit, st.slowed->admit);
    }
    while (st.active < limit && !st.queue.empty()) {
      if (!budget_allows())
        return;
      auto next = std::move(st.queue.front());
      st.queue.pop_front();
      start(std::move(next), false);
    }
  };

  // Starts what may start; the GPU's scheduler learns what is left waiting.
  auto dispatch = [=] {
    start_what_may_start();
    sync_gpu(false);
  };

  auto schedule_probe = [=] {
    auto& d = *self->state.down;
    self->delayed_send(self, d.probe_delay, probe_atom::value, d.id);
    d.probe_delay = std::min(d.probe_delay * 2, max_probe_delay);
  };

  // Each answer after a throttle lets one more call run at once, up to the
  // model's concurrency, where the back-pressure ends.
  auto admit_more = [=] {
    auto& st = self->state;
    if (!st.slowed || self->clock().now() < st.slowed->until)
      return;
    if (++st.slowed->admit < model.concurrency)
      return;
    spdlog::info("model {}: back-pressure over after {} ({} call(s) throttled); concurrency {} "
                 "again",
                 model.name,
                 config::format_duration(std::chrono::duration_cast<config::millis>(
                     self->clock().now() - st.slowed->since)),
                 st.slowed->throttled, model.concurrency);
    st.slowed.reset();
  };

  // Any answer from the server (even an error it chose to send) ends an outage.
  auto server_answered = [=] {
    auto& st = self->state;
    admit_more();
    if (!st.down) {
      dispatch();
      return;
    }
    spdlog::info("model {}: available again after {}; {} waiting call(s) resume", model.name,
                 config::format_duration(elapsed()), st.queue.size());
    st.down.reset();
    report();
    dispatch();
  };

  // A call found the server down: it waits, first in line, unspent.
  auto wait_for_server = [=](model_endpoint_state::running_call& rc, const std::string& error,
                             bool at_back) {
    auto& st = self->state;
    --st.active;
    rc.slot_freed = true;
    if (at_back)
      st.queue.push_back({rc.call, rc.owner});
    else
      st.queue.push_front({rc.call, rc.owner});
    if (!st.down) {
      st.down.emplace();
      auto& d = *st.down;
      d.id = ++st.outages;
      d.since = self->clock().now();
      d.wall_since = o.wall_clock();
      d.last_summary = d.since;
      d.error = error;
      spdlog::warn("model {}: unavailable: {}; its calls wait without spending attempts (stages "
                   "waiting: {}), probing with backoff; after max_unavailable {} waiting calls "
                   "are dead-lettered",
                   model.name, error, waiting_stages(),
                   config::format_duration(model.max_unavailable));
      // Every queued call's owner stops its deadline: waiting is not running.
      for (const auto& q : st.queue)
        self->send(q.owner, model_waiting{q.call.fence, model.name, error});
      schedule_probe();
      self->delayed_send(self, model.max_unavailable, give_up_atom::value, d.id);
      report();
      return;
    }
    auto& d = *st.down;
    d.error = error;
    self->send(rc.owner, model_waiting{rc.call.fence, model.name, error});
    if (rc.probe) {
      d.probe_in_flight = false;
      schedule_probe();
      auto now = self->clock().now();
      if (now - d.last_summary >= summary_interval) {
        d.last_summary = now;
        spdlog::info(
            "model {}: unavailable for {}; {} call(s) waiting (stages: {}); last error: {}",
            model.name, config::format_duration(elapsed()), st.queue.size(), waiting_stages(),
            error);
        report();
      }
    }
  };

  // The server throttled this call: it waits at the head of the queue,
  // unspent, and the whole model slows down (Retry-After, then half the
  // calls at once).
  auto throttle = [=](model_endpoint_state::running_call& rc, const execution_failed& msg) {
    auto& st = self->state;
    --st.active;
    rc.slot_freed = true;
    st.queue.push_front({rc.call, rc.owner});
    self->send(rc.owner, model_waiting{rc.call.fence, model.name, msg.error});
    auto now = self->clock().now();
    if (!st.slowed) {
      st.slowed.emplace();
      st.slowed->since = now;
      st.slowed->admit = model.concurrency;
      spdlog::warn("model {}: throttled by its server ({}); its calls wait without spending "
                   "attempts and start again more slowly",
                   model.name, msg.error);
    }
    auto& b = *st.slowed;
    auto pause = msg.retry_after_ms >= 0 ? config::millis{msg.retry_after_ms} : b.next_pause;
    if (msg.retry_after_ms < 0)
      b.next_pause = std::min(b.next_pause * 2, max_throttle_pause);
    b.admit = std::max(1, std::min(b.admit, st.active + 1) / 2);
    b.until = std::max(b.until, now + pause);
    ++b.throttled;
    spdlog::debug("model {}: call for message {} throttled; no call starts for {}, then {} at once",
                  model.name, rc.call.fence.message_id, config::format_duration(pause), b.admit);
    self->delayed_send(self, pause, resume_atom::value);
  };

  // The prompt is beyond this model's context: the fallback model takes the
  // call for the same owner, or the call fails for good.
  auto overflowed = [=](model_endpoint_state::running_call& rc, execution_failed& msg) {
    auto& st = self->state;
    caf::actor fallback;
    if (!model.fallback_model.empty() && o.find_endpoint)
      fallback = o.find_endpoint(model.fallback_model);
    if (!fallback) {
      msg.retryable = false;
      msg.error += model.fallback_model.empty()
                       ? " (no fallback_model for model " + model.name + ")"
                       : " (fallback model " + model.fallback_model + " is not running)";
      self->send(rc.owner, std::move(msg));
      return;
    }
    spdlog::info("model {}: prompt of message {} epoch {} overflows its context; the call goes to "
                 "fallback model {}",
                 model.name, rc.call.fence.message_id, rc.call.fence.epoch, model.fallback_model);
    --st.active;
    rc.slot_freed = true;
    caf::send_as(rc.owner, fallback, rc.call);
  };

  auto find_running = [=]() -> model_endpoint_state::running_call* {
    auto it = self->state.running.find(caf::actor_cast<caf::actor_addr>(self->current_sender()));
    return it == self->state.running.end() ? nullptr : &it->second;
  };

  self->state.metrics = metrics::process_metrics().model(model.name);
  self->state.metrics.concurrency->set(model.concurrency);
  self->state.metrics.in_flight->set(0);
  if (model.requests_per_minute > 0 || model.tokens_per_minute > 0)
    self->state.budget.emplace(model.requests_per_minute, model.tokens_per_minute,
                               model.budget_window);

  // On a GPU, calls wait for the scheduler's first turn; it learns of this
  // endpoint (a restarted one too) from the first demand.
  if (o.find_gpu) {
    self->state.gpu_turn = false;
    sync_gpu(true);
  }

  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    if (st.owners.erase(dm.source) > 0) {
      st.queue.erase(
          std::remove_if(st.queue.begin(), st.queue.end(),
                         [&](const queued_call& q) { return q.owner.address() == dm.source; }),
          st.queue.end());
      for (auto& [addr, call] : st.running)
        if (call.owner.address() == dm.source && !call.slot_freed) {
          call.abandoned = call.slot_freed = true;
          --st.active;
          spdlog::debug("model {}: owner of message {} died; slot freed", model.name,
                        call.call.fence.message_id);
        }
      dispatch();
      return;
    }
    auto it = st.running.find(dm.source);
    if (it == st.running.end())
      return;
    auto& rc = it->second;
    budget_ended(rc, 0);
    if (!rc.slot_freed) {
      --st.active;
      if (rc.probe && st.down)
        st.down->probe_in_flight = false, st.down->probe_due = true;
      if (dm.reason && dm.reason != caf::exit_reason::normal) {
        st.metrics.errors->inc();
        self->send(rc.owner, execution_failed{rc.call.fence,
                                              "model " + model.name + ": call crashed: " +
                                                  self->system().render(dm.reason),
                                              true, model.name});
      }
    }
    st.running.erase(it);
    dispatch();
  });

  return {
      [=](model_call& call) {
        auto& st = self->state;
        auto owner = caf::actor_cast<caf::actor>(self->current_sender());
        if (owner && st.owners.insert(owner.address()).second)
          self->monitor(owner);
        if (st.down && !st.down->gave_up && owner)
          self->send(owner, model_waiting{call.fence, model.name, st.down->error});
        st.queue.push_back({std::move(call), owner});
        dispatch();
      },
      // From the calls: forwarded to their owners.
      [=](execution_started& msg) {
        if (auto* rc = find_running())
          self->send(rc->owner, std::move(msg));
      },
      [=](model_answer& msg) {
        auto* rc = find_running();
        if (!rc)
          return;
        self->state.settled(rc->call.fence);
        budget_ended(*rc, msg.tokens);
        self->state.metrics.call_seconds->observe(
            std::chrono::duration<double>(self->clock().now() - rc->began).count());
        if (msg.load_ms > 0 && o.find_gpu)
          if (auto gpu = o.find_gpu())
            self->send(gpu, gpu_load_observed{model.name, msg.load_ms});
        self->send(rc->owner, std::move(msg));
        server_answered();
      },
      [=](execution_failed& msg) {
        auto* rc = find_running();
        if (!rc)
          return;
        auto& st = self->state;
        budget_ended(*rc, 0); // a failed call's tokens are not known, nor recorded
        if (msg.connection_dropped && !rc->abandoned &&
            st.dropped_once.insert(key_of(rc->call.fence)).second) {
          // Most likely the server went away mid-call (a restart): the call
          // waits like a refused one, but at the back of the queue, so that
          // a call cut twice (a prompt that crashes the server) fails then.
          if (st.down)
            spdlog::debug("model {}: connection dropped during the call for message {}: {}",
                          model.name, rc->call.fence.message_id, msg.error);
          else
            spdlog::info("model {}: connection dropped during the call for message {}; it runs "
                         "once more once the server answers: {}",
                         model.name, rc->call.fence.message_id, msg.error);
          if (rc->probe && st.down)
            st.down->probe_in_flight = false;
          wait_for_server(*rc, msg.error, true);
          sync_gpu(false);
          return;
        }
        if (msg.fault == model_fault::throttled && !rc->abandoned) {
          auto key = key_of(rc->call.fence);
          if (++st.throttles[key] <= model.max_throttled) {
            throttle(*rc, msg);
            server_answered(); // a throttle is an answer: it ends an outage
            return;
          }
          msg.error += " (throttled " + std::to_string(model.max_throttled) +
                       " times, max_throttled: this attempt counts)";
        }
        if (!msg.unavailable) {
          st.metrics.errors->inc();
          st.settled(rc->call.fence);
          if (msg.fault == model_fault::context_overflow && !rc->abandoned)
            overflowed(*rc, msg);
          else
            self->send(rc->owner, std::move(msg));
          server_answered();
          return;
        }
        if (rc->probe && st.down)
          st.down->probe_in_flight = false;
        if (rc->abandoned) {
          self->send(rc->owner, std::move(msg));
          return;
        }
        if (st.down && st.down->gave_up) {
          msg.retryable = false;
          msg.error = "model " + model.name + " unavailable for " +
                      config::format_duration(elapsed()) + " (longer than max_unavailable " +
                      config::format_duration(model.max_unavailable) + "): " + msg.error;
          self->send(rc->owner, std::move(msg));
          return;
        }
        wait_for_server(*rc, msg.error, false);
        sync_gpu(false);
      },
      [=](resume_atom) { dispatch(); },
      [=](model_progress& p) {
        for (auto& [addr, rc] : self->state.running)
          if (rc.call.fence == p.fence)
            rc.tokens = p.tokens;
      },
      // The calls in flight go to the node monitor (turing status shows
      // each with its tokens/s); an empty list once they are all over.
      [=](activity_atom) {
        auto& st = self->state;
        model_activity activity;
        activity.model = model.name;
        for (const auto& [addr, rc] : st.running)
          if (!rc.slot_freed)
            activity.calls.push_back(
                {rc.call.stage, rc.call.fence.message_id, rc.started_at, rc.tokens});
        st.activity_armed = !activity.calls.empty();
        if (st.activity_armed)
          self->delayed_send(self, activity_interval, activity_atom::value);
        self->send(o.observer, std::move(activity));
      },
      [=](budget_atom) {
        self->state.budget_timer_at.reset();
        dispatch();
      },
      [=](gpu_turn& turn) {
        self->state.gpu_turn = turn.may_start;
        dispatch();
      },
      [=](gpu_sync_atom) { sync_gpu(true); },
      [=](probe_atom, int64_t id) {
        auto& st = self->state;
        if (!st.down || st.down->id != id)
          return;
        st.down->probe_due = true;
        dispatch();
      },
      [=](give_up_atom, int64_t id) {
        auto& st = self->state;
        if (!st.down || st.down->id != id)
          return;
        st.down->gave_up = true;
        spdlog::error("model {}: unavailable for {} (max_unavailable {}); dead-lettering {} "
                      "waiting call(s); last error: {}",
                      model.name, config::format_duration(elapsed()),
                      config::format_duration(model.max_unavailable), st.queue.size(),
                      st.down->error);
        auto reason = "model " + model.name + " unavailable for " +
                      config::format_duration(elapsed()) + " (longer than max_unavailable " +
                      config::format_duration(model.max_unavailable) + "): " + st.down->error;
        for (const auto& q : st.queue)
          self->send(q.owner, execution_failed{q.call.fence, reason, false, model.name});
        st.queue.clear();
        report();
        sync_gpu(false);
      },
      [=](execution_abandoned& msg) {
        auto& st = self->state;
        st.settled(msg.fence);
        for (auto it = st.queue.begin(); it != st.queue.end(); ++it)
          if (it->call.fence == msg.fence) {
            st.queue.erase(it);
            sync_gpu(false);
            return;
          }
        for (auto& [addr, call] : st.running)
          if (call.call.fence == msg.fence && !call.slot_freed) {
            call.abandoned = call.slot_freed = true;
            --st.active;
            if (call.probe && st.down)
              st.down->probe_in_flight = false, st.down->probe_due = true;
            spdlog::debug("model {}: call for message {} abandoned by its owner; slot freed",
                          model.name, msg.fence.message_id);
            dispatch();
            return;
          }
      },
  };
}

} // namespace

caf::actor spawn_model_endpoint(caf::actor_system& sys, model_endpoint_options options) {
  return sys.spawn(model_endpoint, std::move(options));
}

} // namespace turing::actors
