// Durations ("1m30s") and prompt templates ("{a.b}", "{{"), including the
// rule that an unresolved placeholder never reaches the text (incident 12).
#define CAF_SUITE config_duration_template

#include "config/byte_size.hpp"
#include "config/duration.hpp"
#include "config/prompt_template.hpp"

#include <caf/test/unit_test.hpp>
#include <nlohmann/json.hpp>

using namespace turing::config;
using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;

namespace {

long long ms_of(std::string_view text) {
  auto d = parse_duration(text);
  return d ? d->count() : -1;
}

} // namespace

CAF_TEST(durations_parse_every_unit_and_combinations) {
  CAF_CHECK_EQUAL(ms_of("250ms"), 250);
  CAF_CHECK_EQUAL(ms_of("30s"), 30'000);
  CAF_CHECK_EQUAL(ms_of("5m"), 300'000);
  CAF_CHECK_EQUAL(ms_of("1h"), 3'600'000);
  CAF_CHECK_EQUAL(ms_of("1m30s"), 90'000);
  CAF_CHECK_EQUAL(ms_of("1h2m3s4ms"), 3'723'004);
  CAF_CHECK_EQUAL(ms_of("7d"), 604'800'000);
  CAF_CHECK_EQUAL(ms_of("1d12h"), 129'600'000);
  CAF_CHECK_EQUAL(ms_of("90s"), 90'000);
  CAF_CHECK_EQUAL(ms_of("0s"), 0);
}

CAF_TEST(malformed_durations_are_rejected) {
  for (auto text :
       {"", "30", "s", "1.5s", "-1s", "30 s", " 30s", "30s ", "1x", "30S", "1s1m", "1s1s", "1m1h",
        "1h1d", "1d1d", "ms", "1ms2s", "99999999999999999999s", "9999999999999h"})
    CAF_CHECK(!parse_duration(text).has_value());
}

CAF_TEST(durations_format_canonically_and_round_trip) {
  CAF_CHECK_EQUAL(format_duration(millis{250}), "250ms");
  CAF_CHECK_EQUAL(format_duration(seconds{30}), "30s");
  CAF_CHECK_EQUAL(format_duration(seconds{90}), "1m30s");
  CAF_CHECK_EQUAL(format_duration(hours{2}), "2h");
  CAF_CHECK_EQUAL(format_duration(hours{24 * 7}), "7d");
  CAF_CHECK_EQUAL(format_duration(hours{36}), "1d12h");
  CAF_CHECK_EQUAL(format_duration(millis{3'723'004}), "1h2m3s4ms");
  CAF_CHECK_EQUAL(format_duration(millis{0}), "0s");
  CAF_CHECK_EQUAL(format_duration(millis{-1500}), "-1s500ms");
  for (long long ms : {1LL, 999LL, 1000LL, 61'001LL, 86'400'000LL, 123'456'789LL})
    CAF_CHECK_EQUAL(ms_of(format_duration(millis{ms})), ms);
}

CAF_TEST(template_renders_fields_nested_fields_and_array_indexes) {
  auto payload = nlohmann::json::parse(R"({
    "name": "SQL tuning", "count": 3, "ok": true, "score": 0.5,
    "skill": {"domain": {"id": "technology"}, "tags": ["db", "perf"]},
    "extra": {"a": 1}
  })");
  auto r = render_template(
      "{name}|{count}|{ok}|{score}|{skill.domain.id}|{skill.tags.1}|{skill.tags}|{extra}", payload);
  CAF_CHECK(r.ok());
  CAF_CHECK_EQUAL(r.text, R"(SQL tuning|3|true|0.5|technology|perf|["db","perf"]|{"a":1})");
}

CAF_TEST(template_double_braces_are_literal) {
  auto payload = nlohmann::json{{"v", "x"}};
  auto r = render_template(R"(reply {{"verdict": "{v}"}} and {{{v}}})", payload);
  CAF_CHECK(r.ok());
  CAF_CHECK_EQUAL(r.text, R"(reply {"verdict": "x"} and {x})");
}

CAF_TEST(unresolved_placeholders_are_reported_and_never_left_in_text) {
  auto payload = nlohmann::json::parse(R"({"name": "x", "gone": null, "list": [1]})");
  auto r = render_template("a {session_9_output} b {gone} c {name.deeper} d {list.5} e {name} "
                           "f {session_9_output}",
                           payload);
  CAF_CHECK(!r.ok());
  CAF_CHECK_EQUAL(r.unresolved,
                  (std::vector<std::string>{"session_9_output", "gone", "name.deeper", "list.5"}));
  CAF_CHECK_EQUAL(r.text, "a  b  c  d  e x f ");
  CAF_CHECK(r.text.find('{') == std::string::npos);
}

CAF_TEST(malformed_template_renders_as_unresolved_without_braces) {
  auto r = render_template("before {name after", nlohmann::json{{"name", "x"}});
  CAF_CHECK(!r.ok());
  CAF_REQUIRE_EQUAL(r.unresolved.size(), 1u);
  CAF_CHECK(r.unresolved[0].find("unclosed '{'") != std::string::npos);
  CAF_CHECK(r.text.find('{') == std::string::npos);
}

CAF_TEST(template_placeholders_lists_each_path_once_in_order) {
  CAF_CHECK_EQUAL(template_placeholders("{b} {{x}} {a.c} {b} {d-e}"),
                  (std::vector<std::string>{"b", "a.c", "d-e"}));
  CAF_CHECK(template_placeholders("no placeholders {{here}}").empty());
}

CAF_TEST(template_syntax_errors_name_the_offset) {
  CAF_CHECK(!check_template("ok {a} {{b}} {c.d_e}").has_value());
  struct bad_case {
    const char* text;
    std::size_t offset;
    const char* phrase;
  };
  for (auto c : {bad_case{"x {a", 2, "unclosed '{'"}, bad_case{"x } y", 2, "unmatched '}'"},
                 bad_case{"{}", 0, "empty placeholder"},
                 bad_case{R"(ab {"verdict": 1})", 3, "invalid placeholder"},
                 bad_case{"{a {b}", 0, "unclosed '{'"}, bad_case{"{a..b}", 0, "invalid"},
                 bad_case{"{a.}", 0, "invalid"}, bad_case{"{ a }", 0, "invalid"}}) {
    auto error = check_template(c.text);
    CAF_REQUIRE(error.has_value());
    CAF_CHECK_EQUAL(error->offset, c.offset);
    CAF_CHECK(error->message.find(c.phrase) != std::string::npos);
  }
}

CAF_TEST(byte_sizes_parse_units_and_format_for_messages) {
  CAF_CHECK_EQUAL(parse_byte_size("16MB").value_or(0), std::uint64_t{16} << 20);
  CAF_CHECK_EQUAL(parse_byte_size("16 MiB").value_or(0), std::uint64_t{16} << 20);
  CAF_CHECK_EQUAL(parse_byte_size("512kb").value_or(0), std::uint64_t{512} << 10);
  CAF_CHECK_EQUAL(parse_byte_size("1GB").value_or(0), std::uint64_t{1} << 30);
  CAF_CHECK_EQUAL(parse_byte_size("300").value_or(0), 300u);
  CAF_CHECK(!parse_byte_size("MB"));
  CAF_CHECK(!parse_byte_size("16 TB"));
  CAF_CHECK(!parse_byte_size("-5MB"));
  CAF_CHECK(!parse_byte_size("99999999999999999999"));
  CAF_CHECK_EQUAL(format_byte_size(300), "300 B");
  CAF_CHECK_EQUAL(format_byte_size(std::uint64_t{16} << 20), "16 MB");
  CAF_CHECK_EQUAL(format_byte_size(1536), "1.5 KB");
}
