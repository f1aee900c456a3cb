// The hot-path benchmark: what a user gets from `turing run` with the default
// config, beside the bare limit of the same PostgreSQL in the same run (a
// one-row UPDATE loop) and, with --peers, graphile-worker and pg-boss.
//
//   build/bench/pipeline_bench [--items N] [--history N] [--rss-items N] [--peers]
//                              [--database URL] [--only CASES] [--rounds N]
//   build/bench/pipeline_bench --only http [--http-items N] [--http-rounds N]
//
// Runs the real `turing` binary (enqueue, run --until-drained) on generated
// configs of `turing.pass` builtins; rates come from the attempts table
// (first claim to last completion), so process start-up is not counted.
// With --rounds N, the 1-stage case, the chain and the peers run N times,
// interleaved, and each prints its median; a ratio to a peer is the median
// of the rounds' ratios (on a noisy machine one draw decides little).
#include "bench/bench_support.hpp"
#include "persistence/embedded_cluster.hpp"
#include "persistence/migrations.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <httplib.h>
#include <map>
#include <netinet/in.h>
#include <optional>
#include <pqxx/pqxx>
#include <spdlog/spdlog.h>
#include <sstream>
#include <stdexcept>
#include <string>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace turing::bench;

namespace {

/// A case that cannot go on. Thrown, not exited on, so that main stops the
/// embedded cluster it started (std::exit would leave it running).
struct bench_failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void fail_step(const char* step, const std::string& name, int status,
                            const fs::path& log) {
  throw bench_failure(std::string(step) + " of " + name + " failed (exit " +
                      std::to_string(status) + "); see " + log.string());
}

struct options {
  int items = 20000;
  int64_t history = 0;   ///< done messages to add before the history case
  int64_t rss_items = 0; ///< items for the RSS and enqueue case
  bool peers = false;
  std::string database;
  std::string only;        ///< comma-separated case names; empty = all
  int payload_bytes = 0;   ///< a "text" of this many bytes in each item
  int http_items = 100000; ///< items per run of the http case (long enough to scrape often)
  int http_rounds = 3;     ///< rounds of the three http cases (each starts one round)
  int rounds = 1;          ///< interleaved rounds of the 1-stage, chain and peer cases
};

bool wanted(const options& o, const std::string& name) {
  return o.only.empty() || ("," + o.only + ",").find("," + name + ",") != std::string::npos;
}

// -- the database -----------------------------------------------------------------

/// One autocommitted single-row UPDATE per row, from `connections` threads.
double update_loop_per_second(const std::string& dsn, int n, int connections) {
  {
    pqxx::connection c{dsn};
    pqxx::work tx{c};
    tx.exec("DROP TABLE IF EXISTS bench_baseline");
    tx.exec("CREATE TABLE bench_baseline (id bigint PRIMARY KEY, state text NOT NULL)");
    tx.exec_params("INSERT INTO bench_baseline SELECT g, 'ready' FROM generate_series(1, $1) g", n);
    tx.commit();
  }
  std::atomic<int> next{1};
  auto start = clock_type::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < connections; ++t)
    threads.emplace_back([&] {
      pqxx::connection c{dsn};
      c.prepare("mark", "UPDATE bench_baseline SET state = 'done' WHERE id = $1");
      for (int i = next++; i <= n; i = next++) {
        pqxx::nontransaction tx{c};
        tx.exec_prepared("mark", i);
      }
    });
  for (auto& t : threads)
    t.join();
  return n / seconds_since(start);
}

/// Ready-to-claimed delays (ms) of every message after the first stage of a run.
std::vector<double> handoff_ms(const std::string& dsn, int64_t run_id) {
  pqxx::connection c{dsn};
  pqxx::work tx{c};
  auto r = tx.exec_params(
      "SELECT extract(epoch FROM a.started_at - m.created_at) * 1000 "
      "FROM turing.messages m JOIN turing.attempts a ON a.message_id = m.id AND a.attempt = 1 "
      "WHERE m.run_id = $1 AND m.parent_id IS NOT NULL AND a.result = 'completed'",
      run_id);
  std::vector<double> out;
  for (const auto& row : r)
    out.push_back(row[0].as<double>());
  std::sort(out.begin(), out.end());
  return out;
}

double quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty())
    return 0;
  auto i = static_cast<size_t>(q * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(i, sorted.size() - 1)];
}

