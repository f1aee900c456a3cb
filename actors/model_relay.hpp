// The model relay: stands in, as model/<name>, for a model whose endpoint
// another node hosts ([nodes.<name>] models), and carries this node's calls
// to it over CAF, so that the model's limits hold once for the cluster.
#pragma once

#include "config/pipeline_config.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <functional>
#include <string>

namespace turing::actors {

/// Where the cluster member registers a model endpoint another node hosts.
inline std::string remote_endpoint_name(const std::string& model) {
  return "remote_model/" + model;
}

struct model_relay_options {
  config::model_config model;
  /// The node that hosts the model's endpoint.
  std::string host_node;
  /// The hosting node's endpoint as this node's cluster member last heard
  /// of it; invalid while that node is not connected.
  std::function<caf::actor()> find_remote;
  /// How often it looks for the remote endpoint while it has none.
  std::chrono::milliseconds retry_interval{500};
};

/// How it works: a pump sends its model_call here as to any endpoint. With
/// the remote endpoint known, the call goes there with this relay as its
/// owner, and whatever the endpoint answers (started, waiting, answer,
/// failure) is passed to the pump that made the call. While the hosting node
/// is unreachable, calls wait here, their pumps told (model_waiting: no
/// deadline runs), and go out once it is back; a call waiting longer than
/// the model's max_unavailable fails, not retried. When the connection drops
/// mid-call, the endpoint abandons the relay's calls (it monitors its owners)
/// and the relay queues them again, so a call is never counted twice.
caf::actor spawn_model_relay(caf::actor_system& sys, model_relay_options options);

} // namespace turing::actors
