// The payload a stage hands on: its input with the handler's output laid
// over it. Both stores derive it themselves (pg_store in SQL, from the rows
// it holds), so a pump never sends a payload back to the database.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>

namespace turing::persistence {

/// The input with the output's keys laid over it (output keys win), so
/// context such as an item's name travels along; a null output keeps the
/// input; a non-object output (or a non-object input) gives the output.
/// turing.next_payload(input, output) in SQL is the same function.
nlohmann::json next_payload(const nlohmann::json& input, const nlohmann::json& output);

/// json_text_size(next_payload(input, output)), without building it.
std::uint64_t next_payload_text_size(const nlohmann::json& input, const nlohmann::json& output);

} // namespace turing::persistence
