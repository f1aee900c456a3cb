// Reads one [stages.X] table: the keys every stage has, then those of its
// handler kind, recording positions for the graph check.
#pragma once

#include "config/detail/diagnostics.hpp"
#include "config/detail/graph_check.hpp"
#include "config/pipeline_config.hpp"

#include <filesystem>
#include <string>
#include <toml++/toml.h>
#include <vector>

namespace turing::config::detail {

/// What a stage is checked against besides its own table.
struct stage_context {
  /// Declared [models.X] names, in file order.
  const std::vector<std::string>& models;
  const builtin_catalog& builtins;
  /// Absolute; anchors working_dir and prompt_file.
  const std::filesystem::path& base_dir;
};

struct read_stage_result {
  stage_config stage;
  stage_sources sources;
};

/// Always returns a stage, however broken, so that the graph check knows its
/// name and does not add "unknown route target" errors for it.
read_stage_result read_stage(const toml::table& table, const std::string& name,
                             const stage_context& context, diagnostics& diag);

} // namespace turing::config::detail
