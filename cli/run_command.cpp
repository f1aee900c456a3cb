// `turing run`: starts this node's supervision tree for the config, resumes
// whatever the database holds, and stops gracefully on SIGTERM or SIGINT (or
// once drained with --until-drained).
#include "actors/node_drainer.hpp"
#include "actors/node_monitor.hpp"
#include "actors/node_runtime.hpp"
#include "cli/cli_context.hpp"
#include "cli/commands.hpp"
#include "cli/log_setup.hpp"
#include "cli/run_progress.hpp"
#include "cli/terminal.hpp"
#include "cluster/cluster_member.hpp"
#include "config/duration.hpp"
#include "http/ops_server.hpp"
#include "messages/registry.hpp"
#include "persistence/pg_store.hpp"

#include <atomic>
#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <caf/openssl/all.hpp>
#include <csignal>
#include <iostream>
#include <spdlog/spdlog.h>
#include <unistd.h>

namespace turing::cli {

namespace {

std::atomic<int> signals_received{0};

extern "C" void on_stop_signal(int) {
  // The second signal means "now": leases are then left to expire and be rescued.
  if (signals_received.fetch_add(1) >= 1)
    _exit(130);
}

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  // A script that exits before reading its stdin must not kill us.
  signal(SIGPIPE, SIG_IGN);
}

std::string default_node_name() {
  char host[256] = "host";
  gethostname(host, sizeof host - 1);
  return std::string(host) + "-" + std::to_string(getpid());
}

/// Logs what the database holds before anything runs: the state this
/// process resumes from.
void log_startup_census(persistence::store& store) {
  auto counts = store.counts();
  auto unfinished = store.runs(true);
  int64_t running = 0, expired = 0;
  std::string per_stage;
  for (const auto& c : counts) {
    running += c.running;
    expired += c.expired;
    per_stage += " " + c.stage + ": " + std::to_string(c.ready) + " ready, " +
                 std::to_string(c.delayed) + " delayed, " + std::to_string(c.running) +
                 " running (" + std::to_string(c.expired) + " expired), " + std::to_string(c.done) +
                 " done, " + std::to_string(c.dead) + " dead;";
  }
  spdlog::info("startup: found{}", per_stage.empty() ? " an empty database" : per_stage);
  int64_t pending = 0;
  for (const auto& r : unfinished)
    pending += r.pending;
  spdlog::info("startup: resuming {} unfinished run(s) with {} pending item(s); {} message(s) "
               "still leased by earlier processes ({} already expired) return to ready when their "
               "leases expire",
               unfinished.size(), pending, running, expired);
}

/// The operations listener ([http]), bound before anything starts. An
/// address written in the config that cannot be bound ends the process
/// (exit 2); the default one being taken (another node on this host) is a
/// warning and the node runs without it. Null when off or not bound.
std::unique_ptr<http::ops_server>
start_ops_server(const std::shared_ptr<const config::pipeline_config>& pipeline,
                 const std::string& node, const database_handle& db,
                 std::shared_ptr<http::node_health> health) {
  const auto& h = pipeline->http;
  if (!h.enabled) {
    spdlog::info("http: listener off ([http] in {})", pipeline->file.string());
    return nullptr;
  }
  http::ops_server_options o;
  o.host = h.listen_host;
  o.port = h.listen_port;
  o.node = node;
  o.status = std::make_shared<http::status_cache>(pipeline, db.connection_string, db.description);
  o.health = std::move(health);
  o.metrics = &metrics::process_metrics();
  auto server = std::make_unique<http::ops_server>(std::move(o));
  std::string error;
  if (!server->bind(error)) {
    if (h.explicit_listen) {
      spdlog::critical("node {}: cannot listen for HTTP on {}:{} ([http] listen in {}): {}", node,
                       h.listen_host, h.listen_port, pipeline->file.string(), error);
      spdlog::default_logger()->flush();
      _exit(2);
    }
    spdlog::warn("node {}: http: the default address {}:{} is taken ({}); running without "
                 "/metrics and the dashboard (set [http] listen, e.g. \"127.0.0.1:0\")",
                 node, h.listen_host, h.listen_port, error);
    return nullptr;
  }
  server->start();
  auto shown =
      h.listen_host.find(':') != std::string::npos ? "[" + h.listen_host + "]" : h.listen_host;
  spdlog::info("http: listening on http://{}:{}/ (metrics, healthz, api/status, dashboard)", shown,
               server->port());
  return server;
}

/// Distributed mode's checks before anything starts: the certificate, key
/// and CA belong together, and the node's name is its certificate's CN
/// (peers check that name; CAF checks only the CA). Returns the node name.
std::string check_cluster_identity(const config::cluster_config& c, const std::string& node_option,
                                   const std::string& config_node) {
  cluster::tls_files tls{c.certificate.string(), c.key.string(), c.ca.string()};
  try {
    cluster::check_tls_files(tls);
  } catch (const std::exception& e) {
    throw usage_error("[cluster] refuses to start distributed mode: " + std::string{e.what()});
  }
  auto cn = cluster::certificate_common_name(tls.certificate);
  for (const auto& [given, where] :
       {std::pair{node_option, "--node"}, std::pair{config_node, "runtime.node"}})
    if (!given.empty() && given != cn)
      throw usage_error("[cluster] node name " + given + " (from " + where +
                        ") is not the CN of its certificate " + tls.certificate + " (" + cn +
                        "): peers would refuse it; leave the name out or make a certificate for " +
                        given);
  return cn;
}

/// Loads CAF's networking with mutual TLS and heartbeats on (both are off
/// in CAF 0.17 by default: an anonymous cipher, and hung peers unnoticed).
void configure_cluster(caf::actor_system_config& cfg, const config::cluster_config& c) {
  cfg.load<caf::io::middleman>();
  cfg.load<caf::openssl::manager>();
  cfg.openssl_certificate = c.certificate.string();
  cfg.openssl_key = c.key.string();
  cfg.openssl_cafile = c.ca.string();
  cfg.set("middleman.heartbeat-interval", caf::timespan{c.heartbeat_interval});
  cfg.set("middleman.connection-timeout", caf::timespan{c.connection_timeout});
}

} // namespace

