// Node identity over TLS: certificates from scripts/make-node-certs, the checks of a node's own
// files, and the CN probe against real CAF nodes (caf::openssl), closed ports and silent listeners.
#define CAF_SUITE tls_identity

#include "cluster/tls_identity.hpp"

#include <arpa/inet.h>
#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <caf/openssl/all.hpp>
#include <caf/test/unit_test.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <netinet/in.h>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace turing::cluster;
using namespace std::chrono_literals;

namespace {

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

/// A fresh directory under /tmp with a CA and node certificates made by
/// scripts/make-node-certs, removed at the end of the test.
struct cert_dir {
  explicit cert_dir(const std::vector<std::string>& names) {
    std::string pattern = (std::filesystem::temp_directory_path() / "turing-certs-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr)
      throw std::runtime_error("mkdtemp failed");
    path = pattern;
    // The script users run, so the test covers it too.
    std::string command =
        std::string{TURING_SOURCE_DIR} + "/scripts/make-node-certs '" + path.string() + "'";
    for (const auto& name : names)
      command += " '" + name + "'";
    command += " --days 2 > /dev/null";
    made = std::system(command.c_str()) == 0;
  }
  cert_dir(const cert_dir&) = delete;
  cert_dir& operator=(const cert_dir&) = delete;
  ~cert_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
  tls_files node(const std::string& name) const {
    return {file(name + ".pem"), file(name + ".key"), file("ca.pem")};
  }
  std::filesystem::path path;
  bool made = false;
};

/// A CAF node's configuration with mutual TLS on `tls`'s files.
struct node_config : caf::actor_system_config {
  explicit node_config(const tls_files& tls) {
    load<caf::io::middleman>();
    load<caf::openssl::manager>();
    openssl_certificate = tls.certificate;
    openssl_key = tls.key;
    openssl_cafile = tls.ca;
  }
};

caf::behavior pong() {
  return {[](const std::string& text) { return "pong " + text; }};
}

/// A CAF node publishing a `pong` actor over TLS on 127.0.0.1, on a port the OS picks.
struct published_node {
  explicit published_node(const tls_files& tls) : cfg{tls}, sys{cfg}, actor{sys.spawn(pong)} {
    auto published = caf::openssl::publish(actor, 0, "127.0.0.1", true);
    if (!published)
      throw std::runtime_error("publish failed: " + sys.render(published.error()));
    port = *published;
  }
  published_node(const published_node&) = delete;
  published_node& operator=(const published_node&) = delete;
  // The middleman holds the published actor, and the system waits for its actors before it stops
  // the middleman: the actor has to quit first.
  ~published_node() { caf::anon_send_exit(actor, caf::exit_reason::user_shutdown); }
  node_config cfg;
  caf::actor_system sys;
  caf::actor actor;
  uint16_t port = 0;
};

/// What a CAF client node got: the reply of the remote pong actor, or why not.
struct caf_call {
  bool finished = false; // false: remote_actor still blocked after the wait
  std::string reply;
  std::string error;
};

/// A client node with `tls`'s files, on a thread of its own: caf::openssl::remote_actor to
/// 127.0.0.1:port, then a request to the actor found there. remote_actor has no timeout of its
/// own (a peer that never answers leaves it waiting), hence the thread and the bounded waits. A
/// client still blocked at its end is abandoned, system and thread, for the rest of the process:
/// destroying its system would wait for the blocked call.
class caf_client {
public:
  caf_client(const tls_files& tls, uint16_t port) : state_{std::make_shared<state>(tls)} {
    done_ = state_->done.get_future();
    thread_ = std::thread{[s = state_, port] {
      caf_call call;
      call.finished = true;
      auto remote = caf::openssl::remote_actor(s->sys, "127.0.0.1", port);
      if (!remote) {
        call.error = s->sys.render(remote.error());
      } else {
        caf::scoped_actor self{s->sys};
        self->request(*remote, 5s, std::string{"ping"})
            .receive([&](const std::string& reply) { call.reply = reply; },
                     [&](caf::error& err) { call.error = s->sys.render(err); });
      }
      s->done.set_value(std::move(call));
    }};
  }
  caf_client(const caf_client&) = delete;
  caf_client& operator=(const caf_client&) = delete;
  ~caf_client() {
    if (result(0ms).finished) {
      thread_.join(); // the system goes with state_, here
      return;
    }
    thread_.detach();
    // Reachable from a static: no leak report for it either.
    static auto* abandoned = new std::vector<std::shared_ptr<state>>;
    abandoned->push_back(std::move(state_));
  }

