// How `turing` logs: coloured text lines or JSON lines on stderr, and the
// progress bar that `turing run` keeps under the log lines on a terminal.
#pragma once

#include <string>

namespace turing::cli {

enum class log_format { text, json };

/// Installs the default logger on stderr. json: one object per line with
/// time (ISO 8601, UTC, ms), level, message; for log shippers.
void set_up_logging(const std::string& level, log_format format);

log_format current_log_format();

/// The line kept at the bottom of a terminal under the log lines ("" hides
/// it). Log lines written while it shows erase it first and redraw it after,
/// so the two never interleave. Only for text logs on a terminal.
void show_status_line(const std::string& line);

} // namespace turing::cli
