// The model client against a real local HTTP server that emulates Ollama and
// OpenAI-compatible endpoints (round trips, HTTP errors, garbage, hangs,
// refused connections), and check_reply on the shapes models really return.
#define CAF_SUITE model_client

#include "actors/model_client.hpp"
#include "messages/execution.hpp"

#include <arpa/inet.h>
#include <caf/test/unit_test.hpp>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <httplib.h>
#include <mutex>
#include <netinet/in.h>
#include <nlohmann/json.hpp>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace turing;
using namespace turing::actors;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

/// What the client sent, as the server saw it.
struct recorded_request {
  std::string path;
  std::string authorization;
  std::string content_type;
  json body;
};

/// A real httplib::Server on 127.0.0.1, an ephemeral port, its own thread.
/// Every POST is recorded and answered by `respond`, which a test sets before
/// its call. Checks run on the test thread, from the record, because CAF's
/// check macros are not meant for other threads.
class fake_server {
public:
  using responder = std::function<void(const httplib::Request&, httplib::Response&)>;

  fake_server() {
    server_.Post(".*", [this](const httplib::Request& req, httplib::Response& res) {
      responder respond;
      {
        std::lock_guard<std::mutex> guard{mtx_};
        recorded_request r;
        r.path = req.path;
        r.authorization = req.get_header_value("Authorization");
        r.content_type = req.get_header_value("Content-Type");
        r.body = json::parse(req.body, nullptr, false);
        requests_.push_back(std::move(r));
        respond = respond_;
      }
      if (respond)
        respond(req, res);
      else
        res.status = 500;
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread{[this] { server_.listen_after_bind(); }};
    // Bounded poll: listen_after_bind flips is_running from its own thread.
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!server_.is_running() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(1ms);
  }

  ~fake_server() {
    release();
    server_.stop();
    thread_.join();
  }

  fake_server(const fake_server&) = delete;
  fake_server& operator=(const fake_server&) = delete;

  bool running() const { return port_ > 0 && server_.is_running(); }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }

  void respond_with(responder respond) {
    std::lock_guard<std::mutex> guard{mtx_};
    respond_ = std::move(respond);
  }

  /// Answers every request with `status` and `body`.
  void answer(int status, std::string body) {
    respond_with([status, body](const httplib::Request&, httplib::Response& res) {
      res.status = status;
      res.set_content(body, "application/json");
    });
  }

  /// Holds every request until release() (or a 10 s safety bound), so a
  /// test can outlast its client's timeout and still stop the server at once.
  void hang() {
    respond_with([this](const httplib::Request&, httplib::Response& res) {
      std::unique_lock<std::mutex> guard{mtx_};
      cv_.wait_for(guard, 10s, [this] { return released_; });
      res.set_content("{}", "application/json");
    });
  }

  /// Answers 200 with `lines` sent one at a time, `gap` apart (chunked
  /// transfer, as a streaming server does); with `stall`, holds the
  /// connection after the lines until release() instead of ending it.
  void stream(std::vector<std::string> lines, std::chrono::milliseconds gap,
              std::string content_type, bool stall = false) {
    respond_with([this, lines, gap, content_type, stall](const httplib::Request&,
                                                         httplib::Response& res) {
      res.set_chunked_content_provider(content_type,
                                       [this, lines, gap, stall](size_t, httplib::DataSink& sink) {
                                         for (const auto& line : lines) {
                                           sink.write(line.data(), line.size());
                                           std::this_thread::sleep_for(gap);
                                         }
                                         if (stall) {
                                           std::unique_lock<std::mutex> guard{mtx_};
                                           cv_.wait_for(guard, 10s, [this] { return released_; });
                                         }
                                         sink.done();
                                         return true;
                                       });
    });
  }

  void release() {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      released_ = true;
    }
    cv_.notify_all();
  }

  std::vector<recorded_request> requests() {
    std::lock_guard<std::mutex> guard{mtx_};
    return requests_;
  }

private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = -1;
  std::mutex mtx_;
  std::condition_variable cv_;
  bool released_ = false;
  responder respond_;
  std::vector<recorded_request> requests_;
};

