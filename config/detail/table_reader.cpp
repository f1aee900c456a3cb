// Typed, range-checked reads of TOML values with error reporting.
#include "config/detail/table_reader.hpp"

#include "config/detail/names.hpp"

#include <cmath>
#include <limits>

namespace turing::config::detail {

std::string_view type_name(const toml::node& node) {
  switch (node.type()) {
  case toml::node_type::table:
    return "table";
  case toml::node_type::array:
    return "array";
  case toml::node_type::string:
    return "string";
  case toml::node_type::integer:
    return "integer";
  case toml::node_type::floating_point:
    return "float";
  case toml::node_type::boolean:
    return "boolean";
  case toml::node_type::date:
    return "date";
  case toml::node_type::time:
    return "time";
  case toml::node_type::date_time:
    return "date-time";
  case toml::node_type::none:
    break;
  }
  return "nothing";
}

std::string table_reader::key_path(std::string_view key) const {
  return path_.empty() ? std::string{key} : path_ + "." + std::string{key};
}

source_location table_reader::where(std::string_view key) const {
  if (auto* node = table_.get(key))
    return diag_.location(node->source());
  return where();
}

const toml::node* table_reader::get(std::string_view key) {
  known_.emplace(key);
  return table_.get(key);
}

std::optional<std::string> table_reader::string(std::string_view key) {
  auto* node = get(key);
  if (node == nullptr)
    return std::nullopt;
  if (auto* s = node->as_string())
    return s->get();
  error(key, "expected a string, got " + std::string{type_name(*node)});
  return std::nullopt;
}

std::optional<bool> table_reader::boolean(std::string_view key) {
  auto* node = get(key);
  if (node == nullptr)
    return std::nullopt;
  if (auto* b = node->as_boolean())
    return b->get();
  error(key, "expected true or false, got " + std::string{type_name(*node)});
  return std::nullopt;
}

std::optional<std::int64_t> table_reader::integer(std::string_view key, std::int64_t min,
                                                  std::int64_t max) {
  auto* node = get(key);
  if (node == nullptr)
    return std::nullopt;
  auto* i = node->as_integer();
  if (i == nullptr) {
    error(key, "expected an integer, got " + std::string{type_name(*node)});
    return std::nullopt;
  }
  auto value = i->get();
  if (value < min || value > max) {
    error(key, "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", got " +
                   std::to_string(value));
    return std::nullopt;
  }
  return value;
}

std::optional<double> table_reader::number(std::string_view key, double min, double max) {
  auto* node = get(key);
  if (node == nullptr)
    return std::nullopt;
  double value = 0;
  if (auto* f = node->as_floating_point()) {
    value = f->get();
  } else if (auto* i = node->as_integer()) {
    value = static_cast<double>(i->get());
  } else {
    error(key, "expected a number, got " + std::string{type_name(*node)});
    return std::nullopt;
  }
  if (!std::isfinite(value) || value < min || value > max) {
    auto text = [](double x) {
      auto s = std::to_string(x);
      // Trim "1.500000" to "1.5" for readable messages.
      s.erase(s.find_last_not_of('0') + 1);
      if (!s.empty() && s.back() == '.')
        s.pop_back();
      return s;
    };
    error(key, "must be between " + text(min) + " and " + text(max) + ", got " +
                   (std::isfinite(value) ? text(value) : std::string{"a non-finite value"}));
    return std::nullopt;
  }
  return value;
}

std::optional<millis> table_reader::duration(std::string_view key) {
  auto* node = get(key);
  if (node == nullptr)
    return std::nullopt;
  auto* s = node->as_string();
  if (s == nullptr) {
    error(key, "expected a duration string such as \"30s\", got " + std::string{type_name(*node)});
    return std::nullopt;
  }
  auto value = parse_duration(s->get());
  if (!value) {
    error(key, "malformed duration '" + s->get() +
                   "' (write e.g. \"250ms\", \"30s\", \"5m\", \"1h\" or \"1m30s\")");
    return std::nullopt;
  }
  if (value->count() <= 0) {
    error(key, "duration must be greater than 0, got '" + s->get() + "'");
    return std::nullopt;
  }
  return value;
}

std::optional<std::uint64_t> table_reader::byte_size(std::string_view key, std::uint64_t min,
                                                     std::uint64_t max) {
  auto* node = get(key);
  if (node == nullptr)
    return std::nullopt;
  std::optional<std::uint64_t> value;
  if (auto* i = node->as_integer()) {
    if (i->get() >= 0)
      value = static_cast<std::uint64_t>(i->get());
  } else if (auto* s = node->as_string()) {
    value = parse_byte_size(s->get());
  } else {
    error(key, "expected a size such as \"16MB\" or an integer of bytes, got " +
                   std::string{type_name(*node)});
    return std::nullopt;
  }
  if (!value) {
    error(key, "malformed size (write e.g. \"512KB\", \"16MB\", \"1GB\" or a number of bytes)");
    return std::nullopt;
  }
  if (*value < min || *value > max) {
    error(key, "size " + format_byte_size(*value) + " is out of range [" + format_byte_size(min) +
                   ", " + format_byte_size(max) + "]");
    return std::nullopt;
  }
  return value;
}

std::optional<std::vector<std::string>> table_reader::strings(std::string_view key) {
  auto* node = get(key);
  if (node == nullptr)
    return std::nullopt;
  auto* array = node->as_array();
  if (array == nullptr) {
    error(key, "expected an array of strings, got " + std::string{type_name(*node)});
    return std::nullopt;
  }
  std::vector<std::string> out;
  bool ok = true;
  for (std::size_t i = 0; i < array->size(); ++i) {
    const auto& element = *array->get(i);
    if (auto* s = element.as_string()) {
      out.push_back(s->get());
    } else {
      error(element, key_path(key) + "[" + std::to_string(i) + "]",
            "expected a string, got " + std::string{type_name(element)});
      ok = false;
    }
  }
  if (!ok)
    return std::nullopt;
  return out;
}

const toml::table* table_reader::subtable(std::string_view key) {
  auto* node = get(key);
  if (node == nullptr)
    return nullptr;
  if (auto* t = node->as_table())
    return t;
  error(key, "expected a table, got " + std::string{type_name(*node)});
  return nullptr;
}

void table_reader::missing(std::string_view key, std::string_view why) {
  std::string message = "missing required key " + in_quotes(key);
  if (!why.empty())
    message += " (" + std::string{why} + ")";
  diag_.error(where(), key_path(key), std::move(message));
}

void table_reader::error(std::string_view key, std::string message) {
  diag_.error(where(key), key_path(key), std::move(message));
}

void table_reader::error(const toml::node& node, std::string key, std::string message) {
  diag_.error(node.source(), std::move(key), std::move(message));
}

void table_reader::finish(const std::map<std::string, std::string, std::less<>>& misplaced) {
  std::vector<std::string> known(known_.begin(), known_.end());
  for (auto&& [key, value] : table_) {
    auto name = key.str();
    if (known_.count(name) != 0)
      continue;
    if (auto i = misplaced.find(name); i != misplaced.end())
      diag_.error(key.source(), key_path(name), i->second);
    else if (name == "sinks" && !path_.empty())
      // The one top-level key that is easy to misplace: TOML gives every key
      // after a [header] to that table.
      diag_.error(key.source(), key_path(name),
                  "'sinks' is a top-level key: move it above the first [table]");
    else
      diag_.error(key.source(), key_path(name),
                  "unknown key " + in_quotes(name) + did_you_mean(name, known));
  }
}

} // namespace turing::config::detail
