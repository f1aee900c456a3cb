// PostgreSQL-only behaviour of the store: concurrent claimers and migrators,
// invariants the database enforces itself, NOTIFY, and unreachable servers.
#define CAF_SUITE pg_store
#include "persistence/detail/hot_statements.hpp"
#include "persistence/migrations.hpp"
#include "persistence/pg_store.hpp"
#include "tests/support/incompressible_text.hpp"
#include "tests/support/pg_test_cluster.hpp"

#include <atomic>
#include <caf/test/unit_test.hpp>
#include <map>
#include <pqxx/pqxx>
#include <set>
#include <thread>

using namespace turing::persistence;
using namespace std::chrono_literals;
using turing::testing::pg_test_cluster;

namespace {

struct fixture {
  std::string dsn = pg_test_cluster::instance().fresh_database();
  fixture() {
    pqxx::connection c{dsn};
    migrate(c);
  }
  int64_t enqueue_n(pg_store& s, const std::string& stage, int n) {
    enqueue_request r;
    r.stage = stage;
    for (int i = 0; i < n; ++i)
      r.items.push_back({std::nullopt, json{{"n", i}}});
    return s.enqueue(r).run_id;
  }
  /// The completion of `m` by `node`: outcome "passed", to the sink "committed".
  static completion passed_to_sink(const claimed_message& m, const std::string& node) {
    completion c;
    c.fence = m.fencing();
    c.node = node;
    c.started_at = m.started_at;
    c.outcome = "passed";
    c.deliveries.push_back({delivery::kind::sink, "committed", json::object(), 1, {}});
    return c;
  }
  /// The store error counts() fails with (internal if it does not fail).
  static store_errc counts_error(pg_store& s) {
    try {
      s.counts();
    } catch (const store_error& e) {
      return e.code();
    }
    return store_errc::internal;
  }
  /// Whether a backend of this database comes to wait on a lock (within 30 s).
  bool a_backend_waits_on_a_lock() {
    pqxx::connection watcher{dsn};
    auto give_up = std::chrono::steady_clock::now() + 30s;
    while (std::chrono::steady_clock::now() < give_up) {
      pqxx::nontransaction q{watcher};
      if (q.exec1("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                  "AND wait_event_type = 'Lock'")[0]
              .as<int>() > 0)
        return true;
      std::this_thread::sleep_for(1ms);
    }
    return false;
  }
  /// Completes `batch` while another transaction, playing the batch's first
  /// try, holds the messages `held` marked done under their epochs, and
  /// commits once the completion waits for them. Returns the completion's
  /// answers (empty, with a failed check, if it threw or never waited).
  std::vector<fence_result>
  complete_while_first_try_commits(pg_store& s, const std::vector<claimed_message>& held,
                                   const std::vector<completion>& batch) {
    pqxx::connection other{dsn};
    pqxx::work first_try{other};
    for (const auto& m : held)
      first_try.exec_params("UPDATE turing.messages SET state = 'done', lease_expires_at = NULL, "
                            "finished_at = now(), outcome = 'passed' WHERE id = $1 AND epoch = $2",
                            m.id, m.epoch);
    std::vector<fence_result> results;
    std::string error;
    std::thread retry([&] {
      try {
        results = s.complete(batch);
      } catch (const std::exception& e) {
        error = e.what();
      }
    });
    bool waited = a_backend_waits_on_a_lock();
    if (waited)
      first_try.commit();
    else
      first_try.abort();
    retry.join();
    if (!waited)
      CAF_MESSAGE("the retry never waited for the rows its first try holds");
    CAF_CHECK(waited);
    CAF_CHECK_EQUAL(error, "");
    return waited && error.empty() ? results : std::vector<fence_result>{};
  }
  /// Runs a statement expected to be refused; returns the error text.
  std::string refused(const std::string& sql) {
    pqxx::connection c{dsn};
    try {
      pqxx::work tx{c};
      tx.exec(sql);
      tx.commit();
    } catch (const std::exception& e) {
      return e.what();
    }
    return "";
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(pg_store_tests, fixture)

CAF_TEST(concurrent_claimers_never_claim_a_message_twice) {
  pg_store setup{dsn};
  constexpr int total = 600;
  auto run_id = enqueue_n(setup, "alma", total);
  constexpr int claimers = 4;
  std::vector<std::vector<int64_t>> claimed(claimers);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < claimers; ++t)
    threads.emplace_back([&, t] {
      try {
        pg_store s{dsn};
        auto node = "node-" + std::to_string(t);
        for (;;) {
          auto batch = s.claim({"alma", node, 7, 30s});
          if (batch.empty())
            break;
          std::vector<completion> done;
          for (const auto& m : batch) {
            claimed[t].push_back(m.id);
            done.push_back(passed_to_sink(m, node));
          }
          for (auto r : s.complete(done))
            if (r != fence_result::applied)
              ++failures;
        }
      } catch (const std::exception& e) {
        CAF_FAIL("claimer " << t << " threw: " << e.what());
      }
    });
  for (auto& t : threads)
    t.join();
  std::set<int64_t> all;
  size_t sum = 0;
  for (const auto& c : claimed) {
    sum += c.size();
    all.insert(c.begin(), c.end());
    CAF_CHECK(!c.empty()); // every claimer got work: SKIP LOCKED did not serialise them
  }
  CAF_CHECK_EQUAL(sum, static_cast<size_t>(total));
  CAF_CHECK_EQUAL(all.size(), static_cast<size_t>(total));
  CAF_CHECK_EQUAL(failures.load(), 0);
  CAF_CHECK(setup.run(run_id)->finished());
  CAF_CHECK_EQUAL(setup.attempts(run_id).size(), static_cast<size_t>(total));
}

CAF_TEST(concurrent_batches_of_two_stages_of_one_run_never_deadlock) {
  // Stage a hands items on to stage b while stage b finishes items: the mix
  // that once deadlocked (when each finish updated the run row, and new
  // messages took key-share locks on it through a foreign key).
  pg_store setup{dsn};
  constexpr int total = 400;
  auto run_id = enqueue_n(setup, "a", total);
  std::atomic<int> errors{0};
  std::atomic<int64_t> retried{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      try {
        pg_store s{dsn};
        struct count_retries {
          pg_store& s;
          std::atomic<int64_t>& total;
          ~count_retries() { total += s.rolled_back_and_retried(); }
        } counted{s, retried};
        auto node = "node-" + std::to_string(t);
        int idle = 0;
        while (idle < 3) {
          bool any = false;
          for (const char* stage : {"a", "b"}) {
            auto batch = s.claim({stage, node, 8, 30s});
            any = any || !batch.empty();
            std::vector<completion> done;
            for (const auto& m : batch) {
              completion c;
              c.fence = m.fencing();
              c.node = node;
              c.started_at = m.started_at;
              c.outcome = "ok";
              // Like Lucy or Alma: one batch both hands items on (new
              // messages, key-share on the run) and finishes others (run update).
              if (m.stage == "a" && m.payload["n"].get<int>() % 2 == 0)
                c.deliveries.push_back({delivery::kind::stage, "b", m.payload, 3, {}});
              else
                c.deliveries.push_back({delivery::kind::sink, "done", m.payload, 1, {}});
              done.push_back(std::move(c));
            }
            s.complete(done);
          }
          idle = any ? 0 : idle + 1;
        }
      } catch (const std::exception& e) {
        ++errors;
        CAF_MESSAGE("worker " << t << " failed: " << e.what());
      }
    });
  for (auto& t : threads)
    t.join();
  CAF_CHECK_EQUAL(errors.load(), 0);
  // The store retries a deadlock silently; a retry here would be a deadlock
  // the lock order was meant to rule out.
  CAF_MESSAGE("transactions rolled back and retried: " << retried.load());
  CAF_CHECK_EQUAL(retried.load(), 0);
  CAF_CHECK(setup.run(run_id)->finished());
  CAF_CHECK(setup.check_invariants().empty());
}

CAF_TEST(migrations_are_idempotent_under_concurrent_starters) {
  auto fresh = pg_test_cluster::instance().fresh_database();
  constexpr int starters = 4;
  std::atomic<int> applied_total{0};
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < starters; ++t)
    threads.emplace_back([&] {
      try {
        pqxx::connection c{fresh};
        applied_total += static_cast<int>(migrate(c).applied.size());
      } catch (const std::exception& e) {
        ++errors;
        CAF_MESSAGE("migrate threw: " << e.what());
      }
    });
  for (auto& t : threads)
    t.join();
  CAF_CHECK_EQUAL(errors.load(), 0);
  CAF_CHECK_EQUAL(applied_total.load(), static_cast<int>(all_migrations().size()));
  pqxx::connection c{fresh};
  auto again = migrate(c);
  CAF_CHECK(again.applied.empty());
  CAF_CHECK_EQUAL(again.from_version, all_migrations().back().version);
  pqxx::work tx{c};
  CAF_CHECK_EQUAL(tx.exec1("SELECT count(*) FROM turing.schema_migrations")[0].as<int>(),
                  static_cast<int>(all_migrations().size()));
}

CAF_TEST(the_attempts_table_refuses_updates_and_deletes) {
  pg_store s{dsn};
  enqueue_n(s, "alma", 1);
  auto m = s.claim({"alma", "n", 1, 30s}).at(0);
  completion c;
  c.fence = m.fencing();
  c.node = "n";
  c.started_at = m.started_at;
  c.outcome = "passed";
  s.complete({c});
  CAF_CHECK(refused("UPDATE turing.attempts SET outcome = 'forged'").find("append-only") !=
            std::string::npos);
  CAF_CHECK(refused("DELETE FROM turing.attempts").find("append-only") != std::string::npos);
  CAF_CHECK(refused("TRUNCATE turing.attempts CASCADE").find("append-only") != std::string::npos);
  CAF_CHECK_EQUAL(s.attempts(std::nullopt).size(), 1u);
}

CAF_TEST(the_database_refuses_illegal_states_and_unordered_timestamps) {
  pg_store s{dsn};
  enqueue_n(s, "alma", 1);
  CAF_CHECK(!refused("UPDATE turing.messages SET state = 'interrupted'").empty());
  // running without an owner or a lease
  CAF_CHECK(!refused("UPDATE turing.messages SET state = 'running'").empty());
  CAF_CHECK(!refused("UPDATE turing.messages SET state = 'done', outcome = 'x', "
                     "started_at = now(), finished_at = now() - interval '1 hour'")
                 .empty());
  CAF_CHECK(!refused("UPDATE turing.messages SET attempt = max_attempts + 1").empty());
  CAF_CHECK(!refused("INSERT INTO turing.run_tallies (run_id, sink, backend, finished, "
                     "last_finished_at) VALUES (1, 'done', 1, -1, now())")
                 .empty());
}

CAF_TEST(enqueue_and_completion_notify_the_target_stages) {
  pqxx::connection listener{dsn};
  struct receiver : pqxx::notification_receiver {
    std::vector<std::string> payloads;
    receiver(pqxx::connection_base& c) : pqxx::notification_receiver(c, ready_channel) {}
    void operator()(const std::string& payload, int) override { payloads.push_back(payload); }
  } rx{listener};
  pg_store s{dsn};
  enqueue_n(s, "lucy", 2);
  auto await = [&](size_t n) {
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (rx.payloads.size() < n && std::chrono::steady_clock::now() < deadline)
      listener.await_notification(1, 0);
  };
  await(1);
  CAF_REQUIRE_EQUAL(rx.payloads.size(), 1u);
  CAF_CHECK_EQUAL(rx.payloads[0], "lucy");
  // A completion by `node` of claimed message `m` that delivers to `d`.
  auto passed = [](const claimed_message& m, const std::string& node, delivery d) {
    completion c;
    c.fence = m.fencing();
    c.node = node;
    c.started_at = m.started_at;
    c.outcome = "passed";
    c.deliveries.push_back(std::move(d));
    return c;
  };
  auto to_stage = [](const std::string& stage) {
    return delivery{delivery::kind::stage, stage, json::object(), 3, {}};
  };
  auto m = s.claim({"lucy", "n", 1, 30s}).at(0);
  s.complete({passed(m, "n", to_stage("alma"))});
  await(2);
  CAF_REQUIRE_EQUAL(rx.payloads.size(), 2u);
  // A completion's handoff names the node that wrote it: that node's writer
  // wakes its own pumps, so its listener passes this notice over.
  CAF_CHECK_EQUAL(rx.payloads[1], "alma n");
  CAF_CHECK_EQUAL(parse_ready_payload(rx.payloads[1]).stage, "alma");
  CAF_CHECK_EQUAL(parse_ready_payload(rx.payloads[1]).woken_node, "n");
  CAF_CHECK_EQUAL(parse_ready_payload(rx.payloads[0]).stage, "lucy");
  CAF_CHECK(parse_ready_payload(rx.payloads[0]).woken_node.empty());
  // One batch: a route to a stage, a join that fires and a second route to
  // the same stage notify each target stage once, and only those.
  enqueue_n(s, "lucy", 3);
  await(3);
  auto ms = s.claim({"lucy", "n", 3, 30s});
  CAF_REQUIRE_EQUAL(ms.size(), 3u);
  s.complete({passed(ms[0], "n", to_stage("carl")),
              passed(ms[1], "n", {delivery::kind::join, "compare", json::object(), 3, {"lucy"}}),
              passed(ms[2], "n", to_stage("carl"))});
  await(5);
  listener.await_notification(0, 200000); // nothing more may follow
  CAF_REQUIRE_EQUAL(rx.payloads.size(), 5u);
  std::set<std::string> batch_targets(rx.payloads.begin() + 3, rx.payloads.end());
  CAF_CHECK_EQUAL(batch_targets, (std::set<std::string>{"carl n", "compare n"}));
  // A batch of two nodes' completions names none: every node's pumps look.
  enqueue_n(s, "lucy", 2);
  await(6);
  auto two = s.claim({"lucy", "n", 2, 30s});
  CAF_REQUIRE_EQUAL(two.size(), 2u);
  s.complete({passed(two[0], "n", to_stage("alma")), passed(two[1], "m", to_stage("alma"))});
  await(7);
  CAF_REQUIRE_EQUAL(rx.payloads.size(), 7u);
  CAF_CHECK_EQUAL(rx.payloads[6], "alma");
}

CAF_TEST(an_unreachable_database_is_reported_as_unavailable_naming_the_server) {
  pg_store s{"host=/nonexistent/socket/dir dbname=turing user=turing password=secret"};
  std::string what;
  store_errc code = store_errc::internal;
  try {
    s.connect();
  } catch (const store_error& e) {
    what = e.what();
    code = e.code();
  }
  CAF_CHECK(code == store_errc::unavailable);
  CAF_CHECK(what.find("/nonexistent/socket/dir") != std::string::npos);
  CAF_CHECK(what.find("secret") == std::string::npos);
  CAF_CHECK(what.find('\n') == std::string::npos);
}

CAF_TEST(operations_before_migration_report_a_missing_schema) {
  auto bare = pg_test_cluster::instance().fresh_database();
  pg_store s{bare};
  CAF_CHECK(counts_error(s) == store_errc::schema);
}

CAF_TEST(a_warmed_up_connection_claims_nothing_and_survives_a_schema_made_after_it) {
  // A node's store prepares its hot statements when it connects, running
  // each once on no row. Before migrations that fails quietly; the
  // statements are then prepared at first use, once the schema exists.
  auto bare = pg_test_cluster::instance().fresh_database();
  pg_store early{bare};
  early.warm_up_connections();
  CAF_CHECK(counts_error(early) == store_errc::schema);
  {
    pqxx::connection c{bare};
    migrate(c);
  }
  enqueue_n(early, "alma", 2);
  // A second store warms up against the schema: nothing is claimed by it.
  pg_store warm{bare};
  warm.warm_up_connections();
  warm.connect();
  CAF_CHECK_EQUAL(warm.counts().at(0).ready, 2);
  CAF_CHECK_EQUAL(early.claim({"alma", "n", 5, 30s}).size(), 2u);
  CAF_CHECK(early.check_invariants().empty());
}

CAF_TEST(the_invariant_check_catches_a_corrupted_database) {
  pg_store s{dsn};
  auto run_id = enqueue_n(s, "alma", 2);
  auto m = s.claim({"alma", "n", 1, 30s}).at(0);
  auto c = passed_to_sink(m, "n");
  s.complete({c});
  CAF_CHECK(s.check_invariants().empty());
  // What a buggy writer could do that no constraint forbids: a run's tally
  // off by one, and a second "completion" of a done message.
  {
    pqxx::connection conn{dsn};
    pqxx::work tx{conn};
    tx.exec_params("UPDATE turing.run_tallies SET finished = finished - 1 WHERE run_id = $1",
                   run_id);
    tx.exec_params("INSERT INTO turing.attempts (message_id, item_id, run_id, stage, attempt, "
                   "epoch, node, started_at, finished_at, result, outcome) SELECT id, item_id, "
                   "run_id, stage, attempt, epoch, 'forger', started_at, finished_at, "
                   "'completed', 'passed' FROM turing.messages WHERE id = $1",
                   m.id);
    tx.commit();
  }
  auto violations = s.check_invariants();
  auto mentions = [&](const std::string& part) {
    for (const auto& v : violations)
      if (v.find(part) != std::string::npos)
        return true;
    return false;
  };
  CAF_CHECK(mentions("run " + std::to_string(run_id) + " has pending 2 but 1 unfinished"));
  CAF_CHECK(mentions("message " + std::to_string(m.id) + " completed 2 times"));
}

CAF_TEST(the_database_refuses_a_second_handoff_of_one_completion) {
  pg_store s{dsn};
  enqueue_n(s, "carl", 1);
  auto m = s.claim({"carl", "n", 1, 30s}).at(0);
  completion c;
  c.fence = m.fencing();
  c.node = "n";
  c.started_at = m.started_at;
  c.outcome = "created";
  c.deliveries.push_back({delivery::kind::stage, "clara_a", json::object(), 3, {}});
  s.complete({c});
  auto error = refused("INSERT INTO turing.messages (run_id, item_id, parent_id, stage, payload, "
                       "max_attempts) SELECT run_id, item_id, parent_id, stage, payload, "
                       "max_attempts FROM turing.messages WHERE stage = 'clara_a'");
  CAF_CHECK(error.find("messages_handoff_once_idx") != std::string::npos);
}

CAF_TEST(the_invariant_check_catches_a_duplicated_handoff_and_a_dead_copy) {
  // What the outage bug of issue 9 left behind, on a database whose unique
  // index is gone (older schema): two messages for one (item, stage) from one
  // completion, one of them dead and the item dead, while the other completed.
  pg_store s{dsn};
  enqueue_n(s, "carl", 1);
  auto m = s.claim({"carl", "n", 1, 30s}).at(0);
  completion c;
  c.fence = m.fencing();
  c.node = "n";
  c.started_at = m.started_at;
  c.outcome = "created";
  c.deliveries.push_back({delivery::kind::stage, "clara_a", json::object(), 3, {}});
  s.complete({c});
  {
    pqxx::connection conn{dsn};
    pqxx::work tx{conn};
    tx.exec("DROP INDEX turing.messages_handoff_once_idx");
    tx.exec("INSERT INTO turing.messages (run_id, item_id, parent_id, stage, payload, "
            "max_attempts) SELECT run_id, item_id, parent_id, stage, payload, max_attempts "
            "FROM turing.messages WHERE stage = 'clara_a'");
    tx.exec("UPDATE turing.items SET open_branches = open_branches + 1");
    tx.commit();
  }
  auto copies = s.claim({"clara_a", "n", 2, 30s});
  CAF_REQUIRE_EQUAL(copies.size(), 2u);
  completion ok;
  ok.fence = copies[0].fencing();
  ok.node = "n";
  ok.started_at = copies[0].started_at;
  ok.outcome = "proposed";
  ok.deliveries.push_back({delivery::kind::sink, "committed", json::object(), 3, {}});
  s.complete({ok});
  failure dead;
  dead.fence = copies[1].fencing();
  dead.node = "n";
  dead.started_at = copies[1].started_at;
  dead.error = "boom";
  dead.retryable = false;
  s.fail({dead});
  auto violations = s.check_invariants();
  auto mentions = [&](const std::string& part) {
    for (const auto& v : violations)
      if (v.find(part) != std::string::npos)
        return true;
    return false;
  };
  for (const auto& v : violations)
    CAF_MESSAGE("violation: " << v);
  CAF_CHECK(mentions("has 2 messages for stage clara_a from one handoff (message " +
                     std::to_string(m.id) + ")"));
  CAF_CHECK(
      mentions("is dead although message " + std::to_string(copies[0].id) + " of stage clara_a"));
}

CAF_TEST(finishing_an_item_never_waits_on_its_run_or_on_other_finishing_items) {
  // Before, each finished item decremented its run's pending counter: every
  // finishing item of a run queued on that one row. Now each connection adds
  // to a tally row of its own. Another transaction holds the run's row and a
  // tally of the run open while this store finishes an item of the same run
  // under a 2 s lock_timeout: it must not wait.
  pg_store setup{dsn};
  auto run_id = enqueue_n(setup, "alma", 2);
  pqxx::connection other{dsn};
  pqxx::work holder{other};
  holder.exec_params("SELECT id FROM turing.runs WHERE id = $1 FOR NO KEY UPDATE", run_id);
  holder.exec_params("INSERT INTO turing.run_tallies (run_id, sink, backend, finished, "
                     "last_finished_at) VALUES ($1, 'committed', pg_backend_pid(), 0, now())",
                     run_id);
  pg_store s{dsn + " options='-c lock_timeout=2000'"};
  auto m = s.claim({"alma", "n", 1, 30s}).at(0);
  auto c = passed_to_sink(m, "n");
  std::vector<fence_result> r;
  try {
    r = s.complete({c});
  } catch (const std::exception& e) {
    CAF_FAIL("the completion waited on a lock: " << e.what());
  }
  CAF_CHECK(r.at(0) == fence_result::applied);
  holder.abort();
  int64_t pending = s.run(run_id)->pending;
  CAF_CHECK_EQUAL(pending, 1);
  CAF_CHECK(s.check_invariants().empty());
}

CAF_TEST(turing_now_is_now_unless_the_transaction_sets_it_and_is_inlined) {
  pqxx::connection c{dsn};
  {
    pqxx::work tx{c};
    CAF_CHECK(tx.exec1("SELECT turing.now() = now()")[0].as<bool>());
    tx.exec("SELECT set_config('turing.now', '2001-02-03T04:05:06.123456+00:00', true)");
    CAF_CHECK_EQUAL(
        tx.exec1("SELECT (extract(epoch FROM turing.now()) * 1000000)::bigint")[0].as<int64_t>(),
        981173106123456);
    // STABLE SQL: the planner inlines it, so it costs what its body costs.
    std::string plan;
    for (const auto& row : tx.exec("EXPLAIN (VERBOSE) SELECT id FROM turing.messages "
                                   "WHERE available_at <= turing.now()"))
      plan += row[0].as<std::string>() + "\n";
    CAF_CHECK(plan.find("current_setting") != std::string::npos);
    CAF_CHECK(plan.find("turing.now()") == std::string::npos);
    tx.commit();
  }
  // Set per transaction: the next one on the same connection is on now() again.
  pqxx::work tx{c};
  CAF_CHECK(tx.exec1("SELECT turing.now() = now()")[0].as<bool>());
}

CAF_TEST(a_claim_updates_its_rows_through_the_primary_key_whatever_the_queue_depth) {
  pg_store s{dsn};
  enqueue_n(s, "alma", 5000);
  pqxx::connection c{dsn};
  pqxx::nontransaction tx{c};
  tx.exec("ANALYZE turing.messages");
  // As the store runs it: prepared once, planned generically. The generic
  // plan reckons LIMIT $3 at a tenth of the ready rows; joined to the
  // picked rows, that hashed a sequential scan of every message per claim.
  tx.exec("SET plan_cache_mode = force_generic_plan");
  tx.exec(std::string("PREPARE claim AS ") + turing::persistence::detail::claim_sql);
  std::string plan;
  for (const auto& row : tx.exec("EXPLAIN EXECUTE claim('alma', 'n1', 512, 30000, 0)"))
    plan += row[0].as<std::string>() + "\n";
  CAF_MESSAGE(plan);
  CAF_CHECK(plan.find("Seq Scan on messages") == std::string::npos);
  CAF_CHECK(plan.find("Index Scan using messages_pkey on messages m") != std::string::npos);
}

CAF_TEST(analysing_the_queue_tables_samples_few_rows_and_skips_payloads_and_errors) {
  pg_store s{dsn};
  enqueue_n(s, "alma", 200);
  for (const auto& m : s.claim({"alma", "n", 50, 30s}))
    s.complete({passed_to_sink(m, "n")});
  pqxx::connection c{dsn};
  pqxx::nontransaction tx{c};
  tx.exec("ANALYZE turing.messages");
  tx.exec("ANALYZE turing.items");
  tx.exec("ANALYZE turing.attempts");
  // A JSON document or an error text gets no statistics at all: no sort of
  // documents in every autovacuum analyse.
  auto blobs = tx.exec1(R"sql(
    SELECT count(*) FROM pg_stats WHERE schemaname = 'turing'
      AND (tablename, attname) IN (('messages', 'payload'), ('messages', 'output'),
                                   ('messages', 'last_error'), ('items', 'payload'),
                                   ('items', 'result'), ('attempts', 'output'),
                                   ('attempts', 'error')))sql");
  CAF_CHECK_EQUAL(blobs[0].as<int>(), 0);
  // The columns statements filter on keep a histogram, of 10 buckets: 200
  // distinct ids under the default target would give 101 bounds.
  auto ids = tx.exec1("SELECT cardinality(histogram_bounds::text::bigint[]) FROM pg_stats "
                      "WHERE schemaname = 'turing' AND tablename = 'messages' AND attname = 'id'");
  CAF_CHECK_EQUAL(ids[0].as<int>(), 11);
  auto stage = tx.exec1("SELECT most_common_vals::text FROM pg_stats WHERE schemaname = 'turing' "
                        "AND tablename = 'messages' AND attname = 'stage'");
  CAF_CHECK_EQUAL(stage[0].as<std::string>(), "{alma}");
}

CAF_TEST(most_finishing_items_are_updated_on_their_own_page_adding_no_index_entries) {
  pg_store s{dsn};
  enqueue_n(s, "alma", 300);
  pqxx::connection c{dsn};
  // An item's page is the block number of its ctid.
  auto pages = [&] {
    pqxx::nontransaction tx{c};
    std::map<int64_t, std::string> out;
    for (const auto& row : tx.exec("SELECT id, (ctid::text::point)[0]::text FROM turing.items"))
      out[row[0].as<int64_t>()] = row[1].as<std::string>();
    return out;
  };
  auto before = pages();
  int finished = 0;
  for (auto batch = s.claim({"alma", "n", 100, 30s}); !batch.empty();
       batch = s.claim({"alma", "n", 100, 30s})) {
    std::vector<completion> done;
    for (const auto& m : batch)
      done.push_back(passed_to_sink(m, "n"));
    s.complete(done);
    finished += static_cast<int>(done.size());
  }
  CAF_REQUIRE_EQUAL(finished, 300);
  // The update changes no indexed column; on the same page it is HOT, so
  // none of the items' indexes gets an entry. Enqueue leaves half of each
  // page for it: 37 of 300 moved here (a result is larger than the row it
  // replaces), 273 when enqueue filled the pages.
  auto after = pages();
  int moved = 0;
  for (const auto& [id, page] : before)
    moved += after.at(id) != page ? 1 : 0;
  CAF_MESSAGE(moved << " of 300 items moved to another page when they finished");
  CAF_CHECK_LESS_OR_EQUAL(moved, 300 / 5);
}

CAF_TEST(an_injected_clock_stamps_every_time_the_store_writes) {
  const time_point at{std::chrono::microseconds{981173106123456}}; // 2001-02-03 04:05:06.123456Z
  pg_store s{dsn, [&] { return at; }};
  auto run_id = enqueue_n(s, "a", 1);
  auto m = s.claim({"a", "n", 1, 30s}).at(0);
  CAF_CHECK(m.started_at == at);
  completion c;
  c.fence = m.fencing();
  c.node = "n";
  c.started_at = m.started_at;
  c.outcome = "passed";
  c.deliveries.push_back({delivery::kind::join, "j", json{{"x", 1}}, 1, {"a"}});
  s.complete({c});
  auto j = s.claim({"j", "n", 1, 30s}).at(0);
  c.fence = j.fencing();
  c.started_at = j.started_at;
  c.deliveries = {{delivery::kind::sink, "committed", json::object(), 1, {}}};
  s.complete({c});
  node_report r;
  r.name = "n";
  r.started_at = at;
  r.stopped_at = at;
  s.report_node(r);
  CAF_CHECK(s.run(run_id)->finished());
  // Every timestamp column of every table, the ones no report returns
  // included (created_at, recorded_at, fired_at): all the injected instant.
  pqxx::connection conn{dsn};
  pqxx::work tx{conn};
  auto r2 = tx.exec(R"sql(
    SELECT DISTINCT (extract(epoch FROM t) * 1000000)::bigint FROM (
      SELECT created_at AS t FROM turing.runs
      UNION ALL SELECT created_at FROM turing.items UNION ALL SELECT finished_at FROM turing.items
      UNION ALL SELECT available_at FROM turing.messages
      UNION ALL SELECT created_at FROM turing.messages
      UNION ALL SELECT started_at FROM turing.messages
      UNION ALL SELECT heartbeat_at FROM turing.messages
      UNION ALL SELECT finished_at FROM turing.messages
      UNION ALL SELECT started_at FROM turing.attempts
      UNION ALL SELECT finished_at FROM turing.attempts
      UNION ALL SELECT recorded_at FROM turing.attempts
      UNION ALL SELECT fired_at FROM turing.joins
      UNION ALL SELECT seen_at FROM turing.nodes UNION ALL SELECT stopped_at FROM turing.nodes) x
    WHERE t IS NOT NULL)sql");
  CAF_REQUIRE_EQUAL(r2.size(), 1u);
  CAF_CHECK_EQUAL(r2[0][0].as<int64_t>(), 981173106123456);
  CAF_CHECK_EQUAL(
      tx.exec1("SELECT count(*) FROM turing.joins WHERE fired_at IS NOT NULL")[0].as<int>(), 1);
  CAF_CHECK_EQUAL(
      tx.exec1("SELECT count(*) FROM turing.attempts WHERE recorded_at IS NOT NULL")[0].as<int>(),
      2);
}

CAF_TEST(a_store_without_a_clock_stamps_the_database_time) {
  pg_store s{dsn};
  auto before = wall_clock::now();
  enqueue_n(s, "a", 1);
  auto m = s.claim({"a", "n", 1, 30s}).at(0);
  auto after = wall_clock::now();
  // The server shares this machine's clock; allow for rounding to microseconds.
  CAF_CHECK(m.started_at >= before - 1ms);
  CAF_CHECK(m.started_at <= after + 1ms);
}

CAF_TEST(a_large_payload_is_stored_once_however_many_stages_it_passes) {
  pg_store s{dsn};
  auto document = turing::testing::incompressible_text(200'000);
  enqueue_request r;
  r.stage = "s0";
  r.items = {{"big", json{{"document", document}}}, {"small", json{{"n", 1}}}};
  s.enqueue(r);
  const int stages = 6;
  for (int k = 0; k < stages; ++k) {
    auto claimed = s.claim({"s" + std::to_string(k), "n", 5, 30s});
    CAF_REQUIRE_EQUAL(claimed.size(), 2u);
    std::vector<completion> batch;
    for (const auto& m : claimed) {
      // Every stage so far added its key, and the document travelled along.
      for (int earlier = 0; earlier < k; ++earlier)
        CAF_CHECK_EQUAL(m.payload.value("by_s" + std::to_string(earlier), -1), earlier);
      if (m.payload.contains("document"))
        CAF_CHECK(m.payload["document"] == document);
      completion c;
      c.fence = m.fencing();
      c.attempt = m.attempt;
      c.node = "n";
      c.started_at = m.started_at;
      c.outcome = "ok";
      c.output = json{{"by_s" + std::to_string(k), k}};
      c.derived_payloads = true;
      delivery d;
      d.type = k + 1 < stages ? delivery::kind::stage : delivery::kind::sink;
      d.target = k + 1 < stages ? "s" + std::to_string(k + 1) : "done";
      c.deliveries.push_back(d);
      batch.push_back(c);
    }
    s.complete(batch);
  }
  pqxx::connection c{dsn};
  pqxx::work tx{c};
  // The large item's messages hold no copy; the small one's hold theirs.
  auto copies = tx.exec("SELECT i.key, count(m.payload), count(*) FROM turing.messages m "
                        "JOIN turing.items i ON i.id = m.item_id GROUP BY i.key ORDER BY i.key");
  CAF_REQUIRE_EQUAL(copies.size(), 2u);
  CAF_CHECK_EQUAL(copies[0][0].as<std::string>(), "big");
  CAF_CHECK_EQUAL(copies[0][1].as<int>(), 0);
  CAF_CHECK_EQUAL(copies[0][2].as<int>(), stages);
  CAF_CHECK_EQUAL(copies[1][1].as<int>(), stages);
  // The document is in the database twice: the item's input and its result.
  auto stored = tx.exec_params1(
      "SELECT pg_column_size(i.payload), pg_column_size(i.result), "
      "  (SELECT coalesce(sum(pg_column_size(m.payload)), 0) + sum(pg_column_size(m.output)) "
      "   FROM turing.messages m WHERE m.item_id = i.id), i.result->>'document' = $1 "
      "FROM turing.items i WHERE i.key = 'big'",
      document);
  CAF_CHECK_GREATER(stored[0].as<int64_t>(), 150'000);
  CAF_CHECK_GREATER(stored[1].as<int64_t>(), 150'000);
  CAF_CHECK_LESS(stored[2].as<int64_t>(), 1'000);
  CAF_CHECK(stored[3].as<bool>());
}

CAF_TEST(items_of_megabytes_stream_between_small_ones_in_file_order_with_their_keys) {
  // Lines as `turing enqueue` hands them on: text, keys read by the database.
  // Items of 1 MB and more take another path than the COPY stream; the order
  // and the keys must not tell the difference.
  struct lines final : item_source {
    std::vector<std::string> texts;
    std::size_t at = 0;
    void rewind() override { at = 0; }
    std::optional<new_item> next() override {
      if (at == texts.size())
        return std::nullopt;
      new_item item;
      item.payload_text = texts[at++];
      return item;
    }
  } items;
  auto big = std::string(3 << 20, 'x');
  for (int i = 0; i < 6; ++i) {
    json item{{"key", "k" + std::to_string(i)}, {"n", i}};
    if (i % 2 == 1)
      item["document"] = big;
    items.texts.push_back(item.dump());
  }
  items.texts.push_back(json{{"key", "k1"}, {"n", 99}}.dump()); // a duplicate key, skipped
  pg_store s{dsn};
  enqueue_request r;
  r.stage = "s0";
  r.key_field = "key";
  auto result = s.enqueue_all(r, items);
  CAF_CHECK_EQUAL(result.enqueued, 6);
  CAF_CHECK_EQUAL(result.duplicates, 1);
  pqxx::connection c{dsn};
  pqxx::work tx{c};
  auto rows = tx.exec("SELECT i.key, (i.payload->>'n')::int, length(i.payload->>'document') "
                      "FROM turing.items i JOIN turing.messages m ON m.item_id = i.id "
                      "ORDER BY m.id");
  CAF_REQUIRE_EQUAL(rows.size(), 6u);
  for (int i = 0; i < 6; ++i) {
    CAF_CHECK_EQUAL(rows[i][0].as<std::string>(), "k" + std::to_string(i));
    CAF_CHECK_EQUAL(rows[i][1].as<int>(), i);
    CAF_CHECK_EQUAL(rows[i][2].is_null() ? 0 : rows[i][2].as<int>(),
                    i % 2 == 1 ? static_cast<int>(big.size()) : 0);
  }
}

CAF_TEST(a_completion_sent_again_while_its_first_try_commits_is_answered_applied_not_late) {
  // After "outcome unknown" the pump sends a batch again, and its first try
  // may still be committing. Another transaction plays that first try of a
  // one-message completion: it marks the message done under the same epoch
  // and holds the row until the retry waits for it, then commits. The retry
  // must answer "applied" and record no late result: a completion takes no
  // row lock of its own before its UPDATE, whose snapshot predates that
  // commit.
  pg_store s{dsn};
  auto run_id = enqueue_n(s, "alma", 1);
  auto m = s.claim({"alma", "n", 1, 30s}).at(0);
  auto results = complete_while_first_try_commits(s, {m}, {passed_to_sink(m, "n")});
  CAF_REQUIRE_EQUAL(results.size(), 1u);
  CAF_CHECK(results[0] == fence_result::applied);
  for (const auto& a : s.attempts(run_id))
    CAF_CHECK(a.result != attempt_result::late_result);
}

CAF_TEST(a_batch_sent_again_while_its_first_try_commits_answers_each_message_once) {
  // As above, for a batch of three whose first try holds two of them: those
  // two are answered "applied" (by that try), the third is applied now, and
  // nothing is recorded late.
  pg_store s{dsn};
  auto run_id = enqueue_n(s, "alma", 3);
  auto claimed = s.claim({"alma", "n", 3, 30s});
  CAF_REQUIRE_EQUAL(claimed.size(), 3u);
  std::vector<completion> batch;
  for (const auto& m : claimed)
    batch.push_back(passed_to_sink(m, "n"));
  auto results = complete_while_first_try_commits(s, {claimed[0], claimed[2]}, batch);
  CAF_REQUIRE_EQUAL(results.size(), 3u);
  for (auto r : results)
    CAF_CHECK(r == fence_result::applied);
  int completed = 0;
  for (const auto& a : s.attempts(run_id)) {
    CAF_CHECK(a.result != attempt_result::late_result);
    completed += a.result == attempt_result::completed;
  }
  // The retry records the one it applied; the first try stood for the others.
  CAF_CHECK_EQUAL(completed, 1);
}

CAF_TEST_FIXTURE_SCOPE_END()
