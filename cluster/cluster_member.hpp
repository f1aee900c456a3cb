// The cluster member: a node's representative in distributed mode. It finds
// its peers in turing.nodes, verifies and connects to them over mutual TLS,
// and returns a lost peer's leases to ready as soon as the peer is known gone.
#pragma once

#include "actors/actor_directory.hpp"
#include "cluster/tls_identity.hpp"
#include "config/pipeline_config.hpp"
#include "persistence/outage_log.hpp"
#include "persistence/types.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace turing::cluster {

/// Verifies who listens at host:port (blocking; run off the actor's thread).
using identity_probe = std::function<peer_identity(const std::string& host, uint16_t port,
                                                   std::chrono::milliseconds timeout)>;

struct cluster_member_options {
  /// This node's name: its certificate's CN.
  std::string node;
  config::cluster_config cluster;
  /// For placement: which models this node and its peers host.
  std::shared_ptr<const config::pipeline_config> pipeline;
  /// turing.nodes.started_at of this incarnation, microseconds.
  int64_t started_at_us = 0;
  /// Where the liveness store is found (nodes, rescues).
  std::shared_ptr<actors::actor_directory> dir;
  /// Receives cluster_membership on every change (the node monitor).
  caf::actor monitor;
  /// Answers (connect_atom, host, port) with (node_id, strong_actor_ptr,
  /// std::set<std::string>): CAF's TLS middleman
  /// (sys.openssl_manager().actor_handle()), or the simulation's network.
  caf::actor connector;
  identity_probe probe;
  /// Runs the probe in the member's own handler instead of a thread of its
  /// own: the simulation's probe answers at once and must stay deterministic.
  bool probe_inline = false;
  /// A peer's leases count against max_lost like any rescued lease.
  int max_lost = persistence::default_max_lost_attempts;
  std::shared_ptr<persistence::outage_log> outage;
};

/// How it works. Every second it reads turing.nodes and, for each live node
/// with an address that it is not connected to, runs one bounded attempt: a
/// TLS probe of the address (the certificate's CN must be the node's name;
/// CAF checks the chain but never the name), CAF's connect, then a hello
/// whose name and address must match too. A verified peer is monitored.
///
/// When a peer's connection drops (CAF's down message: the TCP connection
/// closed, or no heartbeat within connection_timeout), its address is probed
/// again: a refused connection means its process is gone and its leases go
/// back to ready at once; otherwise they go back once its report in
/// turing.nodes has not advanced for connection_timeout. Either way the
/// store's rescue is fenced by epoch: a peer that was only partitioned finds
/// its late results recorded, not applied. Nothing here is needed for
/// correctness: without CAF the leases expire and the rescuer returns them.
caf::actor spawn_cluster_member(caf::actor_system& sys, cluster_member_options options);

} // namespace turing::cluster
