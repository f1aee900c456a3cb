// Distributed mode with real processes on loopback (issue 12): nodes with
// certificates from scripts/make-node-certs find and verify each other, a
// SIGKILLed node's leases return at once, a SIGSTOPped node's late results
// are fenced, and nodes without proper certificates are refused.
#define CAF_SUITE cluster
#include "tests/e2e/pass_chain.hpp"
#include "tests/e2e/skill_pipeline_fixture.hpp"

#include <arpa/inet.h>
#include <caf/test/unit_test.hpp>
#include <csignal>
#include <fstream>
#include <httplib.h>
#include <netinet/in.h>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <set>
#include <sys/socket.h>
#include <unistd.h>

using namespace turing::testing;
using namespace std::chrono_literals;

namespace {

/// A port nobody listens on now, and not handed out before in this process:
/// the kernel may offer a port it just gave us again, and two nodes of one
/// test must not be configured with the same one.
int free_port() {
  static std::set<int> handed_out;
  for (;;) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t len = sizeof addr;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    ::close(fd);
    int port = ntohs(addr.sin_port);
    if (handed_out.insert(port).second)
      return port;
  }
}

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in{p};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct cluster_fixture : skill_pipeline_fixture {
  std::filesystem::path certs = dir.path / "certs";

  cluster_fixture() { make_certs(certs, {"n1", "n2", "n3"}); }

  void make_certs(const std::filesystem::path& where, const std::vector<std::string>& names) {
    // A child of our own: std::system cannot wait for it here (SIGCHLD handling).
    std::vector<std::string> argv{std::string{TURING_SOURCE_DIR} + "/scripts/make-node-certs",
                                  where.string()};
    argv.insert(argv.end(), names.begin(), names.end());
    child_process make(argv, dir.path / ("make-node-certs-" + where.filename().string() + ".log"));
    auto rc = make.wait(60s);
    if (rc != 0)
      CAF_MESSAGE("make-node-certs exited " << rc << ":\n" << make.output());
    CAF_REQUIRE_EQUAL(rc, 0);
  }

  /// `base` with a [cluster] section for node `name` listening on `port`.
  std::filesystem::path node_config(const std::filesystem::path& base, const std::string& name,
                                    int port, std::filesystem::path cert_dir = {},
                                    const std::string& extra_toml = {}) {
    if (cert_dir.empty())
      cert_dir = certs;
    auto path = dir.path / (base.stem().string() + "-" + name + ".toml");
    std::ofstream out{path};
    out << read_text(base) << "\n[cluster]\n"
        << "listen = \"127.0.0.1:" << port << "\"\n"
        << "certificate = \"" << (cert_dir / (name + ".pem")).string() << "\"\n"
        << "key = \"" << (cert_dir / (name + ".key")).string() << "\"\n"
        << "ca = \"" << (cert_dir / "ca.pem").string() << "\"\n"
        << "heartbeat_interval = \"500ms\"\nconnection_timeout = \"2s\"\n"
        << "connect_timeout = \"2s\"\n"
        << extra_toml;
    return path;
  }

  /// A one-stage pipeline whose script holds each message `seconds`.
  std::filesystem::path slow_script_config(double seconds, const std::string& runtime_toml) {
    auto path = dir.path / "slow.toml";
    std::ofstream out{path};
    out << "sinks = [\"out\"]\n\n[database]\nurl = \"" << dsn << "\"\n\n[runtime]\n"
        << runtime_toml << "\n\n[stages.slow]\nhandler = \"script\"\nentry = true\n"
        << "concurrency = 4\noutcomes = [\"ok\"]\nroutes = { ok = \"out\" }\n"
        << "command = [\"sh\", \"-c\", \"cat >/dev/null; sleep " << seconds
        << "; echo '{\\\"outcome\\\": \\\"ok\\\"}'\"]\n";
    return path;
  }

  std::map<std::string, std::vector<std::string>> peers_by_node() {
    std::map<std::string, std::vector<std::string>> out;
    pqxx::connection c{dsn};
    pqxx::work tx{c};
    // Until the first node has migrated the fresh database, there is no table.
    if (tx.exec1("SELECT to_regclass('turing.nodes') IS NULL")[0].as<bool>())
      return out;
    for (const auto& row :
         tx.exec("SELECT name, peers::text FROM turing.nodes WHERE stopped_at IS NULL"))
      out[row[0].as<std::string>()] =
          nlohmann::json::parse(row[1].as<std::string>()).get<std::vector<std::string>>();
    return out;
  }

  /// Every node in `names` is connected to every other.
  bool fully_connected(const std::vector<std::string>& names) {
    auto peers = peers_by_node();
    for (const auto& n : names) {
      auto it = peers.find(n);
      if (it == peers.end() || it->second.size() + 1 < names.size())
        return false;
    }
    return true;
  }

  /// -1 until the first node has migrated the fresh database.
  int64_t sql_count(const std::string& query) {
    pqxx::connection c{dsn};
    pqxx::work tx{c};
    if (tx.exec1("SELECT to_regclass('turing.messages') IS NULL")[0].as<bool>())
      return -1;
    return tx.exec1(query)[0].as<int64_t>();
  }

  /// Whether the run has no pending item within four minutes.
  bool run_finishes(int64_t run_id) {
    return eventually(
        [&] {
          turing::persistence::pg_store s{dsn};
          auto run = s.run(run_id);
          return run && run->pending == 0;
        },
        240s);
  }

  int64_t leased_by(const std::string& node) {
    return sql_count("SELECT count(*) FROM turing.messages WHERE state = 'running' AND "
                     "owner_node = '" +
                     node + "'");
  }

  void enqueue_numbered(const std::filesystem::path& config, const std::string& stage, size_t n) {
    std::string out;
    CAF_REQUIRE(turing_ok(dir,
                          {"enqueue", "--config", config.string(), "--stage", stage, "--file",
                           write_numbered_items(dir, n).string()},
                          out));
  }

  void stop(child_process& p, const std::string& name) {
    p.signal(SIGTERM);
    auto rc = p.wait(60s);
    CAF_CHECK_EQUAL(rc, 0);
    if (rc != 0)
      CAF_MESSAGE(name << " exited " << rc << ":\n" << p.output());
  }
};

