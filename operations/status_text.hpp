// `turing status` as plain text, rendered from the status snapshot.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace turing::operations {

/// The tables of `turing status` without --json: stages, latency and timeouts,
/// models, runs, sinks, nodes. `snapshot` is what status_snapshot returns.
std::string status_text(const nlohmann::json& snapshot);

/// "1.2s", "3m4s", "-" for null: a duration in milliseconds as status shows it.
std::string duration_text(const nlohmann::json& ms);

} // namespace turing::operations
