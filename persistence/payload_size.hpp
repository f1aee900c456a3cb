// The size a payload takes as JSON text, counted without writing it out, so
// that checking runtime.max_payload costs no copy of a large payload.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>

namespace turing::persistence {

/// Exactly `j.dump().size()` for UTF-8 text (invalid bytes count as the
/// 3-byte replacement character they are stored as), with no allocation
/// beyond that of formatting one floating-point number at a time.
std::uint64_t json_text_size(const nlohmann::json& j);

} // namespace turing::persistence
