// Private PostgreSQL clusters for tests: a throwaway data dir that is cleaned
// up even when the test binary aborts, and one shared cluster per test binary.
#pragma once

#include "persistence/embedded_cluster.hpp"

#include <atomic>
#include <filesystem>
#include <string>
#include <sys/types.h>

namespace turing::testing {

/// A fresh directory for a turing data dir (mkdtemp under /tmp, mode 0755 so
/// the postgres user can traverse it).
///
/// A CAF_REQUIRE failure or the watchdog abort()s the test binary, so
/// destructors are not enough: each directory also has a guardian process
/// (in its own session) that waits for this process to go away and then
/// stops any cluster left in the directory and removes it. The destructor
/// does the same cleanly and dismisses the guardian.
class temp_data_dir {
public:
  /// Creates /tmp/<prefix>-XXXXXX. Throws std::runtime_error.
  explicit temp_data_dir(const std::string& prefix = "turing-test");
  /// Stops any cluster in the directory and removes the directory.
  ~temp_data_dir();

  temp_data_dir(const temp_data_dir&) = delete;
  temp_data_dir& operator=(const temp_data_dir&) = delete;

  const std::filesystem::path& path() const { return path_; }

private:
  std::filesystem::path path_;
  int guardian_fd_ = -1; // write end of the pipe the guardian waits on
  pid_t guardian_pid_ = -1;
};

/// A private PostgreSQL cluster for one test binary: created in a fresh temp
/// dir, started on first use, stopped and removed when the process exits —
/// also when a test failed or the binary aborted (see temp_data_dir).
class pg_test_cluster {
public:
  /// The cluster, started on first call (thread-safe).
  static pg_test_cluster& instance();

  /// Creates an empty database t_<counter>_<pid> and returns its libpq
  /// connection string, so each test starts from nothing.
  std::string fresh_database();

  const std::filesystem::path& data_dir() const { return dir_.path(); }

  /// Connection string for the `postgres` database, for administration.
  std::string admin_connection_string() const;

  /// The cluster as embedded_cluster::ensure_running reported it.
  const persistence::embedded_cluster& cluster() const { return cluster_; }

  ~pg_test_cluster();

private:
  pg_test_cluster();

  temp_data_dir dir_;
  persistence::embedded_cluster cluster_;
  std::atomic<unsigned> next_database_{0};
};

/// `conninfo` with its dbname replaced by `database`, re-quoted as needed.
std::string with_database(const std::string& conninfo, const std::string& database);

} // namespace turing::testing
