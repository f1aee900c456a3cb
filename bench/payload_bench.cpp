// The large-payload benchmark: items of 1 KB, 5 MB and 50 MB through a
// four-stage pipeline of the owl's shape (builtin, script, builtin, builtin),
// with the real turing binary on the embedded cluster (or --database).
//
//   build/bench/payload_bench [--sizes 1KB:2000,5MB:20,50MB:4] [--modes process,worker]
//                             [--database URL]
//
// Runs every size with the script stage in each mode (a child per item, or
// long-lived workers fed one line per item). Prints per mode and size: peak RSS of `turing enqueue`
// and `turing run`, how much the database grew per item (against the item's own size), and items/s
// from the attempts table (first claim to last completion).
#include "bench/bench_support.hpp"
#include "config/byte_size.hpp"
#include "persistence/embedded_cluster.hpp"
#include "persistence/migrations.hpp"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <pqxx/pqxx>
#include <random>
#include <spdlog/spdlog.h>
#include <string>
#include <thread>
#include <vector>

using namespace turing::bench;

namespace {

struct size_case {
  std::uint64_t bytes = 0;
  int items = 0;
};

struct options {
  std::vector<size_case> cases{{1 << 10, 2000}, {5 << 20, 20}, {50 << 20, 4}};
  std::string database;
  /// The script stage's modes to measure, each over every size.
  std::vector<std::string> modes{"process", "worker"};
};

options parse(int argc, char** argv) {
  options o;
  auto usage = [] {
    std::fprintf(stderr, "usage: payload_bench [--sizes SIZE:ITEMS,...] [--modes MODE,...] "
                         "[--database URL]\n"
                         "  e.g. --sizes 1KB:2000,5MB:20,50MB:4 (the default)\n"
                         "  --modes process,worker (the default): the script stage's modes\n");
    std::exit(2);
  };
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (i + 1 >= argc)
      usage();
    std::string value = argv[++i];
    if (flag == "--database") {
      o.database = value;
    } else if (flag == "--modes") {
      o.modes.clear();
      size_t at = 0;
      while (at <= value.size()) {
        auto end = value.find(',', at);
        auto mode = value.substr(at, end == std::string::npos ? std::string::npos : end - at);
        if (mode != "process" && mode != "worker") {
          std::fprintf(stderr, "payload_bench: bad mode '%s' (process or worker)\n", mode.c_str());
          std::exit(2);
        }
        o.modes.push_back(mode);
        if (end == std::string::npos)
          break;
        at = end + 1;
      }
    } else if (flag == "--sizes") {
      o.cases.clear();
      size_t at = 0;
      while (at <= value.size()) {
        auto end = value.find(',', at);
        auto part = value.substr(at, end == std::string::npos ? std::string::npos : end - at);
        auto colon = part.find(':');
        auto size = turing::config::parse_byte_size(part.substr(0, colon));
        int items = colon == std::string::npos ? 0 : std::atoi(part.c_str() + colon + 1);
        if (!size || *size < 64 || items < 1) {
          std::fprintf(stderr, "payload_bench: bad case '%s' (want SIZE:ITEMS, e.g. 5MB:20)\n",
                       part.c_str());
          std::exit(2);
        }
        o.cases.push_back({*size, items});
        if (end == std::string::npos)
          break;
        at = end + 1;
      }
    } else {
      usage();
    }
  }
  return o;
}

/// Text that compresses as prose does: words drawn from a fixed vocabulary.
std::string document(std::uint64_t bytes, std::mt19937_64& rng) {
  static const std::vector<std::string> vocabulary = [] {
    std::mt19937_64 words{42};
    std::vector<std::string> v;
    for (int i = 0; i < 2000; ++i) {
      std::string w;
      auto len = 2 + words() % 9;
      for (size_t j = 0; j < len; ++j)
        w += static_cast<char>('a' + words() % 26);
      v.push_back(w);
    }
    return v;
  }();
  std::string out;
  out.reserve(bytes + 16);
  while (out.size() < bytes) {
    out += vocabulary[rng() % vocabulary.size()];
    out += ' ';
  }
  out.resize(bytes);
  return out;
}

fs::path write_items(const fs::path& dir, const size_case& c) {
  auto path = dir / ("items-" + std::to_string(c.bytes) + ".jsonl");
  std::ofstream out{path};
  std::mt19937_64 rng{c.bytes};
  // {"n":i,"document":"..."}: the document fills the item to its size.
  for (int i = 0; i < c.items; ++i) {
    auto head = "{\"n\":" + std::to_string(i) + ",\"document\":\"";
    auto fill = c.bytes > head.size() + 2 ? c.bytes - head.size() - 2 : 1;
    out << head << document(fill, rng) << "\"}\n";
  }
  return path;
}

