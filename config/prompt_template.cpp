// Tokenising, checking and rendering prompt templates.
#include "config/prompt_template.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>

namespace turing::config {

namespace {

struct token {
  enum class kind { text, placeholder, error } type;
  std::string value; // literal text, placeholder path, or error message
  std::size_t offset = 0;
};

bool is_path_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

bool is_valid_path(std::string_view path) {
  if (path.empty() || path.front() == '.' || path.back() == '.')
    return false;
  for (std::size_t i = 0; i < path.size(); ++i) {
    if (path[i] == '.') {
      if (path[i + 1] == '.')
        return false;
    } else if (!is_path_char(path[i])) {
      return false;
    }
  }
  return true;
}

std::string excerpt(std::string_view s, std::size_t max = 30) {
  if (s.size() <= max)
    return std::string{s};
  return std::string{s.substr(0, max)} + "...";
}

// Splits the template; stops after the first error token, so that a consumer
// never has to guess what the rest of a broken template meant.
std::vector<token> tokenize(std::string_view tmpl) {
  std::vector<token> out;
  std::string text;
  auto flush = [&] {
    if (!text.empty())
      out.push_back({token::kind::text, std::move(text), 0});
    text.clear();
  };
  for (std::size_t i = 0; i < tmpl.size(); ++i) {
    char c = tmpl[i];
    if (c == '{' && i + 1 < tmpl.size() && tmpl[i + 1] == '{') {
      text += '{';
      ++i;
    } else if (c == '}' && i + 1 < tmpl.size() && tmpl[i + 1] == '}') {
      text += '}';
      ++i;
    } else if (c == '}') {
      flush();
      out.push_back({token::kind::error, "unmatched '}' (write '}}' for a literal brace)", i});
      return out;
    } else if (c == '{') {
      flush();
      auto close = tmpl.find_first_of("{}", i + 1);
      if (close == std::string_view::npos || tmpl[close] == '{') {
        out.push_back({token::kind::error,
                       "unclosed '{' before \"" + excerpt(tmpl.substr(i, 20)) +
                           "\" (write '{{' for a literal brace)",
                       i});
        return out;
      }
      auto path = tmpl.substr(i + 1, close - i - 1);
      if (path.empty()) {
        out.push_back({token::kind::error, "empty placeholder '{}'", i});
        return out;
      }
      if (!is_valid_path(path)) {
        out.push_back({token::kind::error,
                       "invalid placeholder '{" + excerpt(path) +
                           "}' (a placeholder is a field path like {name} or {a.b.c}; "
                           "write '{{' and '}}' for literal braces)",
                       i});
        return out;
      }
      out.push_back({token::kind::placeholder, std::string{path}, i});
      i = close;
    } else {
      text += c;
    }
  }
  flush();
  return out;
}

const nlohmann::json* resolve(const nlohmann::json& payload, std::string_view path) {
  const nlohmann::json* at = &payload;
  while (true) {
    auto dot = path.find('.');
    auto segment = path.substr(0, dot);
    if (at->is_object()) {
      auto i = at->find(std::string{segment});
      if (i == at->end())
        return nullptr;
      at = &*i;
    } else if (at->is_array() && std::all_of(segment.begin(), segment.end(),
                                             [](char c) { return c >= '0' && c <= '9'; })) {
      // Paths are short; a segment longer than any real index is just absent.
      if (segment.size() > 9)
        return nullptr;
      auto index = std::stoul(std::string{segment});
      if (index >= at->size())
        return nullptr;
      at = &(*at)[index];
    } else {
      return nullptr;
    }
    if (dot == std::string_view::npos)
      return at;
    path.remove_prefix(dot + 1);
  }
}

void add_once(std::vector<std::string>& xs, std::string x) {
  if (std::find(xs.begin(), xs.end(), x) == xs.end())
    xs.push_back(std::move(x));
}

} // namespace

render_result render_template(std::string_view tmpl, const nlohmann::json& payload) {
  render_result out;
  for (auto& t : tokenize(tmpl)) {
    switch (t.type) {
    case token::kind::text:
      out.text += t.value;
      break;
    case token::kind::placeholder: {
      auto* value = resolve(payload, t.value);
      if (value == nullptr || value->is_null())
        add_once(out.unresolved, std::move(t.value));
      else if (value->is_string())
        out.text += value->get_ref<const std::string&>();
      else
        out.text += value->dump();
      break;
    }
    case token::kind::error:
      out.unresolved.push_back("<malformed template: " + t.value + " at offset " +
                               std::to_string(t.offset) + ">");
      break;
    }
  }
  return out;
}

std::vector<std::string> template_placeholders(std::string_view tmpl) {
  std::vector<std::string> out;
  for (auto& t : tokenize(tmpl))
    if (t.type == token::kind::placeholder)
      add_once(out, std::move(t.value));
  return out;
}

std::optional<template_error> check_template(std::string_view tmpl) {
  auto tokens = tokenize(tmpl);
  if (!tokens.empty() && tokens.back().type == token::kind::error)
    return template_error{tokens.back().offset, std::move(tokens.back().value)};
  return std::nullopt;
}

} // namespace turing::config
