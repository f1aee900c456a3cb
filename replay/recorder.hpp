// The recorder: turns a finished run's audit log into a scenario whose replay
// reproduces the run's end state (each model and script attempt scripted
// from what it did; builtins run for real, they are deterministic).
#pragma once

#include "config/pipeline_config.hpp"
#include "persistence/store.hpp"

#include <filesystem>
#include <string>

namespace turing::replay {

struct recording {
  std::string scenario_toml;
  int64_t items = 0;
  int64_t attempts = 0;
  /// Attempts the scenario cannot reproduce as they happened (lost to a
  /// dead node, released at a stop, crashed owners), listed in the file.
  int64_t approximated = 0;
};

/// Throws std::invalid_argument naming the problem when the run does not
/// exist or has not finished.
recording record_run(persistence::store& store, int64_t run_id,
                     const config::pipeline_config& pipeline,
                     const std::filesystem::path& config_file);

} // namespace turing::replay
