// The scenario harness: builds each node with the runtime's own spawn_node on
// a test coordinator, plays the timeline in virtual time, then checks the
// expectations and the store's invariants.
#include "replay/simulation.hpp"

#include "actors/node_drainer.hpp"
#include "actors/node_monitor.hpp"
#include "actors/node_runtime.hpp"
#include "actors/ready_listener.hpp"
#include "cluster/cluster_member.hpp"
#include "config/config_loader.hpp"
#include "config/duration.hpp"
#include "messages/registry.hpp"
#include "persistence/memory_store.hpp"
#include "persistence/migrations.hpp"
#include "persistence/pg_store.hpp"
#include "persistence/store_ref.hpp"
#include "replay/expectations.hpp"
#include "replay/scripted_handlers.hpp"
#include "replay/traced_store.hpp"

#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <mutex>
#include <pqxx/pqxx>
#include <set>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>
#include <thread>

namespace turing::replay {

using namespace persistence;

namespace {

/// Runtime log lines join the trace, stamped with virtual time: the trace
/// then says what the runtime said, where it said it.
class trace_sink final : public spdlog::sinks::base_sink<std::mutex> {
public:
  explicit trace_sink(std::shared_ptr<sim_world> world) : world_(std::move(world)) {}

protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    world_->log(std::string(spdlog::level::to_string_view(msg.level).data()) + ": " +
                std::string(msg.payload.data(), msg.payload.size()));
  }
  void flush_() override {}

private:
  std::shared_ptr<sim_world> world_;
};

/// Installs the trace logger for one run and restores the previous one.
class trace_logger_scope {
public:
  trace_logger_scope(std::shared_ptr<sim_world> world, const std::string& level)
      : previous_(spdlog::default_logger()) {
    auto logger = std::make_shared<spdlog::logger>("replay", std::make_shared<trace_sink>(world));
    logger->set_level(spdlog::level::from_str(level));
    spdlog::set_default_logger(logger);
  }
  ~trace_logger_scope() { spdlog::set_default_logger(previous_); }

private:
  std::shared_ptr<spdlog::logger> previous_;
};

struct sim_config : caf::actor_system_config {
  sim_config() {
    turing::add_message_types(*this);
    set("logger.file-verbosity", caf::atom("quiet"));
    set("logger.console-verbosity", caf::atom("quiet"));
    set("scheduler.policy", caf::atom("testing"));
    set("logger.inline-output", true);
  }
};

/// A real-time run: CAF's threaded scheduler, as `turing run` configures it.
struct real_config : caf::actor_system_config {
  real_config() {
    turing::add_message_types(*this);
    set("logger.file-verbosity", caf::atom("quiet"));
    set("logger.console-verbosity", caf::atom("quiet"));
    actors::configure_scheduler(*this);
  }
};

/// The pipeline with every duration on the actor clock of a real-time run.
config::pipeline_config scaled(config::pipeline_config p, const sim_world& w) {
  auto& r = p.runtime;
  for (auto* d : {&r.lease_ttl, &r.heartbeat_interval, &r.rescue_interval, &r.poll_interval,
                  &r.shutdown_grace, &r.default_timeout, &r.stall_timeout})
    *d = w.real(*d);
  for (auto& s : p.stages) {
    if (s.timeout)
      s.timeout = w.real(*s.timeout);
    if (s.auto_timeout) {
      s.auto_timeout->floor = w.real(s.auto_timeout->floor);
      s.auto_timeout->ceiling = w.real(s.auto_timeout->ceiling);
    }
    s.retry.backoff = w.real(s.retry.backoff);
    s.retry.backoff_max = w.real(s.retry.backoff_max);
  }
  for (auto& m : p.models) {
    m.max_unavailable = w.real(m.max_unavailable);
    m.idle_timeout = w.real(m.idle_timeout);
    m.budget_window = w.real(m.budget_window);
  }
  for (auto& k : p.api_keys)
    k.budget_window = w.real(k.budget_window);
  for (auto& g : p.gpus) {
    g.swap_cost = w.real(g.swap_cost);
    g.max_wait = w.real(g.max_wait);
    if (g.linger)
      g.linger = w.real(*g.linger);
  }
  return p;
}

struct sim_node {
  std::string name;
  caf::actor root;
  caf::actor monitor;
  /// Distributed mode ([cluster] in the pipeline): the node's cluster member.
  caf::actor member;
  std::shared_ptr<actors::actor_directory> dir;
  bool alive() const { return dir != nullptr; }
};

/// A fixed instant, so that every run of a scenario sees the same times.
time_point scenario_epoch() {
  return time_point{std::chrono::seconds{1767225600}}; // 2026-01-01T00:00:00Z
}

class harness {
public:
  harness(const scenario& sc, const replay_options& options, replay_result& out)
      : sc_(std::make_shared<const scenario>(sc)), options_(options), out_(out) {}

