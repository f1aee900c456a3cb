// Every kind of write pg_store makes, cut at its COMMIT by a proxy in front of
// a real PostgreSQL (applied or not, the caller told the connection was
// lost), retried as the runtime retries: each write applied exactly once.
#define CAF_SUITE commit_cut
#include "persistence/migrations.hpp"
#include "persistence/pg_store.hpp"
#include "tests/support/pg_commit_cut_proxy.hpp"
#include "tests/support/pg_test_cluster.hpp"

#include <caf/test/unit_test.hpp>
#include <functional>
#include <map>
#include <pqxx/pqxx>
#include <random>
#include <set>
#include <thread>

using namespace turing::persistence;
using namespace turing::testing;
using namespace std::chrono_literals;

namespace {

enum class write_kind { claim, complete, join, fail, release, heartbeat };
constexpr write_kind all_kinds[] = {write_kind::claim, write_kind::complete, write_kind::join,
                                    write_kind::fail,  write_kind::release,  write_kind::heartbeat};

const char* to_string(write_kind k) {
  switch (k) {
  case write_kind::claim:
    return "claim";
  case write_kind::complete:
    return "complete";
  case write_kind::join:
    return "join";
  case write_kind::fail:
    return "fail";
  case write_kind::release:
    return "release";
  case write_kind::heartbeat:
    return "heartbeat";
  }
  return "?";
}

constexpr commit_cut cut_modes[] = {commit_cut::after_reply, commit_cut::before_server,
                                    commit_cut::racing};

/// The pipeline: `split` hands off to `left` and `right`, which meet in the
/// join `pair`, which ends in the sink `joined`.
const std::vector<std::string> stages{"split", "left", "right", "pair"};
constexpr int max_attempts = 50; // cut claims and failures spend attempts; none may die

struct cut_tally {
  int cuts = 0;
  int applied = 0; ///< seen committed before the retry
};

struct fixture {
  std::string direct = pg_test_cluster::instance().fresh_database();
  pg_commit_cut_proxy proxy{pg_commit_cut_proxy::socket_of(direct)};
  time_point now = std::chrono::floor<std::chrono::microseconds>(wall_clock::now());
  std::unique_ptr<pg_store> store;
  std::mt19937 rng{9}; // fixed: a failure replays the same writes
  const std::string node = "node-cut";
  const millis lease_ttl{30000};

  /// How many cuts of each kind to make, and how a cut is made.
  std::map<write_kind, int> targets;
  std::function<void()> during_commit; ///< e.g. a cluster restart; empty: none
  std::map<write_kind, std::map<commit_cut, cut_tally>> made;
  int join_firings_cut = 0; ///< cut join completions that did fire their join
  int run_count = 0;

  fixture() {
    pqxx::connection c{direct};
    migrate(c);
    store = std::make_unique<pg_store>(proxy.through(direct), [this] { return now; });
  }

  // -- observing the database directly, beside the proxy ----------------------

  pqxx::result query(const std::string& sql) {
    pqxx::connection c{direct};
    pqxx::work tx{c};
    return tx.exec(sql);
  }

  /// What every kind of write changes: attempts appended, epochs bumped,
  /// messages created, leases moved. The clock moves before every write.
  std::string fingerprint() {
    auto r = query(R"sql(
      SELECT (SELECT count(*) FROM turing.attempts) || '/'
          || (SELECT coalesce(sum(epoch), 0) FROM turing.messages) || '/'
          || (SELECT count(*) FROM turing.messages) || '/'
          || (SELECT coalesce(max(lease_expires_at)::text, '-') FROM turing.messages))sql");
    return r[0][0].as<std::string>();
  }

  int64_t count(const std::string& sql) { return query(sql)[0][0].as<int64_t>(); }

  /// No message of the stage is claimable now (by the store's clock).
  bool nothing_ready(const std::string& stage) {
    for (const auto& c : store->counts())
      if (c.stage == stage)
        return c.ready == 0;
    return true;
  }

