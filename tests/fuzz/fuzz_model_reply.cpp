// Fuzz target: a model server's response body (Ollama or OpenAI shape, the
// first byte picks which) through extract_content, then the content, and the
// raw input as content, through the stage's reply check. Both report
// failures as one line and never throw.
#include "actors/model_client.hpp"
#include "tests/fuzz/fuzz_check.hpp"

#include <algorithm>

namespace {

using namespace turing;

config::stage_config stage_with_outcome_field() {
  config::stage_config stage;
  stage.name = "alma";
  stage.handler = config::handler_kind::model;
  stage.outcome_field = "verdict";
  stage.outcomes = {"merged", "passed"};
  stage.required_fields = {"verdict", "domain"};
  return stage;
}

config::stage_config stage_with_fixed_outcome() {
  config::stage_config stage;
  stage.name = "clara";
  stage.handler = config::handler_kind::model;
  stage.fixed_outcome = "proposed";
  stage.outcomes = {"proposed"};
  return stage;
}

void check_content(const config::stage_config& stage, const std::string& content) {
  auto check = actors::check_reply(stage, content);
  if (check.ok) {
    FUZZ_REQUIRE(check.error.empty(), "an accepted reply has no error");
    FUZZ_REQUIRE(check.result.output.is_object(), "an accepted reply's output is an object");
    FUZZ_REQUIRE(std::find(stage.outcomes.begin(), stage.outcomes.end(), check.result.outcome) !=
                     stage.outcomes.end(),
                 "an accepted reply's outcome is one the stage declares");
  } else {
    FUZZ_REQUIRE(!check.error.empty(), "a refused reply says why");
    FUZZ_REQUIRE(!fuzz::has_line_break(check.error), "a refused reply's error is one line");
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto by_field = stage_with_outcome_field();
  static const auto fixed = stage_with_fixed_outcome();
  if (size == 0)
    return 0;
  auto api = (data[0] & 1) ? config::model_api::openai : config::model_api::ollama;
  auto body = fuzz::as_text(data + 1, size - 1);

  std::string error;
  auto content = actors::extract_content(api, body, &error);
  if (content) {
    check_content(by_field, *content);
    check_content(fixed, *content);
  } else {
    FUZZ_REQUIRE(!error.empty(), "an unreadable body says why");
    FUZZ_REQUIRE(!fuzz::has_line_break(error), "an unreadable body's error is one line");
  }
  // The body as the content itself: the object finder's brace and string
  // scanning gets the fuzzer's bytes directly, not only what a JSON string
  // inside a body can carry.
  check_content(by_field, body);
  return 0;
}
