// The GPU scheduler's benchmark: the owl pipeline with all three models on one
// simulated GPU (max_loaded 1, 2 s loads scaled like the latencies), run with
// per-stage claiming and with the scheduler's waves; prints swaps and makespan.
#include "bench/bench_support.hpp"
#include "persistence/embedded_cluster.hpp"
#include "persistence/migrations.hpp"

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <httplib.h>
#include <map>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <spdlog/spdlog.h>
#include <stdexcept>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <toml++/toml.h>
#include <unistd.h>
#include <vector>

using namespace turing::bench;

namespace {

const char* const gpu_name = "gpu0";

// Usage: gpu_bench [--items N] [--load-ms MS] [--keep]. One embedded cluster,
// a fresh database and a fresh turing-model-sim per run (its /stats then
// count that run's loads); both runs take the first N skills (default all).
// Exit 1 only when something failed to run, not when the target is missed.
struct options {
  int items = 0; ///< 0: the whole file
  int load_ms = 2000;
  bool keep = false;
};

options parse(int argc, char** argv) {
  options o;
  auto usage = [] {
    std::fprintf(stderr, "usage: gpu_bench [--items N] [--load-ms MS] [--keep]\n");
    std::exit(2);
  };
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--keep") {
      o.keep = true;
      continue;
    }
    if (i + 1 >= argc)
      usage();
    int value = std::atoi(argv[++i]);
    if (flag == "--items" && value > 0)
      o.items = value;
    else if (flag == "--load-ms" && value > 0)
      o.load_ms = value;
    else
      usage();
  }
  return o;
}

std::string shell_line(int argc, char** argv) {
  std::string line;
  for (int i = 0; i < argc; ++i)
    line += (i ? " " : "") + std::string(argv[i]);
  return line;
}

/// The first `n` lines of `from` (all when n is 0); returns the file used and its line count.
std::pair<fs::path, int> take_items(const fs::path& from, const fs::path& dir, int n) {
  std::ifstream in{from};
  if (!in)
    throw std::runtime_error("cannot read " + from.string());
  auto path = dir / "items.jsonl";
  std::ofstream out{path};
  std::string line;
  int count = 0;
  while ((n == 0 || count < n) && std::getline(in, line))
    if (!line.empty()) {
      out << line << '\n';
      ++count;
    }
  return {path, count};
}

// -- the simulator ----------------------------------------------------------------

/// turing-model-sim on the owl's sim.toml with `models` on one GPU holding one at a time.
std::vector<std::string> simulator_argv(const std::vector<std::string>& models, int load_ms,
                                        const fs::path& port_file) {
  std::string gpu = std::string(gpu_name) + "=";
  for (size_t i = 0; i < models.size(); ++i)
    gpu += (i ? "," : "") + models[i];
  return {TURING_MODEL_SIM_EXE,
          "--config",
          std::string(TURING_OWL_DIR) + "/simulator/sim.toml",
          "--port",
          "0",
          "--port-file",
          port_file.string(),
          "--log-level",
          "warn",
          "--gpu",
          gpu,
          "--max-loaded",
          "1",
          "--load-ms",
          std::to_string(load_ms)};
}

/// A turing-model-sim child with every owl model on one GPU; SIGTERMed when destroyed.
class simulator {
public:
  simulator(const std::vector<std::string>& models, int load_ms, const fs::path& dir,
            const fs::path& log) {
    auto port_file = dir / "sim.port";
    fs::remove(port_file);
    argv_ = simulator_argv(models, load_ms, port_file);
    pid_ = spawn(argv_, log);
    for (int i = 0; i < 400 && port_ == 0; ++i) {
      std::ifstream in{port_file};
      if (!(in >> port_)) {
        port_ = 0;
        int status = 0;
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
          pid_ = -1;
          throw std::runtime_error("turing-model-sim exited at start; see " + log.string());
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(25));
      }
    }
    if (port_ == 0)
      throw std::runtime_error("turing-model-sim did not listen within 10 s; see " + log.string());
  }
  simulator(const simulator&) = delete;
  simulator& operator=(const simulator&) = delete;
  ~simulator() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status = 0;
      waitpid(pid_, &status, 0);
    }
  }

  int port() const { return port_; }
  nlohmann::json stats() const {
    httplib::Client client{"127.0.0.1", port_};
    auto res = client.Get("/stats");
    if (!res || res->status != 200)
      throw std::runtime_error("GET /stats from turing-model-sim failed");
    return nlohmann::json::parse(res->body);
  }