  /// Waits until the cut connection's backend has ended its transaction.
  /// Until the server notices the client gone it may hold row locks, and a
  /// claim that meets them skips those rows (SKIP LOCKED): a loaded machine
  /// then turned a cut claim into an empty one.
  void await_cut_transaction_ended() {
    for (int polls = 0; count("SELECT count(*) FROM pg_stat_activity WHERE backend_type = "
                              "'client backend' AND pid <> pg_backend_pid() "
                              "AND xact_start IS NOT NULL") > 0;
         ++polls) {
      CAF_REQUIRE(polls < 2000);
      std::this_thread::sleep_for(5ms);
    }
  }

  // -- writes, cut or not, retried as the runtime retries ----------------------

  int cuts_made(write_kind k) {
    int n = 0;
    for (const auto& [mode, t] : made[k])
      n += t.cuts;
    return n;
  }

  /// Runs `op`; while the kind is short of its target, every other write of
  /// that kind is cut at its COMMIT first. After a cut the same write is
  /// sent again, as the stage pump, the lease keeper and the claim loop do
  /// after an "outcome unknown" error. A write that `changes_nothing` (a
  /// claim of a stage with nothing ready) is not cut: its commit applies
  /// nothing to tell apart.
  template <class Op>
  auto write(write_kind kind, Op op, const std::function<bool()>& changes_nothing = {})
      -> decltype(op()) {
    now += 1ms;
    int done = cuts_made(kind);
    if (done >= targets[kind] || std::bernoulli_distribution{0.5}(rng) == false ||
        (changes_nothing && changes_nothing()))
      return op();
    // A restart goes between the COMMIT and its reply: the server decides.
    auto how = during_commit ? commit_cut::racing : cut_modes[done % 3];
    auto before = fingerprint();
    auto cuts_before = proxy.cuts();
    proxy.arm(how, during_commit);
    try {
      op();
      CAF_FAIL(to_string(kind) << " was not cut at its commit (" << to_string(how) << ")");
    } catch (const store_error& e) {
      CAF_CHECK_EQUAL(proxy.cuts(), cuts_before + 1);
      CAF_CHECK(e.code() == store_errc::unavailable);
      if (std::string(e.what()).find("outcome unknown") == std::string::npos)
        CAF_FAIL(to_string(kind) << " cut at commit, but not reported in doubt: " << e.what());
    }
    await_cut_transaction_ended();
    bool applied = fingerprint() != before;
    if (!during_commit && how == commit_cut::after_reply)
      CAF_CHECK(applied);
    if (!during_commit && how == commit_cut::before_server)
      CAF_CHECK(!applied);
    auto& tally = made[kind][how];
    ++tally.cuts;
    tally.applied += applied ? 1 : 0;
    for (int attempt = 1;; ++attempt) {
      try {
        return op();
      } catch (const store_error& e) {
        // Right after a restart the cluster may still refuse a moment.
        if (e.code() != store_errc::unavailable || attempt >= 50)
          throw;
        CAF_MESSAGE("retry " << attempt << " of " << to_string(kind) << ": " << e.what());
      }
    }
  }

  static void check_all_applied(const std::vector<fence_result>& results, write_kind kind) {
    for (auto r : results)
      if (r != fence_result::applied)
        CAF_FAIL(to_string(kind) << " retried after an in-doubt commit was answered stale");
  }

  // -- the pipeline, driven by hand -------------------------------------------

  int64_t enqueue(int n) {
    enqueue_request r;
    r.stage = "split";
    r.label = "cut-" + std::to_string(++run_count);
    r.max_attempts = max_attempts;
    for (int i = 0; i < n; ++i)
      r.items.push_back({r.label + "-" + std::to_string(i), json{{"n", i}}});
    return store->enqueue(r).run_id;
  }

  static delivery to_stage(const std::string& stage, json payload) {
    delivery d;
    d.target = stage;
    d.payload = std::move(payload);
    d.max_attempts = max_attempts;
    return d;
  }

  std::vector<delivery> deliveries_of(const claimed_message& m) {
    if (m.stage == "split")
      return {to_stage("left", {{"n", m.payload["n"]}, {"side", "left"}}),
              to_stage("right", {{"n", m.payload["n"]}, {"side", "right"}})};
    if (m.stage == "pair") {
      delivery d;
      d.type = delivery::kind::sink;
      d.target = "joined";
      d.payload = {{"n", m.payload["left"]["n"]}};
      return {d};
    }
    delivery d = to_stage("pair", {{"n", m.payload["n"]}});
    d.type = delivery::kind::join;
    d.join_inputs = {"left", "right"};
    return {d};
  }