  void run();
  const sim_world& world() const { return *world_; }

private:
  std::shared_ptr<const scenario> sc_;
  const replay_options& options_;
  replay_result& out_;
  std::shared_ptr<sim_world> world_ = std::make_shared<sim_world>();
  std::shared_ptr<const config::pipeline_config> pipeline_;
  std::unique_ptr<memory_store> memory_;
  std::unique_ptr<store> inspector_;     ///< the harness's own view, never refused
  std::unique_ptr<traced_store> client_; ///< enqueues, as `turing enqueue` would
  std::map<std::string, sim_node> nodes_;
  std::map<caf::abstract_actor*, caf::timespan> stalled_; ///< until
  /// Every actor a kill_node ended; a real-time run waits for them to be gone.
  std::vector<caf::actor> killed_;
  caf::actor_system* sys_ = nullptr;
  caf::scheduler::test_coordinator* sched_ = nullptr;
  /// Distributed mode: what CAF's networking does between the nodes.
  caf::actor network_;
  std::vector<caf::actor> helpers_;                        ///< network_ and pending after() timers
  std::map<std::string, caf::timespan> frozen_until_;      ///< freeze_node: SIGSTOP
  std::map<std::string, caf::timespan> partitioned_until_; ///< partition: links cut

  bool clustered() const { return pipeline_ && pipeline_->cluster.enabled; }
  bool frozen(const std::string& node) const {
    auto it = frozen_until_.find(node);
    return it != frozen_until_.end() && it->second > world_->elapsed();
  }
  bool partitioned(const std::string& node) const {
    auto it = partitioned_until_.find(node);
    return it != partitioned_until_.end() && it->second > world_->elapsed();
  }
  void spawn_network();
  /// Runs `fn` on the harness's thread `delay` of virtual time from now.
  template <class F> void after(caf::timespan delay, F fn) {
    helpers_.push_back(
        sys_->spawn([this, delay, fn](caf::event_based_actor* self) -> caf::behavior {
          self->delayed_send(self, delay, caf::tick_atom::value);
          return {[this, self, fn](caf::tick_atom) {
            std::lock_guard<std::recursive_mutex> guard{world_->mutex};
            fn();
            self->quit();
          }};
        }));
  }
  cluster::peer_identity probe(const std::string& host);
  void drop_links(const std::string& node);
  void freeze_node(const timeline_event& ev);
  void partition_node(const timeline_event& ev);

  std::unique_ptr<store> open_inner() {
    if (options_.store == store_kind::memory)
      return std::make_unique<store_ref>(*memory_);
    auto world = world_;
    return std::make_unique<pg_store>(options_.connection_string,
                                      [world] { return world->wall_now(); });
  }