/// n1 and n2 on `base` (one-stage slow script pipelines), connected, with
/// `items` enqueued and n2 holding leases on some of them.
struct busy_pair {
  child_process n1;
  child_process n2;
  busy_pair(cluster_fixture& f, const std::filesystem::path& base, size_t items)
      : n1(start_turing(f.dir, {"run", "--config", f.node_config(base, "n1", free_port()).string()},
                        "n1.log")),
        n2(start_turing(f.dir, {"run", "--config", f.node_config(base, "n2", free_port()).string()},
                        "n2.log")) {
    CAF_REQUIRE(eventually([&] { return f.fully_connected({"n1", "n2"}); }, 60s));
    f.enqueue_numbered(base, "slow", items);
    CAF_REQUIRE(eventually([&] { return f.leased_by("n2") > 0; }, 30s));
  }
};

/// Milliseconds from `since` until `condition` held (-1 if it did not within `timeout`).
template <class F>
int64_t ms_until(std::chrono::steady_clock::time_point since, F condition,
                 std::chrono::milliseconds timeout) {
  if (!eventually(condition, timeout))
    return -1;
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               since)
      .count();
}

} // namespace

CAF_TEST_FIXTURE_SCOPE(cluster_tests, cluster_fixture)

CAF_TEST(three_nodes_with_certificates_connect_and_run_the_owl_pipeline_to_one_sink_per_item) {
  constexpr size_t items = 60;
  model_simulator sim{dir, {"--latency-scale", "0.002"}};
  auto base = write_owl_config(dir, dsn, sim.endpoint());
  std::vector<std::string> names{"n1", "n2", "n3"};
  auto start = [&](const std::string& n) {
    return start_turing(dir, {"run", "--config", node_config(base, n, free_port()).string()},
                        n + ".log");
  };
  auto n1 = start("n1");
  auto n2 = start("n2");
  auto n3 = start("n3");
  std::vector<child_process*> nodes{&n1, &n2, &n3};
  bool connected = eventually([&] { return fully_connected(names); }, 60s);
  if (!connected)
    for (size_t i = 0; i < nodes.size(); ++i)
      CAF_MESSAGE(names[i] << ":\n" << nodes[i]->output());
  CAF_REQUIRE(connected);
  for (auto* n : nodes)
    CAF_CHECK(n->output().find("certificate CN verified") != std::string::npos);

  auto run_id = enqueue(base, items);
  CAF_CHECK(run_finishes(run_id));
  for (size_t i = 0; i < nodes.size(); ++i)
    stop(*nodes[i], names[i]);
  check_end_state(run_id, items);
  auto end = read_chain_end_state(dsn);
  for (const auto& [node, n] : end.completions_by_node)
    CAF_MESSAGE(node << " completed " << n << " message(s)");
}

