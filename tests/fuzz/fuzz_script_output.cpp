// Fuzz target: what a script child wrote, through the exit judge that reads
// its stdout ({"outcome", "output"}) and quotes its stderr. The error must be
// one line of valid UTF-8 without control characters, as documented.
#include "actors/script_runner.hpp"
#include "persistence/storable_text.hpp"
#include "tests/fuzz/fuzz_check.hpp"

#include <algorithm>

namespace {

using namespace turing;

void require_clean_error(const std::string& error) {
  FUZZ_REQUIRE(!error.empty(), "a failed script says why");
  FUZZ_REQUIRE(!persistence::unstorable_text(error), "the error is valid UTF-8 without U+0000");
  FUZZ_REQUIRE(std::none_of(error.begin(), error.end(),
                            [](char c) {
                              auto u = static_cast<unsigned char>(c);
                              return u < 0x20 || u == 0x7F;
                            }),
               "the error has no control characters");
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto out = fuzz::as_text(data, size);

  // A child that exited 0 with `out` on stdout.
  actors::script_result exited;
  exited.exit_status = 0;
  auto judged = actors::judge_script_exit(exited, out);
  if (judged.ok) {
    FUZZ_REQUIRE(!judged.outcome.empty(), "an accepted stdout has an outcome");
    FUZZ_REQUIRE(judged.error.empty(), "an accepted stdout has no error");
  } else {
    require_clean_error(judged.error);
  }

  // A child that failed with `out` as its stderr tail (raw bytes, up to 2048).
  actors::script_result failed;
  failed.exit_status = 3;
  failed.stderr_tail = out.substr(out.size() > 2048 ? out.size() - 2048 : 0);
  auto failure = actors::judge_script_exit(failed, "{\"outcome\":\"passed\"}");
  FUZZ_REQUIRE(!failure.ok, "a non-zero exit status fails");
  require_clean_error(failure.error);
  return 0;
}
