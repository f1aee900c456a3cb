// What PostgreSQL can store: strict UTF-8 without U+0000. One checker for
// every place where text or JSON enters the database, so a bad byte is named
// where it arrives instead of failing a whole batch later.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace turing::persistence {

/// Length of the well-formed UTF-8 sequence at s[i] (1 for ASCII), 0 when it
/// is malformed: overlong forms, surrogates, code points past U+10FFFF and
/// cut sequences are all malformed, as they are to nlohmann::json::dump().
std::size_t utf8_sequence_length(std::string_view s, std::size_t i);

/// Why `text` cannot be stored as PostgreSQL text, or nothing: "holds U+0000
/// at byte 12", "is not valid UTF-8 (byte 0xC3 at 5)".
std::optional<std::string> unstorable_text(std::string_view text);

/// Why `value` cannot be stored as jsonb, naming where: "the string at
/// /output/name holds U+0000 at byte 3 (PostgreSQL cannot store it)".
std::optional<std::string> unstorable_json(const nlohmann::json& value);

/// `text` made storable for diagnostics (errors, reasons): malformed bytes
/// become U+FFFD and U+0000 becomes U+2400 (the visible symbol for NUL).
/// Lossy on purpose: only for text a person reads, never for payloads.
std::string storable_text(std::string_view text);

} // namespace turing::persistence