CAF_TEST(a_sigkilled_node_s_leases_return_to_ready_when_its_connection_drops) {
  constexpr size_t items = 24;
  // lease_ttl 30 s: a return within half of it cannot be the rescuer's expiry.
  auto base = slow_script_config(1.5, "lease_ttl = \"30s\"\npoll_interval = \"200ms\"");
  busy_pair nodes{*this, base, items};
  auto& n1 = nodes.n1;
  auto killed_at = std::chrono::steady_clock::now();
  nodes.n2.signal(SIGKILL);
  nodes.n2.wait(10s);
  auto ms = ms_until(
      killed_at, [&] { return leased_by("n2") == 0; }, 60s);
  CAF_MESSAGE("n2's leases were back in ready " << ms << " ms after its SIGKILL");
  CAF_REQUIRE(ms >= 0);
  CAF_CHECK_LESS(ms, 15000);
  CAF_CHECK(n1.output().find("cluster: node n2 at") != std::string::npos &&
            n1.output().find("refuses connections: the process is gone") != std::string::npos);

  CAF_REQUIRE(eventually(
      [&] { return sql_count("SELECT count(*) FROM turing.items WHERE finished_at IS NULL") == 0; },
      120s));
  stop(n1, "n1");
  auto end = read_chain_end_state(dsn);
  CAF_CHECK_EQUAL(end.finished_in_out, static_cast<int64_t>(items));
  CAF_CHECK_EQUAL(end.completed_twice, 0);
  CAF_CHECK(end.attempts_by_result["lost"] > 0);
}

CAF_TEST(a_node_stopped_past_the_connection_timeout_finds_its_late_results_fenced) {
  constexpr size_t items = 16;
  // The stopped node's own lease keeper must not notice the loss first (it
  // would abandon its executions): its heartbeat is far away.
  auto base = slow_script_config(
      3, "lease_ttl = \"120s\"\nheartbeat_interval = \"60s\"\npoll_interval = \"200ms\"");
  busy_pair nodes{*this, base, items};
  auto& n1 = nodes.n1;
  auto& n2 = nodes.n2;
  auto stopped_at = std::chrono::steady_clock::now();
  n2.signal(SIGSTOP);
  auto ms = ms_until(
      stopped_at, [&] { return leased_by("n2") == 0; }, 60s);
  CAF_MESSAGE("n2's leases were back in ready " << ms << " ms after its SIGSTOP");
  CAF_CHECK(ms >= 0);
  CAF_CHECK(n1.output().find("no report in turing.nodes") != std::string::npos);
  n2.signal(SIGCONT);

  bool fenced = eventually(
      [&] {
        return sql_count("SELECT count(*) FROM turing.attempts WHERE result = 'late_result' AND "
                         "node = 'n2'") > 0;
      },
      60s);
  CAF_CHECK(fenced);
  CAF_REQUIRE(eventually(
      [&] { return sql_count("SELECT count(*) FROM turing.items WHERE finished_at IS NULL") == 0; },
      120s));
  stop(n1, "n1");
  stop(n2, "n2");
  if (!fenced)
    CAF_MESSAGE("n1:\n" << n1.output() << "\nn2:\n" << n2.output());
  auto end = read_chain_end_state(dsn);
  CAF_CHECK_EQUAL(end.finished_in_out, static_cast<int64_t>(items));
  CAF_CHECK_EQUAL(end.completed_twice, 0);
}

CAF_TEST(a_node_with_a_certificate_from_another_ca_is_refused) {
  auto other = dir.path / "other-ca";
  make_certs(other, {"n3"});
  auto base = write_pass_chain_config(dir, "url = \"" + dsn + "\"", 1, "");
  int port3 = free_port();
  auto n1 = start_turing(dir, {"run", "--config", node_config(base, "n1", free_port()).string()},
                         "n1.log");
  auto n3 = start_turing(dir, {"run", "--config", node_config(base, "n3", port3, other).string()},
                         "n3.log");
  auto refusal = "node n3 at 127.0.0.1:" + std::to_string(port3) + " not connected: refused";
  bool refused = eventually([&] { return n1.output().find(refusal) != std::string::npos; }, 60s);
  if (!refused)
    CAF_MESSAGE("n1:\n" << n1.output() << "\nn3:\n" << n3.output());
  CAF_CHECK(refused);
  auto peers = peers_by_node();
  CAF_CHECK(peers["n1"].empty());
  CAF_CHECK(peers["n3"].empty());
  stop(n1, "n1");
  stop(n3, "n3");
}

