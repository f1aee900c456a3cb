// The simulated model server (see server.hpp): routes, request shapes of the
// Ollama and OpenAI APIs, and the wait / fault machinery around answer_rules.
#include "server.hpp"

#include "gpu_residency.hpp"
#include "peer_watch.hpp"
#include "sim_stats.hpp"
#include "stable_hash.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <httplib.h>
#include <mutex>
#include <spdlog/spdlog.h>
#include <thread>
#include <unordered_map>

namespace turing::model_sim {

namespace {

using nlohmann::json;
using clock_type = std::chrono::steady_clock;

constexpr const char* json_type = "application/json";

// The request shapes the server understands.
enum class api { ollama_chat, ollama_generate, openai_chat };

std::string_view endpoint_of(api a) {
  switch (a) {
  case api::ollama_chat:
    return "/api/chat";
  case api::ollama_generate:
    return "/api/generate";
  case api::openai_chat:
    break;
  }
  return "/v1/chat/completions";
}

// One model call, decoded from any of the request shapes.
struct call {
  api shape = api::ollama_chat;
  std::string model;
  prompt_fields fields;
  // Everything the model was shown; hashed into the per-request seed.
  std::string prompt_text;
  bool stream = false;
  // OpenAI's stream_options.include_usage: a streamed answer ends with an
  // event carrying the token counts.
  bool include_usage = false;
};

// Ollama's timestamps: RFC 3339 in UTC with nanoseconds.
std::string rfc3339_now() {
  auto now = std::chrono::system_clock::now();
  auto secs = std::chrono::system_clock::to_time_t(now);
  auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()) %
               std::chrono::seconds{1};
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  auto n = std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof(buf) - n, ".%09lldZ", static_cast<long long>(nanos.count()));
  return buf;
}

long long unix_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string hex(std::uint64_t x) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(x));
  return buf;
}

// Replies a confused or broken model produces; none of them parses as JSON.
constexpr std::string_view garbage_replies[] = {
    "Sure! Based on the skill you gave me, I would say it belongs to technology, mostly.",
    "{\"domain\": \"technol",
    "I'm sorry, but I can't help with classifying that.",
    "```json\n{domain: data_and_analytics, confidence: high}\n```",
    "<|im_end|><|im_start|>assistant\n",
    "verdict=passed; confidence=0.9",
};

// A rough token count (4 characters a token), for the usage fields.
long long tokens(std::string_view text) {
  return static_cast<long long>(text.size() / 4 + 1);
}

// OpenAI's token counts, the same streamed or not.
json openai_usage(long long prompt_tokens, long long completion_tokens) {
  return json{{"prompt_tokens", prompt_tokens},
              {"completion_tokens", completion_tokens},
              {"total_tokens", prompt_tokens + completion_tokens}};
}

// The event OpenAI streams before [DONE] when asked to include usage: no
// choices, the whole call's counts.
std::string openai_usage_event(const std::string& id, const std::string& model,
                               long long prompt_tokens, long long completion_tokens) {
  json chunk = {{"id", id},
                {"object", "chat.completion.chunk"},
                {"created", unix_seconds()},
                {"model", model},
                {"choices", json::array()},
                {"usage", openai_usage(prompt_tokens, completion_tokens)}};
  return "data: " + chunk.dump() + "\n\n";
}

json ollama_error(const std::string& message) {
  return json{{"error", message}};
}

json openai_error(const std::string& message, std::string_view type, std::string_view code) {
  return json{
      {"error", {{"message", message}, {"type", type}, {"param", nullptr}, {"code", code}}}};
}