int run_command(const run_options& options) {
  auto builtins = std::make_shared<actors::builtin_registry>(make_builtins());
  auto pipeline = std::make_shared<const config::pipeline_config>(
      load_checked_config(options.config, *builtins));
  const auto& cluster_cfg = pipeline->cluster;
  auto node = cluster_cfg.enabled
                  ? check_cluster_identity(cluster_cfg, options.node, pipeline->runtime.node)
              : !options.node.empty()           ? options.node
              : !pipeline->runtime.node.empty() ? pipeline->runtime.node
                                                : default_node_name();
  auto db = open_database(*pipeline);
  {
    persistence::pg_store store{db.connection_string};
    log_startup_census(store);
  }
  auto health = std::make_shared<http::node_health>();
  auto ops = start_ops_server(pipeline, node, db, health);
  install_signal_handlers();

  caf::actor_system_config cfg;
  add_message_types(cfg);
  actors::configure_scheduler(cfg);
  if (cluster_cfg.enabled)
    configure_cluster(cfg, cluster_cfg);
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto dir = std::make_shared<actors::actor_directory>();
  // Every actor that talks to the database tells an outage here: its first
  // failure, a summary every 10 s, its end; not one warning per failure.
  auto outage = std::make_shared<persistence::outage_log>(
      persistence::outage_log::options{db.description, std::chrono::seconds(10), {}, {}});

  actors::node_monitor_options monitor_options;
  monitor_options.pipeline = pipeline;
  monitor_options.dir = dir;
  monitor_options.node = node;
  monitor_options.outage = outage;
  monitor_options.on_stage_failed = [health](const std::string& stage, const std::string& reason) {
    health->stage_failed(stage, reason);
  };
  if (cluster_cfg.enabled)
    monitor_options.report_interval = std::chrono::seconds(1);
  if (options.until_drained)
    monitor_options.drained_listener = caf::actor_cast<caf::actor>(self);
  // On a terminal a progress bar replaces the periodic `progress:` line.
  auto bar = current_log_format() == log_format::text && is_terminal(STDERR_FILENO);
  if (bar)
    monitor_options.progress_interval = persistence::millis{0};
  auto monitor = actors::spawn_node_monitor(sys, monitor_options);

  actors::node_options node_opts;
  node_opts.pipeline = pipeline;
  node_opts.builtins = builtins;
  node_opts.node = node;
  auto dsn = db.connection_string;
  node_opts.make_store = [dsn] {
    auto store = std::make_unique<persistence::pg_store>(dsn);
    store->warm_up_connections();
    return store;
  };
  node_opts.store_workers = 4;
  node_opts.listen_connection_string = dsn;
  node_opts.observer = monitor;
  node_opts.outage = outage;
  auto root = actors::spawn_node(sys, node_opts, dir);
  self->monitor(root);
  health->set_up(true);
  caf::actor member;
  if (cluster_cfg.enabled) {
    cluster::cluster_member_options m;
    m.node = node;
    m.cluster = cluster_cfg;
    m.pipeline = pipeline;
    m.started_at_us = std::chrono::duration_cast<std::chrono::microseconds>(
                          persistence::wall_clock::now().time_since_epoch())
                          .count();
    m.dir = dir;
    m.monitor = monitor;
    m.connector = caf::actor_cast<caf::actor>(sys.openssl_manager().actor_handle());
    cluster::tls_files tls{cluster_cfg.certificate.string(), cluster_cfg.key.string(),
                           cluster_cfg.ca.string()};
    m.probe = [tls](const std::string& host, uint16_t port, std::chrono::milliseconds timeout) {
      return cluster::probe_peer_identity(host, port, tls, timeout);
    };
    m.max_lost = pipeline->runtime.max_lost_attempts;
    m.outage = outage;
    member = cluster::spawn_cluster_member(sys, m);
    auto port = caf::openssl::publish(member, cluster_cfg.listen_port,
                                      cluster_cfg.listen_host.c_str(), true);
    if (!port) {
      spdlog::critical("node {}: cannot listen for peers on {}:{}: {}", node,
                       cluster_cfg.listen_host, cluster_cfg.listen_port, sys.render(port.error()));
      spdlog::default_logger()->flush();
      _exit(2);
    }
    spdlog::info("node {}: distributed mode, listening on {}:{} (advertised as {}:{}), mutual TLS "
                 "with CA {}, peer heartbeat {}, connection timeout {}",
                 node, cluster_cfg.listen_host, *port, cluster_cfg.advertise_host,
                 cluster_cfg.advertise_port, cluster_cfg.ca.string(),
                 config::format_duration(cluster_cfg.heartbeat_interval),
                 config::format_duration(cluster_cfg.connection_timeout));
  }
  spdlog::info("node {}: running {} stage(s) and {} model endpoint(s) from {}", node,
               pipeline->stages.size(), pipeline->models.size(), pipeline->file.string());

  std::unique_ptr<run_progress> progress;
  if (bar)
    progress = std::make_unique<run_progress>(db.connection_string);
  int exit_code = 0;
  bool root_alive = true;
  bool stop = false;
  while (!stop) {
    self->receive(
        [&](pipeline_drained& d) {
          if (!d.failed_stages.empty()) {
            std::string names;
            for (const auto& s : d.failed_stages)
              names += (names.empty() ? "" : ", ") + s;
            spdlog::error("drained, but stage(s) {} failed; their work is left in the database",
                          names);
            exit_code = 3;
          } else {
            spdlog::info("drained: nothing ready, delayed or running; stopping");
          }
          stop = true;
        },
        [&](caf::down_msg& dm) {
          if (dm.source == root.address()) {
            spdlog::critical("node {}: the root supervisor gave up: {}", node,
                             sys.render(dm.reason));
            root_alive = false;
            exit_code = 1;
            stop = true;
          }
        },
        caf::after(std::chrono::milliseconds(100)) >>
            [&] {
              if (signals_received.load() > 0) {
                spdlog::info(
                    "signal received: stop claiming, finishing in-flight work for up to {} "
                    "(a second signal exits at once)",
                    config::format_duration(pipeline->runtime.shutdown_grace));
                stop = true;
              }
            });
  }

  progress.reset();
  health->set_up(false); // /healthz: 503 while stopping
  if (root_alive) {
    auto d = actors::spawn_node_drainer(sys, pipeline, dir);
    self->request(d, pipeline->runtime.shutdown_grace + std::chrono::seconds(30),
                  actors::drain_all_atom::value)
        .receive(
            [&](const drain_report& r) {
              spdlog::info(
                  "shutdown: {} execution(s) finished during the drain, {} released back to "
                  "ready",
                  r.finished, r.released);
            },
            [&](caf::error& e) { spdlog::warn("shutdown: drain incomplete: {}", sys.render(e)); });
    self->send_exit(root, caf::exit_reason::user_shutdown);
    self->receive([&](caf::down_msg&) {},
                  caf::after(std::chrono::seconds(15)) >>
                      [&] { spdlog::warn("shutdown: supervision tree slow to stop"); });
  }
  if (member)
    self->send_exit(member, caf::exit_reason::user_shutdown);
  self->send_exit(monitor, caf::exit_reason::user_shutdown);
  dir->clear();
  try {
    // The last word in turing.nodes: this node stopped.
    persistence::pg_store store{db.connection_string};
    persistence::node_report last;
    last.started_at = persistence::wall_clock::now();
    for (const auto& n : store.nodes())
      if (n.name == node)
        last = n;
    last.name = node;
    last.stopped_at = persistence::wall_clock::now();
    store.report_node(last);
  } catch (const std::exception& e) {
    spdlog::warn("node {}: could not record its stop: {}", node, e.what());
  }
  if (ops)
    ops->stop();
  spdlog::info("node {}: stopped (exit status {})", node, exit_code);
  // Everything this node owned is written or released by now. Exit without
  // waiting for the actor system to join every thread: a thread still
  // blocked in a hung model call (until its HTTP timeout) must not hold up
  // a stop that SIGTERM asked for.
  spdlog::default_logger()->flush();
  std::fflush(nullptr);
  _exit(exit_code);
}

} // namespace turing::cli
