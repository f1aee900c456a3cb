// The simulated model server: a real HTTP server speaking the Ollama API
// (/api/chat, /api/generate, /api/tags) and OpenAI's chat completions, with
// answers from answer_rules and latency and faults from the configuration.
#pragma once

#include "answer_rules.hpp"
#include "sim_config.hpp"

#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace turing::model_sim {

/// How it works: run() binds, reports the port, then serves on a pool of
/// config.threads workers until stop(). Each model call draws its fault and
/// latency from a generator seeded by (seed, model, prompt, attempt), where
/// attempt counts earlier calls with the same model and prompt, so a run is
/// reproducible while a retry of a failed call draws afresh; a model's
/// slowdown then stretches the latency by the calls it received before
/// (slowed_down). Every wait (a latency, a hang) sleeps on one condition
/// variable that stop() signals, so stop() returns promptly even with hung
/// requests; a hang also ends when its client hangs up (peer_watch) or
/// after config.hang_max_ms. A model on a configured GPU is first admitted by
/// gpu_residency, which may make the call wait for a load (reported as
/// Ollama's load_duration) or for the GPU.
class model_server {
public:
  /// `config` must have passed check_config.
  model_server(sim_config config, answer_rules rules);

  /// Stops the server; the thread inside run() must be joined before this.
  ~model_server();

  model_server(const model_server&) = delete;
  model_server& operator=(const model_server&) = delete;

  /// Binds config.host:config.port (0 = any free port), calls `on_listening`
  /// with the bound port, then serves until stop(). Returns false if binding
  /// or serving failed (see error()). Call once, typically on its own thread.
  bool run(const std::function<void(int port)>& on_listening = {});

  /// Blocks until run() has bound (returns the port) or failed (nullopt), or
  /// `timeout` passes (nullopt).
  std::optional<int> wait_until_listening(std::chrono::milliseconds timeout) const;

  /// Wakes every waiting request and makes run() return. Thread-safe,
  /// idempotent, callable before run() (run() then returns at once).
  void stop();

  /// The counters served at GET /stats.
  nlohmann::json stats() const;

  /// Why run() failed; empty otherwise.
  std::string error() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace turing::model_sim