  /// Whether completing these join inputs fires a join: the other input is there.
  bool fires_a_join(const std::vector<completion>& batch) {
    std::string ids;
    for (const auto& c : batch)
      ids += (ids.empty() ? "" : ",") + std::to_string(c.fence.message_id);
    return count("SELECT count(*) FROM turing.joins j JOIN turing.messages m ON m.item_id = "
                 "j.item_id WHERE j.fired_at IS NULL AND m.id IN (" +
                 ids + ")") > 0;
  }

  /// One pass over the stages: claim a few, heartbeat them, then fail,
  /// release or complete each (most complete).
  void one_round() {
    for (const auto& stage : stages) {
      auto claimed = write(
          write_kind::claim,
          [&] {
            return store->claim({stage, node, 4, lease_ttl});
          },
          [&] { return nothing_ready(stage); });
      if (claimed.empty())
        continue;
      std::vector<lease> leases;
      for (const auto& m : claimed)
        leases.push_back(m.fencing());
      auto lost =
          write(write_kind::heartbeat, [&] { return store->heartbeat(node, leases, lease_ttl); });
      CAF_CHECK(lost.empty());
      std::vector<completion> completions;
      std::vector<failure> failures;
      std::vector<lease> releases;
      for (const auto& m : claimed) {
        auto roll = std::uniform_int_distribution<int>{0, 99}(rng);
        if (roll < 15) {
          failure f;
          f.fence = m.fencing();
          f.attempt = m.attempt;
          f.node = node;
          f.started_at = m.started_at;
          f.error = "flaky";
          failures.push_back(f);
        } else if (roll < 30) {
          releases.push_back(m.fencing());
        } else {
          completion c;
          c.fence = m.fencing();
          c.attempt = m.attempt;
          c.node = node;
          c.started_at = m.started_at;
          c.outcome = "ok";
          c.output = {{"from", stage}};
          c.deliveries = deliveries_of(m);
          completions.push_back(std::move(c));
        }
      }
      if (!failures.empty())
        check_all_applied(write(write_kind::fail, [&] { return store->fail(failures); }),
                          write_kind::fail);
      if (!releases.empty())
        check_all_applied(
            write(write_kind::release, [&] { return store->release(node, releases); }),
            write_kind::release);
      if (!completions.empty()) {
        bool joining = (stage == "left" || stage == "right") && fires_a_join(completions);
        auto kind = joining ? write_kind::join : write_kind::complete;
        auto cuts_before = cuts_made(kind);
        check_all_applied(write(kind, [&] { return store->complete(completions); }), kind);
        if (joining && cuts_made(kind) > cuts_before)
          ++join_firings_cut;
      }
    }
    // A claim whose commit applied unseen holds leases nobody owns: they
    // expire and the rescuer returns them, as on a running node.
    if (count("SELECT count(*) FROM turing.messages WHERE state = 'running'") > 0) {
      now += lease_ttl + 1s;
      auto rescued = store->rescue_expired("rescuer");
      CAF_CHECK(!rescued.empty());
      CAF_CHECK_EQUAL(count("SELECT count(*) FROM turing.messages WHERE state = 'running'"), 0);
    }
  }

  bool targets_met() {
    for (auto k : all_kinds)
      if (cuts_made(k) < targets[k])
        return false;
    return true;
  }

  /// Runs of `items` items, each drained, until every target is met.
  void run_until_targets_met(int items) {
    for (int runs = 0; !targets_met(); ++runs) {
      CAF_REQUIRE(runs < 40);
      auto run_id = enqueue(items);
      for (int rounds = 0; store->run(run_id).value().pending > 0; ++rounds) {
        CAF_REQUIRE(rounds < 500);
        one_round();
      }
    }
  }

  // -- the end state ------------------------------------------------------------