private:
  std::vector<std::string> argv_;
  pid_t pid_ = -1;
  int port_ = 0;
};

// -- the configs ------------------------------------------------------------------

/// owl.toml as parsed; its relative paths made absolute (prompts, the script's
/// working_dir, CA files), its models pointed at `port`, its database at `dsn`;
/// with `gpu_swap_cost` set, the models on one [gpus] entry.
fs::path write_config(const fs::path& path, int port, const std::string& dsn,
                      const std::string& gpu_swap_cost) {
  fs::path owl = TURING_OWL_DIR;
  auto root = toml::parse_file((owl / "owl.toml").string());
  auto endpoint = "http://127.0.0.1:" + std::to_string(port);
  root.insert_or_assign("model_endpoint", endpoint);
  root.insert_or_assign("database", toml::table{{"url", dsn}});
  if (auto* models = root["models"].as_table())
    for (auto& [name, node] : *models) {
      auto* m = node.as_table();
      if (!m)
        continue;
      if (m->contains("endpoint"))
        m->insert_or_assign("endpoint", endpoint);
      if (auto ca = (*m)["ca_file"].value<std::string>())
        m->insert_or_assign("ca_file", (owl / *ca).lexically_normal().string());
      if (!gpu_swap_cost.empty())
        m->insert_or_assign("gpu", gpu_name);
    }
  if (auto* stages = root["stages"].as_table())
    for (auto& [name, node] : *stages) {
      auto* s = node.as_table();
      if (!s)
        continue;
      if (auto prompt = (*s)["prompt_file"].value<std::string>())
        s->insert_or_assign("prompt_file", (owl / *prompt).lexically_normal().string());
      if ((*s)["handler"].value_or(std::string()) == "script")
        s->insert_or_assign(
            "working_dir",
            (owl / (*s)["working_dir"].value_or(std::string("."))).lexically_normal().string());
    }
  if (!gpu_swap_cost.empty())
    root.insert_or_assign(
        "gpus",
        toml::table{{gpu_name, toml::table{{"max_loaded", 1}, {"swap_cost", gpu_swap_cost}}}});
  std::ofstream out{path};
  out << "# Generated by gpu_bench from " << (owl / "owl.toml").string() << "\n"
      << toml::toml_formatter{root} << "\n";
  if (!out)
    throw std::runtime_error("cannot write " + path.string());
  return path;
}

/// The `model` names of owl.toml's [models], for the simulator's --gpu.
std::vector<std::string> owl_models() {
  auto root = toml::parse_file(std::string(TURING_OWL_DIR) + "/owl.toml");
  std::vector<std::string> names;
  if (auto* models = root["models"].as_table())
    for (auto& [name, node] : *models)
      if (auto model =
              node.as_table() ? (*node.as_table())["model"].value<std::string>() : std::nullopt)
        names.push_back(*model);
  if (names.empty())
    throw std::runtime_error("owl.toml declares no [models]");
  return names;
}

/// The simulator's latency_scale from its sim.toml (1 when it sets none).
double latency_scale() {
  auto root = toml::parse_file(std::string(TURING_OWL_DIR) + "/simulator/sim.toml");
  return root["latency_scale"].value_or(1.0);
}

// -- one run ----------------------------------------------------------------------

struct run_figures {
  std::string name;
  double makespan = 0; ///< wall time of `turing run --until-drained`
  drain_figures drain;
  int64_t calls = 0, loads = 0, evictions = 0;
  std::map<std::string, int64_t> sinks;         ///< "" = no sink (unfinished or dead)
  std::map<std::string, std::string> sink_of;   ///< item key -> sink
  std::map<std::string, std::string> result_of; ///< item key -> result (jsonb text)
};

