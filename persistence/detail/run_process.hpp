// Runs a child process from an argv (never through a shell), optionally as
// another user, and collects its exit code and output. Used by the embedded
// cluster to drive initdb and pg_ctl.
#pragma once

#include <chrono>
#include <string>
#include <sys/types.h>
#include <vector>

namespace turing::persistence::detail {

/// The user a child runs as; PostgreSQL refuses to run as root, so under root
/// the cluster's tools run as `postgres`.
struct process_identity {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  std::string name;
  std::string home;
};

/// What a finished child left behind.
struct process_result {
  /// The exit status, 128 + signal number when a signal ended it, 127 when it
  /// could not be executed at all.
  int exit_code = -1;
  /// True when the child ran past its timeout and was killed (with its
  /// process group).
  bool timed_out = false;
  /// stdout and stderr, interleaved as written.
  std::string output;
};

/// Runs `argv` (argv[0] is an absolute path) with stdin from /dev/null, in
/// its own process group, with cwd "/", default signal dispositions and no
/// inherited descriptors beyond 0-2 — so a daemon it leaves behind (the
/// postmaster) holds none of our locks or pipes. When `run_as` is set the
/// child switches to that user before exec (the caller must be root).
process_result run_process(const std::vector<std::string>& argv, const process_identity* run_as,
                           std::chrono::milliseconds timeout);

} // namespace turing::persistence::detail
