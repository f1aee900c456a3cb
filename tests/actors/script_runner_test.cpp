// run_script and kill_process_group against real child processes (sh, python3, cat): the
// stdin/stdout contract, every failure's one-line error, SIGPIPE safety, and group killing.
#define CAF_SUITE script_runner
#include "actors/script_runner.hpp"

#include <atomic>
#include <caf/test/unit_test.hpp>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <pthread.h>
#include <string>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace turing::actors;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

script_spec sh(std::string script) {
  return script_spec{{"sh", "-c", std::move(script)}, {}, {}};
}

script_spec python(std::string code) {
  return script_spec{{"python3", "-c", std::move(code)}, {}, {}};
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool one_line(const std::string& s) {
  return s.find_first_of("\r\n") == std::string::npos;
}

// A scratch directory removed at the end of the test.
struct temp_dir {
  fs::path path;
  temp_dir() {
    std::string tmpl = (fs::temp_directory_path() / "turing-script-runner-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr)
      throw std::runtime_error("mkdtemp failed");
    path = fs::canonical(tmpl);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// Polls `done` every 10 ms for at most `limit`: for waiting on another process, which has no
// condition variable to signal us.
template <class Predicate> bool eventually(Predicate done, std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline)
      return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

/// A script run on a thread of its own, as a job actor runs it, so that the
/// test can act (kill its group at a "deadline") while it runs.
class background_run {
public:
  /// `run(on_started)` runs the script and returns its result.
  template <class Run> explicit background_run(Run run) {
    runner_ = std::thread([this, run] {
      auto result = run([this](pid_t pid) {
        std::lock_guard<std::mutex> lock(mx_);
        started_ = pid;
        cv_.notify_all();
      });
      std::lock_guard<std::mutex> lock(mx_);
      result_ = std::move(result);
      finished_ = true;
      cv_.notify_all();
    });
  }
  ~background_run() {
    if (runner_.joinable())
      runner_.join();
  }
  /// The child's pid once it exists, 0 if it did not start within `limit`.
  pid_t started(std::chrono::milliseconds limit) {
    std::unique_lock<std::mutex> lock(mx_);
    cv_.wait_for(lock, limit, [&] { return started_ != 0; });
    return started_;
  }
  /// Whether the run returned within `limit`; then result() is its result.
  bool finished(std::chrono::milliseconds limit) {
    std::unique_lock<std::mutex> lock(mx_);
    return cv_.wait_for(lock, limit, [&] { return finished_; });
  }
  script_result result() {
    runner_.join();
    return std::move(result_);
  }

private:
  std::mutex mx_;
  std::condition_variable cv_;
  pid_t started_ = 0;
  bool finished_ = false;
  script_result result_;
  std::thread runner_;
};

} // namespace

CAF_TEST(a_script_reads_stdin_and_returns_its_outcome) {
  // A cat-like script: wraps its input, unchanged, as the output.
  auto spec = sh(R"(printf '{"outcome":"echoed","output":'; cat; printf '}\n')");
  std::string input = R"({"skill":"C++","n":3,"tags":["a","b"]})";
  auto r = run_script(spec, input);
  CAF_CHECK(r.ok);
  CAF_CHECK_EQUAL(r.error, "");
  CAF_CHECK_EQUAL(r.outcome, "echoed");
  CAF_CHECK(r.output == nlohmann::json::parse(input));
  CAF_CHECK_EQUAL(r.exit_status, 0);
  CAF_CHECK_EQUAL(r.term_signal, 0);
  CAF_CHECK_GREATER(r.pid, 0);
}

CAF_TEST(an_outcome_without_output_gives_a_null_output) {
  auto r = run_script(sh(R"(cat >/dev/null; echo '  {"outcome":"passed"}  ')"), "{}");
  CAF_CHECK(r.ok);
  CAF_CHECK_EQUAL(r.outcome, "passed");
  CAF_CHECK(r.output.is_null());
}

CAF_TEST(a_non_zero_exit_fails_and_keeps_the_stderr_tail) {
  // Valid stdout does not save a failed exit; 5000 bytes of noise precede the last lines, so
  // only the last 2048 bytes are kept.
  auto r = run_script(sh(R"(printf '{"outcome":"passed"}';
                            head -c 5000 /dev/zero | tr '\0' 'a' >&2;
                            printf '\nfirst problem\nsecond problem\n' >&2;
                            exit 3)"),
                      "{}");
  CAF_CHECK(!r.ok);
  CAF_CHECK_EQUAL(r.exit_status, 3);
  CAF_CHECK_EQUAL(r.term_signal, 0);
  CAF_CHECK_EQUAL(r.stderr_tail.size(), 2048u);
  CAF_CHECK(ends_with(r.stderr_tail, "aaa\nfirst problem\nsecond problem\n"));
  CAF_CHECK(starts_with(r.error, "exit status 3; stderr: aaaa"));
  CAF_CHECK(ends_with(r.error, "aaa | first problem | second problem"));
  CAF_CHECK(one_line(r.error));
}

CAF_TEST(stdout_that_is_not_one_json_object_fails_naming_it) {
  auto chatty = run_script(sh(R"(echo 'Loading model...'; echo '{"outcome":"passed"}')"), "");
  CAF_CHECK(!chatty.ok);
  CAF_CHECK_EQUAL(chatty.exit_status, 0);
  CAF_CHECK_EQUAL(chatty.error, R"(stdout is not JSON: Loading model... | {"outcome":"passed"})");

  // Only the first 200 characters are quoted, and the stderr tail is added.
  auto long_garbage = run_script(sh("head -c 300 /dev/zero | tr '\\0' x; echo oops >&2"), "");
  CAF_CHECK_EQUAL(long_garbage.error,
                  "stdout is not JSON: " + std::string(200, 'x') + "...; stderr: oops");

  auto array = run_script(sh("echo '[1, 2]'"), "");
  CAF_CHECK_EQUAL(array.error, "stdout is not a JSON object: [1, 2]");

  auto two = run_script(sh(R"(echo '{"outcome":"a"}'; echo '{"outcome":"b"}')"), "");
  CAF_CHECK(starts_with(two.error, "stdout is not JSON: "));

  auto silent = run_script(sh("true"), "");
  CAF_CHECK_EQUAL(silent.error, "stdout is empty");
}

CAF_TEST(stdout_without_a_string_outcome_fails_naming_it) {
  auto missing = run_script(sh(R"(echo '{"output":{"a":1}}')"), "");
  CAF_CHECK(!missing.ok);
  CAF_CHECK_EQUAL(missing.error, "stdout has no string field 'outcome'");

  auto number = run_script(sh(R"(echo '{"outcome":7}')"), "");
  CAF_CHECK_EQUAL(number.error, "stdout has no string field 'outcome'");
}

CAF_TEST(a_command_that_does_not_exist_cannot_start) {
  bool started = false;
  auto r =
      run_script(script_spec{{"lucyy.py", "--flag"}, {}, {}}, "{}", [&](pid_t) { started = true; });
  CAF_CHECK(!r.ok);
  CAF_CHECK_EQUAL(r.error, "cannot start 'lucyy.py': No such file or directory");
  CAF_CHECK(!started);
  CAF_CHECK_EQUAL(r.pid, 0);
  CAF_CHECK_EQUAL(r.exit_status, -1);

  // With a slash there is no PATH search: the error comes back from posix_spawn itself.
  auto absolute = run_script(script_spec{{"/nonexistent/turing/tool"}, {}, {}}, "{}");
  CAF_CHECK_EQUAL(absolute.error,
                  "cannot start '/nonexistent/turing/tool': No such file or directory");

  auto bad_dir = run_script(script_spec{{"sh", "-c", "true"}, "/nonexistent/turing/dir", {}}, "");
  CAF_CHECK_EQUAL(bad_dir.error, "cannot start 'sh': working directory '/nonexistent/turing/dir': "
                                 "No such file or directory");
}

CAF_TEST(env_and_working_dir_are_applied) {
  temp_dir dir;
  ::setenv("TURING_SRT_INHERITED", "from-parent", 1);
  ::setenv("TURING_SRT_OVERRIDDEN", "parent", 1);
  auto spec = sh(R"sh(printf '{"outcome":"env","output":{"cwd":"%s","inherited":"%s",)sh"
                 R"sh("overridden":"%s","added":"%s","path":"%s"}}' )sh"
                 R"sh("$(pwd -P)" "$TURING_SRT_INHERITED" "$TURING_SRT_OVERRIDDEN" )sh"
                 R"sh("$TURING_SRT_ADDED" "$PATH")sh");
  spec.working_dir = dir.path;
  // PATH too is overridden for the child, yet "sh" is still found: argv[0] is resolved through
  // the parent's PATH.
  spec.env = {{"TURING_SRT_OVERRIDDEN", "child"},
              {"TURING_SRT_ADDED", "added"},
              {"PATH", "/nonexistent/turing/bin"}};
  auto r = run_script(spec, "");
  ::unsetenv("TURING_SRT_INHERITED");
  ::unsetenv("TURING_SRT_OVERRIDDEN");
  CAF_REQUIRE(r.ok);
  CAF_CHECK_EQUAL(r.output.value("cwd", ""), dir.path.string());
  CAF_CHECK_EQUAL(r.output.value("inherited", ""), "from-parent");
  CAF_CHECK_EQUAL(r.output.value("overridden", ""), "child");
  CAF_CHECK_EQUAL(r.output.value("added", ""), "added");
  CAF_CHECK_EQUAL(r.output.value("path", ""), "/nonexistent/turing/bin");
}

CAF_TEST(a_child_that_never_reads_stdin_does_not_kill_us_with_sigpipe) {
  // Make sure SIGPIPE would really be fatal here, whatever the test main did.
  auto previous = std::signal(SIGPIPE, SIG_DFL);
  // 1 MiB cannot fit in a pipe, so writing it must hit the closed read end.
  std::string input(1 << 20, 'x');
  auto r = run_script(sh(R"(echo '{"outcome":"ignored-input"}')"), input);
  CAF_CHECK(r.ok);
  CAF_CHECK_EQUAL(r.outcome, "ignored-input");
  CAF_CHECK_EQUAL(r.exit_status, 0);

  auto failing = run_script(sh("echo gave up >&2; exit 1"), input);
  CAF_CHECK_EQUAL(failing.error, "exit status 1; stderr: gave up");

  // The thread's signal mask is restored and no SIGPIPE is left pending.
  sigset_t mask, pending;
  ::pthread_sigmask(SIG_BLOCK, nullptr, &mask);
  ::sigpending(&pending);
  CAF_CHECK_EQUAL(sigismember(&mask, SIGPIPE), 0);
  CAF_CHECK_EQUAL(sigismember(&pending, SIGPIPE), 0);
  std::signal(SIGPIPE, previous);
}

CAF_TEST(a_large_stdout_is_read_fully_while_input_is_still_being_written) {
  // The script writes 2 MiB before reading any of its 1 MiB input: both pipes fill up unless
  // the runner serves them at the same time.
  auto spec = python(R"(
import sys
sys.stdout.write('{"outcome":"big","output":{"blob":"' + 'y' * (2 << 20) + '",')
sys.stdout.flush()
n = len(sys.stdin.buffer.read())
sys.stdout.write('"input_bytes":%d}}' % n)
)");
  auto r = run_script(spec, std::string(1 << 20, 'x'));
  CAF_REQUIRE(r.ok);
  CAF_CHECK_EQUAL(r.output.value("blob", "").size(), std::size_t{2} << 20);
  CAF_CHECK_EQUAL(r.output.value("input_bytes", 0), 1 << 20);
}

CAF_TEST(stdout_beyond_16_mib_kills_the_script) {
  auto r = run_script(sh("yes"), "");
  CAF_CHECK(!r.ok);
  CAF_CHECK_EQUAL(r.error, "stdout exceeds 16 MB");
  CAF_CHECK_EQUAL(r.term_signal, SIGKILL);
  CAF_CHECK_EQUAL(r.exit_status, -1);
}

CAF_TEST(stdout_beyond_the_specs_max_stdout_kills_the_script) {
  auto spec = sh("head -c 300000 /dev/zero | tr '\\0' x; sleep 30");
  spec.max_stdout = 256 * 1024; // runtime.max_payload = "256KB"
  auto r = run_script(spec, "");
  CAF_CHECK(!r.ok);
  CAF_CHECK_EQUAL(r.error, "stdout exceeds 256 KB");
  CAF_CHECK_EQUAL(r.term_signal, SIGKILL);
}

CAF_TEST(on_started_receives_a_pid_that_leads_its_own_process_group) {
  pid_t seen = 0;
  pid_t group = -1;
  auto r = run_script(script_spec{{"cat"}, {}, {}}, R"({"outcome":"from-cat"})", [&](pid_t pid) {
    seen = pid;
    group = ::getpgid(pid); // not reaped before run_script returns, so always answerable
  });
  CAF_CHECK(r.ok);
  CAF_CHECK_EQUAL(r.outcome, "from-cat");
  CAF_CHECK_GREATER(seen, 0);
  CAF_CHECK_EQUAL(group, seen);
  CAF_CHECK_NOT_EQUAL(group, ::getpgrp());
  CAF_CHECK_EQUAL(r.pid, seen);
}

CAF_TEST(a_streamed_payload_reaches_the_script_whole) {
  // 3 MB of nested JSON with text outside ASCII: the script echoes its stdin
  // inside its output, which must then equal the payload.
  nlohmann::json payload{{"title", "Flügel — 翼"}, {"n", 42}, {"pieces", nlohmann::json::array()}};
  for (int i = 0; i < 30'000; ++i)
    payload["pieces"].push_back(
        {{"i", i}, {"text", std::string(80, static_cast<char>('a' + i % 26))}});
  auto r = run_script_streamed(sh(R"(printf '{"outcome":"echoed","output":'; cat; printf '}')"),
                               payload);
  CAF_REQUIRE(r.ok);
  CAF_CHECK_EQUAL(r.outcome, "echoed");
  CAF_CHECK(r.output == payload);
}

CAF_TEST(a_child_that_stops_reading_a_streamed_payload_is_judged_by_its_exit) {
  auto previous = std::signal(SIGPIPE, SIG_DFL); // a stray SIGPIPE would end the test
  nlohmann::json payload{{"document", std::string(4 << 20, 'x')}};
  auto r =
      run_script_streamed(sh(R"(head -c 10 >/dev/null; echo '{"outcome":"read-ten"}')"), payload);
  CAF_CHECK(r.ok);
  CAF_CHECK_EQUAL(r.outcome, "read-ten");
  auto failing = run_script_streamed(sh("echo gave up >&2; exit 1"), payload);
  CAF_CHECK_EQUAL(failing.error, "exit status 1; stderr: gave up");
  std::signal(SIGPIPE, previous);
}

CAF_TEST(a_streamed_payload_to_a_child_that_never_reads_ends_when_its_group_is_killed) {
  // 4 MB cannot fit in a pipe: the writer blocks until the deadline kills the child.
  nlohmann::json payload{{"document", std::string(4 << 20, 'x')}};
  background_run run{[&](auto on_started) {
    return run_script_streamed(sh("exec sleep 60"), payload, on_started);
  }};
  pid_t pgid = run.started(10s);
  CAF_REQUIRE_GREATER(pgid, 0);
  kill_process_group(pgid);
  CAF_REQUIRE(run.finished(10s));
  auto r = run.result();
  CAF_CHECK(!r.ok);
  CAF_CHECK_EQUAL(r.term_signal, SIGKILL);
}

CAF_TEST(a_streamed_run_judges_stdout_by_the_same_contract_as_a_whole_one) {
  // Parsed as it arrives or read whole first: the same verdict, the same words.
  nlohmann::json payload{{"n", 1}};
  std::vector<std::string> scripts{
      R"(echo '{"outcome":"passed","output":{"x":1}}')",
      "true",
      "printf '   \n\t  '",
      "printf '  \n  '; head -c 300 /dev/zero | tr '\\0' x",
      R"(echo '[1, 2]')",
      R"(echo '{"outcome":"passed"} trailing')",
      R"(echo '{"output":{}}')",
      R"(echo '{"outcome":""}')",
      R"(printf '{"outcome":"ok","output":"'; head -c 100000 /dev/zero | tr '\0' y; printf '"}')",
  };
  for (const auto& script : scripts) {
    auto whole = run_script(sh("cat >/dev/null; " + script), payload.dump());
    auto streamed = run_script_streamed(sh("cat >/dev/null; " + script), payload);
    CAF_MESSAGE("script: " << script.substr(0, 60));
    CAF_CHECK_EQUAL(streamed.ok, whole.ok);
    CAF_CHECK_EQUAL(streamed.error, whole.error);
    CAF_CHECK_EQUAL(streamed.outcome, whole.outcome);
    CAF_CHECK(streamed.output == whole.output);
  }
}

CAF_TEST(stdout_beyond_max_stdout_kills_a_streamed_script) {
  auto spec = sh("head -c 300000 /dev/zero | tr '\\0' x; sleep 30");
  spec.max_stdout = 256 * 1024;
  auto r = run_script_streamed(spec, nlohmann::json{{"n", 1}});
  CAF_CHECK(!r.ok);
  CAF_CHECK_EQUAL(r.error, "stdout exceeds 256 KB");
  CAF_CHECK_EQUAL(r.term_signal, SIGKILL);
}

CAF_TEST(kill_process_group_at_a_deadline_kills_the_script_and_its_grandchild) {
  temp_dir dir;
  auto pid_file = dir.path / "grandchild.pid";
  // Orphans normally go to PID 1, which may reap them late (or never, in a container);
  // becoming their subreaper lets this test reap the killed grandchild itself.
  CAF_REQUIRE_EQUAL(::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);

  auto spec = script_spec{
      {"sh", "-c", R"(sleep 60 & echo $! > "$1"; sleep 60)", "sh", pid_file.string()}, {}, {}};
  background_run run{[&](auto on_started) { return run_script(spec, "", on_started); }};
  pid_t pgid = run.started(10s);
  CAF_REQUIRE_GREATER(pgid, 0);
  // Kill only once the grandchild exists, or there would be nothing to prove.
  pid_t grandchild = 0;
  bool spawned = eventually(
      [&] {
        std::ifstream in(pid_file);
        return static_cast<bool>(in >> grandchild) && grandchild > 0;
      },
      10s);
  CAF_CHECK(spawned);
  CAF_CHECK_EQUAL(::getpgid(grandchild), pgid);

  auto deadline_hit = std::chrono::steady_clock::now();
  kill_process_group(pgid);
  bool returned = run.finished(10s);
  auto took = std::chrono::steady_clock::now() - deadline_hit;
  CAF_REQUIRE(returned);
  auto r = run.result();
  CAF_CHECK(took < 5s);
  CAF_CHECK(!r.ok);
  CAF_CHECK(starts_with(r.error, "killed by signal 9"));
  CAF_CHECK_EQUAL(r.term_signal, SIGKILL);
  CAF_CHECK_EQUAL(r.exit_status, -1);
  CAF_CHECK_EQUAL(r.pid, pgid);

  int grandchild_status = 0;
  bool reaped = false;
  auto gone = [&] {
    if (!reaped && ::waitpid(grandchild, &grandchild_status, WNOHANG) == grandchild)
      reaped = true;
    return ::kill(grandchild, 0) != 0 && errno == ESRCH;
  };
  CAF_CHECK(spawned && eventually(gone, 5s));
  if (reaped) // otherwise another ancestor reaped it first; ESRCH is proof enough
    CAF_CHECK(WIFSIGNALED(grandchild_status) && WTERMSIG(grandchild_status) == SIGKILL);
  ::prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
}
