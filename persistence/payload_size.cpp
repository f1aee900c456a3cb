// json_text_size: the length of nlohmann's compact dump, counted in place.
#include "persistence/payload_size.hpp"

#include "persistence/storable_text.hpp"

namespace turing::persistence {

namespace {

std::uint64_t digits(std::uint64_t v) {
  std::uint64_t n = 1;
  while (v >= 10) {
    v /= 10;
    ++n;
  }
  return n;
}

std::uint64_t quoted_size(const std::string& s) {
  std::uint64_t n = 2; // the quotes
  for (unsigned char c : s) {
    if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t')
      n += 2;
    else if (c < 0x20)
      n += 6; // \u00XX
    else
      n += 1;
  }
  return n;
}

} // namespace

std::uint64_t json_text_size(const nlohmann::json& j) {
  using t = nlohmann::json::value_t;
  switch (j.type()) {
  case t::null:
    return 4;
  case t::boolean:
    return j.get<bool>() ? 4 : 5;
  case t::number_integer: {
    auto v = j.get<std::int64_t>();
    return v < 0 ? 1 + digits(0 - static_cast<std::uint64_t>(v))
                 : digits(static_cast<std::uint64_t>(v));
  }
  case t::number_unsigned:
    return digits(j.get<std::uint64_t>());
  case t::number_float:
    return j.dump().size(); // shortest round-trip form: let the library decide
  case t::string: {
    const auto& s = j.get_ref<const std::string&>();
    // A malformed sequence is stored as U+FFFD (3 bytes), as dump() with
    // error_handler_t::replace writes it; the pump refuses such output
    // anyway, so this only keeps the count honest.
    std::uint64_t n = 2;
    for (std::size_t i = 0; i < s.size();) {
      auto c = static_cast<unsigned char>(s[i]);
      if (c < 0x80) {
        n +=
            (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t')
                ? 2
            : c < 0x20 ? 6
                       : 1; // \u00XX
        ++i;
        continue;
      }
      auto len = utf8_sequence_length(s, i);
      n += len == 0 ? 3 : len;
      i += len == 0 ? 1 : len;
    }
    return n;
  }
  case t::array: {
    std::uint64_t n = 2 + (j.empty() ? 0 : j.size() - 1); // brackets, commas
    for (const auto& e : j)
      n += json_text_size(e);
    return n;
  }
  case t::object: {
    std::uint64_t n = 2 + (j.empty() ? 0 : j.size() - 1);
    for (const auto& [k, v] : j.items())
      n += quoted_size(k) + 1 + json_text_size(v);
    return n;
  }
  case t::binary:
  case t::discarded:
    return j.dump().size();
  }
  return j.dump().size();
}

} // namespace turing::persistence