  void check_exactly_once() {
    auto violations = store->check_invariants();
    for (const auto& v : violations)
      CAF_MESSAGE("invariant violated: " << v);
    CAF_CHECK(violations.empty());
    // One message per (item, stage, parent): each handoff applied once.
    auto twice = query("SELECT item_id, stage, parent_id, count(*) FROM turing.messages "
                       "GROUP BY 1, 2, 3 HAVING count(*) > 1");
    for (const auto& row : twice)
      CAF_MESSAGE("item " << row[0].as<int64_t>() << " has " << row[3].as<int64_t>()
                          << " messages for stage " << row[1].as<std::string>());
    CAF_CHECK_EQUAL(twice.size(), 0u);
    // Every item: one message per stage, all done; the join's message
    // created by one of its inputs; the item in the sink.
    auto items = count("SELECT count(*) FROM turing.items");
    CAF_CHECK_EQUAL(count("SELECT count(*) FROM turing.messages"), items * 4);
    CAF_CHECK_EQUAL(count("SELECT count(*) FROM turing.messages WHERE state = 'done'"), items * 4);
    CAF_CHECK_EQUAL(count("SELECT count(DISTINCT (item_id, stage)) FROM turing.messages"),
                    items * 4);
    CAF_CHECK_EQUAL(count("SELECT count(*) FROM turing.messages p JOIN turing.messages i "
                          "ON i.id = p.parent_id AND i.item_id = p.item_id "
                          "AND i.stage IN ('left', 'right') WHERE p.stage = 'pair'"),
                    items);
    CAF_CHECK_EQUAL(count("SELECT count(*) FROM turing.messages c JOIN turing.messages s "
                          "ON s.id = c.parent_id AND s.stage = 'split' AND s.item_id = c.item_id "
                          "WHERE c.stage IN ('left', 'right')"),
                    items * 2);
    CAF_CHECK_EQUAL(count("SELECT count(*) FROM turing.joins WHERE fired_at IS NOT NULL"), items);
    CAF_CHECK_EQUAL(count("SELECT count(*) FROM turing.items WHERE sink = 'joined' "
                          "AND finished_at IS NOT NULL AND open_branches = 0"),
                    items);
    int64_t in_sink = 0;
    for (const auto& s : store->sink_counts(std::nullopt)) {
      CAF_CHECK_EQUAL(s.sink, "joined");
      in_sink += s.items;
    }
    CAF_CHECK_EQUAL(in_sink, items);
  }

  void report() {
    for (auto k : all_kinds)
      for (auto how : cut_modes) {
        const auto& t = made[k][how];
        if (t.cuts > 0)
          CAF_MESSAGE(to_string(k) << " cut " << to_string(how) << ": " << t.cuts
                                   << " cuts, applied before the retry: " << t.applied);
      }
    CAF_MESSAGE("cut join completions that fired the join: "
                << join_firings_cut << "; items: " << count("SELECT count(*) FROM turing.items")
                << "; proxy connections: " << proxy.connections());
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(commit_cut_tests, fixture)

CAF_TEST(every_kind_of_write_cut_at_its_commit_is_applied_exactly_once_after_the_retry) {
  for (auto k : all_kinds)
    targets[k] = 21; // 7 in each of the three modes
  run_until_targets_met(20);
  report();
  for (auto k : all_kinds)
    CAF_CHECK_GREATER_OR_EQUAL(cuts_made(k), 21);
  CAF_CHECK_GREATER_OR_EQUAL(join_firings_cut, 21);
  CAF_CHECK_EQUAL(proxy.cuts(), 6 * 21);
  check_exactly_once();
}

CAF_TEST(a_cluster_restart_during_a_commit_is_retried_to_exactly_once) {
  // A fast restart (pg_ctl stop -m fast, start) after the COMMIT went out
  // and before its reply reached the store.
  during_commit = [] {
    auto dir = pg_test_cluster::instance().data_dir();
    embedded_cluster::stop(dir);
    embedded_cluster_options options;
    options.data_dir = dir;
    embedded_cluster::ensure_running(options);
  };
  targets[write_kind::complete] = 1;
  targets[write_kind::join] = 1;
  targets[write_kind::fail] = 1;
  run_until_targets_met(6);
  report();
  CAF_CHECK_EQUAL(proxy.cuts(), 3);
  check_exactly_once();
}

CAF_TEST_FIXTURE_SCOPE_END()
