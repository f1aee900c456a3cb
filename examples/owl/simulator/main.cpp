// turing-model-sim: the command line around model_server. Reads defaults,
// then --config, then flags; serves until SIGTERM or SIGINT; exits 0.
#include "domain_keywords.hpp"
#include "server.hpp"

#include <CLI/CLI.hpp>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <pthread.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace sim = turing::model_sim;

namespace {

// Writes the port to `path` through a temporary file and a rename, so a
// script polling for the file never reads half of it.
bool write_port_file(const std::string& path, int port) {
  auto tmp = path + ".tmp";
  {
    std::ofstream out{tmp, std::ios::trunc};
    out << port << '\n';
    if (!out.flush())
      return false;
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  return !ec;
}

// "--fault hang=0.02": the rate for every model, the default one included.
bool apply_fault_flag(sim::sim_config& config, const std::string& flag, std::string& error) {
  auto eq = flag.find('=');
  auto kind = sim::parse_fault(flag.substr(0, eq));
  if (eq == std::string::npos || !kind || *kind == sim::fault::none) {
    error =
        "--fault expects KIND=P with KIND one of hang, http_500, garbage, slow, crash, http_429";
    return false;
  }
  double p = 0;
  try {
    std::size_t used = 0;
    p = std::stod(flag.substr(eq + 1), &used);
    if (used != flag.size() - eq - 1)
      throw std::invalid_argument{"trailing characters"};
  } catch (const std::exception&) {
    error = "--fault " + flag + ": the probability is not a number";
    return false;
  }
  *config.default_model.faults.slot(*kind) = p;
  for (auto& m : config.models)
    *m.faults.slot(*kind) = p;
  return true;
}

// "--gpu gpu0=mistral-nemo:12b,qwen2.5-coder:7b": the models on that GPU,
// replacing those the config file gave it (a model name may hold ':', not ',').
bool apply_gpu_flag(sim::sim_config& config, const std::string& flag, std::string& error) {
  auto eq = flag.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == flag.size()) {
    error = "--gpu expects NAME=MODEL[,MODEL...], got '" + flag + "'";
    return false;
  }
  std::vector<std::string> models;
  std::size_t start = eq + 1;
  for (;;) {
    auto comma = flag.find(',', start);
    models.push_back(flag.substr(start, comma - start));
    if (models.back().empty()) {
      error = "--gpu " + flag + ": an empty model name";
      return false;
    }
    if (comma == std::string::npos)
      break;
    start = comma + 1;
  }
  config.gpu(flag.substr(0, eq)).models = std::move(models);
  return true;
}

std::string model_list(const sim::sim_config& config) {
  std::string out;
  for (const auto& m : config.models)
    out += (out.empty() ? "" : ", ") + m.name;
  return out.empty() ? "none" : out;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"turing-model-sim: a simulated LLM server speaking the Ollama and OpenAI chat "
               "APIs, with deterministic answers for the OWL skill pipeline and configurable "
               "latency and faults."};
  std::string config_file;
  std::string host;
  int port = 0;
  std::string port_file;
  double latency_scale = 0;
  std::string known_skills_file;
  bool accept_any = true;
  int threads = 0;
  std::uint64_t seed = 0;
  std::vector<std::string> faults;
  double slowdown = 0;
  std::vector<std::string> gpus;
  int max_loaded = 0;
  double load_ms = 0;
  std::string log_level = "info";
  std::string tls_cert;
  std::string tls_key;
  app.add_option("--config", config_file, "TOML configuration file")->check(CLI::ExistingFile);
  auto* host_opt = app.add_option("--host", host, "address to listen on (default 127.0.0.1)");
  auto* port_opt = app.add_option("--port", port, "port; 0 picks a free one (default 11435)");
  app.add_option("--port-file", port_file, "write the bound port to this file once listening");
  auto* scale_opt = app.add_option("--latency-scale", latency_scale,
                                   "multiply every model latency (default 0.0025 = 1/400)");
  auto* known_opt = app.add_option("--known-skills", known_skills_file,
                                   "canonical skills for the dedupe task, one per line");
  auto* any_opt = app.add_flag("--accept-any-model,!--no-accept-any-model", accept_any,
                               "serve unlisted models with the default profile (default) "
                               "instead of answering 404");
  auto* threads_opt = app.add_option("--threads", threads, "worker threads (default 64)");
  auto* seed_opt = app.add_option("--seed", seed, "mixed into every per-request seed");
  app.add_option(
      "--fault", faults,
      "KIND=P: fault probability for every model (hang, http_500, garbage, slow, http_429, "
      "crash); repeatable");
  auto* slowdown_opt = app.add_option(
      "--slowdown", slowdown,
      "for every model: latency times (1 + S x calls so far / 1000), so 0.5 is 1.5x slower "
      "after 1000 calls (default 0: never slows)");
  app.add_option("--gpu", gpus,
                 "NAME=MODEL[,MODEL...]: these models share GPU NAME, at most --max-loaded in "
                 "memory at once; repeatable");
  auto* max_loaded_opt = app.add_option("--max-loaded", max_loaded,
                                        "for every GPU: models it holds at once (default 1; "
                                        "Ollama's OLLAMA_MAX_LOADED_MODELS)");
  auto* load_ms_opt =
      app.add_option("--load-ms", load_ms,
                     "for every GPU: real-world milliseconds to load a model, scaled "
                     "like latencies (default 2000)");
  app.add_option("--tls-cert", tls_cert, "PEM certificate: serve https (needs --tls-key)")
      ->check(CLI::ExistingFile);
  app.add_option("--tls-key", tls_key, "PEM private key, unencrypted, of --tls-cert")
      ->check(CLI::ExistingFile);
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  CLI11_PARSE(app, argc, argv);