  bool load_pipeline();
  void prepare_store();
  void start_node(const std::string& name);
  void kill_node(const std::string& name, const char* why);
  void stop_node(const std::string& name);
  void fire(const timeline_event& ev);
  void run_jobs();
  bool all_finished();
  void fail(std::string what) {
    world_->log("FAILED: " + what);
    out_.failures.push_back(std::move(what));
  }
};

bool harness::load_pipeline() {
  auto loaded = config::parse_config(sc_->pipeline_toml, sc_->pipeline_name, sc_->pipeline_dir,
                                     options_.builtins->catalog());
  const auto& expected = sc_->expect.config_error;
  if (!loaded.ok()) {
    bool matched = false;
    for (const auto& e : loaded.errors) {
      world_->log("config rejected: " + e.to_string());
      if (expected && e.to_string().find(*expected) != std::string::npos)
        matched = true;
    }
    if (!expected)
      fail("the pipeline was rejected: " +
           (loaded.errors.empty() ? std::string("no reason") : loaded.errors[0].to_string()));
    else if (!matched)
      fail("the pipeline was rejected, but no error says \"" + *expected + "\"");
    return false;
  }
  if (expected) {
    fail("the pipeline was accepted; expected its rejection with \"" + *expected + "\"");
    return false;
  }
  for (const auto& [gpu, sim] : sc_->gpus)
    for (const auto& m : sim.models)
      if (!loaded.config->find_model(m)) {
        fail("gpus." + gpu + ": no model " + m + " in the pipeline");
        return false;
      }
  world_->log("config accepted: " + std::to_string(loaded.config->stages.size()) + " stage(s), " +
              std::to_string(loaded.config->models.size()) + " model(s)");
  pipeline_ = std::make_shared<const config::pipeline_config>(std::move(*loaded.config));
  return true;
}

void harness::prepare_store() {
  auto world = world_;
  if (options_.store == store_kind::memory) {
    memory_ = std::make_unique<memory_store>([world] { return world->wall_now(); });
  } else {
    pqxx::connection c{options_.connection_string};
    {
      pqxx::nontransaction tx{c};
      tx.exec("DROP SCHEMA IF EXISTS turing CASCADE");
    }
    migrate(c);
  }
  inspector_ = open_inner();
  client_ = std::make_unique<traced_store>(world_, open_inner());
}

void harness::start_node(const std::string& name) {
  auto& n = nodes_[name];
  if (n.alive()) {
    fail("timeline: start_node " + name + ", but it is running");
    return;
  }
  n.name = name;
  n.dir = std::make_shared<actors::actor_directory>();
  auto world = world_;
  actors::node_monitor_options m;
  m.node = name;
  m.pipeline = pipeline_;
  m.dir = n.dir;
  m.wall_clock = [world] { return world->wall_now(); };
  if (clustered())
    m.report_interval =
        world_->real(std::chrono::seconds(1)); // as `turing run` in distributed mode
  n.monitor = actors::spawn_node_monitor(*sys_, m);
  actors::node_options o;
  o.pipeline = pipeline_;
  o.builtins = options_.builtins;
  o.node = name;
  o.make_store = [this] { return std::make_unique<traced_store>(world_, open_inner()); };
  o.store_workers = 1;
  o.detached = false;
  o.observer = n.monitor;
  o.simulated_models = scripted_models(world_, sc_);
  o.simulated_scripts = scripted_scripts(world_, sc_);
  o.wall_clock = [world] { return world->wall_now(); };
  o.random_seed = 20261128;
  n.root = actors::spawn_node(*sys_, o, n.dir);
  if (clustered()) {
    cluster::cluster_member_options c;
    c.node = name;
    c.cluster = pipeline_->cluster;
    // Every node reads the same pipeline: the address is the node's name.
    c.cluster.advertise_host = name;
    c.cluster.advertise_port = 7400;
    c.pipeline = pipeline_;
    c.started_at_us =
        std::chrono::duration_cast<std::chrono::microseconds>(world_->wall_now().time_since_epoch())
            .count();
    c.dir = n.dir;
    c.monitor = n.monitor;
    c.connector = network_;
    c.probe = [this](const std::string& host, uint16_t, std::chrono::milliseconds) {
      return probe(host);
    };
    c.probe_inline = true;
    c.max_lost = pipeline_->runtime.max_lost_attempts;
    n.member = cluster::spawn_cluster_member(*sys_, c);
  }
  world_->log("timeline: node " + name + " starts");
}

// The nodes' CAF connections, played in one actor system: connecting to a
// node reaches its cluster member unless the node is down, frozen or cut off.
void harness::spawn_network() {
  network_ = sys_->spawn([this](caf::event_based_actor*) -> caf::behavior {
    return {
        [this](caf::connect_atom, const std::string& host, uint16_t)
            -> caf::result<caf::node_id, caf::strong_actor_ptr, std::set<std::string>> {
          std::lock_guard<std::recursive_mutex> guard{world_->mutex};
          auto it = nodes_.find(host);
          if (it == nodes_.end() || !it->second.alive() || !it->second.member || frozen(host) ||
              partitioned(host))
            return caf::make_error(caf::sec::cannot_connect_to_node, "simulated: " + host);
          return caf::result<caf::node_id, caf::strong_actor_ptr, std::set<std::string>>{
              sys_->node(), caf::actor_cast<caf::strong_actor_ptr>(it->second.member),
              std::set<std::string>{}};
        },
    };
  });
}

// The TLS probe, played: a killed node's address refuses connections; a
// frozen or cut-off node's does not answer; a live one shows its name.
cluster::peer_identity harness::probe(const std::string& host) {
  std::lock_guard<std::recursive_mutex> guard{world_->mutex};
  cluster::peer_identity id;
  auto it = nodes_.find(host);
  if (it == nodes_.end() || !it->second.alive()) {
    id.result = cluster::peer_identity::outcome::refused;
    id.error = "simulated: nothing listens at " + host;
  } else if (frozen(host) || partitioned(host)) {
    id.result = cluster::peer_identity::outcome::timeout;
    id.error = "simulated: " + host + " does not answer";
  } else {
    id.result = cluster::peer_identity::outcome::verified;
    id.common_name = host;
  }
  return id;
}

// What CAF's heartbeat timeout does to a silent link: both ends' monitors
// fire (remote_link_unreachable), the cut-off node's when it next runs.
void harness::drop_links(const std::string& node) {
  auto it = nodes_.find(node);
  if (it == nodes_.end() || !it->second.member)
    return;
  auto cut = it->second.member;
  for (auto& [name, n] : nodes_) {
    if (name == node || !n.member)
      continue;
    caf::anon_send(n.member,
                   caf::down_msg{cut.address(), caf::exit_reason::remote_link_unreachable});
    caf::anon_send(cut,
                   caf::down_msg{n.member.address(), caf::exit_reason::remote_link_unreachable});
  }
  world_->log("cluster: the links of node " + node +
              " drop (no heartbeat within connection_timeout)");
}

void harness::freeze_node(const timeline_event& ev) {
  auto it = nodes_.find(ev.node);
  if (it == nodes_.end() || !it->second.alive()) {
    fail("timeline: freeze_node " + ev.node + ", but it is not running");
    return;
  }
  auto now = world_->elapsed();
  auto& n = it->second;
  world_->log("timeline: node " + ev.node + " freezes for " + config::format_duration(ev.duration) +
              " (SIGSTOP: none of its actors runs, its connections go silent)");
  frozen_until_[ev.node] = now + ev.duration;
  auto actors = n.dir->all();
  actors.push_back(n.monitor);
  if (n.member)
    actors.push_back(n.member);
  for (auto& a : actors)
    stalled_[caf::actor_cast<caf::abstract_actor*>(a)] = now + ev.duration;
  if (clustered() && ev.duration > pipeline_->cluster.connection_timeout)
    after(pipeline_->cluster.connection_timeout, [this, node = ev.node] { drop_links(node); });
}

void harness::partition_node(const timeline_event& ev) {
  world_->log("timeline: node " + ev.node + " is cut off from its peers for " +
              config::format_duration(ev.duration) + " (the database still reaches it)");
  partitioned_until_[ev.node] = world_->elapsed() + ev.duration;
  if (clustered())
    after(std::min(pipeline_->cluster.connection_timeout, ev.duration),
          [this, node = ev.node] { drop_links(node); });
}

void harness::kill_node(const std::string& name, const char* why) {
  auto it = nodes_.find(name);
  if (it == nodes_.end() || !it->second.alive()) {
    fail(std::string("timeline: ") + why + " " + name + ", but it is not running");
    return;
  }
  auto& n = it->second;
  world_->log("timeline: node " + name + " " + why + " (every actor dies, nothing is released)");
  // Everything dies at once: the tree, its named actors and its monitor.
  // Supervisors first, so that none of them (on another thread, in real
  // time) restarts a child it sees die before its own kill arrives.
  killed_.push_back(n.root);
  killed_.push_back(n.monitor);
  caf::anon_send_exit(n.root, caf::exit_reason::kill);
  auto named = n.dir->all();
  std::stable_partition(named.begin(), named.end(), [&](const caf::actor& a) {
    return n.dir->name_of(a).rfind("supervisor/", 0) == 0;
  });
  for (auto& a : named) {
    caf::anon_send_exit(a, caf::exit_reason::kill);
    killed_.push_back(a);
  }
  caf::anon_send_exit(n.monitor, caf::exit_reason::kill);
  if (n.member) {
    caf::anon_send_exit(n.member, caf::exit_reason::kill);
    killed_.push_back(n.member);
  }
  n.dir->clear();
  n = sim_node{};
}

void harness::stop_node(const std::string& name) {
  auto it = nodes_.find(name);
  if (it == nodes_.end() || !it->second.alive()) {
    fail("timeline: stop_node " + name + ", but it is not running");
    return;
  }
  world_->log("timeline: node " + name + " stops gracefully (drain, release, stop)");
  auto n = it->second;
  auto drainer = actors::spawn_node_drainer(*sys_, pipeline_, n.dir);
  auto world = world_;
  auto timeout = pipeline_->runtime.shutdown_grace + world_->real(std::chrono::seconds(30));
  // The same sequence as `turing run` on SIGTERM: drain, then stop the tree.
  sys_->spawn([=](caf::event_based_actor* self) {
    auto finish = [=](const std::string& how) {
      world->log("node " + n.name + ": " + how + "; stopping its tree");
      // Stopped: gone from the harness's view, unless killed or restarted meanwhile.
      std::lock_guard<std::recursive_mutex> guard{world->mutex};
      auto it = nodes_.find(n.name);
      if (it != nodes_.end() && it->second.root == n.root)
        it->second = sim_node{};
      self->send_exit(n.root, caf::exit_reason::user_shutdown);
      self->send_exit(n.monitor, caf::exit_reason::user_shutdown);
      if (n.member)
        self->send_exit(n.member, caf::exit_reason::user_shutdown);
      self->send_exit(drainer, caf::exit_reason::user_shutdown);
      self->quit();
    };
    self->request(drainer, timeout, actors::drain_all_atom::value)
        .then(
            [=](const drain_report& r) {
              finish("drained, " + std::to_string(r.finished) + " finished, " +
                     std::to_string(r.released) + " released");
            },
            [=](caf::error& e) { finish("drain incomplete: " + self->system().render(e)); });
  });
}

void harness::fire(const timeline_event& ev) {
  auto now = world_->elapsed();
  switch (ev.kind) {
  case event_kind::start_node:
    start_node(ev.node);
    break;
  case event_kind::kill_node:
    kill_node(ev.node, "is killed (SIGKILL)");
    break;
  case event_kind::stop_node:
    stop_node(ev.node);
    break;
  case event_kind::freeze_node:
    if (world_->scale > 0)
      fail("timeline: a freeze needs virtual time (the harness holds the node's mailboxes)");
    else
      freeze_node(ev);
    break;
  case event_kind::partition:
    partition_node(ev);
    break;
  case event_kind::crash_actor:
  case event_kind::stall_actor: {
    auto it = nodes_.find(ev.node);
    auto target =
        it == nodes_.end() || !it->second.alive() ? caf::actor{} : it->second.dir->get(ev.actor);
    if (!target) {
      fail("timeline: no actor " + ev.actor + " on a running node " + ev.node);
      break;
    }
    if (ev.kind == event_kind::crash_actor) {
      world_->log("timeline: " + ev.actor + " on " + ev.node + " crashes");
      caf::anon_send_exit(target, caf::exit_reason::kill);
    } else if (world_->scale > 0) {
      fail("timeline: a stall needs virtual time (the harness holds the actor's mailbox)");
    } else {
      world_->log("timeline: " + ev.actor + " on " + ev.node + " stalls for " +
                  config::format_duration(ev.duration) + " (its mailbox is not processed)");
      stalled_[caf::actor_cast<caf::abstract_actor*>(target)] = now + ev.duration;
    }
    break;
  }
  case event_kind::database_down: // in scenario time: elapsed() is scaled
    world_->log("timeline: the database is down for " + config::format_duration(ev.duration));
    world_->outage_until = now + ev.duration;
    world_->refused.clear();
    break;
  case event_kind::model_down:
    if (!pipeline_->find_model(ev.model)) {
      fail("timeline: no model " + ev.model + " in the pipeline");
      break;
    }
    world_->log("timeline: the server of model " + ev.model + " is down for " +
                config::format_duration(ev.duration) + " (connections refused)");
    world_->model_down_until[ev.model] = now + ev.duration;
    break;
  case event_kind::in_doubt:
    world_->log("timeline: the next " + std::to_string(ev.times) + " " + ev.operation +
                " call(s) commit but lose the connection before the reply");
    world_->in_doubt[ev.operation] += ev.times;
    break;
  case event_kind::clock_jump:
    world_->clock_offset += ev.jump;
    world_->log("timeline: the wall clock jumps by " +
                std::string(ev.jump.count() < 0 ? "-" : "+") +
                config::format_duration(ev.jump.count() < 0 ? -ev.jump : ev.jump));
    break;
  case event_kind::enqueue: {
    enqueue_request r;
    r.stage = ev.enqueue.stage;
    r.label = ev.enqueue.label.empty() ? sc_->name : ev.enqueue.label;
    r.max_attempts = ev.enqueue.max_attempts;
    r.items = ev.enqueue.items;
    try {
      client_->enqueue(r);
    } catch (const std::exception& e) {
      world_->log(std::string("enqueue refused: ") + e.what());
    }
    break;
  }
  }
}

void harness::run_jobs() {
  if (!sched_)
    return; // real time: CAF's own threads run the actors
  auto& jobs = sched_->jobs;
  auto now = world_->elapsed();
  for (auto it = stalled_.begin(); it != stalled_.end();)
    if (it->second <= now) {
      world_->log("a stalled actor resumes processing its mailbox");
      it = stalled_.erase(it);
    } else {
      ++it;
    }
  for (;;) {
    auto next = std::find_if(jobs.begin(), jobs.end(), [&](caf::resumable* job) {
      auto* a = dynamic_cast<caf::abstract_actor*>(job);
      return a == nullptr || stalled_.count(a) == 0;
    });
    if (next == jobs.end())
      return;
    std::rotate(jobs.begin(), next, next + 1);
    sched_->run_once();
  }
}

bool harness::all_finished() {
  return !inspector_->runs(false).empty() && inspector_->runs(true).empty();
}

void harness::run() {
  if (!load_pipeline())
    return;
  // The trace logger outlives the actor system: its shutdown is traced too.
  trace_logger_scope logging{world_, options_.trace_level};
  world_->elapsed = [] { return caf::timespan{0}; };
  world_->scale = options_.real_time_scale;
  const bool real = world_->scale > 0;
  if (real)
    pipeline_ = std::make_shared<const config::pipeline_config>(scaled(*pipeline_, *world_));
  std::unique_ptr<caf::actor_system_config> cfg;
  if (real)
    cfg = std::make_unique<real_config>();
  else
    cfg = std::make_unique<sim_config>();
  caf::actor_system sys{*cfg};
  sys_ = &sys;
  auto steady_start = std::chrono::steady_clock::now();
  caf::actor_clock::time_point start;
  if (real) {
    auto scale = world_->scale;
    world_->elapsed = [scale, steady_start] {
      auto real_ns = (std::chrono::steady_clock::now() - steady_start).count();
      return caf::timespan{static_cast<int64_t>(static_cast<double>(real_ns) / scale)};
    };
    world_->base = wall_clock::now();
  } else {
    sched_ = &dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler());
    start = sched_->clock().now();
    world_->elapsed = [this, start] { return sched_->clock().now() - start; };
    world_->base = scenario_epoch();
  }
  // What NOTIFY does in a real run, but to each node in name order: a CAF
  // group's delivery order follows actor addresses, which differ run to run.
  world_->notify_ready = [this](const std::string& stage) {
    std::lock_guard<std::recursive_mutex> guard{world_->mutex};
    for (auto& [name, n] : nodes_)
      if (n.alive())
        if (auto pump = n.dir->get("pump/" + stage))
          caf::anon_send(pump, work_available{stage});
  };
  prepare_store();
  spawn_network();
  helpers_.push_back(network_);