fs::path write_config(const fs::path& dir, const std::string& dsn, const std::string& mode) {
  auto path = dir / ("payloads-" + mode + ".toml");
  std::ofstream out{path};
  out << "sinks = [\"done\"]\n\n[database]\nurl = \"" << dsn << "\"\n\n"
      << "[runtime]\nmax_payload = \"255MB\"\n\n"
      << "[stages.normalize]\nhandler = \"builtin\"\nfunction = \"turing.pass\"\nentry = true\n"
      << "routes = { ok = \"check\" }\n\n"
      << "[stages.check]\nhandler = \"script\"\n";
  if (mode == "worker")
    // Long-lived children, each reading one whole payload line per request, as Lucy does.
    out << "mode = \"worker\"\n"
        << "command = [\"python3\", \"-c\", \"import sys\\nfor line in sys.stdin:\\n    "
           "print('{\\\"outcome\\\": \\\"ok\\\", \\\"output\\\": {\\\"checked\\\": true}}', "
           "flush=True)\"]\n";
  else
    // A real child per item, reading the whole payload on stdin.
    out << "command = [\"sh\", \"-c\", \"cat > /dev/null; echo "
           "'{\\\"outcome\\\": \\\"ok\\\", \\\"output\\\": {\\\"checked\\\": true}}'\"]\n";
  out << "outcomes = [\"ok\"]\ntimeout = \"5m\"\nroutes = { ok = \"grade\" }\n\n"
      << "[stages.grade]\nhandler = \"builtin\"\nfunction = \"turing.pass\"\n"
      << "routes = { ok = \"commit\" }\n\n"
      << "[stages.commit]\nhandler = \"builtin\"\nfunction = \"turing.pass\"\n"
      << "routes = { ok = \"done\" }\n";
  return path;
}

int64_t database_bytes(const std::string& dsn) {
  pqxx::connection c{dsn};
  pqxx::nontransaction tx{c};
  tx.exec("CHECKPOINT");
  return tx.exec1("SELECT pg_database_size(current_database())")[0].as<int64_t>();
}

} // namespace

int main(int argc, char** argv) {
  auto o = parse(argc, argv);
  spdlog::set_level(spdlog::level::warn);
  char pattern[] = "/tmp/turing-payload-bench-XXXXXX";
  fs::path dir = mkdtemp(pattern);
  fs::permissions(dir, fs::perms(0755));
  auto log = dir / "bench.log";
  std::string dsn = o.database;
  bool embedded = dsn.empty();
  if (embedded) {
    turing::persistence::embedded_cluster_options cluster;
    cluster.data_dir = dir / "cluster";
    dsn = turing::persistence::embedded_cluster::ensure_running(cluster).connection_string();
  }
  {
    pqxx::connection c{dsn};
    turing::persistence::migrate(c);
  }
  std::string turing = TURING_EXE;
  std::printf(
      "payload_bench: 4 stages (builtin, script, builtin, builtin), %s, %u cores; log %s\n\n",
      embedded ? "embedded cluster" : "--database", std::thread::hardware_concurrency(),
      log.c_str());
  // The first (smallest) case is the baseline RSS; for the others, what the
  // run grew beyond it is set against all their items' bytes (every item of
  // a large case can be in flight at once).
  std::printf("| script mode | item size | items | enqueue peak RSS | run peak RSS | (run RSS - "
              "baseline) / input bytes | database growth per item | growth / item size | "
              "items/s |\n");
  std::printf("|---|--:|--:|--:|--:|--:|--:|--:|--:|\n");
  for (const auto& mode : o.modes) {
    auto config = write_config(dir, dsn, mode);
    long baseline_kb = 0;
    for (const auto& c : o.cases) {
      auto items = write_items(dir, c);
      auto before = database_bytes(dsn);
      auto enqueue = run({turing, "--log-level", "warn", "enqueue", "--config", config.string(),
                          "--stage", "normalize", "--file", items.string()},
                         log);
      if (enqueue.status != 0) {
        std::fprintf(stderr, "payload_bench: enqueue failed (exit %d); see %s\n", enqueue.status,
                     log.c_str());
        return 1;
      }
      auto run_id = last_run(dsn);
      auto drained = run(
          {turing, "--log-level", "warn", "run", "--config", config.string(), "--until-drained"},
          log);
      if (drained.status != 0) {
        std::fprintf(stderr, "payload_bench: run failed (exit %d); see %s\n", drained.status,
                     log.c_str());
        return 1;
      }
      auto growth = static_cast<double>(database_bytes(dsn) - before) / c.items;
      auto figures = drain_of_run(dsn, run_id);
      if (baseline_kb == 0)
        baseline_kb = drained.peak_rss_kb;
      auto input = static_cast<double>(c.bytes) * c.items;
      char over[32] = "baseline";
      if (&c != &o.cases.front())
        std::snprintf(over, sizeof over, "%.2f×",
                      (drained.peak_rss_kb - baseline_kb) * 1024.0 / input);
      std::printf(
          "| %s | %s | %d | %.0f MB | %.0f MB | %s | %s | %.2f× | %.1f |\n", mode.c_str(),
          turing::config::format_byte_size(c.bytes).c_str(), c.items, enqueue.peak_rss_kb / 1024.0,
          drained.peak_rss_kb / 1024.0, over,
          turing::config::format_byte_size(static_cast<std::uint64_t>(std::max(0.0, growth)))
              .c_str(),
          growth / static_cast<double>(c.bytes), figures.per_second() / 4);
      fs::remove(items);
      std::fflush(stdout);
    }
  }
  if (embedded) {
    turing::persistence::embedded_cluster::stop(dir / "cluster");
    fs::remove_all(dir / "cluster");
  }
  return 0;
}