/// Adds `n` finished items with one done message and one attempt each, in a
/// finished run, as years of history would leave them.
void add_history(const std::string& dsn, int64_t n) {
  pqxx::connection c{dsn};
  pqxx::work tx{c};
  auto run = tx.exec_params1("INSERT INTO turing.runs (label, entry_stage, created_at, "
                             "items_total) VALUES ('history', 'old', now() - interval '1 day', "
                             "$1) RETURNING id",
                             n)[0]
                 .as<int64_t>();
  tx.exec_params("INSERT INTO turing.run_tallies (run_id, sink, backend, finished, "
                 "last_finished_at) VALUES ($1, 'done', 0, $2, now())",
                 run, n);
  tx.exec_params(
      "INSERT INTO turing.items (run_id, payload, open_branches, sink, result, created_at, "
      "finished_at) SELECT $1, jsonb_build_object('n', g), 0, 'done', '{}', "
      "now() - interval '1 day', now() - interval '1 day' FROM generate_series(1, $2) g",
      run, n);
  tx.exec_params(
      "INSERT INTO turing.messages (run_id, item_id, stage, payload, state, attempt, "
      "max_attempts, epoch, started_at, finished_at, outcome, output, created_at, available_at) "
      "SELECT run_id, id, 'old', payload, 'done', 1, 3, 1, created_at, finished_at, 'ok', '{}', "
      "created_at, created_at FROM turing.items WHERE run_id = $1",
      run);
  tx.exec_params("INSERT INTO turing.stage_tallies (stage, backend, done) VALUES ('old', 0, $1) "
                 "ON CONFLICT (stage, backend) DO UPDATE SET done = turing.stage_tallies.done + "
                 "EXCLUDED.done",
                 n);
  tx.exec_params(
      "INSERT INTO turing.attempts (message_id, item_id, run_id, stage, attempt, epoch, node, "
      "started_at, finished_at, result, outcome) SELECT id, item_id, run_id, stage, 1, 1, "
      "'history', started_at, finished_at, 'completed', 'ok' FROM turing.messages "
      "WHERE run_id = $1",
      run);
  tx.commit();
  pqxx::nontransaction vacuum{c};
  vacuum.exec("VACUUM ANALYZE turing.messages");
  vacuum.exec("VACUUM ANALYZE turing.items");
  vacuum.exec("VACUUM ANALYZE turing.attempts");
  // History is years old in a deployment: its WAL is long checkpointed. The
  // 1 GB or so this bulk insert wrote would otherwise force a checkpoint in
  // the middle of the measured run, and full-page images after it.
  vacuum.exec("CHECKPOINT");
}

// -- configs and items ----------------------------------------------------------

/// A chain of `stages` pass builtins with every tuning key left at its default.
/// `[runtime]` lines every config gets (--runtime KEY=VALUE): an A/B of a
/// runtime key, on one cluster in one run.
std::vector<std::string> runtime_lines;

fs::path write_chain_config(const fs::path& dir, const std::string& name, int stages,
                            const std::string& dsn) {
  auto path = dir / (name + ".toml");
  std::ofstream out{path};
  out << "sinks = [\"done\"]\n\n[database]\nurl = \"" << dsn << "\"\n";
  if (!runtime_lines.empty()) {
    out << "\n[runtime]\n";
    for (const auto& line : runtime_lines)
      out << line << "\n";
  }
  for (int i = 1; i <= stages; ++i) {
    out << "\n[stages.s" << i << "]\nhandler = \"builtin\"\nfunction = \"turing.pass\"\n";
    if (i == 1)
      out << "entry = true\n";
    out << "routes = { ok = \"" << (i == stages ? std::string("done") : "s" + std::to_string(i + 1))
        << "\" }\n";
  }
  return path;
}

/// Items {"n": i}, with a "text" of `payload_bytes` printable characters
/// when that is above 0 (a xorshift sequence: it compresses about as little
/// as prose).
fs::path write_items(const fs::path& dir, const std::string& name, int64_t n, int payload_bytes) {
  auto path = dir / (name + ".jsonl");
  std::ofstream out{path};
  uint64_t x = 88172645463325252ull;
  std::string text;
  for (int64_t i = 0; i < n; ++i) {
    out << "{\"n\":" << i;
    if (payload_bytes > 0) {
      text.clear();
      while (static_cast<int>(text.size()) < payload_bytes) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        char c = static_cast<char>('0' + x % 75);
        text += c == '\\' ? 'q' : c;
      }
      out << ",\"text\":\"" << text << '"';
    }
    out << "}\n";
  }
  return path;
}

/// The chain case's length (and the low-load case's): the 7 stages.
constexpr int chain_stages = 7;

struct bench_env {
  options o;
  std::string dsn;
  fs::path dir;
  std::string turing;
  fs::path log;
  pid_t postmaster = 0; ///< 0 when the cluster is not on this machine
};

/// The cluster's WAL so far (pg_stat_wal): records and bytes written.
struct wal_totals {
  double records = 0, bytes = 0;
};

