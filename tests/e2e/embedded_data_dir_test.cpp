// The embedded cluster as deployments meet it: commands that only read
// (status, report, check, record) never create a cluster where data_dir points
// at none, and a second `turing run` on a data directory whose cluster a first
// one is using shares that cluster (issue 9).
#define CAF_SUITE embedded_data_dir
#include "persistence/embedded_cluster.hpp"
#include "tests/e2e/pass_chain.hpp"
#include "tests/support/pg_test_cluster.hpp"

#include <caf/test/unit_test.hpp>
#include <fstream>
#include <pqxx/pqxx>
#include <sstream>

using namespace turing::testing;
using namespace std::chrono_literals;

namespace {

namespace fs = std::filesystem;

std::vector<std::string> non_empty_lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in{text};
  for (std::string line; std::getline(in, line);)
    if (!line.empty())
      out.push_back(line);
  return out;
}

std::string quoted(const fs::path& p) {
  return "data_dir = \"" + p.string() + "\"";
}

int postmaster_pid(const fs::path& data_dir) {
  std::ifstream in{data_dir / "postgres" / "postmaster.pid"};
  int pid = 0;
  in >> pid;
  return pid;
}

} // namespace

CAF_TEST(status_report_check_and_record_on_a_data_dir_without_a_cluster_fail_naming_it) {
  temp_dir dir;
  auto missing = dir.path / "turing-dta"; // a typo'd directory that does not exist
  auto empty = dir.path / "empty";        // one that exists but holds no cluster
  fs::create_directory(empty);
  for (const auto& [data_dir, why] :
       {std::pair{missing, std::string("no such directory")},
        std::pair{empty, std::string("the directory has no cluster")}}) {
    auto config = write_pass_chain_config(dir, quoted(data_dir), 1, "", "chain.toml");
    for (std::vector<std::string> args : {std::vector<std::string>{"status"},
                                          {"report"},
                                          {"check"},
                                          {"record", "--out", (dir.path / "s.toml").string()}}) {
      auto command = args.front();
      args.insert(args.end(), {"--config", config.string()});
      std::string out;
      auto rc = run_turing(dir, args, &out);
      auto lines = non_empty_lines(out);
      CAF_MESSAGE("turing " << command << " on " << data_dir << ": exit " << rc << ": " << out);
      CAF_CHECK_EQUAL(rc, 1);
      CAF_CHECK_EQUAL(lines.size(), 1u);
      CAF_CHECK(out.find(data_dir.string()) != std::string::npos);
      CAF_CHECK(out.find(why) != std::string::npos);
    }
    // Nothing was made there: no directory, no cluster, no lock file.
    if (data_dir == missing)
      CAF_CHECK(!fs::exists(missing));
    else
      CAF_CHECK(fs::is_empty(empty));
  }
}

CAF_TEST(a_second_run_on_the_same_data_dir_shares_the_running_cluster_and_corrupts_nothing) {
  constexpr size_t items = 6000;
  temp_dir dir;
  temp_data_dir data{"turing-shared"}; // stops the cluster whatever happens
  auto config = write_pass_chain_config(dir, quoted(data.path()), 3,
                                        "claim_batch = 64\npoll_interval = \"500ms\"");
  std::string out;
  CAF_REQUIRE_EQUAL(run_turing(dir,
                               {"enqueue", "--config", config.string(), "--stage", "s1", "--file",
                                write_numbered_items(dir, items).string()},
                               &out),
                    0);
  auto postmaster = postmaster_pid(data.path());
  CAF_REQUIRE(postmaster > 0);
  turing::persistence::embedded_cluster_options existing;
  existing.data_dir = data.path();
  existing.may_initialise = false;
  auto dsn = turing::persistence::embedded_cluster::ensure_running(existing).connection_string();
  auto done = [&] {
    pqxx::connection c{dsn};
    pqxx::nontransaction tx{c};
    return tx.exec1("SELECT count(*) FROM turing.messages WHERE state = 'done'")[0].as<int64_t>();
  };

  auto first = start_turing(
      dir, {"run", "--config", config.string(), "--until-drained", "--node", "first"}, "first.log");
  CAF_REQUIRE(eventually([&] { return done() > 0; }, 60s));
  CAF_REQUIRE(first.running());
  auto second =
      start_turing(dir, {"run", "--config", config.string(), "--until-drained", "--node", "second"},
                   "second.log");
  auto rc_second = second.wait(180s);
  auto rc_first = first.wait(180s);
  CAF_CHECK_EQUAL(rc_first, 0);
  CAF_CHECK_EQUAL(rc_second, 0);
  auto second_log = second.output();
  if (rc_first != 0 || rc_second != 0)
    CAF_MESSAGE("first:\n" << first.output() << "\nsecond:\n" << second_log);

  // The behaviour pinned: the second process reuses the cluster the first one
  // runs on (one postmaster, the same pid) and takes part in the work.
  CAF_CHECK(second_log.find("reusing running PostgreSQL cluster " +
                            (data.path() / "postgres").string() + " (pid " +
                            std::to_string(postmaster) + ")") != std::string::npos);
  CAF_CHECK_EQUAL(postmaster_pid(data.path()), postmaster);

  auto end = read_chain_end_state(dsn);
  for (const auto& [node, n] : end.completions_by_node)
    CAF_MESSAGE(node << " completed " << n << " message(s)");
  CAF_CHECK(end.completions_by_node["first"] > 0);
  CAF_CHECK(end.completions_by_node["second"] > 0);
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
