// Shared benchmark helpers: child processes with peak RSS and CPU, the
// database's CPU, drain figures.
#include "bench/bench_support.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <pqxx/pqxx>
#include <sstream>
#include <sys/resource.h>
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
    rusage usage{};
    auto done = wait4(pid, &status, WNOHANG, &usage);
    if (done == pid) {
      r.cpu_seconds = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                      static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
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

namespace {

/// Fields of /proc/PID/stat after the command (which may hold spaces):
/// index 0 is the state, 1 the parent pid, 11-14 utime, stime, cutime,
/// cstime in clock ticks. Empty when the process is gone.
std::vector<long long> proc_stat(const std::string& pid) {
  std::ifstream in{"/proc/" + pid + "/stat"};
  std::string line;
  if (!std::getline(in, line))
    return {};
  auto close = line.rfind(')');
  if (close == std::string::npos)
    return {};
  std::istringstream rest{line.substr(close + 2)};
  std::vector<long long> fields;
  std::string field;
  while (rest >> field)
    fields.push_back(field.size() == 1 && std::isalpha(field[0]) ? 0 : std::atoll(field.c_str()));
  return fields;
}

} // namespace

pid_t postmaster_pid(const std::string& dsn) {
  try {
    pqxx::connection c{dsn};
    pqxx::nontransaction tx{c};
    auto backend = tx.exec1("SELECT pg_backend_pid()")[0].as<long long>();
    auto stat = proc_stat(std::to_string(backend));
    return stat.size() > 1 ? static_cast<pid_t>(stat[1]) : 0;
  } catch (const std::exception&) {
    return 0;
  }
}

double cluster_cpu_seconds(pid_t postmaster) {
  if (postmaster <= 0)
    return 0;
  double ticks_per_second = static_cast<double>(sysconf(_SC_CLK_TCK));
  auto own = proc_stat(std::to_string(postmaster));
  if (own.size() < 15)
    return 0;
  long long ticks = own[11] + own[12] + own[13] + own[14];
  for (const auto& entry : fs::directory_iterator{"/proc"}) {
    auto name = entry.path().filename().string();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0])))
      continue;
    auto stat = proc_stat(name);
    if (stat.size() > 14 && stat[1] == postmaster)
      ticks += stat[11] + stat[12];
  }
  return static_cast<double>(ticks) / ticks_per_second;
}

int64_t last_run(const std::string& dsn) {
  pqxx::connection c{dsn};
  pqxx::work tx{c};
  return tx.exec1("SELECT coalesce(max(id), 0) FROM turing.runs")[0].as<int64_t>();
}

} // namespace turing::bench