CAF_TEST(distributed_mode_without_certificates_refuses_to_start_with_one_line) {
  auto base = write_pass_chain_config(dir, "url = \"" + dsn + "\"", 1, "");
  auto path = dir.path / "bare.toml";
  {
    std::ofstream out{path};
    out << read_text(base) << "\n[cluster]\nlisten = \"127.0.0.1:" << free_port() << "\"\n";
  }
  std::string out;
  CAF_CHECK_EQUAL(run_turing(dir, {"run", "--config", path.string()}, &out), 2);
  CAF_CHECK(out.find("distributed mode needs certificate, key and ca (missing: certificate, key, "
                     "ca)") != std::string::npos);
}

CAF_TEST(a_node_name_other_than_its_certificate_s_cn_refuses_to_start) {
  auto base = write_pass_chain_config(dir, "url = \"" + dsn + "\"", 1, "");
  std::string out;
  CAF_CHECK_EQUAL(
      run_turing(dir,
                 {"run", "--config", node_config(base, "n1", free_port()).string(), "--node", "n2"},
                 &out),
      2);
  CAF_CHECK(out.find("node name n2 (from --node) is not the CN") != std::string::npos);
}

CAF_TEST(a_model_placed_on_one_node_holds_its_concurrency_for_the_whole_cluster) {
  constexpr size_t items = 120;
  model_simulator sim{dir, {"--latency-scale", "0.01"}};
  // Every model on n1; both nodes run every stage, so n2's calls go to n1.
  auto base = write_owl_config(dir, dsn, sim.endpoint(),
                               {{"model = \"mistral-nemo:12b\"\nconcurrency = 8",
                                 "model = \"mistral-nemo:12b\"\nconcurrency = 4"}});
  std::string placement = "\n[nodes.n1]\nmodels = [\"mistral\", \"qwen\", \"gemma\"]\n";
  auto c1 = node_config(base, "n1", free_port(), {}, placement);
  auto c2 = node_config(base, "n2", free_port(), {}, placement);
  auto n1 = start_turing(dir, {"run", "--config", c1.string()}, "n1.log");
  auto n2 = start_turing(dir, {"run", "--config", c2.string()}, "n2.log");
  CAF_REQUIRE(eventually([&] { return fully_connected({"n1", "n2"}); }, 60s));
  auto run_id = enqueue(base, items);
  CAF_CHECK(run_finishes(run_id));

  std::string status;
  CAF_CHECK(turing_ok(dir, {"status", "--config", c2.string(), "--json"}, status));
  stop(n1, "n1");
  stop(n2, "n2");
  check_end_state(run_id, items);

  httplib::Client client{"127.0.0.1", sim.port};
  auto stats = client.Get("/stats");
  CAF_REQUIRE(stats && stats->status == 200);
  auto peak = nlohmann::json::parse(stats->body)["models"]["mistral-nemo:12b"]["peak_in_flight"]
                  .get<int64_t>();
  CAF_MESSAGE("mistral (concurrency 4, two nodes of 8 alma and 8 clara_a slots each): at most "
              << peak << " call(s) in flight at the server");
  CAF_CHECK_LESS_OR_EQUAL(peak, 4);
  CAF_CHECK_GREATER_OR_EQUAL(peak, 2);
  auto relayed = sql_count("SELECT count(*) FROM turing.attempts WHERE stage = 'alma' AND "
                           "result = 'completed' AND node = 'n2'");
  CAF_MESSAGE("n2 completed " << relayed << " alma call(s) through n1's endpoint");
  CAF_CHECK_GREATER(relayed, 0);
  CAF_CHECK(n2.output().find("relaying calls to its endpoint on node n1") != std::string::npos);

  auto view = nlohmann::json::parse(status.substr(status.find('{')));
  for (const auto& n : view["nodes"])
    if (n["name"] == "n2") {
      CAF_CHECK_EQUAL(n["hosts"]["models"].size(), 0u);
      CAF_CHECK_EQUAL(n["peers"], nlohmann::json::array({"n1"}));
    }
}

CAF_TEST_FIXTURE_SCOPE_END()
