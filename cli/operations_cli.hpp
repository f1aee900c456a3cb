// The operator's commands on dead letters and runs (`turing dead list|retry|purge`,
// `turing runs`, `turing cancel`, `turing audit`), kept apart from main.cpp.
#pragma once

#include "persistence/types.hpp"

#include <filesystem>
#include <functional>
#include <optional>
#include <string>

namespace CLI {
class App;
}

namespace turing::cli {

/// Adds the commands to `app`; after parsing, the returned function runs the
/// one given and returns its exit status, or nullopt when none of them was.
std::function<std::optional<int>()> add_operations_commands(CLI::App& app);

struct dead_options {
  std::filesystem::path config;
  persistence::dead_filter filter;
  int limit = 100;
  bool json = false;
  bool all = false; ///< retry, purge: act on every dead letter (no filter given)
  std::string by;   ///< who acts; default $USER@hostname
};
int dead_list_command(const dead_options& options);
int dead_retry_command(const dead_options& options);
int dead_purge_command(const dead_options& options);

struct runs_options {
  std::filesystem::path config;
  bool json = false;
  bool unfinished = false;
};
int runs_command(const runs_options& options);

struct cancel_options {
  std::filesystem::path config;
  int64_t run_id = 0;
  std::string by;
};
int cancel_command(const cancel_options& options);

struct audit_options {
  std::filesystem::path config;
  int limit = 50;
  bool json = false;
};
int audit_command(const audit_options& options);

/// Who an action is recorded as: `by` if given, else $USER@hostname.
std::string acting_operator(const std::string& by);

/// `t` as ISO 8601 in UTC with milliseconds: 2026-12-01T23:01:02.345Z.
std::string utc_time(persistence::time_point t);

} // namespace turing::cli
