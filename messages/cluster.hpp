// Cluster messages: what nodes say to each other over CAF's networking in
// distributed mode, and what the cluster member tells its own node monitor.
#pragma once

#include <caf/meta/type_name.hpp>
#include <cstdint>
#include <string>
#include <vector>

namespace turing {

/// A node introducing itself to a peer's cluster member; the reply is the
/// peer's own hello. The name must match the CN of the certificate the node
/// presents at `address` (checked by the receiver with its own TLS probe).
struct cluster_hello {
  std::string node;
  /// host:port, as recorded in turing.nodes.
  std::string address;
  /// The node's incarnation (started_at in turing.nodes, microseconds):
  /// a restart under the same name is another incarnation.
  int64_t started_at_us = 0;
};

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, cluster_hello& x) {
  return f(caf::meta::type_name("turing::cluster_hello"), x.node, x.address, x.started_at_us);
}

/// The cluster member to its node monitor, on every change: this node's
/// address and its verified peers, written with the node's reports.
struct cluster_membership {
  std::string address;
  std::vector<std::string> peers;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cluster_membership& x) {
  return f(caf::meta::type_name("turing::cluster_membership"), x.address, x.peers);
}

} // namespace turing
