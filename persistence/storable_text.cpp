// The strict UTF-8 checker and the diagnostic sanitiser.
#include "persistence/storable_text.hpp"

#include <cstdio>

namespace turing::persistence {

std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
  auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80)
    return 1;
  std::size_t len = 0;
  unsigned char lo = 0x80, hi = 0xBF; // the allowed range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c == 0xE0) {
    len = 3, lo = 0xA0; // no overlong forms
  } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
    len = 3;
  } else if (c == 0xED) {
    len = 3, hi = 0x9F; // no UTF-16 surrogates
  } else if (c == 0xF0) {
    len = 4, lo = 0x90;
  } else if (c >= 0xF1 && c <= 0xF3) {
    len = 4;
  } else if (c == 0xF4) {
    len = 4, hi = 0x8F; // nothing past U+10FFFF
  } else {
    return 0;
  }
  if (i + len > s.size())
    return 0;
  auto c1 = static_cast<unsigned char>(s[i + 1]);
  if (c1 < lo || c1 > hi)
    return 0;
  for (std::size_t k = 2; k < len; ++k)
    if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80)
      return 0;
  return len;
}

std::optional<std::string> unstorable_text(std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    if (text[i] == '\0')
      return "holds U+0000 at byte " + std::to_string(i) + " (PostgreSQL cannot store it)";
    auto n = utf8_sequence_length(text, i);
    if (n == 0) {
      char byte[8];
      std::snprintf(byte, sizeof byte, "0x%02X", static_cast<unsigned char>(text[i]));
      return std::string("is not valid UTF-8 (byte ") + byte + " at " + std::to_string(i) + ")";
    }
    i += n;
  }
  return std::nullopt;
}

namespace {

/// RFC 6901 escaping of one pointer token.
std::string pointer_token(const std::string& key) {
  std::string out;
  for (char c : key) {
    if (c == '~')
      out += "~0";
    else if (c == '/')
      out += "~1";
    else
      out += c;
  }
  return out;
}

std::optional<std::string> find_unstorable(const nlohmann::json& v, const std::string& at) {
  switch (v.type()) {
  case nlohmann::json::value_t::string:
    if (auto why = unstorable_text(v.get_ref<const std::string&>()))
      return "the string at " + (at.empty() ? std::string("/") : at) + " " + *why;
    return std::nullopt;
  case nlohmann::json::value_t::object:
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (auto why = unstorable_text(it.key()))
        return "the key " + storable_text(it.key()) + " under " +
               (at.empty() ? std::string("/") : at) + " " + *why;
      if (auto why = find_unstorable(it.value(), at + "/" + pointer_token(it.key())))
        return why;
    }
    return std::nullopt;
  case nlohmann::json::value_t::array: {
    std::size_t n = 0;
    for (const auto& e : v)
      if (auto why = find_unstorable(e, at + "/" + std::to_string(n++)))
        return why;
    return std::nullopt;
  }
  default:
    return std::nullopt;
  }
}

} // namespace

std::optional<std::string> unstorable_json(const nlohmann::json& value) {
  return find_unstorable(value, "");
}

std::string storable_text(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    if (text[i] == '\0') {
      out += "\xE2\x90\x80"; // U+2400 SYMBOL FOR NULL
      ++i;
      continue;
    }
    auto n = utf8_sequence_length(text, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD"; // U+FFFD REPLACEMENT CHARACTER
      ++i;
      continue;
    }
    out.append(text.substr(i, n));
    i += n;
  }
  return out;
}

} // namespace turing::persistence
