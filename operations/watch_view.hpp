// The live view of `turing status --watch` and the progress bar of
// `turing run` on a terminal, drawn from the status snapshot.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace turing::operations {

/// One frame of `status --watch`: runs with progress bars (done/total,
/// items/s over the last minute, ETA), stages (ready, running, retrying,
/// dead, p50/p95, fail rate, deadline), models (in flight / limit, calls/s,
/// errors by class), nodes. Lines hold no control characters and fit `width`.
std::vector<std::string> watch_frame(const nlohmann::json& snapshot, int width);

/// "[#########.........]  45%": `width` characters of bar between brackets.
std::string progress_bar(double fraction, int width);

/// One line for a run: "run 3 'skills' [###...]  45%  945/2100  63.1 items/s  ETA 17s".
std::string run_progress_line(const nlohmann::json& run, int bar_width);

/// "17s", "4m05s", "2h10m", "-" for null or negative.
std::string eta_text(const nlohmann::json& seconds);

} // namespace turing::operations