run_figures run_owl(const std::string& name, const std::string& dsn, const fs::path& items,
                    const std::vector<std::string>& models, const options& o,
                    const std::string& swap_cost, const fs::path& dir, const fs::path& log) {
  run_figures r;
  r.name = name;
  {
    pqxx::connection c{dsn};
    turing::persistence::migrate(c);
  }
  simulator sim{models, o.load_ms, dir, log};
  auto config = write_config(dir / ("owl-" + name + ".toml"), sim.port(), dsn, swap_cost);
  std::string turing = TURING_EXE;
  auto enqueue = run({turing, "--log-level", "warn", "enqueue", "--config", config.string(),
                      "--stage", "lucy", "--file", items.string(), "--label", name},
                     log);
  if (enqueue.status != 0)
    throw std::runtime_error(name + ": turing enqueue exited " + std::to_string(enqueue.status) +
                             "; see " + log.string());
  auto run_id = last_run(dsn);
  auto before = sim.stats();
  auto drained = run(
      {turing, "--log-level", "warn", "run", "--config", config.string(), "--until-drained"}, log);
  if (drained.status != 0)
    throw std::runtime_error(name + ": turing run exited " + std::to_string(drained.status) +
                             "; see " + log.string());
  r.makespan = drained.seconds;
  auto after = sim.stats();
  auto counter = [](const nlohmann::json& j, const char* key) {
    return j.at("gpus").at(gpu_name).at(key).get<int64_t>();
  };
  r.loads = counter(after, "loads") - counter(before, "loads");
  r.evictions = counter(after, "evictions") - counter(before, "evictions");
  r.calls = after.at("requests").get<int64_t>() - before.at("requests").get<int64_t>();
  r.drain = drain_of_run(dsn, run_id);
  pqxx::connection c{dsn};
  pqxx::work tx{c};
  for (const auto& row :
       tx.exec_params("SELECT coalesce(key, id::text), coalesce(sink, ''), coalesce(result::text, "
                      "'') FROM turing.items WHERE run_id = $1",
                      run_id)) {
    auto key = row[0].as<std::string>();
    auto sink = row[1].as<std::string>();
    r.sink_of[key] = sink;
    r.result_of[key] = row[2].as<std::string>();
    ++r.sinks[sink];
  }
  return r;
}

std::string ratio(double a, double b) {
  char buf[32];
  if (b <= 0)
    return "n/a";
  std::snprintf(buf, sizeof buf, "%.2f×", a / b);
  return buf;
}

} // namespace