/// A port bound but not listening: connecting to it is refused for as long
/// as this object holds it, and nobody else can take it meanwhile.
class refusing_port {
public:
  refusing_port() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof addr;
    if (fd_ >= 0 && ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
      port_ = ntohs(addr.sin_port);
  }
  ~refusing_port() {
    if (fd_ >= 0)
      ::close(fd_);
  }
  refusing_port(const refusing_port&) = delete;
  refusing_port& operator=(const refusing_port&) = delete;

  int port() const { return port_; }

private:
  int fd_ = -1;
  int port_ = 0;
};

config::model_config ollama_model(const std::string& endpoint) {
  config::model_config m;
  m.name = "local";
  m.api = config::model_api::ollama;
  m.endpoint = endpoint;
  m.model = "qwen2.5:7b";
  m.temperature = 0.2;
  return m;
}

config::model_config openai_model(const std::string& endpoint) {
  config::model_config m;
  m.name = "remote";
  m.api = config::model_api::openai;
  m.endpoint = endpoint;
  m.model = "gpt-4o-mini";
  m.temperature = 0.0;
  m.api_key_env = "TURING_TEST_KEY";
  return m;
}

const std::string verdict_json = R"({"verdict":"passed","domain":"technology"})";

std::string ollama_body(const std::string& content) {
  return json{{"model", "qwen2.5:7b"},
              {"message", {{"role", "assistant"}, {"content", content}}},
              {"done", true}}
      .dump();
}

std::string openai_body(const std::string& content) {
  return json{{"id", "chatcmpl-1"},
              {"object", "chat.completion"},
              {"choices", json::array({{{"index", 0},
                                        {"message", {{"role", "assistant"}, {"content", content}}},
                                        {"finish_reason", "stop"}}})}}
      .dump();
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

bool one_line(const std::string& text) {
  return text.find('\n') == std::string::npos && text.find('\r') == std::string::npos;
}

config::stage_config verdict_stage() {
  config::stage_config s;
  s.name = "alma";
  s.handler = config::handler_kind::model;
  s.outcomes = {"passed", "merged"};
  s.outcome_field = "verdict";
  s.required_fields = {"domain"};
  return s;
}

} // namespace

// -- call_model against a real server -----------------------------------------

CAF_TEST(an_ollama_chat_reply_yields_its_message_content) {
  fake_server server;
  CAF_REQUIRE(server.running());
  server.answer(200, ollama_body(verdict_json));
  auto reply =
      call_model(ollama_model(server.endpoint()), "", "You classify skills.", "Classify: SQL", 5s);
  CAF_CHECK(reply.ok);
  CAF_CHECK_EQUAL(reply.content, verdict_json);
  CAF_CHECK_EQUAL(reply.http_status, 200);
  CAF_CHECK_EQUAL(reply.error, "");
  CAF_CHECK(reply.latency_ms > 0);
  auto sent = server.requests();
  CAF_REQUIRE_EQUAL(sent.size(), 1u);
  CAF_CHECK_EQUAL(sent[0].path, "/api/chat");
  CAF_CHECK_EQUAL(sent[0].authorization, "");
  CAF_CHECK_EQUAL(sent[0].content_type, "application/json");
  const auto& body = sent[0].body;
  CAF_CHECK_EQUAL(body.value("model", ""), "qwen2.5:7b");
  CAF_CHECK_EQUAL(body.value("stream", false), true); // streams by default
  CAF_CHECK_EQUAL(body.value("format", ""), "json");
  CAF_CHECK_EQUAL(body["options"].value("temperature", -1.0), 0.2);
  CAF_CHECK(!body.contains("response_format"));
  auto expected = json::array({{{"role", "system"}, {"content", "You classify skills."}},
                               {{"role", "user"}, {"content", "Classify: SQL"}}});
  CAF_CHECK_EQUAL(body["messages"], expected);
}

