// Names in a config file: the identifier rule for stages, sinks, models and
// outcomes, and the "did you mean" suggestion for a misspelt one.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace turing::config::detail {

/// [a-z0-9_]+: names end up in SQL rows, NOTIFY channels, logs and metrics,
/// where case and punctuation only cause trouble.
bool is_valid_name(std::string_view name);

/// [A-Za-z_][A-Za-z0-9_]*, what a POSIX shell accepts as a variable name.
bool is_valid_env_name(std::string_view name);

/// The candidate closest to `word` if it is close enough to be a typo.
std::optional<std::string> closest(std::string_view word,
                                   const std::vector<std::string>& candidates);

/// "; did you mean 'x'?" when a candidate is close, else "".
std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates);

/// "a, b, c", or "(none)" for an empty list.
std::string join_names(const std::vector<std::string>& names);

/// "'x'": names in messages are quoted so that an empty one stays visible.
std::string in_quotes(std::string_view name);

} // namespace turing::config::detail
