// Every message family survives serialization inside a caf::message (as it
// crosses the network in distributed mode): registered by name, fields and
// JSON members intact.
#define CAF_SUITE messages
#include "messages/registry.hpp"

#include <caf/all.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <caf/test/unit_test.hpp>

using namespace turing;
using namespace turing::persistence;

namespace {

struct config : caf::actor_system_config {
  config() { turing::add_message_types(*this); }
};

struct fixture {
  config cfg;
  caf::actor_system sys{cfg};

  /// Serializes `x` in a message and reads it back; fails the test if the
  /// type is not registered or a field does not come back the same.
  template <class T> void round_trip(T x) {
    auto before = caf::deep_to_string(x);
    std::vector<char> buf;
    caf::binary_serializer sink{sys, buf};
    auto msg = caf::make_message(x);
    auto err = sink(msg);
    CAF_REQUIRE(!err);
    caf::message copy;
    caf::binary_deserializer source{sys, buf};
    err = source(copy);
    CAF_REQUIRE(!err);
    CAF_REQUIRE(copy.match_elements<T>());
    CAF_CHECK_EQUAL(caf::deep_to_string(copy.get_as<T>(0)), before);
  }

  static claimed_message job() {
    claimed_message m;
    m.id = 42;
    m.item_id = 7;
    m.run_id = 3;
    m.stage = "alma";
    m.payload = json{{"name", "Kubernetes cluster administration"}, {"tags", {1, 2}}};
    m.attempt = 2;
    m.max_attempts = 3;
    m.epoch = 9;
    m.started_at = time_point{std::chrono::microseconds{1700000000123456}};
    return m;
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(message_round_trips, fixture)

CAF_TEST(store_messages_round_trip) {
  round_trip(lease{42, 9});
  round_trip(std::vector<lease>{{1, 2}, {3, 4}});
  round_trip(claim_request{"alma", "node-a", 16, millis{30000}});
  round_trip(job());
  round_trip(std::vector<claimed_message>{job(), job()});
  completion c;
  c.fence = {42, 9};
  c.attempt = 2;
  c.node = "node-a";
  c.started_at = job().started_at;
  c.outcome = "passed";
  c.output = json{{"verdict", "passed"}};
  c.model = "mistral";
  c.deliveries.push_back(
      {delivery::kind::join, "compare", json{{"domain", "technology"}}, 3, {"clara_a", "clara_b"}});
  round_trip(std::vector<completion>{c});
  c.derived_payloads = true;
  c.deliveries.push_back({delivery::kind::stage, "alma", json(), 3, {}});
  round_trip(std::vector<completion>{c});
  failure f;
  f.fence = {42, 9};
  f.result = attempt_result::timeout;
  f.error = "timed out after 20s";
  f.retry_after = millis{1500};
  f.retryable = true;
  round_trip(std::vector<failure>{f});
  round_trip(std::vector<fence_result>{fence_result::applied, fence_result::stale});
  round_trip(std::vector<rescued_message>{{5, "alma", "node-b", true}});
  round_trip(heartbeat_request{"node-a", {{1, 2}}, millis{30000}});
  round_trip(release_request{"node-a", {{1, 2}}});
  round_trip(rescue_request{"node-c", 3});
  round_trip(rescue_node_request{"node-b", "node-c", 3});
  round_trip(nodes_request{});
  round_trip(cluster_hello{"node-a", "10.0.0.5:7400", 1700000000123456});
  round_trip(cluster_membership{"10.0.0.5:7400", {"node-b"}});
  round_trip(census_request{});
  node_report n{"node-a",
                time_point{std::chrono::seconds{1700000000}},
                time_point{std::chrono::seconds{1700000005}},
                std::nullopt,
                {{"doomed", "gave up"}},
                {},
                {{"mistral", {{"alma", 7, time_point{std::chrono::seconds{1700000001}}, 42}}}},
                "10.0.0.5:7400",
                {"node-b", "node-c"}};
  round_trip(n);
  n.stopped_at = n.seen_at;
  round_trip(n);
  n.unavailable_models["mistral"] = {time_point{std::chrono::seconds{1700000001}},
                                     "cannot connect to http://gpu-1:11434/api/chat", 12};
  round_trip(n);
  round_trip(work_census{{{"alma", 1, 2, 3, 4}}});
}

CAF_TEST(execution_messages_round_trip) {
  round_trip(execution_started{{42, 9}, 1234});
  round_trip(execution_succeeded{{42, 9}, "merged", json{{"duplicate_of", "SQL"}}, "mistral"});
  round_trip(execution_failed{{42, 9}, "HTTP 500", true, "qwen"});
  round_trip(execution_failed{{42, 9}, "HTTP 503", true, "qwen", true});
  round_trip(execution_failed{
      {42, 9}, "HTTP 429", true, "qwen", false, true, model_fault::throttled, 7000});
  round_trip(model_waiting{{42, 9}, "qwen", "cannot connect to http://gpu-1:11434/api/chat"});
  round_trip(model_call{{42, 9}, "alma", "system", "task: dedupe\nskill: SQL", millis{20000}});
  round_trip(model_answer{{42, 9}, "{\"verdict\": \"passed\"}", "mistral", 12.5});
  round_trip(model_answer{{42, 9}, "{}", "mistral", 2012.5, 2000.0, 345});
  round_trip(model_progress{{42, 9}, 17});
  round_trip(
      model_activity{"mistral", {{"alma", 42, time_point{std::chrono::seconds{1700000001}}, 17}}});
  round_trip(gpu_demand{"mistral", 3, 2});
  round_trip(gpu_turn{"mistral", true});
  round_trip(gpu_load_observed{"mistral", 1500.0});
  round_trip(script_call{{42, 9}, std::make_shared<const json>(json{{"key", "s0001"}})});
  round_trip(execution_abandoned{{42, 9}});
  round_trip(lease_lost{{42, 9}});
}

CAF_TEST(runtime_messages_round_trip) {
  round_trip(work_available{"alma"});
  round_trip(leases_taken{{{1, 2}, {3, 4}}});
  round_trip(leases_ended{{{1, 2}}});
  round_trip(drain_request{millis{20000}});
  round_trip(drain_report{"alma", 3, 2});
  round_trip(pipeline_drained{{"doomed"}});
}

CAF_TEST(model_messages_round_trip) {
  round_trip(model_availability{"mistral", true, {}});
  round_trip(model_availability{
      "mistral", false, {time_point{std::chrono::seconds{1700000001}}, "HTTP 503 from proxy", 4}});
}

CAF_TEST(supervision_messages_round_trip) {
  round_trip(child_started{"root/pipeline", "stage/alma", 2});
  round_trip(child_exited{"root/pipeline", "stage/alma", "intensity_exceeded", false});
  round_trip(supervisor_gave_up{"root/pipeline/stage/alma", "more than 3 restarts"});
  round_trip(std::vector<child_status>{{"pump/alma", true, 1}});
}

CAF_TEST(malformed_json_in_a_message_is_an_error_not_a_crash) {
  // A payload that is not JSON (a peer with a bug) fails deserialization.
  std::vector<char> buf;
  caf::binary_serializer sink{sys, buf};
  auto j = job();
  std::string bad = "{not json";
  auto err = sink(j.id, j.item_id, j.run_id, j.stage, bad, j.attempt, j.max_attempts, j.epoch,
                  j.started_at);
  CAF_REQUIRE(!err);
  claimed_message back;
  caf::binary_deserializer source{sys, buf};
  CAF_CHECK(static_cast<bool>(source(back)));
}

CAF_TEST_FIXTURE_SCOPE_END()
