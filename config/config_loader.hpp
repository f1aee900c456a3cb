// Loads a pipeline config file: parses the TOML, checks every key, value and
// the stage graph, and reports all errors at once with file, line and key.
#pragma once

#include "config/pipeline_config.hpp"

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace turing::config {

/// One problem in a config file. Loading collects all of them, so that a user
/// fixes a file in one pass instead of one error per run.
struct config_error {
  /// Where the problem is; for a missing key, the table that should hold it.
  source_location where;
  /// Dotted path of the key ("stages.alma.model"); empty for syntax errors.
  std::string key;
  std::string message;

  /// "file:line:col: stages.alma.model: unknown model 'mistrl' ..."
  std::string to_string() const;
};

struct load_result {
  /// Set only when there are no errors.
  std::optional<pipeline_config> config;
  /// In file order.
  std::vector<config_error> errors;

  bool ok() const { return config.has_value() && errors.empty(); }
};

/// Reads and checks `file`; relative paths in it are relative to its
/// directory. An unreadable file gives one error naming it.
load_result load_config_file(const std::filesystem::path& file, const builtin_catalog& builtins);

/// Checks `toml_text`; `file_name` appears in errors and `base_dir` anchors
/// relative paths (data_dir, working_dir, prompt_file).
load_result parse_config(std::string_view toml_text, const std::string& file_name,
                         const std::filesystem::path& base_dir, const builtin_catalog& builtins);

/// The environment variable that overrides database.url when set and non-empty.
inline constexpr const char* database_url_env = "TURING_DATABASE_URL";

/// Applies environment overrides (TURING_DATABASE_URL). Kept out of the
/// parser so that checking a file gives the same answer on every machine.
void apply_environment(pipeline_config& config);

} // namespace turing::config
