// The long form of the SIGKILL test (label `slow`, run by ./scripts/test
// --all, not in CI): the whole skill dataset, killed at seven points.
#define CAF_SUITE sigkill_soak
#include "tests/e2e/skill_pipeline_fixture.hpp"

using namespace turing::testing;

CAF_TEST_FIXTURE_SCOPE(sigkill_soak_tests, skill_pipeline_fixture)

CAF_TEST(seven_sigkills_over_the_whole_dataset_still_end_every_skill_exactly_once) {
  sigkill_and_restart(2100, {100, 900, 2000, 3500, 5000, 7000, 9000});
}

CAF_TEST_FIXTURE_SCOPE_END()
