// Checking one JSON Lines item: JSON syntax, an object, storable by
// PostgreSQL, a usable key. Every failure is a reason, never an exception.
#include "cli/item_line.hpp"

#include "persistence/json_parse.hpp"
#include "persistence/storable_text.hpp"

#include <cstdint>

namespace turing::cli {

parsed_line parse_item_line(const std::string& line, const std::string& key_field) {
  parsed_line out;
  if (line.find_first_not_of(" \t\r") == std::string::npos)
    return out;
  nlohmann::json item;
  try {
    item = persistence::parse_json_moving(line.data(), line.data() + line.size());
  } catch (const nlohmann::json::exception& e) {
    // parse_error names the byte and the reason (ill-formed UTF-8 included);
    // out_of_range is a number no double holds (1e400), also bad input.
    std::string what = e.what();
    auto reason = what.find("parse error");
    if (reason == std::string::npos) {
      auto tag_end = what.find("] "); // "[json.exception.out_of_range.406] "
      reason = tag_end == std::string::npos ? 0 : tag_end + 2;
    }
    out.error = "not valid JSON: " + persistence::storable_text(what.substr(reason));
    return out;
  }
  if (!item.is_object()) {
    out.error = "an item must be a JSON object, got " + std::string(item.type_name());
    return out;
  }
  // What PostgreSQL would refuse ("\u0000", a bad byte) is named here, before
  // any item of the file is written.
  if (auto why = persistence::unstorable_json(item)) {
    out.error = "PostgreSQL cannot store this item: " + *why;
    return out;
  }
  persistence::new_item n;
  if (auto k = item.find(key_field); k != item.end()) {
    if (k->is_string())
      n.key = k->get<std::string>();
    else if (k->is_number_unsigned()) // past INT64_MAX: as int64 it would wrap
      n.key = std::to_string(k->get<uint64_t>());
    else if (k->is_number_integer())
      n.key = std::to_string(k->get<int64_t>());
    else {
      out.error = "field '" + key_field + "' must be a string or an integer";
      return out;
    }
  }
  n.payload = std::move(item);
  out.item = std::move(n);
  return out;
}

} // namespace turing::cli
