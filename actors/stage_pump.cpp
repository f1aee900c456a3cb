// The stage pump.
#include "actors/stage_pump.hpp"

#include "actors/job_runner.hpp"
#include "actors/model_client.hpp"
#include "actors/ready_listener.hpp"
#include "actors/retry_backoff.hpp"
#include "actors/routing.hpp"
#include "actors/script_runner.hpp"
#include "actors/script_worker_pool.hpp"
#include "config/duration.hpp"
#include "config/prompt_template.hpp"
#include "messages/registry.hpp"
#include "messages/supervision.hpp"
#include "persistence/storable_text.hpp"

#include <caf/all.hpp>
#include <deque>
#include <map>
#include <random>
#include <spdlog/spdlog.h>

namespace turing::actors {

namespace {

using namespace persistence;
using poll_tick_atom = caf::atom_constant<caf::atom("polltick")>;
using drain_deadline_atom = caf::atom_constant<caf::atom("draindl")>;
using flush_retry_atom = caf::atom_constant<caf::atom("flushrtry")>;

/// Request timeouts towards the store: generous, since a store worker may be
/// waiting for a lock; an error only makes us try again later.
constexpr auto store_timeout = std::chrono::seconds(60);

std::string ids_of(const std::vector<lease>& leases) {
  std::string out;
  for (size_t i = 0; i < leases.size() && i < 8; ++i)
    out += (i ? "," : "") + std::to_string(leases[i].message_id);
  return leases.size() > 8 ? out + ",…" : out;
}

} // namespace

struct stage_pump_state {
  struct execution {
    claimed_message job;
    caf::actor_addr executor;
    int64_t generation = 0;
    int64_t pid = 0;
  };

