// The validated pipeline configuration: database, runtime limits, models,
// stages with their routes and joins, and sinks. Built by config_loader.
#pragma once

#include "config/duration.hpp"

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace turing::config {

/// A position in a config file; line and column are 1-based, 0 when unknown.
struct source_location {
  std::string file;
  int line = 0;
  int column = 0;
};

struct database_config {
  /// libpq URL or key=value string; empty means the embedded cluster.
  std::string url;
  /// Absolute; home of the embedded cluster.
  std::filesystem::path data_dir;
};

/// The most messages one claim takes when the config sets no claim_batch.
inline constexpr int default_claim_batch = 512;

struct runtime_config {
  /// Empty until the runtime fills in "<hostname>-<pid>".
  std::string node;
  millis lease_ttl{30000};
  millis heartbeat_interval{10000};
  millis rescue_interval{5000};
  millis poll_interval{2000};
  millis shutdown_grace{20000};
  millis default_timeout{60000};
  /// The most messages one claim takes (still bounded by free capacity).
  int claim_batch = default_claim_batch;
  /// A message whose lease expired with its node (SIGKILL, an outage, a
  /// partition) this many times is dead-lettered; such lost attempts do not
  /// count against a stage's max_attempts, which bounds failures.
  int max_lost_attempts = 10;
  /// History retention: done messages (and their attempts) of items that
  /// finished longer ago than this are removed by the runtime; 0 keeps them
  /// forever. Totals in status and report do not change.
  millis retain_done{std::chrono::hours(24 * 7)};
  /// The largest payload an item may carry at any stage (its input with the
  /// outputs laid over it, as the next stage receives it). `turing enqueue`
  /// refuses bigger items; an output that would make a payload bigger fails
  /// its attempt without a retry.
  std::uint64_t max_payload = std::uint64_t{16} << 20;
  /// Payload bytes one claim takes at most (the first message always): a
  /// stage of large payloads claims a few at a time instead of claim_batch.
  std::uint64_t claim_bytes = std::uint64_t{32} << 20;
  /// The largest prompt a model stage may send, checked when it is rendered.
  std::uint64_t max_prompt = std::uint64_t{1} << 20;
  /// A stage pump that leaves its supervisor's liveness probe unanswered
  /// this long is deemed stalled, killed and restarted (field report,
  /// incident 15).
  millis stall_timeout{10000};
  /// A completion hands the messages it creates to this node's pumps of the
  /// next stages already claimed, as far as their free places go (saves a
  /// claim per message); false: every message is claimed from the table.
  bool claim_handoffs = true;
};

enum class model_api { ollama, openai };

struct model_config {
  std::string name;
  model_api api = model_api::ollama;
  /// http:// or https:// base URL without a trailing '/'.
  std::string endpoint;
  /// The model name sent to the server.
  std::string model;
  int concurrency = 1;
  std::optional<double> temperature;
  /// Name of an environment variable holding a bearer token; empty for none.
  std::string api_key_env;
  /// PEM CA bundle (absolute) that https endpoints are verified against
  /// instead of the system store; empty for the system store.
  std::filesystem::path ca_file;
  /// Verify the server's certificate and host name (https only). false is
  /// for test servers with self-signed certificates.
  bool tls_verify = true;
  /// How long the model's server may stay unreachable (connection refused,
  /// HTTP 502/503/504) while its calls wait without spending attempts;
  /// past this, waiting calls are dead-lettered with that reason.
  millis max_unavailable{6 * 3600 * 1000};
  /// How often one call may be throttled (HTTP 429, or 503 with Retry-After)
  /// before its attempt counts as failed; throttled calls wait without
  /// spending attempts until then.
  int max_throttled = 20;
  /// Ask the server to stream its reply (Ollama NDJSON, OpenAI server-sent
  /// events): a call that keeps sending is alive, and one that sends nothing
  /// for idle_timeout is ended then, long before its total timeout.
  bool stream = true;
  millis idle_timeout{120000};
  /// A model (in [models]) that takes the calls whose prompt overflows this
  /// model's context; empty: such a call fails at once with that reason.
  std::string fallback_model;
  /// Budgets over any 60 s: calls started, and tokens (prompt + completion,
  /// as the replies count them); 0: none. Calls wait in the model's queue,
  /// unspent, until the budget allows them.
  int64_t requests_per_minute = 0;
  int64_t tokens_per_minute = 0;
  /// The sliding window those budgets are counted over: a minute and a
  /// second (clear of 60 s windows measured elsewhere). Not a setting: a
  /// real-time replay scales it with every other duration.
  millis budget_window{61000};
  /// The GPU (a [gpus] entry) the model is loaded on; empty: none declared,
  /// its calls are not scheduled with other models'.
  std::string gpu;
  source_location where;
};

/// A GPU (or model host) holding a few models at once: its scheduler runs
/// the ready calls of loaded models in waves and swaps models only when a
/// wave is drained or a call has waited max_wait (the fairness bound).
struct gpu_config {
  std::string name;
  /// Models it holds at once (Ollama's OLLAMA_MAX_LOADED_MODELS).
  int max_loaded = 1;
  /// What loading a model costs; refined from the load_duration of replies.
  millis swap_cost{10000};
  /// The fairness bound: a call waiting this long for its model's turn
  /// makes the GPU swap to it once the calls in flight end.
  millis max_wait{300000};
  /// How long a loaded model whose queue ran dry keeps its turn, waiting for
  /// its stage's next call, before another model is loaded; unset: a tenth
  /// of the swap cost, within [10 ms, 2 s].
  std::optional<millis> linger;
  /// The [models] that name this GPU, in file order.
  std::vector<std::string> models;
  source_location where;

  millis linger_or_default() const;
};

/// `[cluster]`: distributed mode. Nodes publish themselves over mutual TLS
/// (CAF's openssl module) and connect to the live nodes they find in the
/// database; absent, this node talks to no other (the database still
/// coordinates every node that shares it).
struct cluster_config {
  bool enabled = false;
  /// Where this node listens for its peers.
  std::string listen_host;
  uint16_t listen_port = 0;
  /// Where peers reach it (recorded in turing.nodes); listen's by default.
  std::string advertise_host;
  uint16_t advertise_port = 0;
  /// PEM files, absolute. Required: without them CAF would fall back to an
  /// anonymous cipher that anyone can connect to or sit in the middle of.
  std::filesystem::path certificate;
  std::filesystem::path key;
  std::filesystem::path ca;
  /// CAF's BASP heartbeat, and how long a silent peer is given before its
  /// connection is dropped (a hung or partitioned peer is noticed by then).
  millis heartbeat_interval{1000};
  millis connection_timeout{5000};
  /// The bound on one attempt to reach a peer (TLS probe, connect, hello).
  millis connect_timeout{5000};
  source_location where;
};

/// `[http]`: the node's operations listener (/metrics, /healthz, /api/status
/// and the dashboard). On by default at loopback, which only this host reaches.
struct http_config {
  bool enabled = true;
  std::string listen_host = "127.0.0.1";
  uint16_t listen_port = 9464; ///< 0: any free port (the chosen one is logged)
  /// The address was written in the config: failing to bind it stops the
  /// node (exit 2); the default address being taken is only a warning.
  bool explicit_listen = false;
  source_location where;
};

/// `[nodes.<name>]`: what one node of a cluster hosts. A model listed here
/// has its endpoint on that node only (its limits then hold once for the
/// cluster; other nodes send their calls to it over CAF); a model no node
/// lists runs on every node. A node with `stages` runs only those stages'
/// pumps; without `stages`, or without an entry, it runs every stage.
struct node_placement {
  std::string node;
  std::vector<std::string> models;
  /// Unset: every stage.
  std::optional<std::vector<std::string>> stages;
  source_location where;
};

/// Budgets shared by every model whose api_key_env names the same variable
/// (a provider's limits are per key, not per model): `[api_keys.<VAR>]`.
struct api_key_budget {
  std::string env;
  int64_t requests_per_minute = 0;
  int64_t tokens_per_minute = 0;
  /// As model_config::budget_window.
  millis budget_window{61000};
  /// The [models] that use this key, in file order.
  std::vector<std::string> models;
  source_location where;
};

struct retry_policy {
  int max_attempts = 3;
  millis backoff{1000};
  millis backoff_max{60000};
  double backoff_multiplier = 2.0;
  double jitter = 0.2;
};

enum class handler_kind { builtin, script, model };

/// How a script stage runs its children: a fresh child per execution, or a
/// pool of long-lived children fed one JSON line per execution.
enum class script_mode { process, worker };

struct route_target {
  enum class kind { stage, sink } type = kind::stage;
  std::string name;

  friend bool operator==(const route_target& x, const route_target& y) {
    return x.type == y.type && x.name == y.name;
  }
  friend bool operator!=(const route_target& x, const route_target& y) { return !(x == y); }
};

/// A builtin stage's concurrency when the config sets none: two claim
/// batches, so that the next batch is claimed while the results of the
/// last one are written (at one batch the pump waited for each write).
/// Against 256 and 256, 1,024 and 512 drained a 1-stage no-op pipeline
/// 1.2-1.3x and a 7-stage chain 1.15x faster (pipeline_bench, medians of
/// 6-9 interleaved rounds).
inline constexpr int default_builtin_concurrency = 2 * default_claim_batch;

/// The most executions a stage may have in flight (`stages.X.concurrency`).
inline constexpr int max_stage_concurrency = 10000;

/// A builtin stage's concurrency when the config sets none, given the
/// runtime's claim_batch: two batches of a larger claim_batch, so it keeps
/// the overlap above.
constexpr int builtin_concurrency_for(int claim_batch) {
  return std::min(std::max(2 * claim_batch, default_builtin_concurrency), max_stage_concurrency);
}

/// `timeout = "auto"`: the deadline follows the stage's own latency, the
/// field report's rule: p99 of its recent completed attempts × factor,
/// within [floor, ceiling]; the midpoint until enough attempts are known.
struct adaptive_timeout {
  millis floor{1000};
  millis ceiling{0};
  double factor = 2.0;
  millis midpoint() const { return floor + (ceiling - floor) / 2; }
};

struct stage_config {
  std::string name;
  handler_kind handler = handler_kind::builtin;
  bool entry = false;
  int concurrency = 1;
  /// Unset means runtime.default_timeout; see pipeline_config::timeout_of.
  std::optional<millis> timeout;
  /// Set by `timeout = "auto"` (timeout is then unset).
  std::optional<adaptive_timeout> auto_timeout;
  retry_policy retry;
  /// Every label the handler may produce; for builtins, the catalog's list.
  std::vector<std::string> outcomes;
  /// outcome -> one target, or several for a fan-out.
  std::map<std::string, std::vector<route_target>> routes;
  /// Upstream stages a join stage waits for; empty for ordinary stages.
  std::vector<std::string> join;

  // -- builtin ----------------------------------------------------------------

  std::string function;

  // -- script -----------------------------------------------------------------

  /// argv; argv[0] is resolved through PATH by the runtime.
  std::vector<std::string> command;
  /// Absolute; the child's working directory (the config file's by default).
  std::filesystem::path working_dir;
  /// Extra environment variables for the child.
  std::map<std::string, std::string> env;
  /// worker: `concurrency` long-lived children, one JSON line per execution.
  script_mode mode = script_mode::process;

  // -- model ------------------------------------------------------------------

  /// Name of a model_config.
  std::string model;
  /// Sent verbatim; not a template.
  std::string system_prompt;
  /// The template, also when it came from prompt_file.
  std::string prompt;
  /// Exactly one of outcome_field and fixed_outcome is set.
  std::string outcome_field;
  std::string fixed_outcome;
  std::vector<std::string> required_fields;

  source_location where;
};

struct pipeline_config {
  /// The file it was loaded from (absolute when loaded from disk).
  std::filesystem::path file;
  database_config database;
  runtime_config runtime;
  /// In file order.
  std::vector<model_config> models;
  /// In file order.
  std::vector<stage_config> stages;
  /// In file order.
  std::vector<gpu_config> gpus;
  /// In file order.
  std::vector<api_key_budget> api_keys;
  cluster_config cluster;
  http_config http;
  /// In file order.
  std::vector<node_placement> nodes;
  std::vector<std::string> sinks;

  const stage_config* find_stage(std::string_view name) const;
  const model_config* find_model(std::string_view name) const;
  const gpu_config* find_gpu(std::string_view name) const;
  const api_key_budget* find_api_key(std::string_view env) const;
  bool is_sink(std::string_view name) const;
  /// The node a model's endpoint lives on; empty when every node hosts it.
  std::string model_host(std::string_view model) const;
  /// Whether `node` runs the stage's pump.
  bool runs_stage(std::string_view node, std::string_view stage) const;
  /// The stage's own timeout, else runtime.default_timeout; with
  /// timeout = "auto", the deadline it starts from (the midpoint).
  millis timeout_of(const stage_config& stage) const;
};

/// What the runtime's builtin registry declares: function name -> outcomes it
/// can produce. The loader checks builtin stages against it.
using builtin_catalog = std::map<std::string, std::vector<std::string>>;

/// The name of the runtime's dead-letter sink; no stage or sink may take it.
inline constexpr std::string_view dead_letter_sink = "dead";

std::string_view to_string(handler_kind kind);
std::string_view to_string(script_mode mode);
std::string_view to_string(model_api api);

} // namespace turing::config
