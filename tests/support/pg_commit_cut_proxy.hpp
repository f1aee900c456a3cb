// A TCP proxy between a PostgreSQL client and a cluster's unix socket that,
// when armed, cuts the connection at the client's next COMMIT: the commit
// applied (or not) and the client told only that the connection was lost.
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace turing::testing {

/// What the proxy does with the next COMMIT it sees once armed.
enum class commit_cut {
  /// Forward it, wait for the server's reply, drop the reply, cut: applied.
  after_reply,
  /// Drop it and cut: the server sees the client go and rolls back.
  before_server,
  /// Forward it and cut at once: the server decides, racing the retry.
  racing,
};

const char* to_string(commit_cut);

/// Listens on 127.0.0.1 (an ephemeral port) and forwards every connection
/// to `upstream_socket` (a PostgreSQL unix socket file, ".../.s.PGSQL.5432").
///
/// How it works: one thread accepts, one thread per connection forwards both
/// ways. Client bytes are split into the protocol's messages (the startup
/// packet has no type byte; then type byte + int32 length); a simple query
/// `Q` whose text is COMMIT — what libpqxx 6 sends to end a transaction — is
/// where an armed proxy cuts. Server bytes are forwarded as they come.
class pg_commit_cut_proxy {
public:
  explicit pg_commit_cut_proxy(std::string upstream_socket);
  ~pg_commit_cut_proxy();

  pg_commit_cut_proxy(const pg_commit_cut_proxy&) = delete;
  pg_commit_cut_proxy& operator=(const pg_commit_cut_proxy&) = delete;

  int port() const { return port_; }

  /// `conninfo` (a libpq key=value string naming the cluster's socket dir
  /// and port) rewritten to go through this proxy, without TLS or GSS.
  std::string through(const std::string& conninfo) const;

  /// The upstream socket file of `conninfo` (host dir + ".s.PGSQL.<port>").
  static std::string socket_of(const std::string& conninfo);

  /// Cuts the next COMMIT seen on any connection, once. `after_forwarding`
  /// (optional) runs after the COMMIT went to the server (and, for
  /// after_reply, its reply came back) and before the client is cut: a
  /// cluster restart fits there.
  void arm(commit_cut how, std::function<void()> after_forwarding = {});
  bool armed() const;
  /// Cuts made so far; incremented before the client's socket is closed, so
  /// it is current when the client's call returns.
  int cuts() const { return cuts_.load(); }
  /// Connections accepted so far.
  int connections() const { return connections_.load(); }

private:
  void accept_loop();
  void serve(int client);

  std::string upstream_;
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1}; // a byte on wake_[1] stops every thread
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> cuts_{0};
  std::atomic<int> connections_{0};

  mutable std::mutex mutex_; // guards the arming and the thread list
  bool armed_ = false;
  commit_cut how_ = commit_cut::after_reply;
  std::function<void()> after_forwarding_;
  std::vector<std::thread> workers_;
  std::thread acceptor_;
};

} // namespace turing::testing