int main(int argc, char** argv) {
  auto o = parse(argc, argv);
  spdlog::set_level(spdlog::level::warn);
  char pattern[] = "/tmp/turing-gpu-bench-XXXXXX";
  fs::path dir = mkdtemp(pattern);
  fs::permissions(dir, fs::perms(0755));
  auto log = dir / "bench.log";
  auto cluster_dir = dir / "cluster";
  auto started = clock_type::now();
  int status = 0;
  try {
    auto [items, count] =
        take_items(fs::path(TURING_OWL_DIR) / "data" / "skills.jsonl", dir, o.items);
    auto models = owl_models();
    auto scale = latency_scale();
    // The scheduler's swap_cost is the simulator's load time as the
    // simulator will take it: load_ms x latency_scale, in whole ms (at least 1).
    auto swap_ms = std::max<long>(1, std::lround(o.load_ms * scale));
    auto swap_cost = std::to_string(swap_ms) + "ms";
    std::printf("%s\n", shell_line(argc, argv).c_str());
    std::printf("gpu_bench: owl pipeline, %d skills, models on one GPU (max_loaded 1, load %d ms "
                "x latency_scale %g = %ld ms); waves: [gpus.%s] swap_cost = \"%s\"; "
                "embedded cluster, %u cores; log %s\n",
                count, o.load_ms, scale, swap_ms, gpu_name, swap_cost.c_str(),
                std::thread::hardware_concurrency(), log.c_str());
    std::string sim_line;
    for (const auto& arg : simulator_argv(models, o.load_ms, dir / "sim.port"))
      sim_line += (sim_line.empty() ? "" : " ") + arg;
    std::printf("simulator, started afresh for each run: %s\n", sim_line.c_str());
    std::fflush(stdout);
    auto dsn_of = [&](const std::string& database) {
      turing::persistence::embedded_cluster_options cluster;
      cluster.data_dir = cluster_dir;
      cluster.database = database;
      return turing::persistence::embedded_cluster::ensure_running(cluster).connection_string();
    };
    std::vector<run_figures> runs;
    runs.push_back(run_owl("per-stage", dsn_of("owl_per_stage"), items, models, o, "", dir, log));
    runs.push_back(run_owl("waves", dsn_of("owl_waves"), items, models, o, swap_cost, dir, log));

    std::printf("\n| run | makespan | first claim → last completion | model calls | loads (swaps) "
                "| evictions | committed | merged | rejected | no sink |\n");
    std::printf("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    for (const auto& r : runs) {
      auto sink = [&](const std::string& s) {
        auto it = r.sinks.find(s);
        return static_cast<long long>(it == r.sinks.end() ? 0 : it->second);
      };
      long long other = 0;
      for (const auto& [s, n] : r.sinks)
        if (s != "committed" && s != "merged" && s != "rejected")
          other += n;
      std::printf("| %s | %.1f s | %.1f s | %lld | %lld | %lld | %lld | %lld | %lld | %lld |\n",
                  r.name.c_str(), r.makespan, r.drain.seconds, static_cast<long long>(r.calls),
                  static_cast<long long>(r.loads), static_cast<long long>(r.evictions),
                  sink("committed"), sink("merged"), sink("rejected"), other);
    }
    const auto& a = runs[0];
    const auto& b = runs[1];
    int64_t moved = 0, other_result = 0;
    std::string examples;
    for (const auto& [key, sink] : a.sink_of) {
      auto it = b.sink_of.find(key);
      if (it == b.sink_of.end() || it->second != sink) {
        if (++moved <= 5)
          examples += " " + key + " (" + sink + " vs " +
                      (it == b.sink_of.end() ? "missing" : it->second) + ")";
      } else if (a.result_of.at(key) != b.result_of.at(key)) {
        ++other_result;
      }
    }
    moved +=
        static_cast<int64_t>(b.sink_of.size()) -
        static_cast<int64_t>(std::count_if(b.sink_of.begin(), b.sink_of.end(), [&](const auto& kv) {
          return a.sink_of.count(kv.first) > 0;
        }));
    bool fewer = b.loads > 0 && a.loads >= 3 * b.loads;
    bool shorter = b.makespan < a.makespan;
    std::printf("\nswaps (loads) per-stage / waves: %s (%lld / %lld); makespan per-stage / "
                "waves: %s (%.1f s / %.1f s); every item in the same sink: %s (%lld of %zu "
                "items, by key, differ%s); of the others, %lld have another result\n",
                ratio(static_cast<double>(a.loads), static_cast<double>(b.loads)).c_str(),
                static_cast<long long>(a.loads), static_cast<long long>(b.loads),
                ratio(a.makespan, b.makespan).c_str(), a.makespan, b.makespan,
                moved == 0 ? "yes" : "NO", static_cast<long long>(moved), a.sink_of.size(),
                examples.c_str(), static_cast<long long>(other_result));
    std::printf("target (>= 3× fewer swaps, shorter makespan, same sinks): %s; bench took %.0f s\n",
                fewer && shorter && moved == 0 ? "met" : "NOT met", seconds_since(started));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_bench: %s\n", e.what());
    status = 1;
  }
  try {
    turing::persistence::embedded_cluster::stop(cluster_dir);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_bench: stopping the cluster: %s\n", e.what());
  }
  if (!o.keep && status == 0)
    fs::remove_all(dir);
  return status;
}
