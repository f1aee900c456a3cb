// Fuzz target: TOML text through the config loader (parse and validate).
// Every problem must come back as config errors; nothing may throw or crash.
#include "config/config_loader.hpp"
#include "tests/fuzz/fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace turing::config;
  // The OWL example's builtins, and its directory as the base, so that the
  // seed configs' prompt_file and builtin references resolve and the loader
  // gets past them into the graph checks.
  static const builtin_catalog builtins{{"owl.create_entity", {"created"}},
                                        {"owl.compare_proposals", {"agree", "disagree"}},
                                        {"owl.commit", {"committed"}}};
  static const std::filesystem::path base_dir =
      std::filesystem::path{TURING_SOURCE_DIR} / "examples" / "owl";

  auto text = turing::fuzz::as_text(data, size);
  auto result = parse_config(text, "fuzz.toml", base_dir, builtins);

  FUZZ_REQUIRE(result.config.has_value() == result.errors.empty(),
               "a config comes back exactly when there are no errors");
  for (const auto& error : result.errors) {
    FUZZ_REQUIRE(!error.message.empty(), "every error says what is wrong");
    FUZZ_REQUIRE(error.to_string().rfind("fuzz.toml:", 0) == 0, "every error names the file");
  }
  return 0;
}
