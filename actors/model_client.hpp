// The blocking HTTP client for model handlers: one chat call to an Ollama or
// OpenAI-compatible endpoint, and the check of the reply against the stage's
// contract (one JSON object, required fields, a declared outcome).
#pragma once

#include "actors/builtin_registry.hpp"
#include "config/pipeline_config.hpp"

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace turing::actors {

/// What one call returned. Errors are one line, so they fit an attempt row
/// and a log line as they are.
struct model_reply {
  bool ok = false;
  /// The assistant message text, when ok.
  std::string content;
  /// One line, e.g. "HTTP 500 from http://127.0.0.1:11434/api/chat: <body>",
  /// "timed out after 30s waiting for ...", "response is not JSON: ...".
  std::string error;
  /// False only where retrying cannot help: HTTP 400/401/403/404 (bad
  /// request, auth, unknown model or path) and a malformed endpoint.
  bool retryable = true;
  /// The server is not there to answer: the connection was refused or timed
  /// out, or a proxy in front of it said so (HTTP 502, 503, 504). Nothing
  /// about the call itself is wrong; the endpoint waits for the server.
  bool unavailable = false;
  /// The connection closed before a full response, well before the timeout:
  /// the server went away mid-call (a restart) or crashed on this call.
  bool connection_dropped = false;
  /// The fault class (messages/execution.hpp, model_fault), empty when ok.
  std::string fault;
  /// The server's Retry-After (HTTP 429, 503), when it sent one we can read.
  std::optional<std::chrono::milliseconds> retry_after;
  /// 0 when no HTTP response arrived.
  int http_status = 0;
  double latency_ms = 0;
  /// Of latency_ms, what the server says it spent loading the model.
  double load_ms = 0;
  /// Prompt + completion tokens the server counted; -1 when it did not say.
  int64_t tokens = -1;
};

/// One chat request, blocking; the runtime runs it on a dedicated thread.
/// Ollama: POST {endpoint}/api/chat with {"model", "messages", "stream":false,
/// "format":"json", "options":{"temperature"}?}. OpenAI-compatible: POST
/// {endpoint}/v1/chat/completions with {"model", "messages", "temperature"?,
/// "response_format":{"type":"json_object"}} and "Authorization: Bearer
/// <api_key>" when api_key is not empty. The endpoint may carry a path prefix
/// ("https://host/prefix"); the request path is appended to it.
/// Connect timeout min(timeout, 5s); read and write timeouts = timeout.
/// https: the certificate chain and host name are checked against
/// model.ca_file, else the system CA store, unless model.tls_verify is false;
/// a failure is a non-retryable "TLS handshake with ... failed: <reason>".
/// The api key never appears in reply.error (masked even where a server
/// echoes it). Never throws; logs nothing (the caller does).
/// `on_tokens`, when given, is called from the calling thread as a streamed
/// reply arrives, with the number of pieces (lines of NDJSON, server-sent
/// events: about one token each) so far.
model_reply call_model(const config::model_config& model, const std::string& api_key,
                       const std::string& system_prompt, const std::string& prompt,
                       std::chrono::milliseconds timeout,
                       const std::function<void(int64_t)>& on_tokens = {});

/// Pure: sets reply's error, fault, retryable and unavailable for a non-2xx
/// answer. 429, and 503 with a Retry-After or Ollama's "server busy", are
/// back-pressure (throttled); other 502/503/504 mean the server is not there
/// (unavailable); a 400/413/422/500 whose body says the prompt is beyond the
/// model's context is a context overflow (not retryable on the same model);
/// 400/401/403/404 are not retryable.
void classify_http_failure(const config::model_config& model, const std::string& url,
                           const std::string& api_key, int status, const std::string& body,
                           bool has_retry_after, model_reply& reply);

/// Pure: whether an error body says the prompt exceeds the model's context
/// ("context_length_exceeded", "maximum context length", "prompt is too long"…).
bool says_context_overflow(const std::string& body);

/// Pure: a Retry-After header value (delay-seconds, or an HTTP-date relative
/// to `now`) as a delay, capped at one hour; nullopt when unreadable.
std::optional<std::chrono::milliseconds>
parse_retry_after(const std::string& value, std::chrono::system_clock::time_point now);

/// Pure: the request body call_model sends. An empty system prompt sends no
/// system message.
nlohmann::json build_request_body(const config::model_config& model,
                                  const std::string& system_prompt, const std::string& prompt);

/// "/api/chat" or "/v1/chat/completions".
std::string request_path(config::model_api api);

/// What a streamed (or not) reply body holds: the content, or an error.
struct streamed_reply {
  std::optional<std::string> content;
  std::string error;
  /// The server put {"error": ...} in the stream (Ollama does so with 200).
  bool server_error = false;
  int chunks = 0;
  /// Ollama's load_duration (on its last line), in ms; 0 when absent.
  double load_ms = 0;
  /// Prompt + completion tokens as the server counted them (Ollama's
  /// prompt_eval_count + eval_count, OpenAI's usage); -1 when it did not say.
  int64_t tokens = -1;
};

/// Pure: the content of a reply body however it came: server-sent events
/// (OpenAI, text/event-stream: the deltas of choices[0].delta.content until
/// [DONE]), NDJSON (Ollama: message.content of every line until done), or
/// one JSON object (a server that did not stream: extract_content). A line
/// with "error" is an error, not a reply.
streamed_reply read_streamed_reply(config::model_api api, const std::string& content_type,
                                   const std::string& body);

/// Pure: message.content (Ollama) or choices[0].message.content (OpenAI) of
/// a response body; on failure returns nullopt and sets *error (if given) to
/// one line ("response is not JSON: ...", "response has no message.content").
std::optional<std::string> extract_content(config::model_api api, const std::string& body,
                                           std::string* error);

/// The outcome of check_reply: result when ok, else a one-line error.
struct reply_check {
  bool ok = false;
  handler_result result;
  std::string error;
};

/// Pure: reads the model's content as the stage expects. The content must
/// hold one JSON object; prose and ```json fences around it are tolerated (the
/// first balanced {...} that parses, strings and escapes respected). Every
/// required field must be present and not null. The outcome is
/// stage.fixed_outcome, or the string value of stage.outcome_field, which must
/// be one of stage.outcomes. result.output is the whole object. Errors quote
/// at most 200 characters of the content.
reply_check check_reply(const config::stage_config& stage, const std::string& content);

} // namespace turing::actors
