// The stage pump: one class, its paths (claim, dispatch, results, flush,
// drain, crashes) each a member function small enough to read at once.
#include "actors/stage_pump.hpp"

#include "actors/deadline_queue.hpp"
#include "actors/group_writer.hpp"
#include "actors/job_runner.hpp"
#include "actors/latency_window.hpp"
#include "actors/model_client.hpp"
#include "actors/ready_listener.hpp"
#include "actors/retry_backoff.hpp"
#include "actors/routing.hpp"
#include "actors/script_runner.hpp"
#include "actors/script_worker_pool.hpp"
#include "config/byte_size.hpp"
#include "config/duration.hpp"
#include "config/prompt_template.hpp"
#include "messages/registry.hpp"
#include "messages/supervision.hpp"
#include "metrics/node_metrics.hpp"
#include "persistence/next_payload.hpp"
#include "persistence/payload_size.hpp"
#include "persistence/storable_text.hpp"

#include <caf/all.hpp>
#include <deque>
#include <map>
#include <random>
#include <set>
#include <spdlog/spdlog.h>
#include <utility>

namespace turing::actors {

namespace {

using namespace persistence;
using poll_tick_atom = caf::atom_constant<caf::atom("polltick")>;
using drain_deadline_atom = caf::atom_constant<caf::atom("draindl")>;
using deadline_tick_atom = caf::atom_constant<caf::atom("deadltick")>;
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

/// Results of one kind (completions or failures) on their way to the store:
/// an independent group commit, so one kind failing never starves the other.
template <class Result> struct result_queue {
  std::vector<Result> pending; ///< waiting for the next flush
  size_t in_flight = 0;        ///< being written; their leases end once durable
  int batches = 0;             ///< batches being written
};

class stage_pump final : public caf::event_based_actor {
public:
  stage_pump(caf::actor_config& cfg, stage_pump_options options)
      : caf::event_based_actor(cfg), o_(std::move(options)), pipeline_(*o_.pipeline),
        runtime_(pipeline_.runtime), stage_(pipeline_.find_stage(o_.stage)),
        metrics_(metrics::process_metrics().stage(o_.stage)) {
    if (stage_)
      timeout_ = pipeline_.timeout_of(*stage_);
    if (o_.random_seed != 0)
      rng_.seed(o_.random_seed);
  }

  const char* name() const override { return "stage_pump"; }

protected:
  caf::behavior make_behavior() override;

  /// The directory holds this actor's handle and this actor holds the
  /// directory: let go of it (and of what the simulation lent us) once
  /// terminated, or neither is ever freed (LeakSanitizer found the cycle).
  void on_exit() override {
    if (room_)
      room_->withdraw(); // what a writer reserved meanwhile goes to our successor
    o_.dir.reset();
    o_.simulated_scripts = nullptr;
    o_.outage.reset();
    running_.clear();
    deadlines_.clear();
    drain_promise_ = caf::response_promise{}; // it holds the drainer, which holds us
    completions_.pending.clear();
    failures_.pending.clear();
  }

private:
  struct execution {
    /// Shared with the job actor that runs it: a payload of megabytes is not
    /// copied to start an execution.
    std::shared_ptr<const claimed_message> job;
    caf::actor_addr executor;
    std::optional<deadline_queue<caf::actor_clock::time_point>::key> deadline;
    /// When its deadline was last armed: the start of its latency.
    caf::actor_clock::time_point running_since{};
    config::millis armed_for{0};
    int64_t pid = 0;
  };

  // -- claim path -------------------------------------------------------------
  void try_claim();
  void on_claimed(std::vector<claimed_message>& jobs, int limit);
  void on_claim_failed(const caf::error& e);
  void take_claimed(std::vector<claimed_message>& jobs);
  void on_handoffs_claimed(handoffs_claimed& msg);
  void offer_room();
  void withdraw_room();

  // -- dispatch path ----------------------------------------------------------
  void dispatch(claimed_message&& job);
  void start_builtin(execution& e);
  void start_script(execution& e);
  void start_model(execution& e);
  void arm_deadline(execution& e, config::millis after);
  void disarm_deadline(execution& e);
  void schedule_deadline_tick();
  void on_deadline_tick(uint64_t tick);
  void forget(int64_t message_id);
  void stop_execution(const execution& e);

  // -- results ----------------------------------------------------------------
  void finish_success(const lease& fence, const std::string& outcome, const json& output,
                      const std::string& model, int64_t tokens = -1);
  void finish_failure(const lease& fence, attempt_result kind, const std::string& error,
                      bool retryable, const std::string& model);
  template <class Result> void record_late(Result late, const char* what);
  std::optional<std::string> oversized_payload(const json& input, const json& output,
                                               const std::vector<delivery>& ds) const;
  std::optional<std::string> oversized_join(const claimed_message& job) const;
  void ended(const lease& fence);

  // -- adaptive timeout -------------------------------------------------------
  void seed_latencies();
  void record_latency(const execution& e);

  // -- flush path -------------------------------------------------------------
  void flush();
  template <class Result> void write_batch(result_queue<Result>& queue, const char* what);
  template <class Result>
  void on_written(result_queue<Result>& queue, const std::vector<Result>& batch,
                  const std::vector<fence_result>& results, const char* what);
  template <class Result> void count_written(const Result& r, bool stale);
  template <class Result>
  void on_write_failed(result_queue<Result>& queue, std::vector<Result> batch, const caf::error& e,
                       const char* what);