  auto logger = spdlog::stderr_color_mt("model-sim");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(log_level));

  auto config = sim::default_sim_config();
  if (!config_file.empty()) {
    if (auto e = sim::apply_toml_file(config, config_file)) {
      spdlog::error("{}", *e);
      return 2;
    }
  }
  if (*host_opt)
    config.host = host;
  if (*port_opt)
    config.port = port;
  if (*scale_opt)
    config.latency_scale = latency_scale;
  if (*known_opt)
    config.known_skills_path = known_skills_file;
  if (*any_opt)
    config.accept_any_model = accept_any;
  if (*threads_opt)
    config.threads = threads;
  if (*seed_opt)
    config.seed = seed;
  config.tls_cert = tls_cert;
  config.tls_key = tls_key;
  for (const auto& f : faults) {
    std::string error;
    if (!apply_fault_flag(config, f, error)) {
      spdlog::error("{}", error);
      return 2;
    }
  }
  // Like --fault: every model, the default one included.
  if (*slowdown_opt) {
    if (!(std::isfinite(slowdown) && slowdown >= 0.0)) {
      spdlog::error("--slowdown must be a finite number of at least 0, got {}", slowdown);
      return 2;
    }
    config.default_model.slowdown = slowdown;
    for (auto& m : config.models)
      m.slowdown = slowdown;
  }
  for (const auto& g : gpus) {
    std::string error;
    if (!apply_gpu_flag(config, g, error)) {
      spdlog::error("{}", error);
      return 2;
    }
  }
  if ((*max_loaded_opt || *load_ms_opt) && config.gpus.empty())
    spdlog::warn("--max-loaded and --load-ms apply to GPUs, and none is configured (--gpu)");
  for (auto& g : config.gpus) {
    if (*max_loaded_opt)
      g.max_loaded = max_loaded;
    if (*load_ms_opt)
      g.load_ms = load_ms;
  }
  if (auto e = sim::check_config(config)) {
    spdlog::error("invalid configuration: {}", *e);
    return 2;
  }
  for (const auto& g : config.gpus) {
    std::string models;
    for (const auto& m : g.models)
      models += (models.empty() ? "" : ", ") + m;
    spdlog::info("GPU '{}': {} (at most {} loaded; a load takes {:g} ms)", g.name,
                 models.empty() ? "no models" : models, g.max_loaded,
                 g.load_ms * config.latency_scale);
  }

  sim::known_skills registry;
  if (config.known_skills_path.empty()) {
    spdlog::warn("no known skills file: every dedupe answer will be 'passed'");
  } else {
    std::string error;
    auto loaded = sim::load_known_skills(config.known_skills_path, error);
    if (!loaded) {
      spdlog::error("{}", error);
      return 2;
    }
    registry = std::move(*loaded);
  }
  auto known_count = registry.size();

  // Signals go to one thread that waits for them, so stopping happens in
  // ordinary code instead of an async-signal handler. The mask is set before
  // any thread starts, so every thread inherits it.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  sim::model_server server{config, sim::answer_rules{std::move(registry)}};
  std::atomic<bool> done{false};
  std::thread signal_thread{[&] {
    int sig = 0;
    sigwait(&signals, &sig);
    if (done)
      return; // main's own wake-up call below
    spdlog::info("received {}, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    server.stop();
  }};

  bool port_file_failed = false;
  bool ok = server.run([&](int bound) {
    if (!port_file.empty() && !write_port_file(port_file, bound)) {
      spdlog::error("cannot write port file '{}'", port_file);
      port_file_failed = true;
      server.stop();
      return;
    }
    std::printf("turing-model-sim listening on %s://%s:%d (models: %s; any model: %s; "
                "latency scale %g; known skills: %zu; keywords: %zu)\n",
                config.tls_cert.empty() ? "http" : "https", config.host.c_str(), bound,
                model_list(config).c_str(), config.accept_any_model ? "yes" : "no",
                config.latency_scale, known_count, sim::keyword_count());
    std::fflush(stdout);
  });
  if (!ok)
    spdlog::error("{}", server.error());
  // Wake the signal thread in case no signal came (a bind failure, say); if
  // one did, this SIGTERM stays pending and blocked until exit.
  done = true;
  kill(getpid(), SIGTERM);
  signal_thread.join();
  return ok && !port_file_failed ? 0 : 1;
}
