// Shared benchmark helpers: child processes with peak RSS, drain figures.
#include "bench/bench_support.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <pqxx/pqxx>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace turing::bench {

double seconds_since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

long peak_rss_kb(pid_t pid) {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/status"};
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0)
      return std::strtol(line.c_str() + 6, nullptr, 10);
  return 0;
}

pid_t spawn(const std::vector<std::string>& argv, const fs::path& log) {
  pid_t pid = fork();
  if (pid == 0) {
    FILE* f = std::fopen(log.c_str(), "a");
    if (f) {
      dup2(fileno(f), 1);
      dup2(fileno(f), 2);
    }
    std::vector<char*> args;
    for (const auto& a : argv)
      args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  return pid;
}

/// Runs argv, output to `log`; samples its peak RSS every 50 ms.
process_result run(const std::vector<std::string>& argv, const fs::path& log) {
  auto start = clock_type::now();
  pid_t pid = spawn(argv, log);
  process_result r;
  for (;;) {
    r.peak_rss_kb = std::max(r.peak_rss_kb, peak_rss_kb(pid));
    int status = 0;
    auto done = waitpid(pid, &status, WNOHANG);
    if (done == pid) {
      r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  r.seconds = seconds_since(start);
  return r;
}

drain_figures drain_of_run(const std::string& dsn, int64_t run_id) {
  pqxx::connection c{dsn};
  pqxx::work tx{c};
  auto r =
      tx.exec_params1("SELECT count(*), extract(epoch FROM max(finished_at) - min(started_at)) "
                      "FROM turing.attempts WHERE run_id = $1 AND result = 'completed'",
                      run_id);
  return {r[0].as<int64_t>(), r[1].is_null() ? 0.0 : r[1].as<double>()};
}

int64_t last_run(const std::string& dsn) {
  pqxx::connection c{dsn};
  pqxx::work tx{c};
  return tx.exec1("SELECT coalesce(max(id), 0) FROM turing.runs")[0].as<int64_t>();
}

} // namespace turing::bench
