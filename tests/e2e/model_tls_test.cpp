// https model endpoints (issue 9, defect 2): a private CA from
// scripts/make-test-ca, turing-model-sim serving TLS as a child process, and
// the model client verifying it, refusing it, or skipping the check.
#define CAF_SUITE model_tls

#include "actors/model_client.hpp"
#include "actors/model_endpoint.hpp"
#include "messages/registry.hpp"

#include <caf/all.hpp>
#include <caf/test/unit_test.hpp>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <spawn.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

extern char** environ;

using namespace turing;
using namespace std::chrono_literals;

namespace {

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in{path};
  return {std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

/// A fresh directory under /tmp holding the test CA, removed at exit.
struct ca_dir {
  ca_dir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "turing-tls-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr)
      throw std::runtime_error("mkdtemp failed");
    path = pattern;
    // The same script users run, so the test covers it too.
    auto command = std::string{TURING_SOURCE_DIR} + "/scripts/make-test-ca '" + path.string() +
                   "/ca' 2 > /dev/null";
    made = std::system(command.c_str()) == 0;
  }
  ~ca_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::filesystem::path file(const std::string& name) const { return path / "ca" / name; }
  std::filesystem::path path;
  bool made = false;
};

const ca_dir& test_ca() {
  static const ca_dir dir;
  return dir;
}

/// turing-model-sim serving https with the test CA's server certificate,
/// on a free port of `host`, read from --port-file.
struct tls_sim {
  explicit tls_sim(const std::string& host = "127.0.0.1") {
    const auto& ca = test_ca();
    CAF_REQUIRE(ca.made);
    port_file = (ca.path / ("port-" + host)).string();
    std::vector<std::string> args{TURING_MODEL_SIM_EXE,
                                  "--host",
                                  host,
                                  "--port",
                                  "0",
                                  "--port-file",
                                  port_file,
                                  "--latency-scale",
                                  "0.0001",
                                  "--log-level",
                                  "warn",
                                  "--tls-cert",
                                  ca.file("server.pem").string(),
                                  "--tls-key",
                                  ca.file("server.key").string()};
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    CAF_REQUIRE_EQUAL(posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ), 0);
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!std::filesystem::exists(port_file) && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(10ms);
    CAF_REQUIRE(std::filesystem::exists(port_file));
    port = std::stoi(read_text(port_file));
  }
  ~tls_sim() {
    if (pid > 0) {
      kill(pid, SIGTERM);
      waitpid(pid, nullptr, 0);
    }
    std::filesystem::remove(port_file);
  }
  tls_sim(const tls_sim&) = delete;
  tls_sim& operator=(const tls_sim&) = delete;

  std::string port_file;
  pid_t pid = -1;
  int port = 0;
};

config::model_config model_at(const std::string& endpoint) {
  config::model_config m;
  m.name = "m";
  m.api = config::model_api::openai;
  m.endpoint = endpoint;
  m.model = "gemma2";
  return m;
}

const std::string prompt = "task: classify\nskill: Welding";

actors::model_reply call(const config::model_config& m, const std::string& key = {}) {
  return actors::call_model(m, key, "", prompt, 5000ms);
}

/// Everything spdlog's default logger writes while it lives, at every level.
struct captured_log {
  captured_log() : sink(std::make_shared<spdlog::sinks::ostream_sink_mt>(text)) {
    previous = spdlog::default_logger();
    auto logger = std::make_shared<spdlog::logger>("captured", sink);
    logger->set_level(spdlog::level::trace);
    spdlog::set_default_logger(logger);
  }
  ~captured_log() { spdlog::set_default_logger(previous); }
  std::string str() {
    spdlog::default_logger()->flush();
    return text.str();
  }
  std::ostringstream text;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink;
  std::shared_ptr<spdlog::logger> previous;
};

/// One call through a model endpoint actor, as a stage makes it; returns
/// the error of execution_failed, or "" when the model answered.
std::string call_through_endpoint(const config::model_config& m) {
  caf::actor_system_config cfg;
  add_message_types(cfg);
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto endpoint = actors::spawn_model_endpoint(sys, m);
  self->send(endpoint, model_call{{1, 1}, "alma", "", prompt, 5000ms});
  std::string error = "no answer";
  bool done = false;
  while (!done)
    self->receive([&](execution_started&) {},
                  [&](model_answer&) {
                    error.clear();
                    done = true;
                  },
                  [&](execution_failed& f) {
                    error = f.error;
                    done = true;
                  },
                  caf::after(10s) >> [&] { done = true; });
  self->send_exit(endpoint, caf::exit_reason::user_shutdown);
  return error;
}

} // namespace

