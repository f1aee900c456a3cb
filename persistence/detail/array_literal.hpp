// A PostgreSQL array literal built element by element: the typed columns of a
// batch (ids, epochs, outputs) reach a statement as parallel arrays that it
// unnests, so no row looks its fields up by key in a JSON object.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace turing::persistence::detail {

class array_literal {
public:
  array_literal() : text_("{") {}

  array_literal& add(int64_t value) {
    separate();
    text_ += std::to_string(value);
    return *this;
  }
  array_literal& add(bool value) {
    separate();
    text_ += value ? "t" : "f";
    return *this;
  }
  array_literal& add_null() {
    separate();
    text_ += "NULL";
    return *this;
  }
  /// A text element, quoted: an empty string stays a string, not NULL.
  array_literal& add_text(const std::string& value) {
    separate();
    quote(value);
    return *this;
  }
  array_literal& add_text(const std::optional<std::string>& value) {
    return value ? add_text(*value) : add_null();
  }
  /// A text element, or NULL for an empty string (a field such as a model
  /// name, unset when empty).
  array_literal& add_text_unless_empty(const std::string& value) {
    return value.empty() ? add_null() : add_text(value);
  }
  /// A jsonb element; a JSON null becomes SQL NULL (as a missing field).
  array_literal& add_json(const nlohmann::json& value) {
    return value.is_null() ? add_null() : add_text(value.dump());
  }

  std::string str() const { return text_ + "}"; }

private:
  void separate() {
    if (text_.size() > 1)
      text_ += ',';
  }
  void quote(const std::string& value) {
    text_ += '"';
    for (char c : value) {
      if (c == '"' || c == '\\')
        text_ += '\\';
      text_ += c;
    }
    text_ += '"';
  }

  std::string text_;
};

} // namespace turing::persistence::detail