CAF_TEST(an_openai_reply_yields_the_first_choice_and_sends_the_bearer_token) {
  fake_server server;
  CAF_REQUIRE(server.running());
  server.answer(200, openai_body(verdict_json));
  auto reply = call_model(openai_model(server.endpoint()), "sk-test", "", "Classify: SQL", 5s);
  CAF_CHECK(reply.ok);
  CAF_CHECK_EQUAL(reply.content, verdict_json);
  auto sent = server.requests();
  CAF_REQUIRE_EQUAL(sent.size(), 1u);
  CAF_CHECK_EQUAL(sent[0].path, "/v1/chat/completions");
  CAF_CHECK_EQUAL(sent[0].authorization, "Bearer sk-test");
  const auto& body = sent[0].body;
  CAF_CHECK_EQUAL(body.value("model", ""), "gpt-4o-mini");
  CAF_CHECK_EQUAL(body.value("temperature", -1.0), 0.0);
  CAF_CHECK_EQUAL(body["response_format"], (json{{"type", "json_object"}}));
  CAF_CHECK(!body.contains("format"));
  CAF_CHECK(!body.contains("options"));
  // No system prompt, no system message.
  CAF_CHECK_EQUAL(body["messages"],
                  json::array({{{"role", "user"}, {"content", "Classify: SQL"}}}));
}

CAF_TEST(an_endpoint_path_prefix_is_kept_before_the_request_path) {
  fake_server server;
  CAF_REQUIRE(server.running());
  server.answer(200, openai_body(verdict_json));
  auto reply = call_model(openai_model(server.endpoint() + "/proxy/ollama/"), "", "", "x", 5s);
  CAF_CHECK(reply.ok);
  auto sent = server.requests();
  CAF_REQUIRE_EQUAL(sent.size(), 1u);
  CAF_CHECK_EQUAL(sent[0].path, "/proxy/ollama/v1/chat/completions");
  CAF_CHECK_EQUAL(sent[0].authorization, "");
}

CAF_TEST(http_500_is_a_retryable_error_with_its_status) {
  fake_server server;
  CAF_REQUIRE(server.running());
  server.answer(500, "{\"error\":\"llama runner process has terminated\"}\nsecond line");
  auto model = ollama_model(server.endpoint());
  auto reply = call_model(model, "", "", "x", 5s);
  CAF_CHECK(!reply.ok);
  CAF_CHECK(reply.retryable);
  CAF_CHECK_EQUAL(reply.http_status, 500);
  CAF_CHECK(contains(reply.error, "HTTP 500 from " + server.endpoint() + "/api/chat: "));
  CAF_CHECK(contains(reply.error, "llama runner process has terminated"));
  CAF_CHECK(one_line(reply.error));
  CAF_CHECK(!reply.unavailable); // the server answered: the call failed, not the server
}

CAF_TEST(http_502_503_504_say_the_server_is_unavailable) {
  for (int status : {502, 503, 504}) {
    fake_server server;
    CAF_REQUIRE(server.running());
    server.answer(status, "upstream connect error");
    auto reply = call_model(ollama_model(server.endpoint()), "", "", "x", 5s);
    CAF_CHECK(!reply.ok);
    CAF_CHECK(reply.retryable);
    CAF_CHECK(reply.unavailable);
    CAF_CHECK_EQUAL(reply.http_status, status);
  }
}

CAF_TEST(http_429_is_back_pressure_with_its_retry_after) {
  fake_server server;
  CAF_REQUIRE(server.running());
  server.respond_with([](const httplib::Request&, httplib::Response& res) {
    res.status = 429;
    res.set_header("Retry-After", "7");
    res.set_content("{\"error\":\"rate limit\"}", "application/json");
  });
  auto reply = call_model(ollama_model(server.endpoint()), "", "", "x", 5s);
  CAF_CHECK(!reply.ok);
  CAF_CHECK(reply.retryable);
  CAF_CHECK(!reply.unavailable);
  CAF_CHECK_EQUAL(reply.fault, std::string{model_fault::throttled});
  CAF_REQUIRE(reply.retry_after.has_value());
  CAF_CHECK_EQUAL(reply.retry_after->count(), 7000);
}

CAF_TEST(http_503_is_back_pressure_only_with_retry_after_or_a_busy_server) {
  fake_server server;
  CAF_REQUIRE(server.running());
  server.answer(503, "{\"error\":\"server busy, please try again.  maximum pending requests "
                     "exceeded\"}");
  auto busy = call_model(ollama_model(server.endpoint()), "", "", "x", 5s);
  CAF_CHECK_EQUAL(busy.fault, std::string{model_fault::throttled});
  CAF_CHECK(!busy.unavailable);
  CAF_CHECK(!busy.retry_after);
  server.answer(503, "no healthy upstream");
  auto gone = call_model(ollama_model(server.endpoint()), "", "", "x", 5s);
  CAF_CHECK_EQUAL(gone.fault, std::string{model_fault::unavailable});
  CAF_CHECK(gone.unavailable);
}