  std::vector<timeline_event> events;
  for (const auto& n : sc_->nodes) {
    timeline_event ev;
    ev.kind = event_kind::start_node;
    ev.node = n;
    events.push_back(ev);
  }
  events.insert(events.end(), sc_->timeline.begin(), sc_->timeline.end());
  std::stable_sort(events.begin(), events.end(),
                   [](const auto& a, const auto& b) { return a.at < b.at; });

  size_t next_event = 0;
  std::optional<caf::timespan> finished_at;
  caf::timespan limit = sc_->limit;
  for (;;) {
    std::unique_lock<std::recursive_mutex> lock{world_->mutex};
    run_jobs();
    auto now = world_->elapsed();
    while (next_event < events.size() && events[next_event].at <= now) {
      fire(events[next_event++]);
      run_jobs();
    }
    if (!finished_at && next_event == events.size() && all_finished()) {
      finished_at = now;
      world_->log("every run finished");
    }
    if (finished_at && now >= *finished_at + sc_->settle)
      break;
    if (now >= limit) {
      world_->log("the scenario's limit " + config::format_duration(sc_->limit) + " is reached");
      break;
    }
    if (real) {
      // The actors run on their own threads; look again shortly.
      lock.unlock();
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      continue;
    }
    caf::timespan next = limit;
    const auto& schedule = sched_->clock().schedule();
    if (!schedule.empty())
      next = std::min<caf::timespan>(next, schedule.begin()->first - start);
    if (next_event < events.size())
      next = std::min<caf::timespan>(next, events[next_event].at);
    for (const auto& [actor, until] : stalled_)
      next = std::min(next, until);
    if (finished_at)
      next = std::min(next, *finished_at + sc_->settle);
    sched_->advance_time(next > now ? next - now : caf::timespan{0});
  }
  out_.virtual_s = std::chrono::duration<double>(world_->elapsed()).count();
  if (finished_at)
    out_.makespan_s = std::chrono::duration<double>(*finished_at).count();