  const config::stage_config* stage = nullptr;
  config::millis timeout{0};
  std::map<int64_t, execution> running; ///< by message id
  std::vector<completion> completions;  ///< waiting for the next flush
  std::vector<failure> failures;
  size_t completions_in_flight = 0; ///< written now; their leases end once durable
  size_t failures_in_flight = 0;
  int completion_batches = 0; ///< batches being written
  int failure_batches = 0;
  bool claiming = false;
  bool write_error_reported = false;
  bool claim_error_reported = false;
  bool draining = false;
  caf::response_promise drain_promise;
  int64_t drain_finished = 0;
  std::deque<std::chrono::steady_clock::time_point> crashes;
  int64_t generations = 0;
  std::mt19937_64 rng{std::random_device{}()};
  caf::actor_addr monitored_endpoint; ///< the model endpoint of a model stage
  /// Results not yet durable: buffered or being written.
  size_t unwritten() const {
    return completions.size() + failures.size() + completions_in_flight + failures_in_flight;
  }
  static inline const char* name = "stage_pump";
};

namespace {

caf::behavior stage_pump(caf::stateful_actor<stage_pump_state>* self, stage_pump_options o) {
  auto& st = self->state;
  const auto& pipeline = *o.pipeline;
  st.stage = pipeline.find_stage(o.stage);
  if (!st.stage) {
    self->quit(caf::make_error(caf::sec::invalid_argument, "no stage " + o.stage));
    return {};
  }
  st.timeout = pipeline.timeout_of(*st.stage);
  const auto& stage = *st.stage;
  const auto& runtime = pipeline.runtime;
  if (o.random_seed != 0)
    self->state.rng.seed(o.random_seed);
  auto log_id = [stage_name = o.stage](const claimed_message& m) {
    return "stage " + stage_name + " message " + std::to_string(m.id) + " (item " +
           std::to_string(m.item_id) + ", run " + std::to_string(m.run_id) + ", attempt " +
           std::to_string(m.counted_attempt()) + "/" + std::to_string(m.max_attempts) +
           (m.lost > 0 ? " after " + std::to_string(m.lost) + " lost" : std::string{}) +
           ", epoch " + std::to_string(m.epoch) + ")";
  };

  // -- helpers ----------------------------------------------------------------

  auto find = [=](const lease& fence) -> stage_pump_state::execution* {
    auto it = self->state.running.find(fence.message_id);
    if (it == self->state.running.end() || it->second.job.epoch != fence.epoch)
      return nullptr;
    return &it->second;
  };

  auto arm_deadline = [=](stage_pump_state::execution& e, config::millis after) {
    e.generation = ++self->state.generations;
    self->delayed_send(self, after, execution_timeout{e.job.fencing(), e.generation});
  };

  // Stops an execution that no longer matters: kills a script's process
  // group, frees a model call's slot. A builtin's thread cannot be killed
  // safely; it finishes and its result is stale.
  auto stop_execution = [=](const stage_pump_state::execution& e) {
    if (e.pid > 0)
      kill_process_group(static_cast<pid_t>(e.pid));
    if (stage.handler == config::handler_kind::model)
      if (auto endpoint = o.dir->get("model/" + stage.model))
        self->send(endpoint, execution_abandoned{e.job.fencing()});
    // A worker pool then reports nothing more for it and replaces the killed child.
    if (stage.handler == config::handler_kind::script && stage.mode == config::script_mode::worker)
      if (auto pool = o.dir->get(script_pool_name(o.stage)))
        self->send(pool, execution_abandoned{e.job.fencing()});
  };

  auto tell_keeper = [=](auto msg) {
    if (auto keeper = o.dir->get("lease_keeper"))
      self->send(keeper, std::move(msg));
  };

  // A result for an execution this pump no longer owns: the store records it
  // as a late result (its epoch fails the fence) and applies nothing.
  auto record_late = [=](auto batch, const char* what, const lease& fence) {
    spdlog::warn("stage {}: late {} for message {} epoch {}: no longer owned here; recorded, not "
                 "applied",
                 o.stage, what, fence.message_id, fence.epoch);
    if (auto store = o.dir->get("store"))
      self->request(store, store_timeout, std::move(batch))
          .then([](const std::vector<fence_result>&) {},
                [=](caf::error& e) {
                  spdlog::warn("stage {}: could not record late result of message {}: {}", o.stage,
                               fence.message_id, self->system().render(e));
                });
  };

  auto check_drained = std::make_shared<std::function<void()>>();
  auto try_claim = std::make_shared<std::function<void()>>();
  auto flush = std::make_shared<std::function<void()>>();

  *check_drained = [=] {
    auto& st = self->state;
    if (!st.draining || !st.running.empty() || st.unwritten() > 0 || st.claiming ||
        st.drain_promise.pending() == false)
      return;
    st.drain_promise.deliver(drain_report{o.stage, st.drain_finished, 0});
  };

  // Completions and failures are written as two independent group commits:
  // one kind failing never starves the other. A batch goes at once when none
  // is in flight; while one is written the next accumulates, and a second
  // goes beside it only once the queue is deep (PostgreSQL then runs both).
  auto write_batch = [=](auto& pending, size_t& in_flight, int& batches, const char* what) {
    constexpr int max_batches = 2;
    constexpr size_t deep_queue = 64;
    if (pending.empty() || batches >= max_batches || (batches > 0 && pending.size() < deep_queue))
      return;
    auto store = o.dir->get("store");
    if (!store) {
      self->delayed_send(self, runtime.poll_interval, flush_retry_atom::value);
      return;
    }
    auto batch = std::move(pending);
    pending.clear();
    in_flight += batch.size();
    ++batches;
    self->request(store, store_timeout, batch)
        .then(
            [=, &in_flight, &batches](const std::vector<fence_result>& results) {
              auto& st = self->state;
              in_flight -= batch.size();
              --batches;
              if (st.write_error_reported) {
                spdlog::info("stage {}: writing results works again", o.stage);
                st.write_error_reported = false;
              }
              std::vector<lease> written;
              for (size_t i = 0; i < batch.size(); ++i) {
                written.push_back(batch[i].fence);
                if (i < results.size() && results[i] == fence_result::stale)
                  spdlog::warn("stage {}: {} of message {} epoch {} was fenced out (its lease "
                               "was lost meanwhile); recorded as a late result",
                               o.stage, what, batch[i].fence.message_id, batch[i].fence.epoch);
              }
              tell_keeper(leases_ended{std::move(written)});
              (*flush)();
              (*try_claim)();
            },
            [=, &in_flight, &batches, &pending](caf::error& e) {
              auto& st = self->state;
              in_flight -= batch.size();
              --batches;
              // Kept, in order, before what arrived meanwhile; the store
              // fences every entry by (id, epoch), so a retry that meets a
              // re-claimed message applies only the current epoch's result.
              pending.insert(pending.begin(), batch.begin(), batch.end());
              // While the outage log tells a database outage, this is part of it (debug,
              // and no "works again" line); otherwise one warning until writes work.
              if (!st.write_error_reported) {
                auto level = persistence::secondhand_level(o.outage);
                spdlog::log(level, "stage {}: writing {} {} failed ({}); retrying every {}",
                            o.stage, batch.size(), what, self->system().render(e),
                            config::format_duration(runtime.poll_interval));
                st.write_error_reported = level >= spdlog::level::warn;
              }
              self->delayed_send(self, runtime.poll_interval, flush_retry_atom::value);
            });
  };

  *flush = [=] {
    auto& st = self->state;
    write_batch(st.completions, st.completions_in_flight, st.completion_batches, "completion");
    write_batch(st.failures, st.failures_in_flight, st.failure_batches, "failure");
    (*check_drained)();
  };

  auto finish_failure = [=](const lease& fence, attempt_result kind, const std::string& error,
                            bool retryable, const std::string& model) {
    auto* e = find(fence);
    failure f;
    f.fence = fence;
    f.node = o.node;
    f.result = kind;
    f.error = error;
    f.model = model;
    f.retryable = retryable;
    if (!e) {
      f.started_at = o.wall_clock();
      record_late(std::vector<failure>{f}, to_string(kind), fence);
      return;
    }
    f.attempt = e->job.attempt;
    f.started_at = e->job.started_at;
    bool last = !retryable || e->job.counted_attempt() >= e->job.max_attempts;
    f.retry_after = last ? config::millis{0}
                         : retry_backoff(stage.retry, e->job.counted_attempt(), self->state.rng);
    if (last)
      spdlog::error("{} {}: {}; dead-lettered{}", log_id(e->job), to_string(kind), error,
                    retryable ? " after its last attempt" : " (not retryable)");
    else
      spdlog::warn("{} {}: {}; retry in {}", log_id(e->job), to_string(kind), error,
                   config::format_duration(f.retry_after));
    self->state.failures.push_back(std::move(f));
    self->state.running.erase(fence.message_id);
    if (self->state.draining)
      ++self->state.drain_finished;
    (*flush)();
  };

  auto finish_success = [=](const lease& fence, const std::string& outcome, const json& output,
                            const std::string& model) {
    auto* e = find(fence);
    completion c;
    c.fence = fence;
    c.node = o.node;
    c.outcome = outcome;
    c.output = output;
    c.model = model;
    if (!e) {
      c.started_at = o.wall_clock();
      record_late(std::vector<completion>{c}, "result", fence);
      return;
    }
    if (auto why = persistence::unstorable_json(output)) {
      // Caught here rather than by the store, so that the failure follows the
      // stage's retry policy: a model may answer better next time.
      finish_failure(fence, attempt_result::failed, "output cannot be stored: " + *why,
                     stage.handler == config::handler_kind::model, model);
      return;
    }
    auto routed = route(pipeline, stage, outcome, next_payload(e->job.payload, output));
    if (!routed.ok) {
      finish_failure(fence, attempt_result::failed, routed.error, false, model);
      return;
    }
    c.attempt = e->job.attempt;
    c.started_at = e->job.started_at;
    c.deliveries = std::move(routed.deliveries);
    spdlog::debug("{} completed: {}", log_id(e->job), outcome);
    self->state.completions.push_back(std::move(c));
    self->state.running.erase(fence.message_id);
    if (self->state.draining)
      ++self->state.drain_finished;
    (*flush)();
  };

  auto dispatch = [=](const claimed_message& job) {
    if (auto old = self->state.running.find(job.id); old != self->state.running.end()) {
      // Claimed again while this pump still runs it: its lease was rescued
      // (a database outage longer than the lease, a clock jump). The old
      // execution is stopped, never left running beside the new one, so the
      // stage's concurrency holds; its result, if any, is fenced out.
      spdlog::warn("{}: claimed again at epoch {} while epoch {} still ran here; stopping the "
                   "old execution",
                   log_id(old->second.job), job.epoch, old->second.job.epoch);
      stop_execution(old->second);
      tell_keeper(leases_ended{{old->second.job.fencing()}});
      self->state.running.erase(old);
    }
    auto& e = self->state.running[job.id];
    e.job = job;
    switch (stage.handler) {
    case config::handler_kind::builtin: {
      const auto* fn = o.builtins->find(stage.function);
      if (!fn) {
        finish_failure(job.fencing(), attempt_result::failed,
                       "builtin " + stage.function + " is not registered", false, "");
        return;
      }
      // On the scheduler's threads, never a thread per job: a builtin is a
      // quick C++ function by contract (slow or blocking work is a script).
      auto owner = caf::actor_cast<caf::actor>(self);
      auto worker = self->spawn<caf::monitored>(builtin_job, owner, job, stage.function, *fn);
      e.executor = worker.address();
      arm_deadline(e, self->state.timeout);
      return;
    }
    case config::handler_kind::script: {
      script_spec spec{stage.command, stage.working_dir, stage.env};
      auto owner = caf::actor_cast<caf::actor>(self);
      caf::actor worker;
      if (o.simulated_scripts) {
        worker = o.simulated_scripts(self, owner, job, spec);
        self->monitor(worker);
      } else if (stage.mode == config::script_mode::worker) {
        // A long-lived child of the stage's pool (spawned beside this pump) runs it.
        worker = o.dir->get(script_pool_name(o.stage));
        if (!worker) {
          finish_failure(job.fencing(), attempt_result::failed,
                         "script worker pool of stage " + o.stage + " is not running", true, "");
          return;
        }
        self->send(worker,
                   script_call{job.fencing(),
                               job.payload.dump(-1, ' ', false, json::error_handler_t::replace)});
      } else {
        worker = self->spawn<caf::detached + caf::monitored>(script_job, owner, job, spec);
      }
      e.executor = worker.address();
      arm_deadline(e, self->state.timeout);
      return;
    }
    case config::handler_kind::model: {
      auto prompt = config::render_template(stage.prompt, job.payload);
      if (!prompt.ok()) {
        std::string missing;
        for (const auto& p : prompt.unresolved)
          missing += (missing.empty() ? "{" : ", {") + p + "}";
        finish_failure(job.fencing(), attempt_result::failed,
                       "prompt has unresolved placeholder(s) " + missing + "; no call made", false,
                       stage.model);
        return;
      }
      auto endpoint = o.dir->get("model/" + stage.model);
      if (!endpoint) {
        finish_failure(job.fencing(), attempt_result::failed,
                       "model endpoint " + stage.model + " is not running", true, stage.model);
        return;
      }
      // The HTTP call gets a little longer than our deadline, so that our
      // timeout, not the socket's, decides; the thread still ends.
      auto call_timeout = self->state.timeout + config::millis{2000};
      self->send(endpoint, model_call{job.fencing(), o.stage, stage.system_prompt, prompt.text,
                                      call_timeout});
      e.executor = endpoint.address();
      // A call waiting out a model outage has no deadline; if the endpoint
      // dies meanwhile (its queue with it), this pump must hear of it.
      if (self->state.monitored_endpoint != endpoint.address()) {
        self->monitor(endpoint);
        self->state.monitored_endpoint = endpoint.address();
      }
      // Until the call leaves the endpoint's queue the deadline is loose;
      // execution_started re-arms it to the stage timeout.
      arm_deadline(e, self->state.timeout * 3 + runtime.lease_ttl);
      return;
    }
    }
  };

  *try_claim = [=] {
    auto& st = self->state;
    int free = stage.concurrency - static_cast<int>(st.running.size());
    // Results waiting to become durable bound the claims too: a database
    // that refuses writes stops claiming instead of piling results up.
    auto max_unwritten = 2 * static_cast<size_t>(std::max(stage.concurrency, runtime.claim_batch));
    if (st.draining || st.claiming || free <= 0 || st.unwritten() >= max_unwritten)
      return;
    auto store = o.dir->get("store");
    if (!store)
      return;
    st.claiming = true;
    int limit = std::min(free, runtime.claim_batch);
    self->request(store, store_timeout, claim_request{o.stage, o.node, limit, runtime.lease_ttl})
        .then(
            [=](std::vector<claimed_message>& jobs) {
              auto& st = self->state;
              st.claiming = false;
              if (st.claim_error_reported) {
                spdlog::info("stage {}: claiming works again", o.stage);
                st.claim_error_reported = false;
              }
              if (jobs.empty()) {
                (*check_drained)();
                return;
              }
              leases_taken taken;
              for (const auto& j : jobs)
                taken.leases.push_back(j.fencing());
              tell_keeper(taken);
              spdlog::debug("stage {}: claimed {} ({})", o.stage, jobs.size(),
                            ids_of(taken.leases));
              if (st.draining) {
                // A drain began while this claim was on its way: give these back
                // untouched; the work in flight keeps its grace period.
                if (auto store = o.dir->get("store"))
                  self->request(store, store_timeout, release_request{o.node, taken.leases})
                      .then(
                          [=](const std::vector<fence_result>&) {
                            tell_keeper(leases_ended{taken.leases});
                            (*check_drained)();
                          },
                          [=](caf::error&) { (*check_drained)(); });
                return;
              }
              for (const auto& j : jobs)
                dispatch(j);
              if (static_cast<int>(jobs.size()) == limit)
                (*try_claim)();
            },
            [=](caf::error& e) {
              auto& st = self->state;
              st.claiming = false;
              if (!st.claim_error_reported) {
                auto level = persistence::secondhand_level(o.outage);
                spdlog::log(level, "stage {}: claim failed ({}); retrying every {}", o.stage,
                            self->system().render(e),
                            config::format_duration(runtime.poll_interval));
                st.claim_error_reported = level >= spdlog::level::warn;
              }
              (*check_drained)();
            });
  };

  // -- lifecycle --------------------------------------------------------------

  self->join(ready_group(self->system(), o.stage));
  self->join(any_ready_group(self->system()));
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    if (dm.source == st.monitored_endpoint) {
      // The endpoint's queue died with it: every call still there or running
      // is lost. Its supervisor starts a new one for the next calls.
      st.monitored_endpoint = caf::actor_addr{};
      std::vector<lease> lost;
      for (auto& [id, e] : st.running)
        if (e.executor == dm.source)
          lost.push_back(e.job.fencing());
      for (const auto& fence : lost)
        finish_failure(fence, attempt_result::crashed,
                       "model endpoint " + stage.model +
                           " stopped: " + self->system().render(dm.reason),
                       true, stage.model);
      return;
    }
    for (auto& [id, e] : st.running) {
      if (e.executor != dm.source)
        continue;
      if (!dm.reason || dm.reason == caf::exit_reason::normal)
        return; // the result arrived before the exit, as messages from one actor do
      auto now = self->clock().now(); // virtual in the simulation
      st.crashes.push_back(now);
      while (!st.crashes.empty() && now - st.crashes.front() > o.crash_period)
        st.crashes.pop_front();
      auto reason = self->system().render(dm.reason);
      finish_failure(e.job.fencing(), attempt_result::crashed, "worker crashed: " + reason, true,
                     "");
      if (static_cast<int>(st.crashes.size()) > o.crash_intensity) {
        spdlog::error("stage {}: {} worker crashes within {}; the pump gives up", o.stage,
                      st.crashes.size(), config::format_duration(o.crash_period));
        self->quit(caf::make_error(caf::sec::runtime_error,
                                   "stage " + o.stage + ": workers crashed " +
                                       std::to_string(st.crashes.size()) + " times within " +
                                       config::format_duration(o.crash_period)));
      }
      return;
    }
  });
  self->send(self, poll_tick_atom::value);