CAF_TEST(a_context_length_error_is_a_context_overflow_not_retried) {
  fake_server server;
  CAF_REQUIRE(server.running());
  server.answer(400, "{\"error\":{\"message\":\"This model's maximum context length is 8192 "
                     "tokens\",\"code\":\"context_length_exceeded\"}}");
  auto reply = call_model(ollama_model(server.endpoint()), "", "", "x", 5s);
  CAF_CHECK_EQUAL(reply.fault, std::string{model_fault::context_overflow});
  CAF_CHECK(!reply.retryable);
  server.answer(400, "{\"error\":\"invalid options\"}");
  auto other = call_model(ollama_model(server.endpoint()), "", "", "x", 5s);
  CAF_CHECK_EQUAL(other.fault, std::string{model_fault::http_status});
}

CAF_TEST(retry_after_reads_seconds_and_http_dates_and_refuses_the_rest) {
  auto now = std::chrono::system_clock::from_time_t(1445412480); // Wed, 21 Oct 2015 07:28:00 GMT
  CAF_CHECK_EQUAL(parse_retry_after("120", now)->count(), 120000);
  CAF_CHECK_EQUAL(parse_retry_after(" 0 ", now)->count(), 0);
  CAF_CHECK_EQUAL(parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now)->count(), 30000);
  CAF_CHECK_EQUAL(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now)->count(), 0); // past
  CAF_CHECK_EQUAL(parse_retry_after("99999999999", now)->count(), 3600000);             // capped
  CAF_CHECK(!parse_retry_after("soon", now));
  CAF_CHECK(!parse_retry_after("-5", now));
  CAF_CHECK(!parse_retry_after("", now));
}

CAF_TEST(failures_name_their_fault_class) {
  fake_server server;
  CAF_REQUIRE(server.running());
  server.answer(200, "not json at all");
  CAF_CHECK_EQUAL(call_model(ollama_model(server.endpoint()), "", "", "x", 5s).fault,
                  std::string{model_fault::garbage_reply});
  server.answer(500, "boom");
  CAF_CHECK_EQUAL(call_model(ollama_model(server.endpoint()), "", "", "x", 5s).fault,
                  std::string{model_fault::http_status});
  server.hang();
  CAF_CHECK_EQUAL(call_model(ollama_model(server.endpoint()), "", "", "x", 300ms).fault,
                  std::string{model_fault::timeout});
}

CAF_TEST(a_streamed_ollama_reply_is_joined_from_its_chunks) {
  fake_server server;
  CAF_REQUIRE(server.running());
  server.stream({R"({"message":{"role":"assistant","content":"{\"dom"},"done":false})"
                 "\n",
                 R"({"message":{"role":"assistant","content":"ain\": \"data\"}"},"done":false})"
                 "\n",
                 R"({"message":{"role":"assistant","content":""},"done":true,"eval_count":3})"
                 "\n"},
                20ms, "application/x-ndjson");
  auto reply = call_model(ollama_model(server.endpoint()), "", "", "x", 5s);
  CAF_CHECK(reply.ok);
  CAF_CHECK_EQUAL(reply.content, R"({"domain": "data"})");
}

CAF_TEST(ollamas_load_duration_is_read_from_the_last_line_or_the_one_object) {
  // Nanoseconds on the wire; the GPU scheduler refines its swap cost from it.
  auto streamed = read_streamed_reply(
      config::model_api::ollama, "application/x-ndjson",
      "{\"message\":{\"content\":\"{}\"},\"done\":false}\n"
      "{\"message\":{\"content\":\"\"},\"done\":true,\"load_duration\":1500000000}\n");
  CAF_REQUIRE(streamed.content.has_value());
  CAF_CHECK_EQUAL(streamed.load_ms, 1500.0);
  auto whole =
      read_streamed_reply(config::model_api::ollama, "application/json",
                          R"({"message":{"content":"{}"},"done":true,"load_duration":250000000})");
  CAF_REQUIRE(whole.content.has_value());
  CAF_CHECK_EQUAL(whole.load_ms, 250.0);
  auto none = read_streamed_reply(config::model_api::ollama, "application/json",
                                  R"({"message":{"content":"{}"},"done":true})");
  CAF_CHECK_EQUAL(none.load_ms, 0.0);
}

