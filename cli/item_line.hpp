// One line of a `turing enqueue` JSON Lines file as an item, or why it is not
// one. Pure, so the enqueue command and the items fuzz target share it.
#pragma once

#include "persistence/types.hpp"

#include <optional>
#include <string>

namespace turing::cli {

/// One line of the file as an item, or why it is not one.
struct parsed_line {
  std::optional<persistence::new_item> item; ///< empty for a blank line or an error
  /// One line, storable text; empty for an item or a blank line.
  std::string error;
};

/// Reads `line` (without its '\n'): blank means no item; else it must be a
/// JSON object PostgreSQL can store, whose `key_field`, if present, is a
/// string or an integer (the item's key). Never throws for bad input.
parsed_line parse_item_line(const std::string& line, const std::string& key_field);

} // namespace turing::cli