// "12b" from "mistral-nemo:12b", for /api/tags details.
std::pair<std::string, std::string> family_and_size(const std::string& name) {
  auto colon = name.find(':');
  auto family = name.substr(0, colon);
  std::string size = "unknown";
  if (colon != std::string::npos) {
    auto tag = name.substr(colon + 1);
    if (!tag.empty() && (tag.back() == 'b' || tag.back() == 'B')) {
      size = tag;
      std::transform(size.begin(), size.end(), size.begin(),
                     [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    }
  }
  return {family, size};
}

} // namespace

// -- implementation -----------------------------------------------------------

struct model_server::impl {
  impl(sim_config cfg, answer_rules r)
      : config(std::move(cfg)), rules(std::move(r)), gpus(config.gpus, config.latency_scale),
        server(make_server(config)), svr(*server) {}

  // An SSLServer when a certificate is configured (tests of https model
  // endpoints); it loads the files here and reports failure via is_valid().
  static std::unique_ptr<httplib::Server> make_server(const sim_config& c) {
    if (c.tls_cert.empty())
      return std::make_unique<httplib::Server>();
    return std::make_unique<httplib::SSLServer>(c.tls_cert.c_str(), c.tls_key.c_str());
  }

  enum class phase { starting, listening, failed, finished };

  // How a wait ended.
  enum class wait_end { elapsed, stopping, client_gone };

  sim_config config;
  answer_rules rules;
  // Before the server: a streamed answer's lease may end as httplib drops it.
  gpu_residency gpus;
  std::unique_ptr<httplib::Server> server;
  httplib::Server& svr;
  sim_stats counters;

  mutable std::mutex mtx;
  mutable std::condition_variable cv;
  phase state = phase::starting;
  int port = -1;
  std::string error;

  // Both seq_cst: stop() writes stopping then reads serving, run() writes
  // serving then reads stopping, so at least one of them sees the other.
  std::atomic<bool> stopping{false};
  std::atomic<bool> serving{false};

  std::mutex attempts_mtx;
  std::unordered_map<std::uint64_t, std::uint32_t> attempts;
  // Calls each model has received, for its slowdown. Counted in arrival
  // order, so a client calling one at a time sees the same latencies on
  // every run.
  std::unordered_map<std::string, std::uint64_t> calls;

  // -- lifecycle --------------------------------------------------------------

  void set_phase(phase p, int bound_port = -1, std::string why = {}) {
    {
      std::lock_guard<std::mutex> guard{mtx};
      state = p;
      if (bound_port >= 0)
        port = bound_port;
      if (!why.empty())
        error = std::move(why);
    }
    cv.notify_all();
  }

  void stop() {
    // Once only: httplib asserts if stop() runs twice while it winds down.
    if (stopping.exchange(true))
      return;
    {
      // Taking the lock orders the flag before any waiter's next check.
      std::lock_guard<std::mutex> guard{mtx};
    }
    cv.notify_all();
    gpus.stop();
    // run() may be between "serving = true" and httplib marking itself
    // running; httplib's stop() is a no-op before that, so wait it out.
    while (serving && !svr.is_running())
      std::this_thread::yield();
    svr.stop();
  }

  // Sleeps until `until`, stop() or the client leaving (checked every 50 ms
  // when `peer` is given).
  wait_end wait_until(clock_type::time_point until, const peer_watch* peer) {
    std::unique_lock<std::mutex> lock{mtx};
    for (;;) {
      if (stopping)
        return wait_end::stopping;
      auto now = clock_type::now();
      if (now >= until)
        return wait_end::elapsed;
      auto step = until;
      if (peer != nullptr)
        step = std::min(until, now + std::chrono::milliseconds{50});
      cv.wait_until(lock, step);
      if (peer != nullptr && !stopping) {
        lock.unlock();
        bool gone = peer->gone();
        lock.lock();
        if (gone)
          return wait_end::client_gone;
      }
    }
  }

  std::uint32_t next_attempt(const std::string& model, const std::string& prompt) {
    std::lock_guard<std::mutex> guard{attempts_mtx};
    return attempts[hash_of(model, prompt)]++;
  }

  std::uint64_t earlier_calls(const std::string& model) {
    std::lock_guard<std::mutex> guard{attempts_mtx};
    return calls[model]++;
  }

  // GET /stats: the counters and the GPUs.
  json stats() const {
    auto j = counters.snapshot();
    j["gpus"] = gpus.snapshot();
    return j;
  }

  std::optional<model_profile> resolve(const std::string& name) const {
    if (const auto* p = config.find_model(name))
      return *p;
    if (!config.accept_any_model)
      return std::nullopt;
    auto p = config.default_model;
    p.name = name;
    return p;
  }

  // -- responses --------------------------------------------------------------

  void send_error(httplib::Response& res, api shape, int status, const std::string& message) {
    res.status = status;
    json body;
    if (shape == api::openai_chat)
      body = openai_error(message, status == 404 ? "invalid_request_error" : "api_error",
                          status == 404 ? "model_not_found" : "server_error");
    else
      body = ollama_error(message);
    res.set_content(body.dump(), json_type);
  }

  /// The answer token by token (a piece every few characters), spread over
  /// `generation`: Ollama's NDJSON lines (message.content for chat, response
  /// for generate; the last with done and the counts) or OpenAI's
  /// server-sent events, ending with the usage event if the request asked
  /// for it (stream_options.include_usage), then [DONE]. `held` keeps the
  /// model busy on its GPU until the last token is sent or the client leaves.
  void stream_answer(httplib::Response& res, const call& c, const std::string& content,
                     std::chrono::microseconds generation, clock_type::time_point started,
                     std::chrono::nanoseconds load, gpu_residency::lease held, std::uint64_t seed) {
    std::vector<std::string> pieces;
    const std::size_t piece = std::max<std::size_t>(4, content.size() / 16 + 1);
    for (std::size_t at = 0; at < content.size(); at += piece)
      pieces.push_back(content.substr(at, piece));
    auto gap = generation / static_cast<long long>(pieces.size() + 1);
    bool openai = c.shape == api::openai_chat;
    bool chat = c.shape == api::ollama_chat;
    auto id = "chatcmpl-" + hex(seed);
    auto model = c.model;
    auto prompt_tokens = tokens(c.prompt_text);
    auto answer_tokens = tokens(content);
    auto load_ns = load.count();
    auto usage = c.include_usage;
    // Shared: httplib copies the provider, and a lease is move-only.
    auto busy = std::make_shared<gpu_residency::lease>(std::move(held));
    res.set_chunked_content_provider(
        openai ? "text/event-stream" : "application/x-ndjson",
        [this, pieces, gap, openai, chat, id, model, prompt_tokens, answer_tokens, started, load_ns,
         usage, busy](size_t, httplib::DataSink& sink) {
          auto line = [&](const json& j) {
            auto text = openai ? "data: " + j.dump() + "\n\n" : j.dump() + "\n";
            return sink.write(text.data(), text.size());
          };
          auto ollama = [&](const std::string& text, bool done) {
            json j = {{"model", model}, {"created_at", rfc3339_now()}, {"done", done}};
            if (chat)
              j["message"] = {{"role", "assistant"}, {"content", text}};
            else
              j["response"] = text;
            return j;
          };
          for (const auto& p : pieces) {
            if (wait_until(clock_type::now() + gap, nullptr) == wait_end::stopping)
              break;
            json chunk = openai ? json{{"id", id},
                                       {"object", "chat.completion.chunk"},
                                       {"model", model},
                                       {"choices", {{{"index", 0}, {"delta", {{"content", p}}}}}}}
                                : ollama(p, false);
            // OpenAI marks every other chunk of such a stream "usage": null.
            if (openai && usage)
              chunk["usage"] = nullptr;
            if (!line(chunk))
              return false; // the client left
          }
          if (openai) {
            std::string done = "data: [DONE]\n\n";
            if (usage)
              done = openai_usage_event(id, model, prompt_tokens, answer_tokens) + done;
            sink.write(done.data(), done.size());
          } else {
            auto last = ollama("", true);
            last["done_reason"] = "stop";
            last["total_duration"] =
                std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now() - started)
                    .count();
            last["load_duration"] = load_ns;
            last["prompt_eval_count"] = prompt_tokens;
            last["eval_count"] = answer_tokens;
            line(last);
          }
          busy->release(); // generation is over: the model may be evicted
          sink.done();
          return true;
        });
  }

  void send_answer(httplib::Response& res, const call& c, const std::string& content,
                   clock_type::duration elapsed, std::chrono::nanoseconds load,
                   std::uint64_t seed) {
    auto total_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count();
    // Ollama's total includes the load; the evaluation gets the rest.
    auto load_ns = std::min<long long>(load.count(), total_ns);
    auto work_ns = total_ns - load_ns;
    auto prompt_tokens = tokens(c.prompt_text);
    auto answer_tokens = tokens(content);
    if (c.shape == api::openai_chat) {
      json message = {{"role", "assistant"}, {"content", content}};
      json usage = openai_usage(prompt_tokens, answer_tokens);
      auto id = "chatcmpl-" + hex(seed);
      if (!c.stream) {
        json body = {{"id", id},
                     {"object", "chat.completion"},
                     {"created", unix_seconds()},
                     {"model", c.model},
                     {"system_fingerprint", "turing-model-sim"},
                     {"choices", {{{"index", 0}, {"message", message}, {"finish_reason", "stop"}}}},
                     {"usage", usage}};
        res.set_content(body.dump(), json_type);
        return;
      }
      // Server-sent events: one delta with the whole answer, the usage if
      // asked, then [DONE].
      json chunk = {{"id", id},
                    {"object", "chat.completion.chunk"},
                    {"created", unix_seconds()},
                    {"model", c.model},
                    {"choices", {{{"index", 0}, {"delta", message}, {"finish_reason", "stop"}}}}};
      if (c.include_usage)
        chunk["usage"] = nullptr; // as in stream_answer
      std::string events = "data: " + chunk.dump() + "\n\n";
      if (c.include_usage)
        events += openai_usage_event(id, c.model, prompt_tokens, answer_tokens);
      res.set_content(events + "data: [DONE]\n\n", "text/event-stream");
      return;
    }
    json body = {{"model", c.model}, {"created_at", rfc3339_now()}};
    if (c.shape == api::ollama_chat)
      body["message"] = {{"role", "assistant"}, {"content", content}};
    else
      body["response"] = content;
    body["done_reason"] = "stop";
    body["done"] = true;
    body["total_duration"] = total_ns;
    body["load_duration"] = load_ns;
    body["prompt_eval_count"] = prompt_tokens;
    body["prompt_eval_duration"] = work_ns / 10;
    body["eval_count"] = answer_tokens;
    body["eval_duration"] = work_ns - work_ns / 10;
    if (c.stream) {
      // Ollama streams NDJSON; the simulator sends the final chunk only.
      res.set_content(body.dump() + "\n", "application/x-ndjson");
    } else {
      res.set_content(body.dump(), json_type);
    }
  }

  // -- the model call -----------------------------------------------------------

  void serve_call(const httplib::Request& req, httplib::Response& res, const call& c) {
    auto started = clock_type::now();
    auto profile = resolve(c.model);
    if (!profile) {
      counters.refused(404);
      return send_error(res, c.shape, 404, "model '" + c.model + "' not found");
    }
    std::optional<fault> forced;
    if (req.has_header("X-Sim-Fault")) {
      forced = parse_fault(req.get_header_value("X-Sim-Fault"));
      if (!forced) {
        counters.refused(400);
        return send_error(res, c.shape, 400,
                          "X-Sim-Fault must be one of hang, http_500, garbage, slow, crash, "
                          "http_429, none");
      }
    }
    std::optional<long long> forced_ms;
    if (req.has_header("X-Sim-Latency-Ms")) {
      const auto text = req.get_header_value("X-Sim-Latency-Ms");
      char* end = nullptr;
      auto ms = std::strtoll(text.c_str(), &end, 10);
      if (text.empty() || *end != '\0' || ms < 0) {
        counters.refused(400);
        return send_error(res, c.shape, 400, "X-Sim-Latency-Ms must be a non-negative integer");
      }
      forced_ms = ms;
    }

    if (profile->context_chars > 0 &&
        static_cast<long long>(c.prompt_text.size()) > profile->context_chars) {
      counters.refused(400);
      return send_error(res, c.shape, 400,
                        "prompt is too long: " + std::to_string(c.prompt_text.size()) +
                            " characters, this model's maximum context length is " +
                            std::to_string(profile->context_chars));
    }
    counters.started(c.model, std::string{endpoint_of(c.shape)});
    auto attempt = next_attempt(c.model, c.prompt_text);
    auto earlier = earlier_calls(c.model);
    auto seed =
        hash_of(std::to_string(config.seed), c.model, c.prompt_text, std::to_string(attempt));
    stable_rng rng{seed};
    auto f = choose_fault(profile->faults, rng, forced);
    counters.fault_drawn(c.model, f);
    auto latency = forced_ms ? std::chrono::microseconds{*forced_ms * 1000}
                             : latency_model{profile->latency, config.latency_scale}.sample(rng);
    latency = slowed_down(latency, profile->slowdown, earlier);
    if (f == fault::slow)
      latency *= static_cast<long long>(slow_factor);

    auto status = answer_after_wait(req, res, c, *profile, f, latency, started, seed, rng);
    counters.finished(c.model, status);
    spdlog::debug("{} model={} task={} attempt={} fault={} latency={}ms status={}",
                  endpoint_of(c.shape), c.model, c.fields.task.value_or("-"), attempt, to_string(f),
                  latency.count() / 1000, status);
  }

  int answer_after_wait(const httplib::Request& req, httplib::Response& res, const call& c,
                        const model_profile& profile, fault f, std::chrono::microseconds latency,
                        clock_type::time_point started, std::uint64_t seed, stable_rng& rng) {
    if (f == fault::crash) {
      // A model server dying mid-request: no response, no cleanup.
      spdlog::critical("injected fault 'crash' on model '{}': exiting with status 3", c.model);
      spdlog::default_logger()->flush();
      std::fflush(stdout);
      std::_Exit(3);
    }
    if (f == fault::http_429) {
      send_error(res, c.shape, 429, "rate limit exceeded (fault http_429)");
      res.set_header("Retry-After", std::to_string(profile.retry_after_s));
      return 429;
    }
    // The model must be in its GPU's memory before it answers (or hangs):
    // a load, or a wait for the GPU, is reported as load_duration. The
    // client is looked up only once a wait outlasts the first check.
    std::optional<peer_watch> loading_peer;
    auto admitted = gpus.admit(c.model, [&] {
      if (!loading_peer)
        loading_peer.emplace(req.remote_addr, req.remote_port, req.local_port);
      return loading_peer->watching() && loading_peer->gone();
    });
    if (admitted.how == gpu_residency::outcome::stopping) {
      send_error(res, c.shape, 503, "the model server is shutting down");
      return 503;
    }
    if (admitted.how == gpu_residency::outcome::client_gone) {
      res.status = 499;
      return 499;
    }
    if (f == fault::hang) {
      peer_watch peer{req.remote_addr, req.remote_port, req.local_port};
      counters.hang_began();
      auto limit = started + std::chrono::duration_cast<clock_type::duration>(
                                 std::chrono::duration<double, std::milli>{config.hang_max_ms});
      auto end = wait_until(limit, peer.watching() ? &peer : nullptr);
      counters.hang_ended(end == wait_end::client_gone);
      if (end == wait_end::client_gone) {
        // Nobody reads this; 499 is nginx's "client closed request".
        res.status = 499;
        return 499;
      }
      if (end == wait_end::stopping) {
        send_error(res, c.shape, 503, "the model server is shutting down");
        return 503;
      }
      send_error(res, c.shape, 504, "simulated hang released after hang_max_ms");
      return 504;
    }
    // Long waits watch the client too, so an abandoned slow call frees its
    // worker; short ones skip the socket lookup.
    std::optional<peer_watch> peer;
    if (latency > std::chrono::milliseconds{500})
      peer.emplace(req.remote_addr, req.remote_port, req.local_port);
    // A streamed answer spends a fifth of its latency before the first
    // token (prompt evaluation) and the rest sending tokens.
    bool streamed = c.stream && (f == fault::none || f == fault::slow || f == fault::garbage);
    auto upfront = streamed ? latency / 5 : latency;
    auto end = wait_until(clock_type::now() + upfront, peer && peer->watching() ? &*peer : nullptr);
    if (end == wait_end::stopping) {
      send_error(res, c.shape, 503, "the model server is shutting down");
      return 503;
    }
    if (end == wait_end::client_gone) {
      res.status = 499;
      return 499;
    }
    if (f == fault::http_500) {
      send_error(res, c.shape, 500, "simulated model server failure (fault http_500)");
      return 500;
    }
    std::string content;
    if (f == fault::garbage) {
      content = std::string{garbage_replies[rng.next() % std::size(garbage_replies)]};
    } else {
      model_traits traits{c.model, profile.bias};
      content = rules.answer(c.fields, traits).dump();
    }
    if (streamed && latency - upfront > std::chrono::milliseconds{0}) {
      stream_answer(res, c, content, latency - upfront, started, admitted.waited,
                    std::move(admitted.held), seed);
      return 200;
    }
    send_answer(res, c, content, clock_type::now() - started, admitted.waited, seed);
    return 200;
  }

  // -- request decoding ---------------------------------------------------------

  // Parses the body and the common fields; on failure answers 400 itself.
  std::optional<json> body_of(const httplib::Request& req, httplib::Response& res, api shape) {
    auto body = json::parse(req.body, nullptr, false);
    if (body.is_discarded() || !body.is_object()) {
      counters.refused(400);
      send_error(res, shape, 400, "the request body must be a JSON object");
      return std::nullopt;
    }
    if (!body.contains("model") || !body["model"].is_string() ||
        body["model"].get<std::string>().empty()) {
      counters.refused(400);
      send_error(res, shape, 400, "model is required");
      return std::nullopt;
    }
    return body;
  }

  std::optional<call> chat_call(const json& body, httplib::Response& res, api shape) {
    call c;
    c.shape = shape;
    c.model = body["model"].get<std::string>();
    // Ollama streams unless told otherwise; OpenAI does not.
    c.stream = body.value("stream", shape == api::ollama_chat);
    if (shape == api::openai_chat && !read_stream_options(body, res, c))
      return std::nullopt;
    const auto messages = body.find("messages");
    if (messages == body.end() || !messages->is_array()) {
      counters.refused(400);
      send_error(res, shape, 400, "messages must be an array");
      return std::nullopt;
    }
    std::vector<chat_message> list;
    for (const auto& m : *messages) {
      if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
        counters.refused(400);
        send_error(res, shape, 400, "every message needs a string 'role'");
        return std::nullopt;
      }
      chat_message msg{m["role"].get<std::string>(), {}};
      if (m.contains("content") && m["content"].is_string())
        msg.content = m["content"].get<std::string>();
      c.prompt_text += msg.role + ":" + msg.content + "\n";
      list.push_back(std::move(msg));
    }
    c.fields = read_prompt_fields(list);
    return c;
  }

  // OpenAI's {"stream_options": {"include_usage": true}}; a wrong type is
  // answered 400 here rather than thrown as a 500.
  bool read_stream_options(const json& body, httplib::Response& res, call& c) {
    auto refuse = [&] {
      counters.refused(400);
      send_error(res, c.shape, 400,
                 "stream_options must be an object like {\"include_usage\": true}");
      return false;
    };
    const auto options = body.find("stream_options");
    if (options == body.end() || options->is_null())
      return true;
    if (!options->is_object())
      return refuse();
    const auto usage = options->find("include_usage");
    if (usage == options->end() || usage->is_null())
      return true;
    if (!usage->is_boolean())
      return refuse();
    c.include_usage = usage->get<bool>();
    return true;
  }

  std::optional<call> generate_call(const json& body, httplib::Response& res) {
    call c;
    c.shape = api::ollama_generate;
    c.model = body["model"].get<std::string>();
    c.stream = body.value("stream", true);
    auto text_field = [&](const char* key) -> std::optional<std::string> {
      if (!body.contains(key) || body[key].is_null())
        return std::string{};
      if (!body[key].is_string())
        return std::nullopt;
      return body[key].get<std::string>();
    };
    auto system = text_field("system");
    auto prompt = text_field("prompt");
    if (!system || !prompt) {
      counters.refused(400);
      send_error(res, c.shape, 400, "prompt and system must be strings");
      return std::nullopt;
    }
    read_prompt_fields(*system, c.fields);
    read_prompt_fields(*prompt, c.fields);
    c.prompt_text = "system:" + *system + "\nprompt:" + *prompt;
    return c;
  }

  // -- routes -------------------------------------------------------------------

  void install_routes() {
    svr.Get("/", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("Ollama is running (turing-model-sim)", "text/plain");
    });
    svr.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(json{{"status", stopping ? "stopping" : "ok"}}.dump(), json_type);
    });
    svr.Get("/api/version", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(json{{"version", "0.1.0-turing-sim"}}.dump(), json_type);
    });
    svr.Get("/stats", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(stats().dump(), json_type);
    });
    svr.Get("/api/tags", [this](const httplib::Request&, httplib::Response& res) {
      json models = json::array();
      for (const auto& m : config.models) {
        auto [family, size] = family_and_size(m.name);
        models.push_back({{"name", m.name},
                          {"model", m.name},
                          {"modified_at", "2024-06-11T00:00:00Z"},
                          {"size", 0},
                          {"digest", hex(hash_of("digest", m.name)) + hex(hash_of(m.name))},
                          {"details",
                           {{"parent_model", ""},
                            {"format", "gguf"},
                            {"family", family},
                            {"families", {family}},
                            {"parameter_size", size},
                            {"quantization_level", "Q4_0"}}}});
      }
      res.set_content(json{{"models", models}}.dump(), json_type);
    });
    svr.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      json data = json::array();
      for (const auto& m : config.models)
        data.push_back(
            {{"id", m.name}, {"object", "model"}, {"created", 0}, {"owned_by", "turing-sim"}});
      res.set_content(json{{"object", "list"}, {"data", data}}.dump(), json_type);
    });
    svr.Post("/api/chat", [this](const httplib::Request& req, httplib::Response& res) {
      if (auto body = body_of(req, res, api::ollama_chat))
        if (auto c = chat_call(*body, res, api::ollama_chat))
          serve_call(req, res, *c);
    });
    svr.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
      if (auto body = body_of(req, res, api::openai_chat))
        if (auto c = chat_call(*body, res, api::openai_chat))
          serve_call(req, res, *c);
    });
    svr.Post("/api/generate", [this](const httplib::Request& req, httplib::Response& res) {
      if (auto body = body_of(req, res, api::ollama_generate))
        if (auto c = generate_call(*body, res))
          serve_call(req, res, *c);
    });
    svr.set_exception_handler(
        [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
          std::string what = "unknown error";
          try {
            std::rethrow_exception(ep);
          } catch (const std::exception& e) {
            what = e.what();
          } catch (...) {
          }
          res.status = 500;
          res.set_content(ollama_error("simulator error: " + what).dump(), json_type);
        });
  }
};