  /// The call, if it finishes within `wait`; `finished` false otherwise.
  caf_call result(std::chrono::milliseconds wait) {
    if (!call_.finished && done_.wait_for(wait) == std::future_status::ready)
      call_ = done_.get();
    return call_;
  }

private:
  struct state {
    explicit state(const tls_files& tls) : cfg{tls}, sys{cfg} {}
    node_config cfg;
    caf::actor_system sys;
    std::promise<caf_call> done;
  };

  std::shared_ptr<state> state_;
  std::future<caf_call> done_;
  caf_call call_;
  std::thread thread_;
};

caf_call call_over_caf(const tls_files& tls, uint16_t port, std::chrono::seconds wait) {
  caf_client client{tls, port};
  return client.result(wait);
}

/// A port on 127.0.0.1 nobody listens on: bound by the OS, then released.
uint16_t closed_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    throw std::runtime_error("cannot bind a socket");
  ::close(fd);
  return ntohs(addr.sin_port);
}

/// A TCP listener on 127.0.0.1 that never accepts: the kernel completes connections into its
/// backlog, and nobody ever answers a byte.
struct silent_listener {
  explicit silent_listener(int backlog = 16) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(fd, backlog) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
      throw std::runtime_error("cannot listen on a socket");
    port = ntohs(addr.sin_port);
  }
  silent_listener(const silent_listener&) = delete;
  silent_listener& operator=(const silent_listener&) = delete;
  ~silent_listener() { close(); }
  /// Resets the connections still waiting in the backlog.
  void close() {
    if (fd >= 0)
      ::close(fd);
    fd = -1;
  }
  int fd = -1;
  uint16_t port = 0;
};

/// The file descriptors this process has open: CAF's sockets among them.
long open_fds() {
  using it = std::filesystem::directory_iterator;
  return static_cast<long>(std::distance(it{"/proc/self/fd"}, it{}));
}

template <class F> std::chrono::milliseconds time_of(F&& f) {
  auto start = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               start);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

} // namespace

