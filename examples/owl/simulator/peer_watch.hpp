// Tells whether the client of a request has hung up. httplib 0.11 gives a
// handler no access to its socket, so a hung call could not notice its
// client's timeout and would pin a worker thread until the server stops.
#pragma once

#include <string>

namespace turing::model_sim {

/// How it works: the connection is found once, by matching the request's
/// local and remote ports against the process's open sockets (Linux: the
/// entries of /proc/self/fd); gone() then peeks at it without blocking. A
/// peer that closed reads as end-of-file or a reset. If the socket cannot be
/// found, gone() stays false and the caller's other limits apply.
class peer_watch {
public:
  peer_watch(const std::string& remote_addr, int remote_port, int local_port);

  /// True once the peer has closed or reset the connection.
  bool gone() const;

  /// Whether the connection was found at all.
  bool watching() const { return fd_ >= 0; }

private:
  int fd_ = -1;
};

} // namespace turing::model_sim
