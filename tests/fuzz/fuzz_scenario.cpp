// Fuzz target: scenario TOML through the scenario reader. Bad input must be a
// scenario_error naming the problems; any other exception or a crash is a
// finding.
#include "replay/scenario.hpp"
#include "tests/fuzz/fuzz_check.hpp"

#include <cstring>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Anchored in the scenario suite's folder, so that the seeds'
  // pipeline_file = "pipelines/..." resolves.
  static const std::filesystem::path file =
      std::filesystem::path{TURING_SOURCE_DIR} / "tests" / "scenarios" / "fuzz.toml";
  try {
    turing::replay::parse_scenario(turing::fuzz::as_text(data, size), file);
  } catch (const turing::replay::scenario_error& e) {
    FUZZ_REQUIRE(std::strlen(e.what()) > 0, "a rejected scenario says why");
  }
  return 0;
}
