// Durations as the config file writes them ("250ms", "30s", "5m", "1h",
// "1m30s"): parsing and the canonical text form used in messages and status.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace turing::config {

using millis = std::chrono::milliseconds;

/// Parses one or more `<integer><unit>` parts, units `h`, `m`, `s`, `ms`, each
/// at most once and largest first ("1h30m", "1s500ms"). A bare number is
/// rejected: "30" could mean seconds or milliseconds, and guessing wrong turns
/// a 30 s timeout into 30 ms. Returns nullopt when malformed or out of range.
std::optional<millis> parse_duration(std::string_view text);

/// The shortest text parse_duration reads back as `d`: "1m30s", "250ms", "0s".
std::string format_duration(millis d);

} // namespace turing::config
