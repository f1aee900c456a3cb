// json_text_size counts exactly what dump() writes, for every kind of value,
// so the max_payload checks at enqueue and after each stage measure truly.
#define CAF_SUITE payload_size

#include "persistence/next_payload.hpp"
#include "persistence/payload_size.hpp"

#include <caf/test/unit_test.hpp>

using turing::persistence::json_text_size;
using json = nlohmann::json;

namespace {

std::uint64_t dumped(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace).size();
}

} // namespace

CAF_TEST(scalars_count_as_dump_writes_them) {
  for (const auto& j : {json(nullptr), json(true), json(false), json(0), json(-1), json(42),
                        json(-9223372036854775807LL - 1), json(18446744073709551615ULL), json(0.1),
                        json(-1.5e300), json(3.0), json(1e-7)})
    CAF_CHECK_EQUAL(json_text_size(j), dumped(j));
}

CAF_TEST(strings_count_escapes_and_multibyte_characters) {
  for (const auto& s :
       {std::string(""), std::string("plain"), std::string("quote \" and \\ slash"),
        std::string("tab\tnewline\ncr\rbs\bff\f"), std::string("\x01\x1f ctl"),
        std::string("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\xa6\x89"), std::string("nul \0 inside", 12)})
    CAF_CHECK_EQUAL(json_text_size(json(s)), dumped(json(s)));
}

CAF_TEST(objects_and_arrays_count_keys_brackets_and_commas) {
  auto j = json::parse(R"({"a":[1,2,{"b":"c\n"}],"empty":{},"list":[],"k\"ey":null,
                           "nested":{"x":{"y":[true,false,1.25]}}})");
  CAF_CHECK_EQUAL(json_text_size(j), dumped(j));
  json big = json::object();
  big["document"] = std::string(5 << 20, 'x');
  big["skills"] = json::array({"C++", "SQL"});
  CAF_CHECK_EQUAL(json_text_size(big), dumped(big));
}

CAF_TEST(next_payload_text_size_is_the_size_of_the_merged_payload) {
  using turing::persistence::next_payload;
  using turing::persistence::next_payload_text_size;
  auto input = json::parse(R"({"name":"Rust","n":3,"doc":"a\nb"})");
  for (const auto& output :
       {json(), json::object(), json::parse(R"({"n":4,"verdict":"ok"})"),
        json::parse(R"({"name":"C++"})"), json::array({1, 2}), json("replaced")})
    CAF_CHECK_EQUAL(next_payload_text_size(input, output), dumped(next_payload(input, output)));
  CAF_CHECK_EQUAL(next_payload_text_size(json::array({1}), json::object({{"a", 1}})),
                  dumped(json::object({{"a", 1}})));
  CAF_CHECK_EQUAL(next_payload_text_size(json::object(), json::object()), 2u);
}
