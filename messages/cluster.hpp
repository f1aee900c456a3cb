// Cluster messages: what nodes say to each other over CAF's networking in
// distributed mode, and what the cluster member tells its own node monitor.
#pragma once

#include <caf/actor.hpp>
#include <caf/meta/type_name.hpp>
#include <cstdint>
#include <map>
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

/// A cluster member asking a peer's for the model endpoints it hosts; the
/// reply is a hosted_endpoints.
struct hosted_endpoints_request {};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, hosted_endpoints_request&) {
  return f(caf::meta::type_name("turing::hosted_endpoints_request"));
}

/// The model endpoints a node hosts by placement ([nodes.<name>] models),
/// their current incarnations: other nodes' relays send their calls there.
struct hosted_endpoints {
  std::map<std::string, caf::actor> endpoints;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, hosted_endpoints& x) {
  return f(caf::meta::type_name("turing::hosted_endpoints"), x.endpoints);
}

} // namespace turing
