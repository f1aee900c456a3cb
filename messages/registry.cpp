// Registration of every message type with CAF (see registry.hpp).
#include "messages/registry.hpp"

#include <caf/actor_system_config.hpp>

namespace turing {

void add_message_types(caf::actor_system_config& cfg) {
  using namespace persistence;
  add_supervision_message_types(cfg);
  cfg.add_message_type<lease>("turing::lease");
  cfg.add_message_type<std::vector<lease>>("std::vector<turing::lease>");
  cfg.add_message_type<claim_request>("turing::claim_request");
  cfg.add_message_type<claimed_message>("turing::claimed_message");
  cfg.add_message_type<std::vector<claimed_message>>("std::vector<turing::claimed_message>");
  cfg.add_message_type<delivery>("turing::delivery");
  cfg.add_message_type<completion>("turing::completion");
  cfg.add_message_type<std::vector<completion>>("std::vector<turing::completion>");
  cfg.add_message_type<handoff_claims>("turing::handoff_claims");
  cfg.add_message_type<completion_outcome>("turing::completion_outcome");
  cfg.add_message_type<claiming_completion>("turing::claiming_completion");
  cfg.add_message_type<handoffs_claimed>("turing::handoffs_claimed");
  cfg.add_message_type<failure>("turing::failure");
  cfg.add_message_type<std::vector<failure>>("std::vector<turing::failure>");
  cfg.add_message_type<fence_result>("turing::fence_result");
  cfg.add_message_type<std::vector<fence_result>>("std::vector<turing::fence_result>");
  cfg.add_message_type<rescued_message>("turing::rescued_message");
  cfg.add_message_type<std::vector<rescued_message>>("std::vector<turing::rescued_message>");
  cfg.add_message_type<node_report>("turing::node_report");
  cfg.add_message_type<std::vector<node_report>>("std::vector<turing::node_report>");
  cfg.add_message_type<rescue_node_request>("turing::rescue_node_request");
  cfg.add_message_type<nodes_request>("turing::nodes_request");
  cfg.add_message_type<cluster_hello>("turing::cluster_hello");
  cfg.add_message_type<cluster_membership>("turing::cluster_membership");
  cfg.add_message_type<hosted_endpoints_request>("turing::hosted_endpoints_request");
  cfg.add_message_type<hosted_endpoints>("turing::hosted_endpoints");
  cfg.add_message_type<heartbeat_request>("turing::heartbeat_request");
  cfg.add_message_type<release_request>("turing::release_request");
  cfg.add_message_type<rescue_request>("turing::rescue_request");
  cfg.add_message_type<prune_request>("turing::prune_request");
  cfg.add_message_type<prune_result>("turing::prune_result");
  cfg.add_message_type<census_request>("turing::census_request");
  cfg.add_message_type<latency_request>("turing::latency_request");
  cfg.add_message_type<latency_history>("turing::latency_history");
  cfg.add_message_type<stage_work>("turing::stage_work");
  cfg.add_message_type<work_census>("turing::work_census");
  cfg.add_message_type<execution_started>("turing::execution_started");
  cfg.add_message_type<execution_succeeded>("turing::execution_succeeded");
  cfg.add_message_type<execution_failed>("turing::execution_failed");
  cfg.add_message_type<model_waiting>("turing::model_waiting");
  cfg.add_message_type<persistence::model_outage>("turing::model_outage");
  cfg.add_message_type<model_availability>("turing::model_availability");
  cfg.add_message_type<call_in_flight>("turing::call_in_flight");
  cfg.add_message_type<std::vector<call_in_flight>>("std::vector<turing::call_in_flight>");
  cfg.add_message_type<model_activity>("turing::model_activity");
  cfg.add_message_type<model_progress>("turing::model_progress");
  cfg.add_message_type<model_call>("turing::model_call");
  cfg.add_message_type<gpu_demand>("turing::gpu_demand");
  cfg.add_message_type<gpu_turn>("turing::gpu_turn");
  cfg.add_message_type<gpu_load_observed>("turing::gpu_load_observed");
  cfg.add_message_type<model_answer>("turing::model_answer");
  cfg.add_message_type<script_call>("turing::script_call");
  cfg.add_message_type<execution_abandoned>("turing::execution_abandoned");
  cfg.add_message_type<lease_lost>("turing::lease_lost");
  cfg.add_message_type<work_available>("turing::work_available");
  cfg.add_message_type<leases_taken>("turing::leases_taken");
  cfg.add_message_type<leases_ended>("turing::leases_ended");
  cfg.add_message_type<owner_replaced>("turing::owner_replaced");
  cfg.add_message_type<drain_request>("turing::drain_request");
  cfg.add_message_type<drain_report>("turing::drain_report");
  cfg.add_message_type<pipeline_drained>("turing::pipeline_drained");
}

} // namespace turing
