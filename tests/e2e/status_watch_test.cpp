// `turing status --watch` and `turing run` on a pseudo-terminal: the live view
// redraws while a run progresses and reaches 100 %, q quits it; without a
// terminal it prints one snapshot; the run's progress bar replaces the
// periodic `progress:` log line.
#define CAF_SUITE status_watch
#include "tests/e2e/pass_chain.hpp"
#include "tests/support/pg_test_cluster.hpp"

#include <algorithm>
#include <caf/test/unit_test.hpp>
#include <csignal>
#include <poll.h>
#include <pty.h>
#include <regex.h>
#include <sstream>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace turing::testing;
using namespace std::chrono_literals;

namespace {

/// A child on the slave side of a pseudo-terminal (120 columns); everything it
/// draws is collected from the master side.
class pty_child {
public:
  explicit pty_child(std::vector<std::string> argv) {
    winsize ws{};
    ws.ws_col = 120;
    ws.ws_row = 40;
    pid_ = forkpty(&master_, nullptr, nullptr, &ws);
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      setenv("TERM", "xterm", 1);
      std::vector<char*> args;
      for (auto& a : argv)
        args.push_back(a.data());
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
  }
  ~pty_child() {
    if (pid_ > 0 && status_ < 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (master_ >= 0)
      close(master_);
  }

  /// Reads what arrived within `timeout` into the transcript.
  void pump(std::chrono::milliseconds timeout) {
    pollfd p{master_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(timeout.count())) > 0) {
      char buf[4096];
      auto n = read(master_, buf, sizeof buf);
      if (n > 0)
        transcript_.append(buf, static_cast<size_t>(n));
    }
  }

  /// Reads until `condition(transcript)` holds or `timeout` passes.
  template <class F> bool read_until(F condition, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!condition(transcript_)) {
      if (std::chrono::steady_clock::now() >= deadline)
        return false;
      pump(100ms);
    }
    return true;
  }

  void type(const std::string& keys) {
    auto r = write(master_, keys.data(), keys.size());
    CAF_CHECK_EQUAL(r, static_cast<ssize_t>(keys.size()));
  }

  /// Exit status, or -1 if it did not end within `timeout`.
  int wait(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      pump(50ms); // keep the terminal drained so the child never blocks writing
      int st = 0;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        return status_;
      }
    }
    return -1;
  }

  const std::string& transcript() const { return transcript_; }

private:
  pid_t pid_ = -1;
  int master_ = -1;
  int status_ = -1;
  std::string transcript_;
};

/// Every "NNN%" the progress bars showed, in order.
std::vector<int> percentages(const std::string& text) {
  std::vector<int> out;
  regex_t re;
  // "[]]": a literal ']' in a POSIX bracket expression.
  CAF_REQUIRE_EQUAL(regcomp(&re, "[]] +([0-9]+)%", REG_EXTENDED), 0);
  regmatch_t m[2];
  const char* p = text.c_str();
  while (regexec(&re, p, 2, m, 0) == 0) {
    out.push_back(std::stoi(std::string(p + m[1].rm_so, p + m[1].rm_eo)));
    p += m[0].rm_eo;
  }
  regfree(&re);
  return out;
}

struct fixture {
  temp_dir dir;
  std::string dsn = pg_test_cluster::instance().fresh_database();
  // A chain slow enough to be watched: 3 stages, one item at a time each.
  std::filesystem::path config = write_pass_chain_config(
      dir, "url = \"" + dsn + "\"", 3, "claim_batch = 1\npoll_interval = \"200ms\"");

