// What every turing command starts from: the checked config, the builtin
// handlers, and the database it names (embedded or not), migrated.
#pragma once

#include "actors/builtin_registry.hpp"
#include "config/pipeline_config.hpp"

#include <filesystem>
#include <stdexcept>
#include <string>

namespace turing::cli {

/// A problem with what the user gave us (arguments, config, input files):
/// exit status 2. Its message is already printed in full.
class usage_error : public std::runtime_error {
public:
  using runtime_error::runtime_error;
};

/// Every builtin turing ships (the examples' among them).
actors::builtin_registry make_builtins();

/// Loads and checks the config; on errors prints each one (file:line:col:
/// key: message) to stderr and throws usage_error.
config::pipeline_config load_checked_config(const std::filesystem::path& file,
                                            const actors::builtin_registry& builtins);

struct database_handle {
  std::string connection_string;
  /// For logs: the embedded cluster's directory or the server, no password.
  std::string description;
};

/// Opens the configured database: the URL (or TURING_DATABASE_URL), else the
/// embedded cluster under data_dir, started or reused. Applies migrations.
/// Logs what it found. Throws cluster_error or store_error. Commands that only
/// read pass `may_initialise = false`: a data_dir without a cluster is then an
/// error naming it, and nothing is created.
database_handle open_database(const config::pipeline_config& config, bool may_initialise = true);

} // namespace turing::cli
