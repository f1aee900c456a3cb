// The turing subcommands; each returns the process exit status.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace turing::cli {

struct run_options {
  std::filesystem::path config;
  bool until_drained = false;
  std::string node; ///< overrides runtime.node
};
int run_command(const run_options& options);

struct enqueue_options {
  std::filesystem::path config;
  std::string stage;
  std::filesystem::path file; ///< JSON Lines; "-" reads standard input
  std::string label;
  std::string key_field = "key";
};
int enqueue_command(const enqueue_options& options);

struct status_options {
  std::filesystem::path config;
  bool json = false;
  bool watch = false; ///< redraw live on a terminal; one plain snapshot otherwise
  std::chrono::milliseconds watch_interval{1000};
};
int status_command(const status_options& options);

struct report_options {
  std::filesystem::path config;
  std::optional<int64_t> run_id; ///< default: the latest run
  std::string sink;              ///< with group_by: the sink whose results to group
  std::string group_by;
};
int report_command(const report_options& options);

/// `turing check`: the store's invariants on the live database; exit 4 when
/// any is violated.
int check_command(const std::filesystem::path& config);

int migrate_command(const std::filesystem::path& config);
int validate_command(const std::filesystem::path& config);

struct replay_options {
  std::vector<std::filesystem::path> files;
  std::string store = "memory"; ///< memory or postgres
  bool compare_stores = false;  ///< run on both stores, compare end states
  bool repeat_check = true;     ///< run twice, compare traces
  bool print_trace = false;     ///< print the trace of passing scenarios too
  std::string trace_level = "info";
  /// > 0: real time on CAF's threads, durations multiplied by this; the
  /// outcome must match the deterministic run's.
  double real_time_scale = 0;
  std::string database_url; ///< postgres: a database whose turing schema may be dropped
  std::filesystem::path data_dir = ".turing/replay-db"; ///< else this embedded cluster
};
/// `turing replay`: exit 0 when every scenario passed (or failed as it is
/// marked to), 1 when any failed, 2 for unusable arguments or scenario files.
int replay_command(const replay_options& options);

struct record_options {
  std::filesystem::path config;
  std::optional<int64_t> run_id; ///< default: the latest run
  std::filesystem::path out;
};
/// `turing record`: writes a finished run's audit log as a scenario.
int record_command(const record_options& options);

/// `turing db start|stop`: the embedded cluster.
int db_command(const std::filesystem::path& config, const std::string& action);

} // namespace turing::cli
