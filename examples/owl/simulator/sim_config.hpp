// The simulator's configuration: where it listens, how fast and how badly
// each model behaves, which models share a GPU, and where the known-skills
// registry lives. Built from defaults, then a TOML file, then flags.
#pragma once

#include "fault_plan.hpp"
#include "latency_model.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace turing::model_sim {

/// One simulated model.
struct model_profile {
  std::string name;
  /// Real-world latency; the server multiplies it by latency_scale.
  latency_profile latency;
  /// Share of classify answers moved to the runner-up domain.
  double bias = 0.10;
  fault_rates faults;
  /// The Retry-After (seconds) of an http_429 fault.
  int retry_after_s = 1;
  /// Prompts longer than this many characters get a context-length error
  /// (HTTP 400); 0 for no limit.
  long long context_chars = 0;
  /// How much slower the model gets per 1,000 calls it has received: its
  /// latency times (1 + slowdown × earlier calls / 1000); 0 never slows.
  double slowdown = 0.0;
};

/// One simulated GPU: the models that run on it, of which at most
/// max_loaded are in memory at once (Ollama's OLLAMA_MAX_LOADED_MODELS);
/// calling another one unloads an idle one and loads it, taking load_ms.
struct gpu_profile {
  std::string name;
  /// Model names as clients request them; each on at most one GPU.
  std::vector<std::string> models;
  int max_loaded = 1;
  /// Real-world load time; the server multiplies it by latency_scale.
  double load_ms = 2'000.0;
};

struct sim_config {
  std::string host = "127.0.0.1";
  /// 0 picks a free port. 11435 sits next to Ollama's 11434 so both can run.
  int port = 11435;
  /// Multiplies every model's latency; 1/400 turns the field report's 12 s
  /// median into 30 ms so the demo pipeline finishes in about a minute.
  double latency_scale = 1.0 / 400.0;
  /// Serve unlisted models with default_model's profile instead of a 404.
  bool accept_any_model = true;
  /// One canonical skill per line; empty means no registry (dedupe passes all).
  std::string known_skills_path;
  /// Worker threads: each hung request holds one until its client leaves.
  int threads = 64;
  /// Longest a hung request is held even if the client stays (real time,
  /// not scaled), so a forgotten client cannot pin a worker forever.
  double hang_max_ms = 600'000.0;
  /// Mixed into every per-request seed: another seed, another run.
  std::uint64_t seed = 0;
  /// PEM certificate (chain) and unencrypted key: serve https instead of
  /// http. Both or neither.
  std::string tls_cert;
  std::string tls_key;
  /// The profile of models not listed in `models`.
  model_profile default_model;
  /// The listed models, in declaration order.
  std::vector<model_profile> models;
  /// The GPUs, in declaration order. Models on none are always loaded.
  std::vector<gpu_profile> gpus;

  /// The listed profile named `name`, or nullptr.
  const model_profile* find_model(std::string_view name) const;
  /// The listed profile, creating it from default_model when missing.
  model_profile& model(std::string_view name);
  /// The GPU named `name`, creating it with the defaults when missing.
  gpu_profile& gpu(std::string_view name);
};

/// The defaults: the three models of the OWL pipeline with latencies from
/// the field report (mistral-nemo:12b as the mistral skeptic runs, qwen2.5-
/// coder:7b as the qwen skill extraction, gemma2 as a generic LLM call) and
/// the biases that make Clara A and Clara B disagree on ~18 % of skills.
sim_config default_sim_config();

/// Reads a TOML file over `config` (see README for the keys); relative paths
/// in it are taken from the file's directory. Returns "file:line: problem"
/// for the first error, nullopt on success.
std::optional<std::string> apply_toml_file(sim_config& config, const std::string& path);

/// As apply_toml_file, from text; `source` names it in messages and
/// `base_dir` resolves relative paths.
std::optional<std::string> apply_toml_text(sim_config& config, std::string_view text,
                                           const std::string& source, const std::string& base_dir);

/// The first inconsistency in `config` (bad port, scale, latency, slowdown,
/// rates, a GPU's limits, a model on two GPUs).
std::optional<std::string> check_config(const sim_config& config);

} // namespace turing::model_sim