// -- model_server ---------------------------------------------------------------

model_server::model_server(sim_config config, answer_rules rules)
    : impl_(std::make_unique<impl>(std::move(config), std::move(rules))) {
  auto threads = static_cast<std::size_t>(impl_->config.threads);
  impl_->svr.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  // An idle keep-alive connection holds a worker until this timeout, and
  // stopping the server waits for every worker.
  impl_->svr.set_keep_alive_timeout(1);
  impl_->install_routes();
}

model_server::~model_server() {
  impl_->stop();
}

bool model_server::run(const std::function<void(int port)>& on_listening) {
  auto& s = *impl_;
  // Debian's httplib 0.11 sends without MSG_NOSIGNAL: answering a client that
  // gave up on a hung call would raise SIGPIPE and kill the process. Every
  // server ignores SIGPIPE; a handler someone else installed is kept.
  struct sigaction old_action {};
  if (sigaction(SIGPIPE, nullptr, &old_action) == 0 && old_action.sa_handler == SIG_DFL)
    std::signal(SIGPIPE, SIG_IGN);

  if (!s.svr.is_valid()) {
    s.set_phase(impl::phase::failed, -1,
                "cannot load TLS certificate '" + s.config.tls_cert + "' with key '" +
                    s.config.tls_key + "' (PEM files, the key unencrypted)");
    return false;
  }
  int port = s.config.port;
  if (port == 0)
    port = s.svr.bind_to_any_port(s.config.host);
  else if (!s.svr.bind_to_port(s.config.host, port))
    port = -1;
  if (port < 0) {
    s.set_phase(impl::phase::failed, -1,
                "cannot listen on " + s.config.host + ":" + std::to_string(s.config.port));
    return false;
  }
  s.set_phase(impl::phase::listening, port);
  if (on_listening)
    on_listening(port);
  s.serving = true;
  bool ok = s.stopping || s.svr.listen_after_bind();
  s.serving = false;
  if (!ok)
    s.set_phase(impl::phase::failed, -1, "the HTTP server stopped with an error");
  else
    s.set_phase(impl::phase::finished);
  return ok;
}

std::optional<int> model_server::wait_until_listening(std::chrono::milliseconds timeout) const {
  auto& s = *impl_;
  std::unique_lock<std::mutex> lock{s.mtx};
  s.cv.wait_for(lock, timeout, [&] { return s.state != impl::phase::starting; });
  if (s.port >= 0)
    return s.port;
  return std::nullopt;
}

void model_server::stop() {
  impl_->stop();
}

nlohmann::json model_server::stats() const {
  return impl_->stats();
}

std::string model_server::error() const {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  return impl_->error;
}

} // namespace turing::model_sim
