// The metrics registry's text exposition, parsed back with a strict reader:
// HELP and TYPE before the samples, escaped label values, cumulative
// histogram buckets ending at +Inf equal to _count, and _sum.
#define CAF_SUITE metrics_registry

#include "metrics/node_metrics.hpp"
#include "metrics/registry.hpp"
#include "tests/support/prometheus_text.hpp"

#include <caf/test/unit_test.hpp>
#include <thread>

using namespace turing::metrics;
using turing::testing::parse_prometheus_text;

namespace {

void require_parsed(const turing::testing::prom_text& t, const std::string& text) {
  for (const auto& e : t.errors)
    CAF_MESSAGE(e);
  if (!t.errors.empty())
    CAF_MESSAGE("exposition:\n" << text);
  CAF_REQUIRE(t.errors.empty());
}

} // namespace

CAF_TEST(counters_and_gauges_are_written_with_help_type_and_labels) {
  registry r;
  auto& claimed = r.make_counter("t_claimed_total", "Claimed messages.", {"stage"});
  auto& depth = r.make_gauge("t_depth", "Depth.", {"stage", "state"});
  auto& plain = r.make_gauge("t_up", "Up.");
  claimed.with({"lucy"}).inc(3);
  claimed.with({"alma"}).inc();
  depth.with({"lucy", "ready"}).set(12);
  depth.with({"lucy", "ready"}).add(-2.5);
  plain.with({}).set(1);
  auto text = r.exposition();
  auto t = parse_prometheus_text(text);
  require_parsed(t, text);
  CAF_CHECK_EQUAL(t.families["t_claimed_total"].type, "counter");
  CAF_CHECK_EQUAL(t.families["t_claimed_total"].help, "Claimed messages.");
  CAF_CHECK_EQUAL(t.families["t_depth"].type, "gauge");
  CAF_CHECK_EQUAL(t.value("t_claimed_total", {{"stage", "lucy"}}), 3);
  CAF_CHECK_EQUAL(t.value("t_claimed_total", {{"stage", "alma"}}), 1);
  CAF_CHECK_EQUAL(t.value("t_depth", {{"stage", "lucy"}, {"state", "ready"}}), 9.5);
  CAF_CHECK_EQUAL(t.value("t_up"), 1);
  // Integers are written without a fraction.
  CAF_CHECK(text.find("t_claimed_total{stage=\"lucy\"} 3\n") != std::string::npos);
  CAF_CHECK(text.find("t_up 1\n") != std::string::npos);
}

CAF_TEST(label_values_and_help_text_are_escaped_and_read_back_unchanged) {
  registry r;
  std::string nasty = "a \"quoted\" back\\slash\nnew line";
  auto& c =
      r.make_counter("t_escaped_total", "Help with a back\\slash\nand a new line.", {"reason"});
  c.with({nasty}).inc(7);
  auto text = r.exposition();
  CAF_CHECK(text.find("# HELP t_escaped_total Help with a back\\\\slash\\nand a new line.\n") !=
            std::string::npos);
  CAF_CHECK(text.find(R"(reason="a \"quoted\" back\\slash\nnew line")") != std::string::npos);
  auto t = parse_prometheus_text(text);
  require_parsed(t, text);
  CAF_CHECK_EQUAL(t.value("t_escaped_total", {{"reason", nasty}}), 7);
}

CAF_TEST(histograms_write_cumulative_buckets_up_to_inf_with_sum_and_count) {
  registry r;
  auto& h = r.make_histogram("t_latency_seconds", "Latency.", {"stage"}, {0.1, 1, 0.5});
  auto& lucy = h.with({"lucy"});
  for (double v : {0.05, 0.1, 0.3, 0.7, 2.0, 100.0})
    lucy.observe(v);
  auto text = r.exposition();
  auto t = parse_prometheus_text(text);
  require_parsed(t, text);
  CAF_CHECK_EQUAL(t.families["t_latency_seconds"].type, "histogram");
  // le is inclusive (0.1 falls in le="0.1"), bounds sorted, counts cumulative.
  CAF_CHECK_EQUAL(t.value("t_latency_seconds_bucket", {{"stage", "lucy"}, {"le", "0.1"}}), 2);
  CAF_CHECK_EQUAL(t.value("t_latency_seconds_bucket", {{"stage", "lucy"}, {"le", "0.5"}}), 3);
  CAF_CHECK_EQUAL(t.value("t_latency_seconds_bucket", {{"stage", "lucy"}, {"le", "1"}}), 4);
  CAF_CHECK_EQUAL(t.value("t_latency_seconds_bucket", {{"stage", "lucy"}, {"le", "+Inf"}}), 6);
  CAF_CHECK_EQUAL(t.value("t_latency_seconds_count", {{"stage", "lucy"}}), 6);
  CAF_CHECK_LESS(std::abs(t.value("t_latency_seconds_sum", {{"stage", "lucy"}}) - 103.15), 1e-9);
  // Buckets appear in ascending order of le, +Inf last.
  auto a = text.find("le=\"0.1\""), b = text.find("le=\"0.5\""), c = text.find("le=\"1\""),
       inf = text.find("le=\"+Inf\"");
  CAF_CHECK(a < b && b < c && c < inf);
}

CAF_TEST(concurrent_observations_are_all_counted) {
  registry r;
  auto& c = r.make_counter("t_hits_total", "Hits.").with({});
  auto& h = r.make_histogram("t_h_seconds", "H.", {}, {1}).with({});
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&] {
      for (int j = 0; j < 10000; ++j) {
        c.inc();
        h.observe(0.5);
      }
    });
  for (auto& t : threads)
    t.join();
  auto t = parse_prometheus_text(r.exposition());
  CAF_REQUIRE(t.errors.empty());
  CAF_CHECK_EQUAL(t.value("t_hits_total"), 40000);
  CAF_CHECK_EQUAL(t.value("t_h_seconds_count"), 40000);
  CAF_CHECK_EQUAL(t.value("t_h_seconds_sum"), 20000);
}

CAF_TEST(the_node_metrics_parse_and_a_label_child_is_the_same_object_each_lookup) {
  registry r;
  node_metrics m{r};
  auto lucy = m.stage("lucy");
  CAF_CHECK_EQUAL(lucy.claimed, m.stage("lucy").claimed);
  lucy.claimed->inc(5);
  lucy.attempt_seconds->observe(0.2);
  m.model("qwen").in_flight->set(2);
  m.model("qwen").concurrency->set(4);
  m.queue_depth("lucy", "ready").set(10);
  m.supervisor_restarts("root/pipeline/stage/lucy").inc();
  auto text = r.exposition();
  auto t = parse_prometheus_text(text);
  require_parsed(t, text);
  CAF_CHECK_EQUAL(t.value("turing_messages_claimed_total", {{"stage", "lucy"}}), 5);
  CAF_CHECK_EQUAL(t.value("turing_attempt_duration_seconds_count", {{"stage", "lucy"}}), 1);
  CAF_CHECK_EQUAL(t.value("turing_model_in_flight", {{"model", "qwen"}}), 2);
  CAF_CHECK_EQUAL(t.value("turing_model_concurrency_limit", {{"model", "qwen"}}), 4);
  CAF_CHECK_EQUAL(t.value("turing_queue_depth", {{"stage", "lucy"}, {"state", "ready"}}), 10);
  for (const auto& [name, f] : t.families) {
    CAF_CHECK(!f.help.empty());
    CAF_CHECK(!f.type.empty());
  }
}