  void enqueue(size_t items) {
    std::string out;
    CAF_REQUIRE(turing_ok(dir,
                          {"enqueue", "--config", config.string(), "--stage", "s1", "--file",
                           write_numbered_items(dir, items).string(), "--label", "watched"},
                          out));
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(status_watch_tests, fixture)

CAF_TEST(watch_redraws_a_run_from_zero_to_one_hundred_percent_and_q_quits) {
  enqueue(3000);
  pty_child watch{
      {TURING_EXE, "status", "--config", config.string(), "--watch", "--interval", "0.2"}};
  // Nothing runs yet: the run is at 0 %.
  CAF_REQUIRE(watch.read_until(
      [](const std::string& t) { return t.find("run 1 'watched'") != std::string::npos; }, 30s));
  CAF_REQUIRE(watch.read_until([](const std::string& t) { return !percentages(t).empty(); }, 5s));
  auto first = percentages(watch.transcript()).front();
  CAF_CHECK_EQUAL(first, 0);
  CAF_CHECK(watch.transcript().find("\x1b[?1049h") != std::string::npos); // alternate screen

  auto run = start_turing(dir, {"run", "--config", config.string(), "--until-drained"}, "run.log");
  CAF_CHECK(watch.read_until(
      [](const std::string& t) {
        auto p = percentages(t);
        return !p.empty() && p.back() == 100;
      },
      120s));
  CAF_CHECK_EQUAL(run.wait(60s), 0);
  auto seen = percentages(watch.transcript());
  // It advanced through intermediate values, never backwards.
  CAF_CHECK(std::any_of(seen.begin(), seen.end(), [](int p) { return p > 0 && p < 100; }));
  CAF_CHECK(std::is_sorted(seen.begin(), seen.end()));
  CAF_CHECK(watch.transcript().find("3000/3000") != std::string::npos);
  CAF_CHECK(watch.transcript().find("STAGES") != std::string::npos);

  watch.type("q");
  CAF_CHECK_EQUAL(watch.wait(10s), 0);
  // The terminal is given back: main screen, cursor shown.
  CAF_CHECK(watch.transcript().find("\x1b[?1049l") != std::string::npos);
}

CAF_TEST(watch_without_a_terminal_prints_one_snapshot_and_exits) {
  enqueue(10);
  std::string out;
  CAF_REQUIRE(turing_ok(dir, {"status", "--config", config.string(), "--watch"}, out));
  CAF_CHECK(out.find("RUNS") != std::string::npos);
  CAF_CHECK(out.find("run 1 'watched'") != std::string::npos);
  CAF_CHECK(out.find("0/10") != std::string::npos);
  CAF_CHECK(out.find("s1") != std::string::npos);
  CAF_CHECK(out.find('\x1b') == std::string::npos); // no terminal control characters
}

CAF_TEST(run_on_a_terminal_shows_a_progress_bar_instead_of_progress_log_lines) {
  enqueue(2000);
  pty_child run{{TURING_EXE, "run", "--config", config.string(), "--until-drained"}};
  CAF_CHECK_EQUAL(run.wait(120s), 0);
  auto seen = percentages(run.transcript());
  CAF_REQUIRE(!seen.empty());
  // The last word is the finished run's line, kept in the scrollback.
  CAF_CHECK_EQUAL(seen.back(), 100);
  CAF_CHECK(run.transcript().find("2000/2000  done in") != std::string::npos);
  CAF_CHECK(run.transcript().find("progress:") == std::string::npos);
  CAF_CHECK(run.transcript().find("drained") != std::string::npos);
}

CAF_TEST(json_log_format_writes_one_json_object_per_line) {
  enqueue(5);
  std::string out;
  CAF_REQUIRE(turing_ok(
      dir, {"--log-format", "json", "run", "--config", config.string(), "--until-drained"}, out));
  std::istringstream lines{out};
  std::string line;
  int objects = 0;
  while (std::getline(lines, line)) {
    if (line.empty())
      continue;
    CAF_CHECK_EQUAL(line.front(), '{');
    CAF_CHECK_EQUAL(line.back(), '}');
    CAF_CHECK(line.find("\"level\":") != std::string::npos);
    CAF_CHECK(line.find("\"message\":") != std::string::npos);
    ++objects;
  }
  CAF_CHECK(objects >= 3);
  CAF_CHECK(out.find("drained") != std::string::npos);
}

CAF_TEST_FIXTURE_SCOPE_END()
