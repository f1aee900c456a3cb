// parse_json_moving: the same documents as nlohmann's parser, the same errors.
#define CAF_SUITE json_parse
#include "persistence/json_parse.hpp"

#include <caf/test/unit_test.hpp>
#include <initializer_list>
#include <string>

using turing::persistence::parse_json_moving;
using json = nlohmann::json;

namespace {
json parsed(const std::string& text) {
  return parse_json_moving(text.data(), text.data() + text.size());
}
} // namespace

CAF_TEST(documents_equal_those_of_nlohmanns_parser) {
  for (std::string text : std::initializer_list<std::string>{
           R"({"n": 1, "name": "Flügel — 翼", "tags": ["a", "b", {"deep": [1, 2.5, -3]}]})",
           R"([null, true, false, 18446744073709551615, -9223372036854775808, 1e5, ""])",
           R"({"key": 1, "key": 2, "empty": {}, "none": []})", // a repeated key: the last wins
           R"("just a string")",
           R"(42)",
           R"([[[[]]], {"a": {"b": {"c": null}}}])",
           "{\"big\": \"" + std::string(1 << 20, 'x') + "\", \"after\": 1}",
       }) {
    auto expected = json::parse(text);
    auto got = parsed(text);
    CAF_CHECK(got == expected);
    CAF_CHECK_EQUAL(got.dump(), expected.dump()); // the same order, the same number types
  }
}

CAF_TEST(text_that_is_not_one_json_value_is_a_parse_error) {
  for (std::string text :
       std::initializer_list<std::string>{"", "{", R"({"a": 1} trailing)", "[1, 2,]", "nul"}) {
    bool refused = false;
    try {
      parsed(text);
    } catch (const json::parse_error&) {
      refused = true;
    }
    CAF_CHECK(refused);
  }
}
