// The turing subcommands; each returns the process exit status.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

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

/// `turing db start|stop`: the embedded cluster.
int db_command(const std::filesystem::path& config, const std::string& action);

} // namespace turing::cli
