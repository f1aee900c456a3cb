// Text forms of a skill name: the key Alma's duplicate check compares and the
// word list the keyword classifier matches against. Pure functions.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace turing::model_sim {

/// The duplicate key: lowercase, "&" read as "and", a trailing word "skills"
/// dropped, then letters and digits only ("Diversity & Inclusion skills." ->
/// "diversityandinclusion"). ASCII letters and digits only: other bytes are
/// separators, so the key never depends on the locale.
/// Keep in step with dedupe_key() in examples/owl/data/make_skills.py.
std::string dedupe_key(std::string_view name);

/// Lowercase words for keyword matching: runs of ASCII letters, digits, '+'
/// and '#' (so "C++" and "C#" stay words); everything else separates
/// ("Node.js" -> node, js; "CI/CD" -> ci, cd).
std::vector<std::string> keyword_words(std::string_view name);

/// Trimmed, with runs of ASCII whitespace collapsed to one space.
std::string collapse_whitespace(std::string_view text);

} // namespace turing::model_sim
