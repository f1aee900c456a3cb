// script_worker_pool against real long-lived children (python3): one child per slot serves many
// executions, and a death, a garbage reply, an oversized line or a deadline kill fails exactly
// the execution it hit, once, with the next execution getting a new child.
#define CAF_SUITE script_worker_pool
#include "actors/script_worker_pool.hpp"
#include "messages/registry.hpp"

#include <caf/all.hpp>
#include <caf/test/dsl.hpp>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace turing;
using namespace turing::actors;
using namespace std::chrono_literals;

namespace {

// A worker that answers one line per line; the request's "do" picks a misbehaviour.
constexpr const char* worker_code = R"(
import json, os, sys, time
while True:
    raw = sys.stdin.readline()
    if not raw:
        break
    req = json.loads(raw)
    what = req.get("do", "echo")
    if what == "die":
        sys.stderr.write("dying on purpose\n")
        sys.stderr.flush()
        os._exit(3)
    if what == "garbage":
        print("this is not json", flush=True)
        continue
    if what == "no_outcome":
        print(json.dumps({"output": 1}), flush=True)
        continue
    if what == "hang":
        time.sleep(3600)
    if what == "echo_document":
        print(json.dumps({"outcome": "ok", "output": {"document": req["document"]}}), flush=True)
        continue
    if what == "measure":
        print(json.dumps({"outcome": "ok", "output": {"bytes": len(raw)}}), flush=True)
        continue
    if what == "huge":
        sys.stdout.write("x" * (2 << 20))
        sys.stdout.flush()
        time.sleep(3600)
    print(json.dumps({"outcome": "ok", "output": {"pid": os.getpid(), "n": req.get("n")}}),
          flush=True)
)";

