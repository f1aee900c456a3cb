// Benchmark: messages moved through one stage (claim + fenced complete) per
// second on the embedded cluster, at several batch sizes, beside a plain
// single-row UPDATE loop on the same cluster in the same run.
//
//   build/bench/store_throughput [--messages N] [--workers W]
//
// Uses TURING_DATABASE_URL when set, else a private embedded cluster in a
// temporary directory that is stopped and removed at the end.
#include "persistence/embedded_cluster.hpp"
#include "persistence/migrations.hpp"
#include "persistence/pg_store.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <pqxx/pqxx>
#include <spdlog/spdlog.h>
#include <string>
#include <thread>
#include <vector>

using namespace turing::persistence;
using clock_type = std::chrono::steady_clock;

namespace {

double seconds_since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

/// The baseline: one autocommitted single-row UPDATE per "message".
double update_loop_per_second(const std::string& dsn, int n) {
  pqxx::connection c{dsn};
  {
    pqxx::work tx{c};
    tx.exec("DROP TABLE IF EXISTS bench_baseline");
    tx.exec("CREATE TABLE bench_baseline (id bigint PRIMARY KEY, state text NOT NULL)");
    tx.exec_params("INSERT INTO bench_baseline SELECT g, 'ready' FROM generate_series(1, $1) g", n);
    tx.commit();
  }
  c.prepare("mark", "UPDATE bench_baseline SET state = 'done' WHERE id = $1");
  auto start = clock_type::now();
  for (int i = 1; i <= n; ++i) {
    pqxx::nontransaction tx{c};
    tx.exec_prepared("mark", i);
  }
  return n / seconds_since(start);
}

/// Enqueues n messages into a fresh stage, then `workers` threads each
/// claim up to `batch` and complete them (to a sink) until none are left.
double store_per_second(const std::string& dsn, int n, int batch, int workers,
                        const std::string& stage) {
  pg_store setup{dsn};
  for (int from = 0; from < n; from += 5000) {
    enqueue_request r;
    r.stage = stage;
    for (int i = from; i < std::min(n, from + 5000); ++i)
      r.items.push_back({std::nullopt, json{{"n", i}}});
    setup.enqueue(r);
  }
  auto start = clock_type::now();
  std::vector<std::thread> threads;
  for (int w = 0; w < workers; ++w)
    threads.emplace_back([&, w] {
      pg_store s{dsn};
      auto node = "bench-" + std::to_string(w);
      for (;;) {
        auto claimed = s.claim({stage, node, batch, std::chrono::seconds(60)});
        if (claimed.empty())
          return;
        std::vector<completion> done;
        done.reserve(claimed.size());
        for (const auto& m : claimed) {
          completion c;
          c.fence = m.fencing();
          c.attempt = m.attempt;
          c.node = node;
          c.started_at = m.started_at;
          c.outcome = "ok";
          c.output = json{{"n", m.payload["n"]}};
          c.deliveries.push_back({delivery::kind::sink, "done", c.output, 1, {}});
          done.push_back(std::move(c));
        }
        s.complete(done);
      }
    });
  for (auto& t : threads)
    t.join();
  return n / seconds_since(start);
}

} // namespace

int main(int argc, char** argv) {
  int messages = 4000;
  int workers = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--messages")
      messages = std::atoi(argv[i + 1]);
    else if (flag == "--workers")
      workers = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: %s [--messages N] [--workers W]\n", argv[0]);
      return 2;
    }
  }
  if (messages < 1 || workers < 1) {
    std::fprintf(stderr, "--messages and --workers must be >= 1\n");
    return 2;
  }
  spdlog::set_level(spdlog::level::warn);
  std::string dsn;
  std::filesystem::path temp_dir;
  if (const char* url = std::getenv("TURING_DATABASE_URL"); url && *url) {
    dsn = url;
  } else {
    char pattern[] = "/tmp/turing-bench-XXXXXX";
    temp_dir = mkdtemp(pattern);
    std::filesystem::permissions(temp_dir, std::filesystem::perms(0755));
    embedded_cluster_options options;
    options.data_dir = temp_dir;
    dsn = embedded_cluster::ensure_running(options).connection_string();
  }
  {
    pqxx::connection c{dsn};
    migrate(c);
  }
  std::printf("store throughput: %d messages per case, %d worker(s), %s\n", messages, workers,
              temp_dir.empty() ? "TURING_DATABASE_URL" : "embedded cluster (unix socket)");
  auto baseline = update_loop_per_second(dsn, messages);
  std::printf("%-44s %10.0f /s   1.00x\n", "baseline: single-row UPDATE, autocommit", baseline);
  for (int batch : {1, 16, 128}) {
    auto rate = store_per_second(dsn, messages, batch, workers, "bench_b" + std::to_string(batch));
    char label[64];
    std::snprintf(label, sizeof label, "claim+complete, batch %d", batch);
    std::printf("%-44s %10.0f /s   %.2fx\n", label, rate, rate / baseline);
  }
  if (!temp_dir.empty()) {
    embedded_cluster::stop(temp_dir);
    std::filesystem::remove_all(temp_dir);
  }
  return 0;
}
