// [http]: the operations listener's address, its default (on, at loopback),
// port 0, the ways to turn it off, and bad addresses naming their key.
#define CAF_SUITE config_http

#include "config/config_loader.hpp"
#include "tests/config/config_fixture.hpp"

#include <caf/test/unit_test.hpp>

using namespace turing::config;
using turing::config::test::config_fixture;

CAF_TEST_FIXTURE_SCOPE(config_http_tests, config_fixture)

CAF_TEST(without_an_http_section_the_listener_is_on_at_loopback_9464_by_default) {
  auto r = load(with_runtime(""));
  CAF_REQUIRE(r.ok());
  const auto& h = r.config->http;
  CAF_CHECK(h.enabled);
  CAF_CHECK_EQUAL(h.listen_host, "127.0.0.1");
  CAF_CHECK_EQUAL(h.listen_port, 9464);
  CAF_CHECK(!h.explicit_listen);
}

CAF_TEST(a_written_listen_address_is_read_and_marked_explicit) {
  auto r = load(with_runtime("") + "[http]\nlisten = \"0.0.0.0:9500\"\n");
  for (const auto& e : r.errors)
    CAF_MESSAGE(e.to_string());
  CAF_REQUIRE(r.ok());
  CAF_CHECK(r.config->http.enabled);
  CAF_CHECK_EQUAL(r.config->http.listen_host, "0.0.0.0");
  CAF_CHECK_EQUAL(r.config->http.listen_port, 9500);
  CAF_CHECK(r.config->http.explicit_listen);
  auto v6 = load(with_runtime("") + "[http]\nlisten = \"[::1]:9501\"\n");
  CAF_REQUIRE(v6.ok());
  CAF_CHECK_EQUAL(v6.config->http.listen_host, "::1");
}

CAF_TEST(port_zero_means_any_free_port) {
  auto r = load(with_runtime("") + "[http]\nlisten = \"127.0.0.1:0\"\n");
  CAF_REQUIRE(r.ok());
  CAF_CHECK(r.config->http.enabled);
  CAF_CHECK_EQUAL(r.config->http.listen_port, 0);
}

CAF_TEST(an_empty_listen_or_enabled_false_turns_the_listener_off) {
  auto empty = load(with_runtime("") + "[http]\nlisten = \"\"\n");
  CAF_REQUIRE(empty.ok());
  CAF_CHECK(!empty.config->http.enabled);
  auto disabled = load(with_runtime("") + "[http]\nenabled = false\nlisten = \"127.0.0.1:9600\"\n");
  CAF_REQUIRE(disabled.ok());
  CAF_CHECK(!disabled.config->http.enabled);
}

CAF_TEST(bad_http_addresses_and_keys_name_their_key_and_line) {
  auto no_port = load(with_runtime("") + "[http]\nlisten = \"127.0.0.1\"\n");
  CAF_REQUIRE(!no_port.ok());
  auto* e = find_error(no_port, "http.listen", "expected host:port");
  CAF_REQUIRE(e != nullptr);
  CAF_CHECK_EQUAL(e->where.line, 10);
  auto big = load(with_runtime("") + "[http]\nlisten = \"127.0.0.1:70000\"\n");
  CAF_REQUIRE(!big.ok());
  CAF_CHECK(find_error(big, "http.listen", "0..65535") != nullptr);
  auto typo = load(with_runtime("") + "[http]\nlisen = \"127.0.0.1:9464\"\n");
  CAF_REQUIRE(!typo.ok());
  CAF_CHECK(find_error(typo, "http.lisen", "") != nullptr);
  auto not_bool = load(with_runtime("") + "[http]\nenabled = \"yes\"\n");
  CAF_REQUIRE(!not_bool.ok());
  CAF_CHECK(find_error(not_bool, "http.enabled", "") != nullptr);
}

CAF_TEST_FIXTURE_SCOPE_END()
