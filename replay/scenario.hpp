// A scenario: a pipeline, the items fed to it, a timeline of faults in
// virtual time, scripted model and script behaviour, and the expected end
// state. Read from a TOML file (format: tests/scenarios/README.md).
#pragma once

#include "persistence/types.hpp"

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace turing::replay {

using millis = std::chrono::milliseconds;
using persistence::json;

/// A scenario file that cannot be used; the message names the file, the key
/// and the problem (one per line when there are several).
class scenario_error : public std::runtime_error {
public:
  using runtime_error::runtime_error;
};

/// How one simulated call behaves: a model call or a script execution. The
/// match fields pick the calls a rule applies to (all given ones must hold);
/// the effect fields left unset fall back to the handler's defaults.
struct call_rule {
  // -- match
  std::optional<std::string> stage;
  std::optional<std::string> item; ///< the item's key
  std::optional<int> attempt;      ///< the message's attempt number, 1-based
  std::optional<int> call;         ///< the n-th call this handler received, 1-based
  // -- effect
  std::optional<millis> latency;
  std::optional<std::string> reply; ///< model: the answer's text; script: its stdout
  std::optional<int> http_status;   ///< model: an HTTP error instead of an answer
  std::optional<int> exit_status;   ///< script: non-zero fails the execution
  std::optional<std::string> stderr_text;
  std::optional<bool> hang;              ///< never answers (a model call ends at its HTTP timeout)
  std::optional<bool> crash;             ///< the executor actor dies abnormally
  std::optional<bool> refused;           ///< model: the server refuses the connection (it is down)
  std::optional<millis> latency_step;    ///< the latency grows by this per call (a slowing model)
  std::optional<millis> retry_after;     ///< model: the HTTP error's Retry-After
  std::optional<std::string> error_body; ///< model: the HTTP error's body
  std::optional<int64_t> tokens;         ///< model: prompt + completion tokens the answer reports
};

/// Scripted behaviour of one model (by its config name) or script stage.
struct simulated_handler {
  call_rule defaults;
  std::vector<call_rule> calls; ///< first match wins
};

/// The effect a call gets once its rule and the defaults are merged.
struct call_effect {
  millis latency{100};
  std::string reply;
  int http_status = 0;
  int exit_status = 0;
  std::string stderr_text;
  bool hang = false;
  bool crash = false;
  bool refused = false;
  std::optional<millis> retry_after;
  std::string error_body;
  int64_t tokens = -1;
};

/// Which call a rule is asked about.
struct call_key {
  std::string stage;
  std::string item;
  int attempt = 0;
  int call = 0;
};

call_effect resolve(const simulated_handler& handler, const call_key& key);

struct enqueue_spec {
  std::string stage;
  std::string label;
  int max_attempts = 3;
  /// Explicit items (key, payload), or generated ones: `count` items keyed
  /// `<key_prefix><i>` whose payload is `payload` with "{i}" in strings
  /// replaced by the index.
  std::vector<persistence::new_item> items;
};

enum class event_kind {
  start_node,    ///< node: start (or restart) a node's whole tree
  kill_node,     ///< node: SIGKILL semantics, every actor dies, nothing is released
  stop_node,     ///< node: graceful stop (drain, release, stop the tree)
  crash_actor,   ///< node + actor: the named actor dies abnormally
  stall_actor,   ///< node + actor, for: the actor stops processing its mailbox
  database_down, ///< for: every store call fails as unavailable
  model_down,    ///< model, for: the model's server refuses every connection
  in_doubt,      ///< operation, times: its next calls commit, then report a lost connection
  clock_jump,    ///< by: the wall clock (the store's now) jumps; CAF's steady clock does not
  enqueue,       ///< enqueue
  freeze_node,   ///< node, for: SIGSTOP semantics; its CAF links drop after connection_timeout
  partition,     ///< node, for: its CAF links to every peer drop; the database still reaches it
};

struct timeline_event {
  millis at{0};
  event_kind kind = event_kind::start_node;
  std::string node;
  std::string actor; ///< a directory name: "pump/<stage>", "lease_keeper", "model/<name>", ...
  std::string model; ///< model_down: the model's config name
  millis duration{0};
  millis jump{0};
  std::string operation; ///< in_doubt: complete, fail, claim, release or heartbeat
  int times = 1;
  enqueue_spec enqueue;
};

struct item_expectation {
  std::string key;
  std::optional<std::string> sink;
  std::optional<std::vector<std::string>> results; ///< every attempt's result, in order
  /// By stage: that stage's attempt results in order (branches of a fan-out
  /// interleave differently run to run; one stage's attempts do not).
  std::map<std::string, std::vector<std::string>> stage_results;
  std::optional<json> result;                ///< fields the item's result must have
  std::optional<std::string> error_contains; ///< in its last attempt's error
};

struct attempt_expectation {
  std::string item;
  int n = 1; ///< the item's n-th attempt (all stages, in order), 1-based
  std::optional<std::string> stage;
  std::optional<std::string> result;
  std::optional<std::string> node;
  std::optional<millis> min_duration;
  std::optional<millis> max_duration;
  std::optional<millis> finished_before; ///< virtual time since the start
  std::optional<std::string> error_contains;
};

/// A simulated GPU (or model host): it holds max_loaded of its models at
/// once; a call to another model first waits `load` while the least recently
/// used one is unloaded (what a real Ollama does).
struct simulated_gpu {
  std::vector<std::string> models; ///< by the pipeline's model names
  int max_loaded = 1;
  millis load{0};
};

struct expectations {
  std::optional<std::string> config_error; ///< the pipeline must be rejected with this
  bool finished = true;                    ///< every run finished by the end
  std::map<std::string, int64_t> sinks;
  std::map<std::string, int64_t> attempts;           ///< by result
  std::map<std::string, int64_t> model_calls;        ///< started, by model
  std::map<std::string, int64_t> peak_model_calls;   ///< most in flight at once, by model
  std::map<std::string, int64_t> script_runs;        ///< started, by stage
  std::map<std::string, int64_t> max_stage_switches; ///< by model, at most
  std::map<std::string, int64_t> max_loads; ///< by simulated GPU: model loads, the first included
  std::map<std::string, int64_t> min_loads; ///< by simulated GPU
  /// By model: the longest any call waited from its message's claim to its
  /// start, at most.
  std::map<std::string, millis> max_call_wait;
  /// By model: in any 60 s, at most this many calls started / tokens answered.
  std::map<std::string, int64_t> max_requests_per_minute;
  std::map<std::string, int64_t> max_tokens_per_minute;
  std::optional<millis> makespan_min;
  std::optional<millis> makespan_max;
  std::vector<std::string> trace_contains; ///< in this order
  std::vector<std::string> trace_lacks;
  std::vector<item_expectation> items;
  std::vector<attempt_expectation> attempt_checks;
};

struct scenario {
  std::filesystem::path file;
  std::string name;
  int incident = 0; ///< field report incident, 0 for our own
  std::string summary;
  /// Set when the scenario is expected to fail until a feature exists; says why.
  std::string expected_failure;
  std::string pipeline_toml;
  std::string pipeline_name; ///< for config error messages
  std::filesystem::path pipeline_dir;
  std::vector<std::string> nodes{"node-a"};         ///< started at 0 s
  std::vector<timeline_event> timeline;             ///< sorted by `at` (stable)
  std::map<std::string, simulated_handler> models;  ///< by model name
  std::map<std::string, simulated_handler> scripts; ///< by stage name
  std::map<std::string, simulated_gpu> gpus;        ///< by name
  millis settle{10000};                ///< keeps running this long after everything finished
  millis limit{std::chrono::hours{2}}; ///< never runs past this virtual time
  expectations expect;
};

/// Reads a scenario file; throws scenario_error naming every problem.
scenario load_scenario(const std::filesystem::path& file);

/// The same from text (tests); `file` names it in errors and anchors
/// relative paths.
scenario parse_scenario(const std::string& toml_text, const std::filesystem::path& file);

} // namespace turing::replay