  // -- drain path -------------------------------------------------------------
  caf::response_promise on_drain(const drain_request& req);
  void on_drain_deadline();
  void check_drained();

  // -- crashes ----------------------------------------------------------------
  void on_down(const caf::down_msg& dm);
  void on_worker_crash(const execution& e, const caf::error& reason);

  // -- helpers ----------------------------------------------------------------
  execution* find(const lease& fence);
  template <class Message> void tell_keeper(Message msg);
  std::string log_id(const claimed_message& m) const;
  size_t unwritten() const {
    return completions_.pending.size() + failures_.pending.size() + completions_.in_flight +
           failures_.in_flight;
  }
  /// Results waiting to become durable bound the claims and the offered
  /// places: a database that refuses writes stops new work instead of
  /// piling results up.
  size_t unwritten_limit() const {
    return 2 * static_cast<size_t>(std::max(stage_->concurrency, runtime_.claim_batch));
  }

  stage_pump_options o_; ///< its dir and simulation hooks are released in on_exit()
  const config::pipeline_config& pipeline_;
  const config::runtime_config& runtime_;
  const config::stage_config* stage_;
  /// Looked up once: each event is then one relaxed atomic add.
  metrics::stage_metrics metrics_;
  /// Messages whose failure being written is their last (dead once applied).
  std::set<int64_t> dying_;
  config::millis timeout_{0};
  /// timeout = "auto": the stage's recent latencies (seeded from the
  /// attempts table at start) give timeout_, within its floor and ceiling.
  latency_window latencies_;
  std::map<int64_t, execution> running_; ///< by message id
  result_queue<completion> completions_;
  result_queue<failure> failures_;
  bool claiming_ = false;
  bool claim_again_ = false; ///< woken while claiming: claim again when it returns
  /// Work may wait that no claim could take yet (a full batch came back, or
  /// a wake found no free place): a written result claims again. Without
  /// it, a written result claims nothing: new work comes with a wake.
  bool claim_wanted_ = false;
  bool write_error_reported_ = false;
  bool claim_error_reported_ = false;
  bool draining_ = false;
  caf::response_promise drain_promise_;
  int64_t drain_finished_ = 0;
  std::deque<std::chrono::steady_clock::time_point> crashes_;
  deadline_queue<caf::actor_clock::time_point> deadlines_;
  uint64_t ticks_ = 0;                                   ///< the last tick scheduled
  std::optional<caf::actor_clock::time_point> tick_due_; ///< when tick ticks_ comes
  std::mt19937_64 rng_{std::random_device{}()};
  caf::actor_addr monitored_endpoint_; ///< the model endpoint of a model stage
  std::shared_ptr<handoff_room> room_; ///< this incarnation's (null: no direct handoffs)
  /// Places on offer in room_ or reserved from it by a batch not yet
  /// answered: not free for a claim.
  int offered_ = 0;
  int claim_limit_ = 0;    ///< what the claim in flight may return
  bool caught_up_ = false; ///< the last claim found fewer ready messages than it asked for
};

// -- helpers --------------------------------------------------------------------

stage_pump::execution* stage_pump::find(const lease& fence) {
  auto it = running_.find(fence.message_id);
  if (it == running_.end() || it->second.job->epoch != fence.epoch)
    return nullptr;
  return &it->second;
}

template <class Message> void stage_pump::tell_keeper(Message msg) {
  if (auto keeper = o_.dir->get("lease_keeper"))
    send(keeper, std::move(msg));
}

std::string stage_pump::log_id(const claimed_message& m) const {
  return "stage " + o_.stage + " message " + std::to_string(m.id) + " (item " +
         std::to_string(m.item_id) + ", run " + std::to_string(m.run_id) + ", attempt " +
         std::to_string(m.counted_attempt()) + "/" + std::to_string(m.max_attempts) +
         (m.lost > 0 ? " after " + std::to_string(m.lost) + " lost" : std::string{}) + ", epoch " +
         std::to_string(m.epoch) + ")";
}

// -- claim path -----------------------------------------------------------------

void stage_pump::try_claim() {
  int free = stage_->concurrency - static_cast<int>(running_.size()) - offered_;
  if (free <= 0 && !claiming_) {
    withdraw_room(); // ready rows wait in the table: they go first
    free = stage_->concurrency - static_cast<int>(running_.size()) - offered_;
  }
  if (claiming_) {
    // The claim in flight may have taken its snapshot before the commit this
    // wake tells of: claim once more when it returns, or that message waits
    // for the poll timer.
    claim_again_ = true;
    return;
  }
  if (draining_)
    return;
  if (free <= 0 || unwritten() >= unwritten_limit()) {
    claim_wanted_ = true; // claimed when results are written and free a place
    return;
  }
  auto store = o_.dir->get("store");
  if (!store)
    return;
  claiming_ = true;
  claim_again_ = false;
  claim_wanted_ = false;
  int limit = std::min(free, runtime_.claim_batch);
  claim_limit_ = limit;
  request(store, store_timeout,
          claim_request{o_.stage, o_.node, limit, runtime_.lease_ttl,
                        static_cast<int64_t>(runtime_.claim_bytes)})
      .then([=](std::vector<claimed_message>& jobs) { on_claimed(jobs, limit); },
            [=](caf::error& e) { on_claim_failed(e); });
}

void stage_pump::on_claimed(std::vector<claimed_message>& jobs, int limit) {
  claiming_ = false;
  claim_limit_ = 0;
  caught_up_ = static_cast<int>(jobs.size()) < limit;
  bool woken_meanwhile = std::exchange(claim_again_, false);
  if (claim_error_reported_) {
    spdlog::info("stage {}: claiming works again", o_.stage);
    claim_error_reported_ = false;
  }
  if (jobs.empty()) {
    check_drained();
    if (woken_meanwhile)
      try_claim();
    else
      offer_room();
    return;
  }
  take_claimed(jobs);
  if (!caught_up_ || woken_meanwhile)
    try_claim();
  offer_room();
}

/// Claimed messages, by a claim or handed off already claimed: the lease
/// keeper hears of them, then they run (or go back, if a drain began).
void stage_pump::take_claimed(std::vector<claimed_message>& jobs) {
  metrics_.claimed->inc(jobs.size());
  leases_taken taken;
  for (const auto& j : jobs)
    taken.leases.push_back(j.fencing());
  tell_keeper(taken);
  spdlog::debug("stage {}: claimed {} ({})", o_.stage, jobs.size(), ids_of(taken.leases));
  if (draining_) {
    // A drain began while this claim was on its way: give these back
    // untouched; the work in flight keeps its grace period.
    if (auto store = o_.dir->get("store"))
      request(store, store_timeout, release_request{o_.node, taken.leases})
          .then(
              [=](const std::vector<fence_result>&) {
                tell_keeper(leases_ended{taken.leases});
                check_drained();
              },
              [=](caf::error&) { check_drained(); });
    return;
  }
  for (auto& j : jobs)
    dispatch(std::move(j)); // the reply is ours alone: moved, not copied
}

void stage_pump::on_handoffs_claimed(handoffs_claimed& msg) {
  if (room_ && msg.room == room_->incarnation()) {
    offered_ -= msg.reserved;
  } else if (!msg.jobs.empty()) {
    // Reserved from an incarnation before this one: run what fits, give
    // back the rest (attempt not consumed).
    auto fits = static_cast<size_t>(
        std::max(0, stage_->concurrency - static_cast<int>(running_.size()) - offered_));
    if (msg.jobs.size() > fits && !draining_) {
      std::vector<lease> back;
      for (size_t i = fits; i < msg.jobs.size(); ++i)
        back.push_back(msg.jobs[i].fencing());
      msg.jobs.resize(fits);
      if (auto store = o_.dir->get("store"))
        request(store, store_timeout, release_request{o_.node, back})
            .then([](const std::vector<fence_result>&) {},
                  [=](caf::error& e) {
                    spdlog::warn("stage {}: releasing handed-off {} failed ({}); they return "
                                 "when their leases expire",
                                 o_.stage, ids_of(back), system().render(e));
                  });
    }
  }
  if (!msg.jobs.empty()) {
    spdlog::debug("stage {}: {} handed off already claimed", o_.stage, msg.jobs.size());
    take_claimed(msg.jobs);
  }
  offer_room();
  check_drained();
}

/// Offers the places no claim needs: all of them once a claim found fewer
/// ready messages than it could take; while ready messages wait in the
/// table, those beyond a claim's worth (at most half the concurrency), so
/// the table's queue is still served. Nothing while a claim waits for a
/// place, or results pile up unwritten.
void stage_pump::offer_room() {
  if (!room_ || draining_ || claim_wanted_)
    return;
  if (unwritten() >= unwritten_limit())
    return;
  int for_claims = claiming_
                       ? claim_limit_
                       : (caught_up_ ? 0 : std::min(runtime_.claim_batch, stage_->concurrency / 2));
  int free = stage_->concurrency - static_cast<int>(running_.size()) - offered_ - for_claims;
  if (free <= 0)
    return;
  room_->offer(free);
  offered_ += free;
}

void stage_pump::withdraw_room() {
  if (room_)
    offered_ -= room_->withdraw();
}

void stage_pump::on_claim_failed(const caf::error& e) {
  claiming_ = false;
  claim_limit_ = 0;
  claim_again_ = false; // the poll timer retries: no tight loop against a failing store
  if (!claim_error_reported_) {
    auto level = persistence::secondhand_level(o_.outage);
    spdlog::log(level, "stage {}: claim failed ({}); retrying every {}", o_.stage,
                system().render(e), config::format_duration(runtime_.poll_interval));
    claim_error_reported_ = level >= spdlog::level::warn;
  }
  check_drained();
}

// -- dispatch path --------------------------------------------------------------

void stage_pump::dispatch(claimed_message&& job) {
  if (auto old = running_.find(job.id); old != running_.end()) {
    // Claimed again while this pump still runs it: its lease was rescued
    // (a database outage longer than the lease, a clock jump). The old
    // execution is stopped, never left running beside the new one, so the
    // stage's concurrency holds; its result, if any, is fenced out.
    spdlog::warn("{}: claimed again at epoch {} while epoch {} still ran here; stopping the "
                 "old execution",
                 log_id(*old->second.job), job.epoch, old->second.job->epoch);
    stop_execution(old->second);
    tell_keeper(leases_ended{{old->second.job->fencing()}});
    forget(job.id);
  }
  auto& e = running_[job.id];
  e.job = std::make_shared<const claimed_message>(std::move(job));
  if (auto why = oversized_join(*e.job)) {
    finish_failure(e.job->fencing(), attempt_result::failed, *why, false, "");
    return;
  }
  switch (stage_->handler) {
  case config::handler_kind::builtin:
    return start_builtin(e);
  case config::handler_kind::script:
    return start_script(e);
  case config::handler_kind::model:
    return start_model(e);
  }
}

void stage_pump::start_builtin(execution& e) {
  const auto* fn = o_.builtins->find(stage_->function);
  if (!fn) {
    finish_failure(e.job->fencing(), attempt_result::failed,
                   "builtin " + stage_->function + " is not registered", false, "");
    return;
  }
  // On the scheduler's threads, never a thread per job: a builtin is a
  // quick C++ function by contract (slow or blocking work is a script).
  auto owner = caf::actor_cast<caf::actor>(this);
  auto worker = spawn<caf::monitored>(builtin_job, owner, e.job, stage_->function, *fn);
  e.executor = worker.address();
  arm_deadline(e, timeout_);
}

void stage_pump::start_script(execution& e) {
  script_spec spec{stage_->command, stage_->working_dir, stage_->env, runtime_.max_payload};
  auto owner = caf::actor_cast<caf::actor>(this);
  caf::actor worker;
  if (o_.simulated_scripts) {
    worker = o_.simulated_scripts(this, owner, *e.job, spec);
    monitor(worker);
  } else if (stage_->mode == config::script_mode::worker) {
    // A long-lived child of the stage's pool (spawned beside this pump) runs it.
    worker = o_.dir->get(script_pool_name(o_.stage));
    if (!worker) {
      finish_failure(e.job->fencing(), attempt_result::failed,
                     "script worker pool of stage " + o_.stage + " is not running", true, "");
      return;
    }
    // The payload as it was claimed, shared: the child's I/O thread serializes it into the pipe.
    send(worker,
         script_call{e.job->fencing(), std::shared_ptr<const json>(e.job, &e.job->payload)});
  } else {
    worker = spawn<caf::detached + caf::monitored>(script_job, owner, e.job, spec);
  }
  e.executor = worker.address();
  arm_deadline(e, timeout_);
}

void stage_pump::start_model(execution& e) {
  auto prompt = config::render_template(stage_->prompt, e.job->payload);
  if (!prompt.ok()) {
    std::string missing;
    for (const auto& p : prompt.unresolved)
      missing += (missing.empty() ? "{" : ", {") + p + "}";
    finish_failure(e.job->fencing(), attempt_result::failed,
                   "prompt has unresolved placeholder(s) " + missing + "; no call made", false,
                   stage_->model);
    return;
  }
  if (auto size = prompt.text.size() + stage_->system_prompt.size(); size > runtime_.max_prompt) {
    finish_failure(e.job->fencing(), attempt_result::failed,
                   "prompt is " + config::format_byte_size(size) + " (" + std::to_string(size) +
                       " bytes with the system prompt), over runtime.max_prompt " +
                       config::format_byte_size(runtime_.max_prompt) + "; no call made",
                   false, stage_->model);
    return;
  }
  auto endpoint = o_.dir->get("model/" + stage_->model);
  if (!endpoint) {
    finish_failure(e.job->fencing(), attempt_result::failed,
                   "model endpoint " + stage_->model + " is not running", true, stage_->model);
    return;
  }
  // The HTTP call gets a little longer than our deadline, so that our
  // timeout, not the socket's, decides; the thread still ends.
  auto call_timeout =
      (stage_->auto_timeout ? stage_->auto_timeout->ceiling : timeout_) + config::millis{2000};
  send(endpoint,
       model_call{e.job->fencing(), o_.stage, stage_->system_prompt, prompt.text, call_timeout});
  e.executor = endpoint.address();
  // A call waiting out a model outage has no deadline; if the endpoint
  // dies meanwhile (its queue with it), this pump must hear of it.
  if (monitored_endpoint_ != endpoint.address()) {
    monitor(endpoint);
    monitored_endpoint_ = endpoint.address();
  }
  // Until the call leaves the endpoint's queue the deadline is loose;
  // execution_started re-arms it to the stage timeout.
  arm_deadline(e, timeout_ * 3 + runtime_.lease_ttl);
}

void stage_pump::arm_deadline(execution& e, config::millis after) {
  disarm_deadline(e);
  e.running_since = clock().now();
  e.armed_for = after;
  e.deadline = deadlines_.arm(e.job->id, clock().now() + after);
  schedule_deadline_tick();
}

void stage_pump::disarm_deadline(execution& e) {
  if (e.deadline)
    deadlines_.disarm(*e.deadline);
  e.deadline.reset();
}

/// One delayed message for the earliest deadline; a later deadline waits
/// for the tick before it. Deadlines come in time order when the timeout is
/// fixed, so at most one tick is pending then.
void stage_pump::schedule_deadline_tick() {
  auto earliest = deadlines_.earliest();
  if (!earliest || (tick_due_ && *tick_due_ <= *earliest))
    return;
  tick_due_ = *earliest;
  auto wait = std::max(caf::actor_clock::duration_type::zero(), *earliest - clock().now());
  delayed_send(this, wait, deadline_tick_atom::value, ++ticks_);
}

void stage_pump::on_deadline_tick(uint64_t tick) {
  if (tick == ticks_)
    tick_due_.reset(); // an older tick (superseded by an earlier deadline) changes nothing
  for (auto id : deadlines_.expire(clock().now())) {
    auto it = running_.find(id);
    if (it == running_.end())
      continue;
    auto& e = it->second;
    e.deadline.reset();
    stop_execution(e);
    finish_failure(e.job->fencing(), attempt_result::timeout,
                   "timed out after " + config::format_duration(e.armed_for) +
                       (stage_->auto_timeout ? " (adaptive stage timeout)" : " (stage timeout)"),
                   true, stage_->handler == config::handler_kind::model ? stage_->model : "");
  }
  schedule_deadline_tick();
}

/// Drops an execution and its deadline.
void stage_pump::forget(int64_t message_id) {
  auto it = running_.find(message_id);
  if (it == running_.end())
    return;
  disarm_deadline(it->second);
  running_.erase(it);
}

// Stops an execution that no longer matters: kills a script's process
// group, frees a model call's slot. A builtin's thread cannot be killed
// safely; it finishes and its result is stale.
void stage_pump::stop_execution(const execution& e) {
  if (e.pid > 0)
    kill_process_group(static_cast<pid_t>(e.pid));
  if (stage_->handler == config::handler_kind::model)
    if (auto endpoint = o_.dir->get("model/" + stage_->model))
      send(endpoint, execution_abandoned{e.job->fencing()});
  // A worker pool then reports nothing more for it and replaces the killed child.
  if (stage_->handler == config::handler_kind::script &&
      stage_->mode == config::script_mode::worker)
    if (auto pool = o_.dir->get(script_pool_name(o_.stage)))
      send(pool, execution_abandoned{e.job->fencing()});
}

// -- results --------------------------------------------------------------------

void stage_pump::finish_success(const lease& fence, const std::string& outcome, const json& output,
                                const std::string& model, int64_t tokens) {
  auto* e = find(fence);
  completion c;
  c.fence = fence;
  c.node = o_.node;
  c.outcome = outcome;
  c.output = output;
  c.model = model;
  c.tokens = tokens;
  if (!e) {
    c.started_at = o_.wall_clock();
    record_late(std::move(c), "result");
    return;
  }
  if (auto why = persistence::unstorable_json(output)) {
    // Caught here rather than by the store, so that the failure follows the
    // stage's retry policy: a model may answer better next time.
    finish_failure(fence, attempt_result::failed, "output cannot be stored: " + *why,
                   stage_->handler == config::handler_kind::model, model);
    return;
  }
  // The store derives each delivery's payload (the claimed payload with this
  // output laid over it): only its size is checked here, without a copy.
  auto routed = route(pipeline_, *stage_, outcome, json());
  if (!routed.ok) {
    finish_failure(fence, attempt_result::failed, routed.error, false, model);
    return;
  }
  if (auto why = oversized_payload(e->job->payload, output, routed.deliveries)) {
    finish_failure(fence, attempt_result::failed, *why, false, model);
    return;
  }
  c.derived_payloads = true;
  metrics_.attempt_seconds->observe(
      std::chrono::duration<double>(clock().now() - e->running_since).count());
  record_latency(*e);
  c.attempt = e->job->attempt;
  c.started_at = e->job->started_at;
  c.deliveries = std::move(routed.deliveries);
  spdlog::debug("{} completed: {}", log_id(*e->job), outcome);
  completions_.pending.push_back(std::move(c));
  ended(fence);
}

void stage_pump::finish_failure(const lease& fence, attempt_result kind, const std::string& error,
                                bool retryable, const std::string& model) {
  auto* e = find(fence);
  failure f;
  f.fence = fence;
  f.node = o_.node;
  f.result = kind;
  f.error = error;
  f.model = model;
  f.retryable = retryable;
  if (!e) {
    f.started_at = o_.wall_clock();
    record_late(std::move(f), to_string(kind));
    return;
  }
  f.attempt = e->job->attempt;
  f.started_at = e->job->started_at;
  bool last = !retryable || e->job->counted_attempt() >= e->job->max_attempts;
  f.retry_after =
      last ? config::millis{0} : retry_backoff(stage_->retry, e->job->counted_attempt(), rng_);
  if (last)
    dying_.insert(fence.message_id); // counted dead once the store applied it
  if (last)
    spdlog::error("{} {}: {}; dead-lettered{}", log_id(*e->job), to_string(kind), error,
                  retryable ? " after its last attempt" : " (not retryable)");
  else
    spdlog::warn("{} {}: {}; retry in {}", log_id(*e->job), to_string(kind), error,
                 config::format_duration(f.retry_after));
  failures_.pending.push_back(std::move(f));
  ended(fence);
}

/// Why the payload this output hands on is over runtime.max_payload, or
/// nothing. Not retried: the same input makes the same output again, as a rule.
std::optional<std::string> stage_pump::oversized_payload(const json& input, const json& output,
                                                         const std::vector<delivery>& ds) const {
  if (ds.empty())
    return std::nullopt;
  auto size = next_payload_text_size(input, output);
  if (size <= runtime_.max_payload)
    return std::nullopt;
  return "output makes the payload for " + ds.front().target + " " +
         config::format_byte_size(size) + " (" + std::to_string(size) +
         " bytes), over runtime.max_payload " + config::format_byte_size(runtime_.max_payload);
}

/// Why a join's payload (every input by stage) is over runtime.max_payload,
/// or nothing. Each input was within the limit when it was handed on; their
/// sum need not be, and only here is the payload whole. Not retried.
std::optional<std::string> stage_pump::oversized_join(const claimed_message& job) const {
  if (stage_->join.empty())
    return std::nullopt;
  auto size = persistence::json_text_size(job.payload);
  if (size <= runtime_.max_payload)
    return std::nullopt;
  std::string inputs;
  for (const auto& up : stage_->join)
    inputs += (inputs.empty() ? "" : ", ") + up;
  return "the join of " + inputs + " makes a payload of " + config::format_byte_size(size) + " (" +
         std::to_string(size) + " bytes), over runtime.max_payload " +
         config::format_byte_size(runtime_.max_payload);
}

/// The execution is over and its result queued: free its slot, write soon.
void stage_pump::ended(const lease& fence) {
  forget(fence.message_id);
  if (draining_)
    ++drain_finished_;
  flush();
}

// A result for an execution this pump no longer owns: the store records it
// as a late result (its epoch fails the fence) and applies nothing.
template <class Result> void stage_pump::record_late(Result late, const char* what) {
  auto fence = late.fence;
  metrics_.late_results->inc();
  spdlog::warn("stage {}: late {} for message {} epoch {}: no longer owned here; recorded, not "
               "applied",
               o_.stage, what, fence.message_id, fence.epoch);
  if (auto store = o_.dir->get("store"))
    request(store, store_timeout, std::vector<Result>{std::move(late)})
        .then([](const std::vector<fence_result>&) {},
              [=](caf::error& e) {
                spdlog::warn("stage {}: could not record late result of message {}: {}", o_.stage,
                             fence.message_id, system().render(e));
              });
}

// -- adaptive timeout -------------------------------------------------------------

// The window starts from the attempts table, so a restarted node keeps its
// deadlines; until the reply comes the midpoint applies.
void stage_pump::seed_latencies() {
  if (!stage_->auto_timeout)
    return;
  auto store = o_.dir->get("store");
  if (!store)
    return;
  request(store, store_timeout,
          latency_request{o_.stage, static_cast<int>(latency_window_size), latency_history_window})
      .then(
          [=](const latency_history& h) {
            for (auto it = h.ms.rbegin(); it != h.ms.rend(); ++it) // oldest first
              latencies_.add(config::millis{*it});
            timeout_ = adaptive_deadline(*stage_->auto_timeout, latencies_);
            spdlog::info("stage {}: adaptive timeout {} from {} recent attempt(s) (floor {}, "
                         "ceiling {})",
                         o_.stage, config::format_duration(timeout_), latencies_.size(),
                         config::format_duration(stage_->auto_timeout->floor),
                         config::format_duration(stage_->auto_timeout->ceiling));
          },
          [=](caf::error& e) {
            spdlog::warn("stage {}: could not read recent latencies ({}); the adaptive timeout "
                         "starts from its midpoint {}",
                         o_.stage, system().render(e), config::format_duration(timeout_));
          });
}

// Every completed execution moves the adaptive deadline; a change of a
// quarter or more is logged.
void stage_pump::record_latency(const execution& e) {
  if (!stage_->auto_timeout)
    return;
  latencies_.add(std::chrono::duration_cast<config::millis>(clock().now() - e.running_since));
  auto next = adaptive_deadline(*stage_->auto_timeout, latencies_);
  if (next == timeout_)
    return;
  if (next * 4 >= timeout_ * 5 || next * 4 <= timeout_ * 3)
    spdlog::info("stage {}: adaptive timeout {} -> {} (p99 {} of {} attempts × {})", o_.stage,
                 config::format_duration(timeout_), config::format_duration(next),
                 config::format_duration(*latencies_.quantile(0.99)), latencies_.size(),
                 stage_->auto_timeout->factor);
  timeout_ = next;
}

// -- flush path -----------------------------------------------------------------

void stage_pump::flush() {
  write_batch(completions_, "completion");
  write_batch(failures_, "failure");
  check_drained();
}

// A batch goes at once when none is in flight; while one is written the
// next accumulates, and a second goes beside it only once the queue is deep
// (PostgreSQL then runs both).
template <class Result>
void stage_pump::write_batch(result_queue<Result>& queue, const char* what) {
  constexpr int max_batches = 2;
  constexpr size_t deep_queue = 64;
  if (queue.pending.empty() || queue.batches >= max_batches ||
      (queue.batches > 0 && queue.pending.size() < deep_queue))
    return;
  // The node's group writer merges this batch with the other pumps' ones.
  auto writer = o_.dir->get(group_writer_name);
  if (!writer)
    writer = o_.dir->get("store");
  if (!writer) {
    delayed_send(this, runtime_.poll_interval, flush_retry_atom::value);
    return;
  }
  auto batch = std::move(queue.pending);
  queue.pending.clear();
  queue.in_flight += batch.size();
  ++queue.batches;
  request(writer, store_timeout, batch)
      .then(
          [=, &queue](const std::vector<fence_result>& results) {
            on_written(queue, batch, results, what);
          },
          [=, &queue](caf::error& e) { on_write_failed(queue, batch, e, what); });
}

template <class Result>
void stage_pump::on_written(result_queue<Result>& queue, const std::vector<Result>& batch,
                            const std::vector<fence_result>& results, const char* what) {
  queue.in_flight -= batch.size();
  --queue.batches;
  if (write_error_reported_) {
    spdlog::info("stage {}: writing results works again", o_.stage);
    write_error_reported_ = false;
  }
  std::vector<lease> written;
  for (size_t i = 0; i < batch.size(); ++i) {
    written.push_back(batch[i].fence);
    bool stale = i < results.size() && results[i] == fence_result::stale;
    count_written(batch[i], stale);
    if (stale)
      spdlog::warn("stage {}: {} of message {} epoch {} was fenced out (its lease "
                   "was lost meanwhile); recorded as a late result",
                   o_.stage, what, batch[i].fence.message_id, batch[i].fence.epoch);
  }
  tell_keeper(leases_ended{std::move(written)});
  flush();
  if (claim_wanted_)
    try_claim();
  else
    offer_room();
}

template <class Result>
void stage_pump::on_write_failed(result_queue<Result>& queue, std::vector<Result> batch,
                                 const caf::error& e, const char* what) {
  queue.in_flight -= batch.size();
  --queue.batches;
  // Kept, in order, before what arrived meanwhile; the store fences every
  // entry by (id, epoch), so a retry that meets a re-claimed message
  // applies only the current epoch's result.
  queue.pending.insert(queue.pending.begin(), batch.begin(), batch.end());
  // While the outage log tells a database outage, this is part of it (debug,
  // and no "works again" line); otherwise one warning until writes work.
  if (!write_error_reported_) {
    auto level = persistence::secondhand_level(o_.outage);
    spdlog::log(level, "stage {}: writing {} {} failed ({}); retrying every {}", o_.stage,
                batch.size(), what, system().render(e),
                config::format_duration(runtime_.poll_interval));
    write_error_reported_ = level >= spdlog::level::warn;
  }
  delayed_send(this, runtime_.poll_interval, flush_retry_atom::value);
}

// What the store made of one written result, for the metrics: applied
// (completed, failed, dead) or stale (a late result).
template <class Result> void stage_pump::count_written(const Result& r, bool stale) {
  if (stale)
    metrics_.late_results->inc();
  if constexpr (std::is_same_v<Result, failure>) {
    bool dead = dying_.erase(r.fence.message_id) > 0;
    if (stale)
      return;
    metrics_.failed->inc();
    if (dead)
      metrics_.dead->inc();
  } else if (!stale) {
    metrics_.completed->inc();
  }
}

// -- drain path -----------------------------------------------------------------

caf::response_promise stage_pump::on_drain(const drain_request& req) {
  draining_ = true;
  withdraw_room();
  drain_promise_ = make_response_promise();
  spdlog::info("stage {}: draining: {} in flight, grace {}", o_.stage, running_.size(),
               config::format_duration(req.grace));
  delayed_send(this, req.grace, drain_deadline_atom::value);
  check_drained();
  return drain_promise_;
}

void stage_pump::check_drained() {
  // offered_: places reserved by a completion batch not yet answered, whose
  // handed-off messages are still to come (and go back).
  if (!draining_ || !running_.empty() || unwritten() > 0 || claiming_ || offered_ > 0 ||
      !drain_promise_.pending())
    return;
  drain_promise_.deliver(drain_report{o_.stage, drain_finished_, 0});
}

// The grace period is over: what still runs is stopped and released, its
// attempt not consumed.
void stage_pump::on_drain_deadline() {
  // Reservations still unanswered are not waited for past the grace: what
  // they claimed, if anything, returns when its leases expire.
  withdraw_room();
  offered_ = 0;
  if (running_.empty()) {
    check_drained();
    return;
  }
  std::vector<lease> leases;
  for (auto& [id, e] : running_) {
    stop_execution(e);
    leases.push_back(e.job->fencing());
  }
  running_.clear();
  deadlines_.clear();
  auto report = [=](int64_t released) {
    if (drain_promise_.pending())
      drain_promise_.deliver(drain_report{o_.stage, drain_finished_, released});
  };
  auto store = o_.dir->get("store");
  if (!store) {
    report(0);
    return;
  }
  request(store, store_timeout, release_request{o_.node, leases})
      .then(
          [=](const std::vector<fence_result>& results) {
            int64_t released = std::count(results.begin(), results.end(), fence_result::applied);
            spdlog::info("stage {}: released {} message(s) at shutdown, attempts not consumed: {}",
                         o_.stage, released, ids_of(leases));
            tell_keeper(leases_ended{leases});
            report(released);
          },
          [=](caf::error& e) {
            spdlog::warn("stage {}: releasing {} failed ({}); they return when their leases "
                         "expire",
                         o_.stage, ids_of(leases), system().render(e));
            report(0);
          });
}

// -- crashes --------------------------------------------------------------------

void stage_pump::on_down(const caf::down_msg& dm) {
  if (dm.source == monitored_endpoint_) {
    // The endpoint's queue died with it: every call still there or running
    // is lost. Its supervisor starts a new one for the next calls.
    monitored_endpoint_ = caf::actor_addr{};
    std::vector<lease> lost;
    for (auto& [id, e] : running_)
      if (e.executor == dm.source)
        lost.push_back(e.job->fencing());
    for (const auto& fence : lost)
      finish_failure(fence, attempt_result::crashed,
                     "model endpoint " + stage_->model + " stopped: " + system().render(dm.reason),
                     true, stage_->model);
    return;
  }
  // A worker that exits normally sent its result before it exited (messages
  // from one actor arrive in order): nothing to do, and no scan of running_,
  // which a stage of a thousand builtins in flight paid at every exit.
  if (!dm.reason || dm.reason == caf::exit_reason::normal)
    return;
  for (auto& [id, e] : running_) {
    if (e.executor != dm.source)
      continue;
    on_worker_crash(e, dm.reason);
    return;
  }
}

void stage_pump::on_worker_crash(const execution& e, const caf::error& reason) {
  auto now = clock().now(); // virtual in the simulation
  crashes_.push_back(now);
  while (!crashes_.empty() && now - crashes_.front() > o_.crash_period)
    crashes_.pop_front();
  finish_failure(e.job->fencing(), attempt_result::crashed,
                 "worker crashed: " + system().render(reason), true, "");
  if (static_cast<int>(crashes_.size()) > o_.crash_intensity) {
    spdlog::error("stage {}: {} worker crashes within {}; the pump gives up", o_.stage,
                  crashes_.size(), config::format_duration(o_.crash_period));
    quit(caf::make_error(caf::sec::runtime_error, "stage " + o_.stage + ": workers crashed " +
                                                      std::to_string(crashes_.size()) +
                                                      " times within " +
                                                      config::format_duration(o_.crash_period)));
  }
}

// -- behavior -------------------------------------------------------------------

caf::behavior stage_pump::make_behavior() {
  if (!stage_) {
    quit(caf::make_error(caf::sec::invalid_argument, "no stage " + o_.stage));
    return {};
  }
  if (o_.rooms)
    room_ = o_.rooms->open(o_.stage);
  join(ready_group(system(), o_.stage));
  join(any_ready_group(system()));
  seed_latencies();
  set_down_handler([=](caf::down_msg& dm) { on_down(dm); });
  send(this, poll_tick_atom::value);
  return {
      [=](work_available& w) {
        if (w.stage.empty() || w.stage == o_.stage)
          try_claim();
      },
      [=](handoffs_claimed& msg) { on_handoffs_claimed(msg); },
      [=](poll_tick_atom) {
        delayed_send(this, runtime_.poll_interval, poll_tick_atom::value);
        try_claim();
      },
      [=](flush_retry_atom) { flush(); },
      // The stage supervisor's liveness probe: any reply shows the mailbox is
      // processed (void: an empty one at once), so a hung pump gets restarted.
      [](probe_atom) {},
      [=](execution_started& msg) {
        auto* e = find(msg.fence);
        if (!e)
          return;
        e->pid = msg.pid;
        if (stage_->handler == config::handler_kind::model)
          arm_deadline(*e, timeout_);
      },
      [=](model_waiting& msg) {
        // Waiting out an outage is not running: no deadline until the call
        // leaves the endpoint's queue again (execution_started re-arms it).
        if (auto* e = find(msg.fence)) {
          disarm_deadline(*e);
          spdlog::debug("{}: waiting for model {}: {}", log_id(*e->job), msg.model, msg.reason);
        }
      },
      [=](execution_succeeded& msg) {
        finish_success(msg.fence, msg.outcome, msg.output, msg.model);
      },
      [=](model_answer& msg) {
        auto checked = check_reply(*stage_, msg.content);
        if (checked.ok)
          finish_success(msg.fence, checked.result.outcome, checked.result.output, msg.model,
                         msg.tokens);
        else
          finish_failure(msg.fence, attempt_result::failed,
                         "model " + msg.model + " [" + model_fault::garbage_reply +
                             "]: reply rejected: " + checked.error,
                         true, msg.model);
      },
      [=](execution_failed& msg) {
        finish_failure(msg.fence, attempt_result::failed, msg.error, msg.retryable, msg.model);
      },
      [=](deadline_tick_atom, uint64_t tick) { on_deadline_tick(tick); },
      [=](lease_lost& msg) {
        auto* e = find(msg.fence);
        if (!e)
          return;
        spdlog::warn("{}: lease lost (rescued elsewhere); stopping it, writing nothing",
                     log_id(*e->job));
        stop_execution(*e);
        forget(msg.fence.message_id);
        check_drained();
        try_claim();
      },
      [=](drain_request& req) { return on_drain(req); },
      [=](drain_deadline_atom) { on_drain_deadline(); },
  };
}

} // namespace

caf::actor spawn_stage_pump(caf::actor_system& sys, stage_pump_options options) {
  return sys.spawn<stage_pump>(std::move(options));
}

} // namespace turing::actors
