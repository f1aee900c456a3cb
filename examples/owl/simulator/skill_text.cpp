// Text forms of a skill name (see skill_text.hpp).
#include "skill_text.hpp"

namespace turing::model_sim {

namespace {

bool is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// Splits on every byte for which `keep` is false; words are lowercased.
template <class Keep> std::vector<std::string> split_words(std::string_view text, Keep keep) {
  std::vector<std::string> words;
  std::string current;
  for (char c : text) {
    if (keep(c)) {
      current += lower(c);
    } else if (!current.empty()) {
      words.push_back(std::move(current));
      current.clear();
    }
  }
  if (!current.empty())
    words.push_back(std::move(current));
  return words;
}

} // namespace

std::string dedupe_key(std::string_view name) {
  // "&" becomes a word of its own so "R&D" and "R and D" meet.
  std::string spaced;
  spaced.reserve(name.size() + 8);
  for (char c : name) {
    if (c == '&')
      spaced += " and ";
    else
      spaced += c;
  }
  auto words = split_words(spaced, is_alnum);
  if (words.size() > 1 && words.back() == "skills")
    words.pop_back();
  std::string key;
  for (const auto& w : words)
    key += w;
  return key;
}

std::vector<std::string> keyword_words(std::string_view name) {
  return split_words(name, [](char c) { return is_alnum(c) || c == '+' || c == '#'; });
}

std::string collapse_whitespace(std::string_view text) {
  std::string out;
  bool pending_space = false;
  for (char c : text) {
    if (is_space(c)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space)
      out += ' ';
    pending_space = false;
    out += c;
  }
  return out;
}

} // namespace turing::model_sim
