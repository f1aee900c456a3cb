// The operations listener in process, without a database: /healthz follows
// the node's health (not running, ok, failed stages named), /metrics serves
// the registry, the dashboard's files are served, port 0 picks a free port.
#define CAF_SUITE ops_server

#include "http/ops_server.hpp"
#include "tests/support/prometheus_text.hpp"

#include <caf/test/unit_test.hpp>
#include <httplib.h>

using namespace turing;

namespace {

struct fixture {
  std::shared_ptr<http::node_health> health = std::make_shared<http::node_health>();
  metrics::registry registry;
  metrics::node_metrics node_metrics{registry};
  std::unique_ptr<http::ops_server> server;

  fixture() {
    http::ops_server_options o;
    o.host = "127.0.0.1";
    o.port = 0;
    o.node = "n1";
    o.health = health;
    o.metrics = &node_metrics;
    server = std::make_unique<http::ops_server>(std::move(o));
    std::string error;
    CAF_REQUIRE(server->bind(error));
    CAF_REQUIRE(server->port() > 0);
    server->start();
  }

  httplib::Result get(const std::string& path) {
    httplib::Client c{"127.0.0.1", server->port()};
    c.set_connection_timeout(2, 0);
    return c.Get(path.c_str());
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(ops_server_tests, fixture)

CAF_TEST(healthz_is_503_until_the_node_runs_then_ok_then_names_failed_stages) {
  auto r = get("/healthz");
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(r->status, 503);
  health->set_up(true);
  r = get("/healthz");
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(r->status, 200);
  CAF_CHECK_EQUAL(r->body, "ok\n");
  health->stage_failed("carl", "exceeded restart intensity");
  r = get("/healthz");
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(r->status, 503);
  CAF_CHECK(r->body.find("carl (exceeded restart intensity)") != std::string::npos);
}

CAF_TEST(metrics_serve_the_registry_in_the_text_format) {
  node_metrics.stage("lucy").claimed->inc(3);
  auto r = get("/metrics");
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(r->status, 200);
  CAF_CHECK(r->get_header_value("Content-Type").find("text/plain; version=0.0.4") == 0);
  auto t = testing::parse_prometheus_text(r->body);
  CAF_CHECK(t.errors.empty());
  CAF_CHECK_EQUAL(t.value("turing_messages_claimed_total", {{"stage", "lucy"}}), 3);
}

CAF_TEST(the_dashboard_and_its_files_are_served_from_the_binary) {
  auto page = get("/");
  CAF_REQUIRE(page);
  CAF_CHECK_EQUAL(page->status, 200);
  CAF_CHECK(page->body.find("/dashboard.js") != std::string::npos);
  for (const char* path : {"/dashboard.js", "/dashboard.css"}) {
    auto r = get(path);
    CAF_REQUIRE(r);
    CAF_CHECK_EQUAL(r->status, 200);
    CAF_CHECK(!r->body.empty());
  }
  // Nothing is loaded from elsewhere: no absolute URL in the page or script.
  CAF_CHECK(page->body.find("://") == std::string::npos);
  CAF_CHECK(get("/dashboard.js")->body.find("https://") == std::string::npos);
}

CAF_TEST(a_second_server_on_the_same_port_is_refused) {
  http::ops_server_options o;
  o.host = "127.0.0.1";
  o.port = static_cast<uint16_t>(server->port());
  http::ops_server second{std::move(o)};
  std::string error;
  CAF_CHECK(!second.bind(error));
  CAF_MESSAGE("refused: " << error);
  CAF_CHECK(!error.empty());
}

CAF_TEST_FIXTURE_SCOPE_END()