CAF_TEST(a_streamed_openai_reply_is_joined_from_its_deltas) {
  fake_server server;
  CAF_REQUIRE(server.running());
  server.stream({"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n",
                 "data: {\"choices\":[{\"delta\":{\"content\":\"{\\\"ok\\\"\"}}]}\n\n",
                 ": keep-alive comment\n\n",
                 "data: {\"choices\":[{\"delta\":{\"content\":\": 1}\"}}]}\n\n",
                 "data: [DONE]\n\n"},
                10ms, "text/event-stream");
  auto model = openai_model(server.endpoint());
  auto reply = call_model(model, "", "", "x", 5s);
  CAF_CHECK(reply.ok);
  CAF_CHECK_EQUAL(reply.content, R"({"ok": 1})");
  CAF_CHECK_EQUAL(server.requests().at(0).body.value("stream", false), true);
}

CAF_TEST(an_error_line_mid_stream_is_an_error_not_a_reply) {
  fake_server server;
  CAF_REQUIRE(server.running());
  server.stream({R"({"message":{"role":"assistant","content":"{\"dom"},"done":false})"
                 "\n",
                 R"({"error":"an unknown error was encountered while running the model"})"
                 "\n"},
                10ms, "application/x-ndjson");
  auto reply = call_model(ollama_model(server.endpoint()), "", "", "x", 5s);
  CAF_CHECK(!reply.ok);
  CAF_CHECK(reply.retryable);
  CAF_CHECK_EQUAL(reply.fault, std::string{model_fault::http_status});
  CAF_CHECK(contains(reply.error, "error in the stream after 1 chunk(s): an unknown error"));
}

