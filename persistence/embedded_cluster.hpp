// The embedded PostgreSQL cluster: with no database URL configured, turing
// starts (or reuses) a private cluster under its data directory.
#pragma once

#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace turing::persistence {

/// Where the private cluster lives and what it serves.
struct embedded_cluster_options {
  /// turing's data dir; the cluster lives in data_dir/"postgres", its unix
  /// socket in data_dir/"socket", its log in data_dir/"postgres.log".
  std::filesystem::path data_dir;
  /// Created if missing.
  std::string database = "turing";
  /// The cluster's superuser (initdb -U), trusted on the private socket.
  std::string user = "turing";
  /// How long to wait for the postmaster to accept connections, and for one
  /// that is already starting or stopping to settle.
  std::chrono::seconds start_timeout{60};
  /// False for commands that only read (status, report, check, record): a
  /// data_dir without a cluster is then a cluster_error naming it, and
  /// nothing is created there (no initdb, no directories, no lock file).
  bool may_initialise = true;
  /// PostgreSQL's fsync. Off only for throwaway clusters (the test suite's):
  /// a crash of the machine could then corrupt the cluster; a crash of
  /// PostgreSQL or of turing still loses nothing committed.
  bool fsync = true;
};

/// The cluster could not be brought up; the message is one line naming the
/// problem and the path involved.
class cluster_error : public std::runtime_error {
public:
  using runtime_error::runtime_error;
};

/// A private PostgreSQL cluster that listens on a unix socket only.
///
/// How does it work? Every caller takes an exclusive flock on
/// data_dir/"cluster.lock" around check, initdb, start and CREATE DATABASE,
/// so concurrent turing processes on one data dir end with one cluster. A
/// running cluster is recognised by pinging its socket. A postmaster.pid that
/// does not name a live postmaster of this cluster (the pid is gone, or was
/// reused by an unrelated process after a crash) is stale: it is removed and
/// the cluster started. Under root the cluster runs as the `postgres` user,
/// which PostgreSQL requires. The cluster outlives this object: turing leaves
/// it running between runs, and stop() ends it.
class embedded_cluster {
public:
  /// Starts the private cluster under options.data_dir, or reuses the one
  /// already running there. Throws cluster_error.
  static embedded_cluster ensure_running(const embedded_cluster_options& options);

  /// Stops the cluster under data_dir if one runs there (pg_ctl stop -m fast,
  /// then -m immediate) and returns once its postmaster has exited. Returns
  /// true if it was running. Throws cluster_error when it cannot be stopped.
  static bool stop(const std::filesystem::path& data_dir);

  /// libpq key/value string:
  /// "host=<abs socket dir> port=5432 dbname=<database> user=<user>".
  const std::string& connection_string() const { return connection_string_; }

  /// False when an already-running cluster was reused.
  bool started_here() const { return started_here_; }

  /// One human line for the startup log, e.g. "reused running cluster (pid 1234)".
  const std::string& found_state() const { return found_state_; }

  /// data_dir/"postgres", absolute.
  const std::filesystem::path& cluster_dir() const { return cluster_dir_; }

private:
  embedded_cluster(std::string connection_string, bool started_here, std::string found_state,
                   std::filesystem::path cluster_dir);

  std::string connection_string_;
  bool started_here_;
  std::string found_state_;
  std::filesystem::path cluster_dir_;
};

} // namespace turing::persistence