/// pg_stat_wal once the clients of earlier steps are gone: a backend adds its
/// WAL to the shared totals when it exits, a little after its client did.
/// Waits up to 5 s for no other client backend (on a shared --database there
/// may always be some; their WAL is then counted too). Autovacuum's WAL is
/// counted as it flushes: it is part of what a transition costs.
wal_totals read_wal(const std::string& dsn) {
  pqxx::connection c{dsn};
  pqxx::nontransaction tx{c};
  auto deadline = clock_type::now() + std::chrono::seconds(5);
  while (tx.exec1("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                  "AND pid <> pg_backend_pid()")[0]
                 .as<int>() > 0 &&
         clock_type::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  auto row = tx.exec1("SELECT wal_records, wal_bytes FROM pg_stat_wal");
  return {row[0].as<double>(), row[1].as<double>()};
}

/// Enqueues `items` into a fresh `stages`-stage chain and drains it with
/// `turing run --until-drained`; returns the drain figures of that run.
struct chain_result {
  drain_figures drain;
  process_result enqueue, run;
  int64_t run_id = 0;
  double database_cpu_seconds = 0; ///< the cluster's CPU while `turing run` ran
  wal_totals wal;                  ///< the WAL written while `turing run` ran
};

chain_result run_chain(const bench_env& env, const std::string& name, int stages, int64_t items) {
  auto config = write_chain_config(env.dir, name, stages, env.dsn);
  auto file = write_items(env.dir, name, items, env.o.payload_bytes);
  chain_result r;
  r.enqueue = run({env.turing, "--log-level", "warn", "enqueue", "--config", config.string(),
                   "--stage", "s1", "--file", file.string(), "--label", name},
                  env.log);
  if (r.enqueue.status != 0) {
    fail_step("enqueue", name, r.enqueue.status, env.log);
  }
  r.run_id = last_run(env.dsn);
  auto wal_before = read_wal(env.dsn);
  auto database_cpu_before = cluster_cpu_seconds(env.postmaster);
  r.run = run(
      {env.turing, "--log-level", "warn", "run", "--config", config.string(), "--until-drained"},
      env.log);
  r.database_cpu_seconds = cluster_cpu_seconds(env.postmaster) - database_cpu_before;
  auto wal_after = read_wal(env.dsn);
  r.wal = {wal_after.records - wal_before.records, wal_after.bytes - wal_before.bytes};
  if (r.run.status != 0) {
    fail_step("run", name, r.run.status, env.log);
  }
  r.drain = drain_of_run(env.dsn, r.run_id);
  return r;
}

// -- the operations listener (--only http) --------------------------------------

void print_row(const char* what, double value, const char* unit, double baseline);

/// A port free on 127.0.0.1 now (the kernel's choice for port 0).
int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

struct http_case_result {
  double per_second = 0;
  int scrapes = 0; ///< /metrics and /api/status requests answered 200
  /// Wall time of the requests: what the listener adds, less noisy than a
  /// throughput difference on a busy machine.
  std::vector<double> metrics_ms, status_ms;
};

/// What fetches from the listener while a case runs.
enum class http_load {
  off,       ///< no listener at all
  metrics,   ///< the listener on, /metrics fetched once a second (a Prometheus scrape)
  dashboard, ///< also /api/status once a second (a dashboard open in a browser)
};

const char* to_string(http_load l) { // at most 40 characters: a table cell
  switch (l) {
  case http_load::off:
    return "listener off";
  case http_load::metrics:
    return "on, /metrics 1/s";
  case http_load::dashboard:
    return "on, /metrics + /api/status 1/s";
  }
  return "?";
}

/// The 1-stage no-op pipeline drained with the listener off, or on and
/// fetched from once a second while it runs.
http_case_result run_http_case(const bench_env& env, const std::string& name, http_load load) {
  bool listener = load != http_load::off;
  auto config = write_chain_config(env.dir, name, 1, env.dsn);
  int port = listener ? free_port() : 0;
  {
    std::ofstream out{config, std::ios::app};
    if (listener)
      out << "\n[http]\nlisten = \"127.0.0.1:" << port << "\"\n";
    else
      out << "\n[http]\nenabled = false\n";
  }
  auto file = write_items(env.dir, name, env.o.http_items, env.o.payload_bytes);
  auto enqueue = run({env.turing, "--log-level", "warn", "enqueue", "--config", config.string(),
                      "--stage", "s1", "--file", file.string(), "--label", name},
                     env.log);
  if (enqueue.status != 0) {
    fail_step("enqueue", name, enqueue.status, env.log);
  }
  auto run_id = last_run(env.dsn);
  {
    // Each case starts from tables in the same shape, whatever ran before.
    pqxx::connection c{env.dsn};
    pqxx::nontransaction vacuum{c};
    vacuum.exec("VACUUM ANALYZE turing.messages");
    vacuum.exec("VACUUM ANALYZE turing.items");
    vacuum.exec("VACUUM ANALYZE turing.attempts");
  }
  std::atomic<bool> running{true};
  std::atomic<int> scrapes{0};
  std::vector<double> metrics_ms, status_ms; // the scraper's own until joined
  std::thread scraper;
  if (listener)
    scraper = std::thread([&] {
      httplib::Client c{"127.0.0.1", port};
      c.set_read_timeout(10, 0);
      while (running.load()) {
        for (int i = 0; i < 20 && running.load(); ++i)
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        for (const char* path : {"/metrics", "/api/status"}) {
          if (path[1] == 'a' && load != http_load::dashboard)
            continue;
          auto t = clock_type::now();
          auto r = c.Get(path);
          auto ms = seconds_since(t) * 1000;
          if (r && r->status == 200) {
            ++scrapes;
            (path[1] == 'm' ? metrics_ms : status_ms).push_back(ms);
          }
        }
      }
    });
  auto result = run(
      {env.turing, "--log-level", "warn", "run", "--config", config.string(), "--until-drained"},
      env.log);
  running = false;
  if (scraper.joinable())
    scraper.join();
  if (result.status != 0) {
    fail_step("run", name, result.status, env.log);
  }
  return {drain_of_run(env.dsn, run_id).per_second(), scrapes.load(), metrics_ms, status_ms};
}

/// Off, on with a Prometheus scrape, and on with a dashboard open, in a
/// rotating order (so that drift in the machine's load and the tables' growth
/// falls on each alike); prints each run, each on/off ratio of the means and
/// the median of the rounds' ratios.
void http_overhead(const bench_env& env) {
  const http_load loads[] = {http_load::off, http_load::metrics, http_load::dashboard};
  std::map<http_load, std::vector<double>> rates;
  std::vector<double> metrics_ms, status_ms;
  int scrapes = 0;
  for (int round = 0; round < env.o.http_rounds; ++round) {
    for (int k = 0; k < 3; ++k) {
      auto load = loads[(round + k) % 3];
      auto name =
          "http_" + std::to_string(static_cast<int>(load)) + "_" + std::to_string(round + 1);
      auto r = run_http_case(env, name, load);
      rates[load].push_back(r.per_second);
      scrapes += r.scrapes;
      metrics_ms.insert(metrics_ms.end(), r.metrics_ms.begin(), r.metrics_ms.end());
      status_ms.insert(status_ms.end(), r.status_ms.begin(), r.status_ms.end());
      char label[96];
      std::snprintf(label, sizeof label, "  round %d, %s", round + 1, to_string(load));
      print_row(label, r.per_second, "items/s", 0);
    }
  }
  auto mean = [](const std::vector<double>& v) {
    double t = 0;
    for (double x : v)
      t += x;
    return v.empty() ? 0.0 : t / v.size();
  };
  auto& off = rates[http_load::off];
  for (auto load : loads) {
    char label[96];
    std::snprintf(label, sizeof label, "turing 1-stage no-op, mean, %s", to_string(load));
    print_row(label, mean(rates[load]), "items/s", 0);
  }
  for (auto load : {http_load::metrics, http_load::dashboard}) {
    auto& on = rates[load];
    std::vector<double> ratios;
    for (size_t i = 0; i < on.size() && i < off.size(); ++i)
      if (off[i] > 0)
        ratios.push_back(on[i] / off[i]);
    std::sort(ratios.begin(), ratios.end());
    char label[96];
    std::snprintf(label, sizeof label, "  %s / off: of the means, median of rounds",
                  load == http_load::metrics ? "/metrics" : "dashboard");
    std::printf("| %-52s | %10.3f, %9.3f | %7s |\n", label,
                mean(off) > 0 ? mean(on) / mean(off) : 0.0,
                ratios.empty() ? 0.0 : ratios[ratios.size() / 2], "");
  }
  std::printf("| %-52s | %22d | %7s |\n", "  requests answered while on", scrapes, "");
  std::sort(metrics_ms.begin(), metrics_ms.end());
  std::sort(status_ms.begin(), status_ms.end());
  print_row("  GET /metrics, p50", quantile(metrics_ms, 0.5), "ms", 0);
  print_row("  GET /metrics, max", metrics_ms.empty() ? 0 : metrics_ms.back(), "ms", 0);
  print_row("  GET /api/status, p50 (cached half the time)", quantile(status_ms, 0.5), "ms", 0);
  print_row("  GET /api/status, max (a snapshot read)", status_ms.empty() ? 0 : status_ms.back(),
            "ms", 0);
}

/// The handoffs of the low-load case (7 stages: 6 per item), in ms, sorted.
struct handoff_delays {
  /// From ready to claimed: 0 for a message handed off already claimed.
  std::vector<double> ready_to_claimed;
  /// From the parent's completion to the child's (both at the start of
  /// their transactions): the commit, the way to the next pump, the no-op
  /// execution and the wait for the group writer. A claim in between, if
  /// any, is in it.
  std::vector<double> completion_to_completion;
};

/// Low load: items enqueued one at a time, 20 ms apart, while a node runs.
handoff_delays low_load_handoffs(const bench_env& env, int items) {
  auto config = write_chain_config(env.dir, "latency", chain_stages, env.dsn);
  pid_t node = fork();
  if (node == 0) {
    FILE* f = std::fopen(env.log.c_str(), "a");
    if (f) {
      dup2(fileno(f), 1);
      dup2(fileno(f), 2);
    }
    execl(env.turing.c_str(), env.turing.c_str(), "--log-level", "warn", "run", "--config",
          config.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  std::this_thread::sleep_for(std::chrono::seconds(1)); // the node connects and listens
  int64_t first_run = 0;
  {
    pqxx::connection c{env.dsn};
    for (int i = 0; i < items; ++i) {
      pqxx::work tx{c};
      auto run = tx.exec1("INSERT INTO turing.runs (label, entry_stage, items_total) "
                          "VALUES ('latency', 's1', 1) RETURNING id")[0]
                     .as<int64_t>();
      if (!first_run)
        first_run = run;
      auto item = tx.exec_params1("INSERT INTO turing.items (run_id, payload, open_branches) "
                                  "VALUES ($1, '{}', 1) RETURNING id",
                                  run)[0]
                      .as<int64_t>();
      tx.exec_params("INSERT INTO turing.messages (run_id, item_id, stage, payload, max_attempts) "
                     "VALUES ($1, $2, 's1', '{}', 3)",
                     run, item);
      tx.exec("SELECT pg_notify('turing_ready', 's1')");
      tx.commit();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    // Wait until the last item finished, then stop the node.
    for (int tries = 0; tries < 600; ++tries) {
      pqxx::work tx{c};
      if (tx.exec1("SELECT count(*) FROM turing.items i JOIN turing.runs r ON r.id = i.run_id "
                   "WHERE r.label = 'latency' AND i.finished_at IS NULL")[0]
              .as<int64_t>() == 0)
        break;
      tx.commit();
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  kill(node, SIGTERM);
  int status = 0;
  waitpid(node, &status, 0);
  handoff_delays d;
  pqxx::connection c{env.dsn};
  pqxx::work tx{c};
  auto r = tx.exec_params(
      "SELECT extract(epoch FROM a.started_at - m.created_at) * 1000, "
      "extract(epoch FROM a.finished_at - p.finished_at) * 1000 "
      "FROM turing.messages m JOIN turing.attempts a ON a.message_id = m.id AND a.attempt = 1 "
      "JOIN turing.messages p ON p.id = m.parent_id "
      "WHERE m.run_id >= $1 AND a.result = 'completed'",
      first_run);
  for (const auto& row : r) {
    d.ready_to_claimed.push_back(row[0].as<double>());
    d.completion_to_completion.push_back(row[1].as<double>());
  }
  std::sort(d.ready_to_claimed.begin(), d.ready_to_claimed.end());
  std::sort(d.completion_to_completion.begin(), d.completion_to_completion.end());
  return d;
}

/// `turing status` wall time.
double status_seconds(const bench_env& env) {
  auto config = write_chain_config(env.dir, "status", 1, env.dsn);
  return run({env.turing, "--log-level", "warn", "status", "--config", config.string()}, env.log)
      .seconds;
}

/// run-peers against the same cluster: jobs/s per case, by case name.
std::map<std::string, double> run_peers(const bench_env& env) {
  // Where to reach the cluster, as libpq resolved it: the DSN may be a URL
  // or key=value pairs; a unix socket's host is its directory.
  std::string host, port, user;
  {
    pqxx::connection c{env.dsn};
    host = c.hostname() ? c.hostname() : "";
    port = c.port() ? c.port() : "5432";
    user = c.username() ? c.username() : "postgres";
  }
  fs::path script = fs::path(TURING_SOURCE_DIR) / ".." / "shared" / "peers" / "run-peers";
  if (!fs::exists(script)) {
    std::fprintf(stderr, "pipeline_bench: %s not found; skipping peers\n", script.c_str());
    return {};
  }
  auto out = env.dir / "peers.jsonl";
  std::string cmd = script.string() + " --host '" + host + "' --port " + port + " --user '" + user +
                    "' --n " + std::to_string(env.o.items) + " > " + out.string() + " 2>>" +
                    env.log.string();
  if (std::system(cmd.c_str()) != 0) {
    std::fprintf(stderr, "pipeline_bench: run-peers failed; see %s\n", env.log.c_str());
    return {};
  }
  std::map<std::string, double> rates;
  std::ifstream lines{out};
  std::string line;
  while (std::getline(lines, line)) {
    // Compared like for like: turing's rate runs from the first claim to the
    // last completion, so the peers' rate excludes their start-up too.
    auto field = [&](const std::string& key) -> std::string {
      auto at = line.find("\"" + key + "\":");
      if (at == std::string::npos)
        return "";
      at += key.size() + 3;
      auto end = line.find_first_of(",}", at);
      auto v = line.substr(at, end - at);
      if (!v.empty() && v.front() == '"')
        v = v.substr(1, v.size() - 2);
      return v;
    };
    auto rate = field("drain_jobs_per_s_excl_startup");
    if (rate.empty() || rate == "null")
      continue;
    auto name = field("lib");
    if (field("batching") == "true")
      name += " (batched)";
    else if (name == "graphile-worker")
      name += " (defaults)";
    rates[name] = std::strtod(rate.c_str(), nullptr);
  }
  return rates;
}

double median(std::vector<double> v) {
  if (v.empty())
    return 0;
  std::sort(v.begin(), v.end());
  auto n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/// The figure of each round, in the order run, under a case's median.
void print_rounds(const std::vector<double>& values) {
  if (values.size() < 2)
    return;
  std::string list;
  for (auto v : values)
    list += (list.empty() ? "" : " ") + std::to_string(static_cast<long long>(v + 0.5));
  std::printf("| %-52s | %22s | %7s |\n", "  rounds (in order run)", "", "");
  std::printf("|   %-50s | %22s | %7s |\n", list.substr(0, 50).c_str(), "", "");
}

/// The figures of the cases that run in rounds: the 1-stage case, the chain
/// and the peers, one after another in each round, so that a noisy minute
/// weighs on all of them alike.
struct round_figures {
  std::vector<double> one, one_enqueue, chain, chain_handoff_p50;
  /// CPU per item (1 stage) or per transition (chain), in microseconds, of
  /// `turing run` and of the cluster while it ran.
  std::vector<double> one_turing_us, one_database_us, chain_turing_us, chain_database_us;
  /// WAL records and bytes per item (1 stage) or per transition (chain):
  /// unlike a rate or a CPU time, the same on a busy machine as on a quiet one.
  std::vector<double> one_wal_records, one_wal_bytes, chain_wal_records, chain_wal_bytes;
  std::map<std::string, std::vector<double>> peers;
};

round_figures run_rounds(const bench_env& env) {
  round_figures f;
  for (int round = 0; round < env.o.rounds; ++round) {
    if (wanted(env.o, "one")) {
      auto r = run_chain(env, "one", 1, env.o.items);
      f.one.push_back(r.drain.per_second());
      f.one_enqueue.push_back(env.o.items / r.enqueue.seconds);
      f.one_turing_us.push_back(r.run.cpu_seconds * 1e6 / static_cast<double>(env.o.items));
      f.one_database_us.push_back(r.database_cpu_seconds * 1e6 / static_cast<double>(env.o.items));
      f.one_wal_records.push_back(r.wal.records / static_cast<double>(env.o.items));
      f.one_wal_bytes.push_back(r.wal.bytes / static_cast<double>(env.o.items));
    }
    if (wanted(env.o, "chain")) {
      auto r = run_chain(env, "chain", chain_stages, env.o.items);
      f.chain.push_back(r.drain.per_second());
      auto transitions = static_cast<double>(env.o.items) * chain_stages;
      f.chain_turing_us.push_back(r.run.cpu_seconds * 1e6 / transitions);
      f.chain_database_us.push_back(r.database_cpu_seconds * 1e6 / transitions);
      f.chain_wal_records.push_back(r.wal.records / transitions);
      f.chain_wal_bytes.push_back(r.wal.bytes / transitions);
      f.chain_handoff_p50.push_back(quantile(handoff_ms(env.dsn, r.run_id), 0.5));
    }
    if (env.o.peers)
      for (const auto& [name, rate] : run_peers(env))
        f.peers[name].push_back(rate);
  }
  return f;
}

void print_row(const char* what, double value, const char* unit, double baseline) {
  if (baseline > 0)
    std::printf("| %-52s | %12.0f %-9s | %6.2fx |\n", what, value, unit, value / baseline);
  else
    std::printf("| %-52s | %12.1f %-9s | %7s |\n", what, value, unit, "");
}

/// CPU per unit of work, medians over the rounds: `turing run` itself and the
/// cluster while it ran (autovacuum and checkpoints included). Steadier than
/// a rate on a shared machine: an A/B of a change reads best here.
void print_cpu(const bench_env& env, const char* what, const std::vector<double>& turing_us,
               const std::vector<double>& database_us) {
  std::string label = std::string(what) + ", turing run";
  print_row(label.c_str(), median(turing_us), "us", 0);
  if (env.postmaster <= 0)
    return;
  label = std::string(what) + ", PostgreSQL";
  print_row(label.c_str(), median(database_us), "us", 0);
  print_rounds(database_us);
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "pipeline_bench: %s needs a value\n", flag.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (flag == "--items")
      o.items = std::stoi(value());
    else if (flag == "--history")
      o.history = std::stoll(value());
    else if (flag == "--rss-items")
      o.rss_items = std::stoll(value());
    else if (flag == "--peers")
      o.peers = true;
    else if (flag == "--database")
      o.database = value();
    else if (flag == "--only")
      o.only = value();
    else if (flag == "--payload-bytes")
      o.payload_bytes = std::stoi(value());
    else if (flag == "--http-items")
      o.http_items = std::stoi(value());
    else if (flag == "--http-rounds")
      o.http_rounds = std::stoi(value());
    else if (flag == "--rounds")
      o.rounds = std::stoi(value());
    else if (flag == "--runtime")
      runtime_lines.push_back(value());
    else {
      std::fprintf(stderr,
                   "usage: pipeline_bench [--items N] [--history N] [--rss-items N] [--peers] "
                   "[--database URL] [--only baseline,one,chain,latency,history,rss,http] "
                   "[--payload-bytes N] [--http-items N] [--http-rounds N] [--rounds N] "
                   "[--runtime 'KEY = VALUE']...\n");
      std::exit(2);
    }
  }
  if (o.items < 1) {
    std::fprintf(stderr, "pipeline_bench: --items must be >= 1\n");
    std::exit(2);
  }
  if (o.rounds < 1) {
    std::fprintf(stderr, "pipeline_bench: --rounds must be >= 1\n");
    std::exit(2);
  }
  return o;
}

/// Stops the embedded cluster a run started and removes it, however the run
/// ends.
struct embedded_cluster_guard {
  fs::path dir;
  ~embedded_cluster_guard() {
    if (dir.empty())
      return;
    try {
      turing::persistence::embedded_cluster::stop(dir);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "pipeline_bench: stopping the cluster in %s: %s\n", dir.c_str(),
                   e.what());
    }
    std::error_code ignored;
    fs::remove_all(dir, ignored);
  }
};

} // namespace

int run_bench(int argc, char** argv) {
  bench_env env;
  env.o = parse(argc, argv);
  spdlog::set_level(spdlog::level::warn);
  env.turing = TURING_EXE;
  char pattern[] = "/tmp/turing-pipeline-bench-XXXXXX";
  env.dir = mkdtemp(pattern);
  fs::permissions(env.dir, fs::perms(0755));
  env.log = env.dir / "bench.log";
  bool embedded = env.o.database.empty();
  embedded_cluster_guard cluster_guard;
  if (embedded) {
    turing::persistence::embedded_cluster_options options;
    options.data_dir = env.dir / "cluster";
    env.dsn = turing::persistence::embedded_cluster::ensure_running(options).connection_string();
    cluster_guard.dir = options.data_dir;
  } else {
    env.dsn = env.o.database;
  }
  {
    pqxx::connection c{env.dsn};
    turing::persistence::migrate(c);
  }
  env.postmaster = postmaster_pid(env.dsn);
  std::printf("pipeline_bench: %d items per case of %d payload bytes, %s, %u cores; log %s\n\n",
              env.o.only == "http" ? env.o.http_items : env.o.items, env.o.payload_bytes,
              embedded ? "embedded cluster (unix socket, fsync on)" : "--database",
              std::thread::hardware_concurrency(), env.log.c_str());
  std::printf("| %-52s | %22s | %7s |\n", "case", "figure", "ratio");
  std::printf("|%s|%s|%s|\n", std::string(54, '-').c_str(), std::string(24, '-').c_str(),
              std::string(9, '-').c_str());
  // Low load twice: first on the quiet cluster, then after the heavy cases,
  // whose writes the checkpointer and autovacuum are still flushing (on one
  // disk, their fsyncs are the tail of a handoff that commits meanwhile).
  auto print_low_load = [&](const char* when) {
    auto d = low_load_handoffs(env, 200);
    std::string p50 = std::string("handoff at low load, ") + when + ", p50";
    std::string p99 = std::string("handoff at low load, ") + when + ", p99";
    print_row(p50.c_str(), quantile(d.ready_to_claimed, 0.5), "ms", 0);
    print_row(p99.c_str(), quantile(d.ready_to_claimed, 0.99), "ms", 0);
    print_row("  completion to next completion, p50", quantile(d.completion_to_completion, 0.5),
              "ms", 0);
    print_row("  completion to next completion, p99", quantile(d.completion_to_completion, 0.99),
              "ms", 0);
  };
  if (wanted(env.o, "latency"))
    print_low_load("quiet cluster");
  double baseline = 0;
  if (wanted(env.o, "baseline")) {
    baseline = update_loop_per_second(env.dsn, env.o.items, 1);
    print_row("bare limit: one-row UPDATE loop, 1 connection", baseline, "rows/s", baseline);
    auto four = update_loop_per_second(env.dsn, env.o.items, 4);
    print_row("bare limit: one-row UPDATE loop, 4 connections", four, "rows/s", baseline);
  }
  auto rounds = run_rounds(env);
  double one_rate = median(rounds.one);
  if (!rounds.one.empty()) {
    print_row("turing: 1-stage no-op pipeline, defaults", one_rate, "items/s", baseline);
    print_rounds(rounds.one);
    print_row("  its turing enqueue", median(rounds.one_enqueue), "items/s", 0);
    print_cpu(env, "  CPU per item", rounds.one_turing_us, rounds.one_database_us);
    print_row("  WAL per item, records", median(rounds.one_wal_records), "", 0);
    print_row("  WAL per item, bytes", median(rounds.one_wal_bytes), "B", 0);
  }
  if (!rounds.chain.empty()) {
    auto transitions = median(rounds.chain);
    print_row("turing: 7-stage no-op chain, defaults (items)", transitions / chain_stages,
              "items/s", 0);
    print_row("turing: 7-stage no-op chain, stage transitions", transitions, "/s", baseline);
    print_rounds(rounds.chain);
    print_row("  handoff under full load, p50", median(rounds.chain_handoff_p50), "ms", 0);
    print_cpu(env, "  CPU per transition", rounds.chain_turing_us, rounds.chain_database_us);
    print_row("  WAL per transition, records", median(rounds.chain_wal_records), "", 0);
    print_row("  WAL per transition, bytes", median(rounds.chain_wal_bytes), "B", 0);
  }
  if (wanted(env.o, "latency") && (wanted(env.o, "one") || wanted(env.o, "chain")))
    print_low_load("after the above");
  if (wanted(env.o, "history") && env.o.history > 0) {
    auto t = clock_type::now();
    add_history(env.dsn, env.o.history);
    std::printf("| %-52s | %12.1f %-9s | %7s |\n", "  (history added, seconds)", seconds_since(t),
                "s", "");
    auto r = run_chain(env, "after_history", 1, env.o.items);
    auto rate = r.drain.per_second();
    char label[96];
    std::snprintf(label, sizeof label, "turing: 1-stage no-op with %lld done rows",
                  static_cast<long long>(env.o.history));
    print_row(label, rate, "items/s", baseline);
    if (one_rate > 0)
      std::printf("| %-52s | %22.2f | %7s |\n", "  vs. the same case without history",
                  rate / one_rate, "");
    print_row("  turing status, wall time", status_seconds(env), "s", 0);
  }
  if (wanted(env.o, "rss") && env.o.rss_items > 0) {
    auto r = run_chain(env, "rss", 1, env.o.rss_items);
    print_row("turing enqueue of the rss case", env.o.rss_items / r.enqueue.seconds, "items/s", 0);
    print_row("  turing enqueue peak RSS", r.enqueue.peak_rss_kb / 1024.0, "MB", 0);
    print_row("turing run peak RSS, draining the rss case", r.run.peak_rss_kb / 1024.0, "MB", 0);
    // A deep queue: the claim's generic plan and the census both grow with
    // the ready rows, not the history, so the history case cannot show them.
    print_row("turing: 1-stage no-op, draining the rss case", r.drain.per_second(), "items/s",
              baseline);
    if (one_rate > 0)
      std::printf("| %-52s | %22.2f | %7s |\n", "  vs. the 1-stage case",
                  r.drain.per_second() / one_rate, "");
  }
  // Not in the default set: it drains 2 x rounds x 50,000 items.
  if (!env.o.only.empty() && wanted(env.o, "http"))
    http_overhead(env);
  for (const auto& [name, rates] : rounds.peers) {
    std::string label = "peer: " + name;
    print_row(label.c_str(), median(rates), "jobs/s", baseline);
    print_rounds(rates);
    if (!rounds.one.empty() && rounds.one.size() == rates.size()) {
      std::vector<double> ratios;
      for (size_t i = 0; i < rates.size(); ++i)
        ratios.push_back(rounds.one[i] / rates[i]);
      std::printf("| %-52s | %22.2f | %7s |\n",
                  rates.size() > 1 ? "  turing 1-stage / this peer, median of rounds"
                                   : "  turing 1-stage / this peer",
                  median(ratios), "");
    }
  }
  return 0;
}

int main(int argc, char** argv) {
  try {
    return run_bench(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pipeline_bench: %s\n", e.what());
    return 1;
  }
}
