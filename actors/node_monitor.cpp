// The node monitor.
#include "actors/node_monitor.hpp"

#include "actors/store_actor.hpp"
#include "messages/registry.hpp"
#include "metrics/node_metrics.hpp"

#include <algorithm>
#include <caf/all.hpp>
#include <map>
#include <set>
#include <spdlog/spdlog.h>

namespace turing::actors {

namespace {

using census_tick_atom = caf::atom_constant<caf::atom("censustk")>;
using report_tick_atom = caf::atom_constant<caf::atom("reporttk")>;

} // namespace

struct node_monitor_state {
  std::set<std::string> failed_stages;
  persistence::node_report report; ///< what this node last said of itself
  bool report_in_flight = false;
  std::map<std::string, int> dry_censuses; ///< consecutive censuses without work
  std::map<std::string, bool> reported_dry;
  int pipeline_dry_censuses = 0;
  std::map<std::string, int64_t> done_at_last_progress;
  caf::actor_clock::time_point last_progress;
  bool census_in_flight = false;
  caf::actor_clock::time_point census_started;
  caf::actor_clock::time_point census_not_before; ///< paced by its last duration
  static inline const char* name = "node_monitor";
};

namespace {

/// The census as the turing_queue_depth gauges (a stage without work reads 0).
void publish_queue_depths(const std::vector<stage_work>& stages) {
  auto& m = metrics::process_metrics();
  for (const auto& s : stages) {
    m.queue_depth(s.stage, "ready").set(static_cast<double>(s.ready));
    m.queue_depth(s.stage, "delayed").set(static_cast<double>(s.delayed));
    m.queue_depth(s.stage, "running").set(static_cast<double>(s.running));
    m.queue_depth(s.stage, "dead").set(static_cast<double>(s.dead));
  }
}

/// Spaces censuses by their cost: a deep queue is counted less often (the
/// counts, the drained check and the gauges wait longer, 10 s at most)
/// rather than the counting taking a share of the database that grows with
/// the queue.
void pace_census(node_monitor_state& st, caf::actor_clock::time_point now, int pace) {
  auto took = now - st.census_started;
  st.census_not_before =
      st.census_started + std::min<decltype(took)>(took * pace, std::chrono::seconds(10));
  if (took > std::chrono::milliseconds(100))
    spdlog::debug("node monitor: census took {} ms; next no sooner than {} ms after it started",
                  std::chrono::duration_cast<std::chrono::milliseconds>(took).count(),
                  std::chrono::duration_cast<std::chrono::milliseconds>(took * pace).count());
}

caf::behavior node_monitor(caf::stateful_actor<node_monitor_state>* self, node_monitor_options o) {
  metrics::process_metrics().node_info(o.node).set(1);
  if (o.pipeline)
    for (const auto& s : o.pipeline->stages)
      metrics::process_metrics().stage_failed(s.name).set(0);
  self->state.report.name = o.node;
  self->state.report.started_at = o.wall_clock();
  self->state.last_progress = self->clock().now();
  // Reports go to turing.nodes at start, on a stage failure and every few
  // seconds, so `turing status` in another process sees this node's health.
  // They go through the liveness store, beside the lease heartbeats: peers
  // judge a node by its report's age, which bulk writes must not delay.
  auto report = [=] {
    auto store = o.dir->get(liveness_store_name);
    if (!store)
      store = o.dir->get("store");
    if (!store || o.node.empty() || self->state.report_in_flight)
      return;
    self->state.report_in_flight = true;
    self->request(store, std::chrono::seconds(30), self->state.report)
        .then([=](bool) { self->state.report_in_flight = false; },
              [=](caf::error& e) {
                self->state.report_in_flight = false;
                spdlog::log(persistence::secondhand_level(o.outage),
                            "node monitor: could not report node {}: {}", o.node,
                            self->system().render(e));
              });
  };
  self->send(self, census_tick_atom::value);
  self->send(self, report_tick_atom::value);
  return {
      [=](child_started& e) {
        if (e.restart_count > 0)
          metrics::process_metrics().supervisor_restarts(e.supervisor).inc();
        if (e.restart_count > 0)
          spdlog::warn("supervision: {} restarted {} (restart {})", e.supervisor, e.child,
                       e.restart_count);
        else
          spdlog::debug("supervision: {} started {}", e.supervisor, e.child);
      },
      [=](child_exited& e) {
        bool stopping = e.reason == "normal" || e.reason.find("user_shutdown") != std::string::npos;
        if (e.supervisor == "root/pipeline" && e.child.rfind("stage/", 0) == 0 && !e.restarting &&
            !stopping) {
          auto stage = e.child.substr(6);
          self->state.report.failed_stages[stage] = e.reason;
          metrics::process_metrics().stage_failed(stage).set(1);
          if (o.on_stage_failed)
            o.on_stage_failed(stage, e.reason);
          report();
          if (self->state.failed_stages.insert(stage).second)
            spdlog::error("stage {} FAILED: {}; its work stays where it is, the other stages keep "
                          "running",
                          stage, e.reason);
          return;
        }
        // The supervisor logged the exit itself (warn when abnormal); the
        // monitor adds only what no supervisor knows: that a stage failed.
        spdlog::debug("supervision: {} child {} exited ({}){}", e.supervisor, e.child, e.reason,
                      e.restarting ? "; restarting" : "");
      },
      // The endpoint logs the outage itself; the monitor makes it visible to
      // `turing status` (turing.nodes), where stages waiting on it show.
      [=](model_availability& m) {
        auto& models = self->state.report.unavailable_models;
        if (m.available)
          models.erase(m.model);
        else
          models[m.model] = m.outage;
        report();
      },
      // Written with the next regular report, not at once: it changes often.
      [=](model_activity& a) {
        auto& calls = self->state.report.running_calls;
        if (a.calls.empty())
          calls.erase(a.model);
        else
          calls[a.model] = std::move(a.calls);
      },
      [=](report_tick_atom) {
        self->delayed_send(self, o.report_interval, report_tick_atom::value);
        report();
      },
      // Distributed mode: the address and verified peers, at once.
      [=](cluster_membership& m) {
        self->state.report.address = std::move(m.address);
        self->state.report.peers = std::move(m.peers);
        report();
      },
      [=](supervisor_gave_up& e) {
        spdlog::error("supervision: {} gave up: {}", e.supervisor, e.reason);
      },
      [=](census_tick_atom) {
        self->delayed_send(self, o.census_interval, census_tick_atom::value);
        auto store = o.dir->get("store");
        auto started = self->clock().now();
        if (!store || self->state.census_in_flight || started < self->state.census_not_before)
          return;
        self->state.census_in_flight = true;
        self->state.census_started = started;
        self->request(store, std::chrono::seconds(30), census_request{})
            .then(
                [=](const work_census& census) {
                  auto& st = self->state;
                  st.census_in_flight = false;
                  pace_census(st, self->clock().now(), o.census_pace);
                  int64_t live = 0;
                  // A stage is reported dry once it stayed without work for
                  // dry_after censuses: a pause between two batches is not news,
                  // a GPU idle for minutes is (field report incident 14).
                  // The census lists only stages with live or dead messages:
                  // a stage seen before and missing now has no work.
                  auto stages = census.stages;
                  for (const auto& [name, n] : st.dry_censuses)
                    if (std::none_of(stages.begin(), stages.end(),
                                     [&](const auto& s) { return s.stage == name; }))
                      stages.push_back({name, 0, 0, 0, 0});
                  std::sort(stages.begin(), stages.end(),
                            [](const auto& a, const auto& b) { return a.stage < b.stage; });
                  publish_queue_depths(stages);
                  for (const auto& s : stages) {
                    bool has = s.ready + s.delayed + s.running > 0;
                    auto& dry = st.dry_censuses[s.stage];
                    auto& reported = st.reported_dry[s.stage];
                    dry = has ? 0 : dry + 1;
                    if (has)
                      reported = false;
                    else if (dry == o.dry_after && !reported) {
                      spdlog::info(
                          "stage {} ran dry: nothing ready, delayed or running for {} censuses",
                          s.stage, dry);
                      reported = true;
                    }
                    if (!st.failed_stages.count(s.stage))
                      live += s.ready + s.delayed + s.running;
                  }
                  st.pipeline_dry_censuses = live > 0 ? 0 : st.pipeline_dry_censuses + 1;
                  if (st.pipeline_dry_censuses == 1)
                    spdlog::info(
                        "pipeline drained: no work ready, delayed or running in any live stage");
                  if (live == 0 && o.drained_listener)
                    self->send(o.drained_listener, pipeline_drained{{st.failed_stages.begin(),
                                                                     st.failed_stages.end()}});
                  auto now = self->clock().now(); // virtual in the simulation
                  if (live > 0 && o.progress_interval.count() > 0 &&
                      now - st.last_progress >= o.progress_interval) {
                    std::string line;
                    for (const auto& s : census.stages)
                      line += " " + s.stage + "=" + std::to_string(s.ready) + "r/" +
                              std::to_string(s.running) + "run" +
                              (s.dead ? "/" + std::to_string(s.dead) + "dead" : "");
                    spdlog::info("progress:{}", line);
                    st.last_progress = now;
                  }
                },
                [=](caf::error& e) {
                  self->state.census_in_flight = false;
                  pace_census(self->state, self->clock().now(), o.census_pace);
                  spdlog::log(persistence::secondhand_level(o.outage),
                              "node monitor: census failed: {}", self->system().render(e));
                });
      },
  };
}

} // namespace

caf::actor spawn_node_monitor(caf::actor_system& sys, node_monitor_options options) {
  return sys.spawn(node_monitor, std::move(options));
}

} // namespace turing::actors