CAF_TEST(the_common_name_of_a_node_certificate_is_its_name) {
  cert_dir certs{{"node-a", "node_b.2"}};
  CAF_REQUIRE(certs.made);
  CAF_CHECK_EQUAL(certificate_common_name(certs.file("node-a.pem")), "node-a");
  CAF_CHECK_EQUAL(certificate_common_name(certs.file("node_b.2.pem")), "node_b.2");
  CAF_CHECK_EQUAL(::access(certs.file("node-a.key").c_str(), R_OK), 0);
  CAF_CHECK_EQUAL(std::filesystem::status(certs.file("node-a.key")).permissions(),
                  std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
}

CAF_TEST(a_second_run_of_make_node_certs_reuses_the_ca) {
  cert_dir certs{{"node-a"}};
  CAF_REQUIRE(certs.made);
  std::string command = std::string{TURING_SOURCE_DIR} + "/scripts/make-node-certs '" +
                        certs.path.string() + "' node-b > /dev/null";
  CAF_REQUIRE_EQUAL(std::system(command.c_str()), 0);
  CAF_CHECK_EQUAL(error_of([&] { check_tls_files(certs.node("node-a")); }), "");
  CAF_CHECK_EQUAL(error_of([&] { check_tls_files(certs.node("node-b")); }), "");
}

CAF_TEST(make_node_certs_refuses_a_name_that_is_no_node_name) {
  cert_dir certs{{"node-a"}};
  CAF_REQUIRE(certs.made);
  for (std::string name : {"'a b'", "'a/b'", "ca", "'x;y'"}) {
    std::string command = std::string{TURING_SOURCE_DIR} + "/scripts/make-node-certs '" +
                          certs.path.string() + "' " + name + " 2> /dev/null";
    CAF_CHECK_NOT_EQUAL(std::system(command.c_str()), 0);
  }
  CAF_CHECK_EQUAL(certificate_common_name(certs.file("ca.pem")).rfind("turing node CA", 0), 0u);
}

CAF_TEST(a_file_that_is_no_certificate_has_no_common_name_and_says_why) {
  cert_dir certs{{"node-a"}};
  CAF_REQUIRE(certs.made);
  auto missing = error_of([&] { certificate_common_name(certs.file("nope.pem")); });
  CAF_CHECK(contains(missing, certs.file("nope.pem")));
  CAF_CHECK(contains(missing, "no such file"));
  auto key = error_of([&] { certificate_common_name(certs.file("node-a.key")); });
  CAF_CHECK(contains(key, certs.file("node-a.key")));
  CAF_CHECK(contains(key, "not a PEM certificate"));
}

CAF_TEST(the_files_of_a_node_pass_the_check) {
  cert_dir certs{{"node-a"}};
  CAF_REQUIRE(certs.made);
  CAF_CHECK_EQUAL(error_of([&] { check_tls_files(certs.node("node-a")); }), "");
}

CAF_TEST(tls_files_signed_by_another_ca_are_refused_with_a_clear_error) {
  cert_dir certs{{"node-a"}};
  cert_dir other{{"node-x"}};
  CAF_REQUIRE(certs.made && other.made);
  auto files = certs.node("node-a");
  files.ca = other.file("ca.pem");
  auto error = error_of([&] { check_tls_files(files); });
  CAF_MESSAGE("error: " << error);
  CAF_CHECK(contains(error, certs.file("node-a.pem")));
  CAF_CHECK(contains(error, other.file("ca.pem")));
  CAF_CHECK(contains(error, "unable to get local issuer certificate"));
}

CAF_TEST(tls_files_with_a_key_of_another_certificate_are_refused_with_a_clear_error) {
  cert_dir certs{{"node-a", "node-b"}};
  CAF_REQUIRE(certs.made);
  auto files = certs.node("node-a");
  files.key = certs.file("node-b.key");
  auto error = error_of([&] { check_tls_files(files); });
  CAF_MESSAGE("error: " << error);
  CAF_CHECK(contains(error, "does not match"));
  CAF_CHECK(contains(error, certs.file("node-b.key")));
}

CAF_TEST(tls_files_of_a_certificate_for_servers_only_are_refused_for_the_client_role) {
  // A node is a TLS client too (it connects to its peers), and OpenSSL checks extendedKeyUsage.
  cert_dir certs{{"node-a"}};
  CAF_REQUIRE(certs.made);
  std::string command = "cd '" + certs.path.string() +
                        "' && openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                        "-keyout web.key -out web.csr -subj /CN=web 2> /dev/null && printf "
                        "'extendedKeyUsage=serverAuth\n' > web.ext && openssl x509 -req -in "
                        "web.csr -CA ca.pem -CAkey ca.key -days 2 -extfile web.ext -out web.pem "
                        "2> /dev/null";
  CAF_REQUIRE_EQUAL(std::system(command.c_str()), 0);
  auto error = error_of([&] { check_tls_files(certs.node("web")); });
  CAF_MESSAGE("error: " << error);
  CAF_CHECK(contains(error, "for a TLS client: unsuitable certificate purpose"));
}

CAF_TEST(tls_files_that_are_missing_are_named) {
  cert_dir certs{{"node-a"}};
  CAF_REQUIRE(certs.made);
  for (auto field : {&tls_files::certificate, &tls_files::key, &tls_files::ca}) {
    auto files = certs.node("node-a");
    files.*field = certs.file("missing.pem");
    auto error = error_of([&] { check_tls_files(files); });
    CAF_CHECK(contains(error, certs.file("missing.pem")));
    CAF_CHECK(contains(error, "no such file"));
  }
}

CAF_TEST(a_probe_of_a_published_caf_node_reads_its_common_name) {
  cert_dir certs{{"node-a", "node-b"}};
  CAF_REQUIRE(certs.made);
  published_node node{certs.node("node-a")};
  peer_identity seen;
  auto took = time_of(
      [&] { seen = probe_peer_identity("127.0.0.1", node.port, certs.node("node-b"), 3s); });
  CAF_MESSAGE("probe: " << to_string(seen.result) << " " << seen.common_name << " " << seen.error
                        << " in " << took.count() << " ms");
  CAF_CHECK_EQUAL(to_string(seen.result), std::string{"verified"});
  CAF_CHECK_EQUAL(seen.common_name, "node-a");
  CAF_CHECK_EQUAL(seen.error, "");
  // The node goes on serving CAF clients after a connection that was no CAF peer.
  auto call = call_over_caf(certs.node("node-b"), node.port, 20s);
  CAF_CHECK(call.finished);
  CAF_CHECK_EQUAL(call.error, "");
  CAF_CHECK_EQUAL(call.reply, "pong ping");
  // And can be probed again.
  auto again = probe_peer_identity("127.0.0.1", node.port, certs.node("node-b"), 3s);
  CAF_CHECK_EQUAL(again.common_name, "node-a");
}

CAF_TEST(probes_from_several_threads_at_once_all_read_the_common_name) {
  cert_dir certs{{"node-a", "node-b"}};
  CAF_REQUIRE(certs.made);
  published_node node{certs.node("node-a")};
  const auto fds_before = open_fds();
  std::vector<std::future<std::vector<peer_identity>>> probes;
  for (int i = 0; i < 4; ++i)
    probes.push_back(std::async(std::launch::async, [&] {
      std::vector<peer_identity> seen;
      for (int j = 0; j < 5; ++j)
        seen.push_back(probe_peer_identity("127.0.0.1", node.port, certs.node("node-b"), 5s));
      return seen;
    }));
  for (auto& probe : probes)
    for (const auto& seen : probe.get()) {
      CAF_CHECK_EQUAL(to_string(seen.result), std::string{"verified"});
      CAF_CHECK_EQUAL(seen.common_name, "node-a");
    }
  // The node closes its side of every probe's connection (it answers the probe's close_notify).
  auto fds_after = open_fds();
  for (int i = 0; i < 100 && fds_after > fds_before; ++i) {
    std::this_thread::sleep_for(50ms);
    fds_after = open_fds();
  }
  CAF_CHECK_LESS_OR_EQUAL(fds_after, fds_before);
}

CAF_TEST(a_probe_with_a_certificate_from_another_ca_is_rejected) {
  cert_dir certs{{"node-a", "node-b"}};
  cert_dir other{{"node-x"}};
  CAF_REQUIRE(certs.made && other.made);
  published_node node{certs.node("node-a")};
  auto seen = probe_peer_identity("127.0.0.1", node.port, other.node("node-x"), 3s);
  CAF_MESSAGE("probe: " << to_string(seen.result) << ": " << seen.error);
  CAF_CHECK_EQUAL(to_string(seen.result), std::string{"rejected"});
  CAF_CHECK_EQUAL(seen.common_name, "");
  CAF_CHECK(contains(seen.error, "certificate verify failed"));
  // CAF itself refuses the other CA's node too (or never answers it).
  caf_call refused;
  auto took = time_of([&] { refused = call_over_caf(other.node("node-x"), node.port, 10s); });
  CAF_MESSAGE("CAF client of the other CA: "
              << (refused.finished ? "failed: " + refused.error : std::string{"still waiting"})
              << " after " << took.count() << " ms");
  CAF_CHECK_EQUAL(refused.reply, "");
  CAF_CHECK(!refused.finished || !refused.error.empty());
  // Neither the rejected probe nor the refused node hurt the node.
  auto call = call_over_caf(certs.node("node-b"), node.port, 20s);
  CAF_CHECK_EQUAL(call.reply, "pong ping");
}

CAF_TEST(a_probe_reads_the_name_even_of_a_peer_that_refuses_our_certificate) {
  // Under TLS 1.3 the server checks the client's certificate after the client's handshake has
  // ended: the probe learns who the peer is, not whether it accepts us (CAF checks that).
  cert_dir certs{{"node-a"}};
  cert_dir other{{"node-x"}};
  CAF_REQUIRE(certs.made && other.made);
  published_node node{certs.node("node-a")};
  auto files = other.node("node-x");
  files.ca = certs.file("ca.pem");
  auto seen = probe_peer_identity("127.0.0.1", node.port, files, 3s);
  CAF_MESSAGE("probe: " << to_string(seen.result) << " " << seen.common_name << seen.error);
  CAF_CHECK_EQUAL(seen.common_name, "node-a");
}

CAF_TEST(a_probe_with_files_of_its_own_that_do_not_load_throws_instead_of_blaming_the_peer) {
  cert_dir certs{{"node-a", "node-b"}};
  CAF_REQUIRE(certs.made);
  published_node node{certs.node("node-a")};
  auto files = certs.node("node-b");
  files.key = certs.file("node-a.key");
  auto error = error_of([&] { probe_peer_identity("127.0.0.1", node.port, files, 3s); });
  CAF_MESSAGE("error: " << error);
  CAF_CHECK(contains(error, certs.file("node-a.key")));
  CAF_CHECK(contains(error, "mismatch"));
}

CAF_TEST(a_probe_of_a_closed_port_says_refused) {
  cert_dir certs{{"node-b"}};
  CAF_REQUIRE(certs.made);
  auto port = closed_port();
  peer_identity seen;
  auto took =
      time_of([&] { seen = probe_peer_identity("127.0.0.1", port, certs.node("node-b"), 3s); });
  CAF_MESSAGE("probe: " << to_string(seen.result) << ": " << seen.error << " in " << took.count()
                        << " ms");
  CAF_CHECK_EQUAL(to_string(seen.result), std::string{"refused"});
  CAF_CHECK(contains(seen.error, "refused"));
  CAF_CHECK_LESS(took.count(), 1000);
}

CAF_TEST(a_probe_of_a_listener_that_never_answers_times_out_within_its_bound) {
  cert_dir certs{{"node-b"}};
  CAF_REQUIRE(certs.made);
  silent_listener listener;
  const auto timeout = 400ms;
  peer_identity seen;
  auto took = time_of([&] {
    seen = probe_peer_identity("127.0.0.1", listener.port, certs.node("node-b"), timeout);
  });
  CAF_MESSAGE("probe: " << to_string(seen.result) << ": " << seen.error << " in " << took.count()
                        << " ms");
  CAF_CHECK_EQUAL(to_string(seen.result), std::string{"timeout"});
  CAF_CHECK(contains(seen.error, "handshake"));
  // A correctness bound, not a benchmark: the slack covers a loaded machine's scheduling.
  CAF_CHECK_GREATER_OR_EQUAL(took.count(), (timeout - 10ms).count());
  CAF_CHECK_LESS(took.count(), (timeout + 300ms).count());
}

CAF_TEST(a_probe_of_a_listener_with_a_full_backlog_times_out_while_connecting) {
  cert_dir certs{{"node-b"}};
  CAF_REQUIRE(certs.made);
  // Backlog 0 holds one connection; the kernel drops the SYNs of the next ones, so their
  // connect never finishes.
  silent_listener listener{0};
  int filler[2];
  for (int& fd : filler) {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(listener.port);
    ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  }
  std::this_thread::sleep_for(50ms);
  const auto timeout = 400ms;
  peer_identity seen;
  auto took = time_of([&] {
    seen = probe_peer_identity("127.0.0.1", listener.port, certs.node("node-b"), timeout);
  });
  for (int fd : filler)
    ::close(fd);
  CAF_MESSAGE("probe: " << to_string(seen.result) << ": " << seen.error << " in " << took.count()
                        << " ms");
  CAF_CHECK_EQUAL(to_string(seen.result), std::string{"timeout"});
  CAF_CHECK_LESS(took.count(), (timeout + 300ms).count());
}

CAF_TEST(caf_remote_actor_waits_on_a_silent_listener_until_the_connection_goes) {
  // Why the probe has a timeout of its own: CAF's remote_actor has none.
  cert_dir certs{{"node-b"}};
  CAF_REQUIRE(certs.made);
  silent_listener listener;
  auto seen = probe_peer_identity("127.0.0.1", listener.port, certs.node("node-b"), 300ms);
  CAF_CHECK_EQUAL(to_string(seen.result), std::string{"timeout"});
  caf_client client{certs.node("node-b"), listener.port};
  auto call = client.result(2s);
  CAF_CHECK(!call.finished);
  listener.close();
  call = client.result(20s);
  CAF_MESSAGE("CAF client after the listener closed: "
              << (call.finished ? "returned: " + call.error : std::string{"still waiting"}));
  CAF_CHECK(call.finished);
  CAF_CHECK_EQUAL(call.reply, "");
}
