// Sizes as the config file writes them ("16MB", "512KB", "1GB", or a bare
// integer of bytes): parsing, and the text form used in error messages.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace turing::config {

/// Parses `<integer><unit>` with unit B, KB, MB or GB (binary multiples:
/// 1 KB = 1024 bytes; KiB, MiB and GiB are read the same) and an optional
/// space before the unit. nullopt when malformed or beyond 2^62 bytes.
std::optional<std::uint64_t> parse_byte_size(std::string_view text);

/// "512 B", "1.5 KB", "16 MB", "2.3 GB": one decimal where it matters.
std::string format_byte_size(std::uint64_t bytes);

} // namespace turing::config
