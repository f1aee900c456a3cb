// Parses JSON text into a document that takes over each string the parser
// built instead of copying it: a payload's megabyte-long text field is then
// held once while it is parsed, not twice (nlohmann's own parser copies).
#pragma once

#include <istream>
#include <nlohmann/json.hpp>

namespace turing::persistence {

/// The same document as nlohmann::json::parse(first, last); throws
/// nlohmann::json::parse_error for text that is not one JSON value.
nlohmann::json parse_json_moving(const char* first, const char* last);

/// The same, reading `in` to its end (a script's stdout as it arrives).
nlohmann::json parse_json_moving(std::istream& in);

} // namespace turing::persistence