  return {
      [=](work_available& w) {
        if (w.stage.empty() || w.stage == o.stage)
          (*try_claim)();
      },
      [=](poll_tick_atom) {
        self->delayed_send(self, runtime.poll_interval, poll_tick_atom::value);
        (*try_claim)();
      },
      [=](flush_retry_atom) { (*flush)(); },
      // The stage supervisor's liveness probe: any reply shows the mailbox is
      // processed (void: an empty one at once), so a hung pump gets restarted.
      [](probe_atom) {},
      [=](execution_started& msg) {
        auto* e = find(msg.fence);
        if (!e)
          return;
        e->pid = msg.pid;
        if (stage.handler == config::handler_kind::model)
          arm_deadline(*e, self->state.timeout);
      },
      [=](model_waiting& msg) {
        // Waiting out an outage is not running: no deadline until the call
        // leaves the endpoint's queue again (execution_started re-arms it).
        if (auto* e = find(msg.fence)) {
          e->generation = ++self->state.generations;
          spdlog::debug("{}: waiting for model {}: {}", log_id(e->job), msg.model, msg.reason);
        }
      },
      [=](execution_succeeded& msg) {
        finish_success(msg.fence, msg.outcome, msg.output, msg.model);
      },
      [=](model_answer& msg) {
        auto checked = check_reply(stage, msg.content);
        if (checked.ok)
          finish_success(msg.fence, checked.result.outcome, checked.result.output, msg.model);
        else
          finish_failure(msg.fence, attempt_result::failed,
                         "model " + msg.model + " reply rejected: " + checked.error, true,
                         msg.model);
      },
      [=](execution_failed& msg) {
        finish_failure(msg.fence, attempt_result::failed, msg.error, msg.retryable, msg.model);
      },
      [=](execution_timeout& msg) {
        auto* e = find(msg.fence);
        if (!e || e->generation != msg.generation)
          return; // the result won the race, or the deadline was re-armed
        stop_execution(*e);
        finish_failure(msg.fence, attempt_result::timeout,
                       "timed out after " + config::format_duration(self->state.timeout) +
                           " (stage timeout)",
                       true, stage.handler == config::handler_kind::model ? stage.model : "");
      },
      [=](lease_lost& msg) {
        auto* e = find(msg.fence);
        if (!e)
          return;
        spdlog::warn("{}: lease lost (rescued elsewhere); stopping it, writing nothing",
                     log_id(e->job));
        stop_execution(*e);
        self->state.running.erase(msg.fence.message_id);
        (*check_drained)();
        (*try_claim)();
      },
      [=](drain_request& req) {
        auto& st = self->state;
        st.draining = true;
        st.drain_promise = self->make_response_promise();
        spdlog::info("stage {}: draining: {} in flight, grace {}", o.stage, st.running.size(),
                     config::format_duration(req.grace));
        self->delayed_send(self, req.grace, drain_deadline_atom::value);
        (*check_drained)();
        return st.drain_promise;
      },
      [=](drain_deadline_atom) {
        auto& st = self->state;
        if (st.running.empty()) {
          (*check_drained)();
          return;
        }
        std::vector<lease> leases;
        for (auto& [id, e] : st.running) {
          stop_execution(e);
          leases.push_back(e.job.fencing());
        }
        st.running.clear();
        auto store = o.dir->get("store");
        auto report = [=](int64_t released) {
          auto& st = self->state;
          if (st.drain_promise.pending())
            st.drain_promise.deliver(drain_report{o.stage, st.drain_finished, released});
        };
        if (!store) {
          report(0);
          return;
        }
        self->request(store, store_timeout, release_request{o.node, leases})
            .then(
                [=](const std::vector<fence_result>& results) {
                  int64_t released =
                      std::count(results.begin(), results.end(), fence_result::applied);
                  spdlog::info(
                      "stage {}: released {} message(s) at shutdown, attempts not consumed: {}",
                      o.stage, released, ids_of(leases));
                  tell_keeper(leases_ended{leases});
                  report(released);
                },
                [=](caf::error& e) {
                  spdlog::warn("stage {}: releasing {} failed ({}); they return when their leases "
                               "expire",
                               o.stage, ids_of(leases), self->system().render(e));
                  report(0);
                });
      },
  };
}

} // namespace

caf::actor spawn_stage_pump(caf::actor_system& sys, stage_pump_options options) {
  return sys.spawn(stage_pump, std::move(options));
}

} // namespace turing::actors
