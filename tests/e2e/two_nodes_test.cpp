// Two `turing run` processes on one database for a whole run: both do work,
// every item finishes once, and no message is completed twice: claims with
// SKIP LOCKED and fenced writes hold across processes, not only across the
// actors of one (issue 9).
#define CAF_SUITE two_nodes
#include "tests/e2e/pass_chain.hpp"
#include "tests/support/pg_test_cluster.hpp"

#include <caf/test/unit_test.hpp>

using namespace turing::testing;
using namespace std::chrono_literals;

CAF_TEST(two_processes_on_one_database_share_the_work_and_finish_every_item_once) {
  constexpr size_t items = 6000;
  temp_dir dir;
  auto dsn = pg_test_cluster::instance().fresh_database();
  // A claim takes at most 64, so one process cannot take a whole stage at once.
  auto config = write_pass_chain_config(dir, "url = \"" + dsn + "\"", 3,
                                        "claim_batch = 64\npoll_interval = \"500ms\"");
  std::string out;
  CAF_REQUIRE_EQUAL(run_turing(dir,
                               {"enqueue", "--config", config.string(), "--stage", "s1", "--file",
                                write_numbered_items(dir, items).string()},
                               &out),
                    0);

  auto a =
      start_turing(dir, {"run", "--config", config.string(), "--until-drained", "--node", "node-a"},
                   "node-a.log");
  auto b =
      start_turing(dir, {"run", "--config", config.string(), "--until-drained", "--node", "node-b"},
                   "node-b.log");
  auto rc_a = a.wait(180s);
  auto rc_b = b.wait(180s);
  CAF_CHECK_EQUAL(rc_a, 0);
  CAF_CHECK_EQUAL(rc_b, 0);
  if (rc_a != 0 || rc_b != 0)
    CAF_MESSAGE("node-a:\n" << a.output() << "\nnode-b:\n" << b.output());

  auto end = read_chain_end_state(dsn);
  for (const auto& [node, n] : end.completions_by_node)
    CAF_MESSAGE(node << " completed " << n << " message(s)");
  CAF_CHECK_EQUAL(end.completions_by_node.size(), 2u);
  CAF_CHECK(end.completions_by_node["node-a"] > 0);
  CAF_CHECK(end.completions_by_node["node-b"] > 0);
  CAF_CHECK_EQUAL(end.completions_by_node["node-a"] + end.completions_by_node["node-b"],
                  static_cast<int64_t>(items) * 3);
  CAF_CHECK_EQUAL(end.items, static_cast<int64_t>(items));
  CAF_CHECK_EQUAL(end.finished_in_out, static_cast<int64_t>(items));
  CAF_CHECK_EQUAL(end.live_messages, 0);
  CAF_CHECK_EQUAL(end.duplicate_messages, 0);
  CAF_CHECK_EQUAL(end.completed_twice, 0);

  std::string check;
  CAF_CHECK_EQUAL(run_turing(dir, {"check", "--config", config.string()}, &check), 0);
  if (check.find("invariants hold") == std::string::npos)
    CAF_MESSAGE(check);
}