script_spec python_worker() {
  return script_spec{{"python3", "-c", worker_code}, {}, {}};
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

bool process_exists(pid_t pid) {
  return ::kill(pid, 0) == 0 || errno != ESRCH;
}

// What the pool told its owner about one execution.
struct event {
  enum kind { none, started, succeeded, failed } type = none;
  persistence::lease fence;
  int64_t pid = 0;
  std::string outcome;
  nlohmann::json output;
  std::string error;
  bool retryable = false;
};

struct config : caf::actor_system_config {
  config() { turing::add_message_types(*this); }
};

struct pool_fixture {
  config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  caf::actor pool;
  int64_t next_id = 1;

  ~pool_fixture() {
    if (pool)
      self->send_exit(pool, caf::exit_reason::user_shutdown);
  }

  void start(int size, script_spec spec = python_worker(),
             std::size_t max_line = default_max_reply_line) {
    pool = spawn_script_worker_pool(sys, {"test", std::move(spec), size, max_line});
  }

  // Sends one execution as a pump would; returns its fence.
  persistence::lease call(nlohmann::json payload) {
    persistence::lease fence{next_id++, 1};
    self->send(pool,
               script_call{fence, std::make_shared<const nlohmann::json>(std::move(payload))});
    return fence;
  }

  // The next message from the pool (waits for it; none within 30 s is a failure).
  event next() {
    event e;
    self->receive(
        [&](execution_started& m) {
          e.type = event::started;
          e.fence = m.fence;
          e.pid = m.pid;
        },
        [&](execution_succeeded& m) {
          e.type = event::succeeded;
          e.fence = m.fence;
          e.outcome = m.outcome;
          e.output = m.output;
        },
        [&](execution_failed& m) {
          e.type = event::failed;
          e.fence = m.fence;
          e.error = m.error;
          e.retryable = m.retryable;
        },
        caf::after(std::chrono::seconds(30)) >> [] {});
    if (e.type == event::none)
      CAF_FAIL("no message from the pool within 30 s");
    return e;
  }

  event next(event::kind expected, const persistence::lease& fence) {
    auto e = next();
    CAF_REQUIRE_EQUAL(static_cast<int>(e.type), static_cast<int>(expected));
    CAF_REQUIRE(e.fence == fence);
    return e;
  }

  // One execution that must succeed: returns the pid it ran on (checked against the pid the
  // child itself reports, so the reply is known to come from that child).
  int64_t run_ok(int n) {
    auto fence = call({{"n", n}});
    auto started = next(event::started, fence);
    auto done = next(event::succeeded, fence);
    CAF_CHECK_EQUAL(done.outcome, "ok");
    CAF_CHECK_EQUAL(done.output.at("n").get<int>(), n);
    CAF_CHECK_EQUAL(done.output.at("pid").get<int64_t>(), started.pid);
    return started.pid;
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(script_worker_pool_tests, pool_fixture)

CAF_TEST(one_child_serves_every_execution_of_a_one_slot_pool) {
  start(1);
  auto first = run_ok(0);
  CAF_CHECK_GREATER(first, 0);
  for (int n = 1; n < 25; ++n)
    CAF_CHECK_EQUAL(run_ok(n), first);
}

CAF_TEST(a_pool_never_runs_more_children_than_slots_and_keeps_them) {
  start(2);
  std::map<int64_t, int64_t> pid_of; // message id -> pid from execution_started
  std::set<int64_t> pids;
  for (int round = 0; round < 3; ++round) {
    // More calls than slots at once: the rest wait in the queue for a free child.
    std::vector<persistence::lease> fences;
    for (int n = 0; n < 10; ++n)
      fences.push_back(call({{"n", n}}));
    int finished = 0;
    while (finished < 10) {
      auto e = next();
      if (e.type == event::started) {
        pid_of[e.fence.message_id] = e.pid;
        pids.insert(e.pid);
        continue;
      }
      CAF_REQUIRE_EQUAL(static_cast<int>(e.type), static_cast<int>(event::succeeded));
      CAF_REQUIRE(pid_of.count(e.fence.message_id) == 1);
      CAF_CHECK_EQUAL(e.output.at("pid").get<int64_t>(), pid_of[e.fence.message_id]);
      ++finished;
    }
  }
  // 30 executions, concurrency 2: at most two children, ever.
  CAF_CHECK_LESS_OR_EQUAL(pids.size(), 2u);
  CAF_CHECK_GREATER_OR_EQUAL(pids.size(), 1u);
}

CAF_TEST(a_child_that_dies_mid_request_fails_that_execution_and_the_next_gets_a_new_child) {
  start(1);
  auto first = run_ok(1);
  auto fence = call({{"do", "die"}});
  CAF_CHECK_EQUAL(next(event::started, fence).pid, first);
  auto failed = next(event::failed, fence);
  CAF_MESSAGE("error: " << failed.error);
  CAF_CHECK(failed.retryable);
  CAF_CHECK(contains(failed.error, "script worker pid " + std::to_string(first) + " died"));
  CAF_CHECK(contains(failed.error, "exit status 3"));
  CAF_CHECK(contains(failed.error, "stderr: dying on purpose"));
  auto second = run_ok(2);
  CAF_CHECK_NOT_EQUAL(second, first);
  CAF_CHECK_EQUAL(run_ok(3), second);
}

CAF_TEST(a_reply_that_is_not_json_fails_that_execution_and_restarts_the_child) {
  start(1);
  auto first = run_ok(1);
  auto fence = call({{"do", "garbage"}});
  CAF_CHECK_EQUAL(next(event::started, fence).pid, first);
  auto failed = next(event::failed, fence);
  CAF_MESSAGE("error: " << failed.error);
  CAF_CHECK(failed.retryable);
  CAF_CHECK(contains(failed.error, "is not JSON: this is not json"));
  CAF_CHECK(contains(failed.error, "worker restarted"));
  auto second = run_ok(2);
  CAF_CHECK_NOT_EQUAL(second, first);
}

CAF_TEST(a_json_reply_without_outcome_fails_that_execution_and_keeps_the_child) {
  start(1);
  auto first = run_ok(1);
  auto fence = call({{"do", "no_outcome"}});
  next(event::started, fence);
  auto failed = next(event::failed, fence);
  CAF_CHECK(failed.retryable);
  CAF_CHECK(contains(failed.error, "no string field 'outcome'"));
  // The stream is intact: the same child serves the next execution.
  CAF_CHECK_EQUAL(run_ok(2), first);
}

CAF_TEST(a_child_killed_at_its_deadline_is_replaced_and_nothing_more_is_reported) {
  start(1);
  auto first = run_ok(1);
  auto hung = call({{"do", "hang"}});
  auto started = next(event::started, hung);
  CAF_REQUIRE_EQUAL(started.pid, first);
  // What the pump does at the deadline: kill the group it was told about, then abandon.
  kill_process_group(static_cast<pid_t>(started.pid));
  self->send(pool, execution_abandoned{hung});
  // With one slot the next execution can only start once the killed child is gone, and the
  // pool's messages arrive in order: so the very next message shows nothing was reported for
  // the abandoned execution.
  auto fence = call({{"n", 2}});
  auto replacement = next(event::started, fence);
  CAF_CHECK_NOT_EQUAL(replacement.pid, first);
  CAF_CHECK(!process_exists(static_cast<pid_t>(first))); // killed and reaped
  auto done = next(event::succeeded, fence);
  CAF_CHECK_EQUAL(done.output.at("pid").get<int64_t>(), replacement.pid);
}

CAF_TEST(a_child_killed_without_abandonment_fails_its_execution_once_naming_the_signal) {
  start(1);
  auto hung = call({{"do", "hang"}});
  auto started = next(event::started, hung);
  kill_process_group(static_cast<pid_t>(started.pid));
  auto failed = next(event::failed, hung);
  CAF_CHECK(failed.retryable);
  CAF_CHECK(contains(failed.error, "died: killed by signal 9"));
  auto fence = call({{"n", 2}});
  // The next message is the new execution's: the killed one was failed exactly once.
  CAF_CHECK_NOT_EQUAL(next(event::started, fence).pid, started.pid);
  next(event::succeeded, fence);
}

CAF_TEST(an_oversized_reply_line_fails_the_execution_and_the_pool_serves_on) {
  start(1, python_worker(), std::size_t{1} << 20);
  auto first = run_ok(1);
  auto fence = call({{"do", "huge"}});
  next(event::started, fence);
  auto failed = next(event::failed, fence);
  CAF_MESSAGE("error: " << failed.error);
  CAF_CHECK(failed.retryable);
  CAF_CHECK(contains(failed.error, "reply line exceeds 1 MiB"));
  CAF_CHECK_NOT_EQUAL(run_ok(2), first);
}

CAF_TEST(a_command_that_cannot_start_fails_each_execution_without_starting_it) {
  start(2, script_spec{{"no-such-turing-worker"}, {}, {}});
  for (int i = 0; i < 3; ++i) {
    auto fence = call({{"n", i}});
    auto failed = next(event::failed, fence); // no execution_started before it
    CAF_CHECK(failed.retryable);
    CAF_CHECK_EQUAL(failed.error,
                    "cannot start 'no-such-turing-worker': No such file or directory");
  }
}

CAF_TEST(an_abandoned_call_still_queued_is_never_started) {
  start(1);
  auto hung = call({{"do", "hang"}});
  auto started = next(event::started, hung);
  auto queued = call({{"n", 1}}); // waits: the only child is busy
  self->send(pool, execution_abandoned{queued});
  kill_process_group(static_cast<pid_t>(started.pid));
  self->send(pool, execution_abandoned{hung});
  auto fence = call({{"n", 2}});
  // Neither abandoned execution is reported: the next message is this one's.
  next(event::started, fence);
  next(event::succeeded, fence);
}

CAF_TEST(a_request_of_megabytes_reaches_its_child_whole) {
  start(1);
  nlohmann::json payload{{"do", "measure"}, {"document", std::string(20 << 20, 'x')}};
  auto fence = call(payload);
  next(event::started, fence);
  auto done = next(event::succeeded, fence);
  CAF_CHECK_EQUAL(done.output.at("bytes").get<std::size_t>(), payload.dump().size() + 1);
  run_ok(1); // and the child serves on
}

CAF_TEST(a_reply_of_megabytes_comes_back_whole_and_the_child_serves_on) {
  start(1);
  std::string document(20 << 20, 'y');
  document.replace(0, 9, "\u00e9 \\ \" \n"); // escapes the parser must undo on the way
  auto fence = call({{"do", "echo_document"}, {"document", document}});
  next(event::started, fence);
  auto done = next(event::succeeded, fence);
  CAF_CHECK(done.output.at("document").get_ref<const std::string&>() == document);
  run_ok(1);
}

CAF_TEST(replies_are_matched_to_their_requests_in_order_under_a_queue) {
  start(1);
  std::vector<persistence::lease> fences;
  for (int n = 0; n < 20; ++n)
    fences.push_back(call({{"n", n}}));
  for (int n = 0; n < 20; ++n) {
    next(event::started, fences[static_cast<std::size_t>(n)]);
    auto done = next(event::succeeded, fences[static_cast<std::size_t>(n)]);
    CAF_CHECK_EQUAL(done.output.at("n").get<int>(), n);
  }
}

CAF_TEST(stopping_the_pool_ends_its_children) {
  start(2);
  auto pid = run_ok(1);
  self->monitor(pool);
  self->send_exit(pool, caf::exit_reason::user_shutdown);
  bool down = false;
  self->receive([&](caf::down_msg&) { down = true; },
                caf::after(std::chrono::seconds(30)) >> [] {});
  CAF_REQUIRE(down);
  pool = caf::actor{};
  // The child's death is no message to us: wait for the condition, bounded.
  auto give_up = std::chrono::steady_clock::now() + 10s;
  while (process_exists(static_cast<pid_t>(pid)) && std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(10ms);
  CAF_CHECK(!process_exists(static_cast<pid_t>(pid)));
}

CAF_TEST_FIXTURE_SCOPE_END()
