// What the benchmarks share: running the turing binary while sampling its
// peak RSS, and reading a run's drain figures from the attempts table.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <sys/types.h>
#include <vector>

namespace turing::bench {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t);

struct process_result {
  int status = -1;
  double seconds = 0;
  long peak_rss_kb = 0;   ///< VmHWM, sampled while it ran
  double cpu_seconds = 0; ///< user + system CPU of the process and its threads
};

/// VmHWM of a live process, in KB (0 once it is gone).
long peak_rss_kb(pid_t pid);

/// Starts argv (argv[0] a path) with its output appended to `log`; returns
/// its pid without waiting.
pid_t spawn(const std::vector<std::string>& argv, const fs::path& log);

/// Runs argv, output appended to `log`; samples its peak RSS every 50 ms.
process_result run(const std::vector<std::string>& argv, const fs::path& log);

/// The pid of the postmaster serving `dsn` when it runs on this machine (the
/// parent of this connection's backend), 0 when it does not.
pid_t postmaster_pid(const std::string& dsn);

/// CPU seconds (user + system) a PostgreSQL cluster has used so far: the
/// postmaster, its live children and the children it has reaped. The
/// difference over a case is what the case cost the database: a figure far
/// steadier than a throughput on a shared machine.
double cluster_cpu_seconds(pid_t postmaster);

struct drain_figures {
  int64_t attempts = 0;
  double seconds = 0; ///< first claim to last completion
  double per_second() const { return seconds > 0 ? attempts / seconds : 0; }
};

/// Completed attempts of a run and the time from its first claim to its last completion.
drain_figures drain_of_run(const std::string& dsn, int64_t run_id);

/// The newest run's id (0 when there is none).
int64_t last_run(const std::string& dsn);

} // namespace turing::bench