  // Take every node down before reading the end state, so nothing moves.
  std::unique_lock<std::recursive_mutex> lock{world_->mutex};
  for (auto& [name, n] : nodes_)
    if (n.alive())
      kill_node(name, "ends with the scenario");
  for (auto& call : world_->calls) {
    caf::anon_send_exit(call, caf::exit_reason::kill);
    killed_.push_back(call);
  }
  world_->calls.clear();
  // The simulated network and timers the harness scheduled itself.
  for (auto& helper : helpers_) {
    caf::anon_send_exit(helper, caf::exit_reason::kill);
    killed_.push_back(helper);
  }
  helpers_.clear();
  stalled_.clear();
  run_jobs();
  if (real) {
    // A store call in flight on a worker thread finishes before we read:
    // wait until every actor the kills ended is gone (its down message).
    lock.unlock();
    caf::scoped_actor waiter{sys};
    std::set<caf::actor_addr> watched;
    for (auto& a : killed_)
      if (a && watched.insert(a.address()).second)
        waiter->monitor(a);
    size_t left = watched.size();
    bool gave_up = false;
    while (left > 0 && !gave_up)
      waiter->receive([&](caf::down_msg&) { --left; },
                      caf::after(std::chrono::seconds(10)) >> [&] { gave_up = true; });
    if (gave_up)
      world_->log("warning: " + std::to_string(left) + " actor(s) still alive 10 s after the end");
    killed_.clear();
    lock.lock();
  }
  out_.end_state = end_state_of(*inspector_, *world_);
  out_.trace = world_->trace;
  check_expectations(*sc_, *inspector_, *world_, out_);
  if (!real) {
    sched_->clock().cancel_all();
    run_jobs();
  }
  auto end = world_->elapsed();
  world_->elapsed = [end] { return end; };
  sys_ = nullptr;
  sched_ = nullptr;
}

} // namespace

replay_result run_scenario(const scenario& sc, const replay_options& options) {
  replay_result out;
  {
    harness h{sc, options, out};
    h.run();
    // Including what happened while the actor system shut down.
    out.trace = h.world().trace;
  }
  return out;
}

bool runs_in_real_time(const scenario& sc) {
  for (const auto& ev : sc.timeline)
    if (ev.kind == event_kind::stall_actor || ev.kind == event_kind::freeze_node ||
        ev.kind == event_kind::partition)
      return false;
  return true;
}

void add_simulation_builtins(actors::builtin_registry& registry) {
  registry.add("sim.pass", {"ok"}, [](const json& payload) {
    return actors::handler_result{"ok", payload};
  });
  registry.add("sim.poison", {"ok"}, [](const json& payload) {
    if (payload.value("poison", false))
      throw std::runtime_error("poison item: the handler crashes on it, every time");
    return actors::handler_result{"ok", payload};
  });
}

} // namespace turing::replay
