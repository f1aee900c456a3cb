// Prompt templates: "{field}" and "{a.b.c}" placeholders filled from an
// item's JSON payload; "{{" and "}}" are literal braces.
#pragma once

#include <cstddef>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace turing::config {

/// What rendering produced. An unresolved placeholder is replaced by nothing
/// and listed here, never left in the text: a literal "{field}" reaching a
/// model makes it invent an answer (field report, incident 12). A caller must
/// treat a non-empty `unresolved` as a failed render.
struct render_result {
  std::string text;
  /// Placeholder paths without braces ("a.b.c"), each once, in order; a
  /// syntax error appears as "<malformed template: ...>".
  std::vector<std::string> unresolved;

  bool ok() const { return unresolved.empty(); }
};

/// Resolves each placeholder path against `payload`: a segment names an
/// object key, or indexes an array when it is all digits ("items.0.name").
/// Strings are inserted raw; numbers, booleans, arrays and objects as JSON
/// text; a missing or null value is unresolved.
render_result render_template(std::string_view tmpl, const nlohmann::json& payload);

/// The placeholder paths in `tmpl`, each once, in order of first use; stops
/// at the first syntax error (see check_template).
std::vector<std::string> template_placeholders(std::string_view tmpl);

struct template_error {
  /// Byte offset of the offending brace in the template.
  std::size_t offset = 0;
  std::string message;
};

/// The first syntax error in `tmpl`, if any: an unclosed '{', a lone '}', an
/// empty placeholder or one whose path is not letters, digits, '_', '-'
/// separated by '.' (usually a JSON example that needs "{{" and "}}").
std::optional<template_error> check_template(std::string_view tmpl);

} // namespace turing::config