CAF_TEST(a_stream_that_goes_silent_ends_at_its_idle_timeout_not_its_total_timeout) {
  fake_server server;
  CAF_REQUIRE(server.running());
  server.stream({R"({"message":{"role":"assistant","content":"{"},"done":false})"
                 "\n"},
                1ms, "application/x-ndjson", /*stall=*/true);
  auto model = ollama_model(server.endpoint());
  model.idle_timeout = 300ms;
  auto before = std::chrono::steady_clock::now();
  auto reply = call_model(model, "", "", "x", 8s);
  auto took = std::chrono::steady_clock::now() - before;
  CAF_CHECK(!reply.ok);
  CAF_CHECK_EQUAL(reply.fault, std::string{model_fault::timeout});
  CAF_CHECK(!reply.connection_dropped);
  CAF_CHECK(contains(reply.error, "(idle_timeout)"));
  CAF_CHECK(took < 3s); // far less than the 8 s total
  server.release();
}

CAF_TEST(a_slow_stream_that_keeps_sending_outlives_its_idle_timeout) {
  fake_server server;
  CAF_REQUIRE(server.running());
  std::vector<std::string> lines;
  for (int i = 0; i < 6; ++i)
    lines.push_back(R"({"message":{"role":"assistant","content":"x"},"done":false})"
                    "\n");
  lines.push_back(R"({"message":{"role":"assistant","content":""},"done":true})"
                  "\n");
  server.stream(lines, 150ms, "application/x-ndjson"); // about 1 s in all
  auto model = ollama_model(server.endpoint());
  model.idle_timeout = 400ms;
  auto reply = call_model(model, "", "", "x", 8s);
  CAF_CHECK(reply.ok);
  CAF_CHECK_EQUAL(reply.content, "xxxxxx");
}

CAF_TEST(a_404_for_an_unknown_model_is_not_retryable) {
  fake_server server;
  CAF_REQUIRE(server.running());
  server.answer(404, R"({"error":"model 'qwen2.5:7b' not found, try pulling it first"})");
  auto reply = call_model(ollama_model(server.endpoint()), "", "", "x", 5s);
  CAF_CHECK(!reply.ok);
  CAF_CHECK(!reply.retryable);
  CAF_CHECK_EQUAL(reply.http_status, 404);
  CAF_CHECK(contains(reply.error, "model 'qwen2.5:7b' not found (HTTP 404)"));
}

CAF_TEST(http_401_is_not_retryable_and_names_the_key_variable) {
  fake_server server;
  CAF_REQUIRE(server.running());
  server.answer(401, R"({"error":{"message":"Incorrect API key provided"}})");
  auto reply = call_model(openai_model(server.endpoint()), "wrong", "", "x", 5s);
  CAF_CHECK(!reply.ok);
  CAF_CHECK(!reply.retryable);
  CAF_CHECK_EQUAL(reply.http_status, 401);
  CAF_CHECK(contains(reply.error, "HTTP 401"));
  CAF_CHECK(contains(reply.error, "$TURING_TEST_KEY"));
}

CAF_TEST(an_api_key_echoed_in_an_error_body_is_masked) {
  // Proxies and debugging servers quote the request's headers back; the
  // error text goes to logs and attempt rows, the key must not.
  fake_server server;
  CAF_REQUIRE(server.running());
  const std::string secret = "sk-echo-Hq2mZ7vR4tYw8pLx";
  server.respond_with([](const httplib::Request& req, httplib::Response& res) {
    res.status = 401;
    res.set_content("bad key in: " + req.get_header_value("Authorization"), "text/plain");
  });
  auto reply = call_model(openai_model(server.endpoint()), secret, "", "x", 5s);
  CAF_CHECK(!reply.ok);
  CAF_CHECK(contains(reply.error, "bad key in: Bearer ***"));
  CAF_CHECK(!contains(reply.error, secret));
  // A 200 without content quotes the body as well.
  server.respond_with([](const httplib::Request& req, httplib::Response& res) {
    res.set_content("{\"echo\": \"" + req.get_header_value("Authorization") + "\"}",
                    "application/json");
  });
  reply = call_model(openai_model(server.endpoint()), secret, "", "x", 5s);
  CAF_CHECK(!reply.ok);
  CAF_CHECK(contains(reply.error, "Bearer ***"));
  CAF_CHECK(!contains(reply.error, secret));
}

CAF_TEST(an_https_endpoint_on_a_plain_http_server_says_so) {
  fake_server server;
  CAF_REQUIRE(server.running());
  auto endpoint = "https://" + server.endpoint().substr(7);
  auto reply = call_model(openai_model(endpoint), "", "", "x", 5s);
  CAF_MESSAGE(reply.error);
  CAF_CHECK(!reply.ok);
  CAF_CHECK(contains(reply.error, "TLS handshake with " + endpoint + " failed"));
  CAF_CHECK(contains(reply.error, "(is it a plain http:// server?)"));
}

CAF_TEST(a_garbage_body_is_reported_as_not_json) {
  fake_server server;
  CAF_REQUIRE(server.running());
  server.answer(200, std::string{"<html>\n\xff\xfe oops</html>"});
  auto reply = call_model(ollama_model(server.endpoint()), "", "", "x", 5s);
  CAF_CHECK(!reply.ok);
  CAF_CHECK(reply.retryable);
  CAF_CHECK_EQUAL(reply.http_status, 200);
  CAF_CHECK(contains(reply.error, "response is not JSON"));
  CAF_CHECK(one_line(reply.error));
  // The error goes into JSON attempt rows: broken bytes must not survive.
  CAF_CHECK_EQUAL(json(reply.error).dump().empty(), false);
}

CAF_TEST(a_reply_without_content_is_reported) {
  fake_server server;
  CAF_REQUIRE(server.running());
  server.answer(200, R"({"model":"qwen2.5:7b","done":true})");
  auto reply = call_model(ollama_model(server.endpoint()), "", "", "x", 5s);
  CAF_CHECK(!reply.ok);
  CAF_CHECK(reply.retryable);
  CAF_CHECK(contains(reply.error, "response has no message.content"));
}

CAF_TEST(a_call_slower_than_its_timeout_times_out_promptly) {
  fake_server server;
  CAF_REQUIRE(server.running());
  server.hang();
  auto started = std::chrono::steady_clock::now();
  auto reply = call_model(ollama_model(server.endpoint()), "", "", "x", 200ms);
  auto took = std::chrono::steady_clock::now() - started;
  CAF_CHECK(!reply.ok);
  CAF_CHECK(reply.retryable);
  CAF_CHECK(!reply.unavailable); // connected, then hung: a hung call, not a down server
  CAF_CHECK_EQUAL(reply.http_status, 0);
  CAF_CHECK(contains(reply.error, "timed out after 200ms"));
  CAF_CHECK(took >= 190ms);
  CAF_CHECK(took < 2s);
  CAF_CHECK(reply.latency_ms < 2000);
}

CAF_TEST(a_refused_connection_says_the_server_is_unavailable) {
  refusing_port nobody;
  CAF_REQUIRE(nobody.port() > 0);
  auto endpoint = "http://127.0.0.1:" + std::to_string(nobody.port());
  auto reply = call_model(ollama_model(endpoint), "", "", "x", 2s);
  CAF_CHECK(!reply.ok);
  CAF_CHECK(reply.retryable);
  CAF_CHECK(reply.unavailable);
  CAF_CHECK_EQUAL(reply.http_status, 0);
  CAF_CHECK(contains(reply.error, "cannot connect to " + endpoint + "/api/chat"));
  CAF_CHECK(reply.latency_ms < 2000);
}

CAF_TEST(an_https_endpoint_is_attempted_not_refused_at_build_time) {
  refusing_port nobody;
  CAF_REQUIRE(nobody.port() > 0);
  auto endpoint = "https://127.0.0.1:" + std::to_string(nobody.port());
  auto reply = call_model(openai_model(endpoint), "k", "", "x", 2s);
  CAF_CHECK(!reply.ok);
#ifdef CPPHTTPLIB_OPENSSL_SUPPORT
  CAF_CHECK(contains(reply.error, "cannot connect to " + endpoint + "/v1/chat/completions"));
#else
  CAF_CHECK(contains(reply.error, "https endpoints need cpp-httplib with OpenSSL"));
#endif
}

CAF_TEST(a_malformed_endpoint_is_not_retryable) {
  auto reply = call_model(ollama_model("127.0.0.1:11434"), "", "", "x", 1s);
  CAF_CHECK(!reply.ok);
  CAF_CHECK(!reply.retryable);
  CAF_CHECK(contains(reply.error, "not an http:// or https:// URL"));
}

// -- pure helpers --------------------------------------------------------------

CAF_TEST(request_bodies_leave_out_unset_options) {
  auto m = ollama_model("http://x");
  m.temperature.reset();
  auto body = build_request_body(m, "", "hi");
  CAF_CHECK(!body.contains("options"));
  CAF_CHECK_EQUAL(body["messages"].size(), 1u);
  auto o = openai_model("http://x");
  o.temperature.reset();
  CAF_CHECK(!build_request_body(o, "", "hi").contains("temperature"));
  CAF_CHECK_EQUAL(request_path(config::model_api::ollama), "/api/chat");
  CAF_CHECK_EQUAL(request_path(config::model_api::openai), "/v1/chat/completions");
}

CAF_TEST(extract_content_names_what_is_missing) {
  std::string error;
  CAF_CHECK(!extract_content(config::model_api::openai, R"({"choices":[]})", &error));
  CAF_CHECK(contains(error, "response has no choices[0].message.content"));
  CAF_CHECK(!extract_content(config::model_api::openai,
                             R"({"choices":[{"message":{"content":null}}]})", &error));
  CAF_CHECK(!extract_content(config::model_api::ollama, R"({"error":"out of memory"})", &error));
  CAF_CHECK(contains(error, "out of memory"));
  CAF_CHECK(!extract_content(config::model_api::ollama, "[1,2]", &error));
  CAF_CHECK(contains(error, "response has no message.content"));
  CAF_CHECK(!extract_content(config::model_api::ollama, "not json", nullptr));
  auto content = extract_content(config::model_api::ollama, ollama_body("{}"), &error);
  CAF_REQUIRE(content.has_value());
  CAF_CHECK_EQUAL(*content, "{}");
}

// -- check_reply ---------------------------------------------------------------

CAF_TEST(the_outcome_field_value_in_outcomes_is_the_outcome) {
  auto check = check_reply(verdict_stage(), verdict_json);
  CAF_REQUIRE(check.ok);
  CAF_CHECK_EQUAL(check.result.outcome, "passed");
  CAF_CHECK_EQUAL(check.result.output, json::parse(verdict_json));
  CAF_CHECK_EQUAL(check.error, "");
}

CAF_TEST(an_outcome_value_not_in_outcomes_is_an_error_listing_the_allowed) {
  auto check = check_reply(verdict_stage(), R"({"verdict":"maybe","domain":"technology"})");
  CAF_CHECK(!check.ok);
  CAF_CHECK_EQUAL(check.error,
                  "outcome field 'verdict' is 'maybe', expected one of: passed, merged");
  auto number = check_reply(verdict_stage(), R"({"verdict":3,"domain":"technology"})");
  CAF_CHECK(!number.ok);
  CAF_CHECK(contains(number.error, "is a number (3), expected one of: passed, merged"));
  auto absent = check_reply(verdict_stage(), R"({"domain":"technology"})");
  CAF_CHECK(!absent.ok);
  CAF_CHECK(contains(absent.error, "reply lacks outcome field 'verdict'"));
}

CAF_TEST(a_fixed_outcome_needs_no_outcome_field) {
  auto stage = verdict_stage();
  stage.outcome_field.clear();
  stage.fixed_outcome = "proposal";
  stage.outcomes = {"proposal"};
  auto check = check_reply(stage, R"({"domain":"technology","confidence":0.8})");
  CAF_REQUIRE(check.ok);
  CAF_CHECK_EQUAL(check.result.outcome, "proposal");
  CAF_CHECK_EQUAL(check.result.output.value("confidence", 0.0), 0.8);
}

CAF_TEST(a_missing_required_field_is_an_error) {
  auto stage = verdict_stage();
  stage.required_fields = {"domain", "reason"};
  auto check = check_reply(stage, R"({"verdict":"passed","domain":null})");
  CAF_CHECK(!check.ok);
  CAF_CHECK_EQUAL(check.error, "reply lacks required fields domain, reason (has: domain, verdict)");
}

CAF_TEST(prose_and_json_fences_around_the_object_are_tolerated) {
  std::string content = "Sure! Here is the {classification} you asked for:\n```json\n"
                        "{\n  \"verdict\": \"merged\",\n  \"domain\": \"technology\"\n}\n```\n"
                        "Let me know if you need anything else.";
  auto check = check_reply(verdict_stage(), content);
  CAF_REQUIRE(check.ok);
  CAF_CHECK_EQUAL(check.result.outcome, "merged");
  CAF_CHECK_EQUAL(check.result.output.value("domain", ""), "technology");
}

CAF_TEST(content_that_is_not_an_object_is_an_error) {
  auto array = check_reply(verdict_stage(), R"([{"verdict":"passed","domain":"technology"}])");
  CAF_CHECK(!array.ok);
  CAF_CHECK(contains(array.error, "reply is an array, expected a JSON object"));
  auto text = check_reply(verdict_stage(), "passed");
  CAF_CHECK(!text.ok);
  CAF_CHECK(contains(text.error, "reply has no JSON object: passed"));
  auto truncated = check_reply(verdict_stage(), R"({"verdict":"passed","dom)");
  CAF_CHECK(!truncated.ok);
  CAF_CHECK(contains(truncated.error, "unterminated JSON object"));
  auto broken = check_reply(verdict_stage(), "{verdict: passed}");
  CAF_CHECK(!broken.ok);
  CAF_CHECK(contains(broken.error, "reply has no valid JSON object"));
}

CAF_TEST(braces_inside_strings_do_not_end_the_object) {
  std::string content = "Answer: {\"verdict\":\"passed\",\"domain\":\"technology\","
                        "\"reason\":\"uses } and { and \\\"{quoted}\\\" text\"} -- done }";
  auto check = check_reply(verdict_stage(), content);
  CAF_REQUIRE(check.ok);
  CAF_CHECK_EQUAL(check.result.output.value("reason", ""), "uses } and { and \"{quoted}\" text");
}

CAF_TEST(errors_quote_at_most_200_characters_on_one_line) {
  std::string content = "no object here\n" + std::string(1000, 'x');
  auto check = check_reply(verdict_stage(), content);
  CAF_CHECK(!check.ok);
  CAF_CHECK(one_line(check.error));
  CAF_CHECK(check.error.size() < 260);
  CAF_CHECK(contains(check.error, "..."));
}