CAF_TEST(a_call_verified_against_the_ca_file_succeeds) {
  tls_sim sim;
  auto m = model_at("https://127.0.0.1:" + std::to_string(sim.port));
  m.ca_file = test_ca().file("ca.pem");
  auto reply = call(m);
  CAF_CHECK_EQUAL(reply.error, "");
  CAF_CHECK(reply.ok);
  CAF_CHECK_EQUAL(reply.http_status, 200);
  CAF_CHECK(!reply.content.empty());
  // "localhost" is in the certificate's names too.
  m.endpoint = "https://localhost:" + std::to_string(sim.port);
  reply = call(m);
  CAF_CHECK_EQUAL(reply.error, "");
  CAF_CHECK(reply.ok);
}

CAF_TEST(without_ca_file_the_system_store_rejects_the_private_ca) {
  tls_sim sim;
  auto origin = "https://127.0.0.1:" + std::to_string(sim.port);
  auto reply = call(model_at(origin));
  CAF_MESSAGE(reply.error);
  CAF_CHECK(!reply.ok);
  CAF_CHECK(!reply.retryable);
  CAF_CHECK(contains(reply.error, "TLS handshake with " + origin + " failed"));
  CAF_CHECK(contains(reply.error, "certificate could not be verified"));
  CAF_CHECK(contains(reply.error, "set ca_file"));
}

CAF_TEST(a_certificate_for_another_host_is_rejected) {
  // The certificate names 127.0.0.1 and localhost; 127.0.0.2 is loopback
  // too, but not in it.
  tls_sim sim{"127.0.0.2"};
  auto m = model_at("https://127.0.0.2:" + std::to_string(sim.port));
  m.ca_file = test_ca().file("ca.pem");
  auto reply = call(m);
  CAF_MESSAGE(reply.error);
  CAF_CHECK(!reply.ok);
  CAF_CHECK(contains(reply.error, "is not for host '127.0.0.2'"));
}

CAF_TEST(tls_verify_false_accepts_the_unknown_ca_and_warns_once_naming_the_model) {
  tls_sim sim;
  auto m = model_at("https://127.0.0.1:" + std::to_string(sim.port));
  m.name = "insecure";
  m.tls_verify = false;
  auto reply = call(m);
  CAF_CHECK_EQUAL(reply.error, "");
  CAF_CHECK(reply.ok);
  captured_log log;
  CAF_CHECK_EQUAL(call_through_endpoint(m), "");
  auto text = log.str();
  CAF_MESSAGE(text);
  auto first = text.find("model insecure: tls_verify = false");
  CAF_CHECK(first != std::string::npos);
  CAF_CHECK(text.find("model insecure: tls_verify = false", first + 1) == std::string::npos);
}

CAF_TEST(the_api_key_never_appears_in_a_tls_error_or_the_log) {
  tls_sim sim;
  const std::string secret = "sk-turing-test-Zq8vX3kP0wLr9mNb";
  ::setenv("TURING_TLS_TEST_KEY", secret.c_str(), 1);
  auto m = model_at("https://127.0.0.1:" + std::to_string(sim.port));
  m.api_key_env = "TURING_TLS_TEST_KEY";
  std::string error;
  std::string text;
  {
    captured_log log;
    error = call_through_endpoint(m);
    text = log.str();
  }
  CAF_MESSAGE(error);
  CAF_CHECK(contains(error, "model m [configuration]: TLS handshake with https://127.0.0.1:"));
  CAF_CHECK(contains(error, "certificate could not be verified"));
  CAF_CHECK(!contains(error, secret));
  CAF_CHECK(!contains(text, secret));
  // With the CA the same call goes through, key and all.
  m.ca_file = test_ca().file("ca.pem");
  CAF_CHECK_EQUAL(call_through_endpoint(m), "");
  ::unsetenv("TURING_TLS_TEST_KEY");
}
