// The model client: builds the chat request, runs it with cpp-httplib under
// the stage's timeout, and turns every failure into one line that says what
// happened and whether a retry can help.
#include "actors/model_client.hpp"

#include "config/duration.hpp"
#include "messages/execution.hpp"
#include "persistence/storable_text.hpp"

#include <algorithm>
#include <cctype>
#include <exception>
#include <httplib.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <sstream>
#include <utility>
#include <vector>

// https endpoints need it; cmake's turing::httplib target defines it for
// every user of httplib.h alike.
#ifndef CPPHTTPLIB_OPENSSL_SUPPORT
#error "model_client.cpp needs CPPHTTPLIB_OPENSSL_SUPPORT: link turing::httplib"
#endif

namespace turing::actors {

namespace {

using json = nlohmann::json;

/// How many characters of a body or a reply an error may quote.
constexpr std::size_t quote_limit = 200;

/// At most `limit` bytes of `text` on one line and as valid UTF-8: errors end
/// up in log lines and in JSON attempt rows, where a newline or a broken byte
/// from a garbage body would do harm.
std::string one_line(const std::string& text, std::size_t limit = quote_limit) {
  std::string out;
  out.reserve(std::min(text.size(), limit) + 3);
  std::size_t i = 0;
  while (i < text.size()) {
    auto n = persistence::utf8_sequence_length(text, i); // the one strict checker
    auto width = n == 0 ? 1 : n;
    if (out.size() + width > limit)
      return out + "...";
    if (n == 0)
      out += '?';
    else if (n == 1 && (static_cast<unsigned char>(text[i]) < 0x20 || text[i] == 0x7F))
      out += ' ';
    else
      out.append(text, i, n);
    i += width;
  }
  return out;
}

std::string lower(std::string text) {
  for (auto& c : text)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty())
      out += ", ";
    out += item;
  }
  return out;
}

/// "http://host:port/prefix" -> origin "http://host:port" (what
/// httplib::Client takes) and prefix "/prefix" (prepended to every path).
struct endpoint_parts {
  std::string scheme;
  std::string origin;
  std::string prefix;
  /// The host without port or brackets, for TLS errors.
  std::string host;
};

std::optional<endpoint_parts> split_endpoint(const std::string& endpoint) {
  auto sep = endpoint.find("://");
  if (sep == std::string::npos)
    return std::nullopt;
  endpoint_parts parts;
  parts.scheme = lower(endpoint.substr(0, sep));
  if (parts.scheme != "http" && parts.scheme != "https")
    return std::nullopt;
  auto rest = endpoint.substr(sep + 3);
  auto rest_end = rest.find_first_of("?#");
  if (rest_end != std::string::npos)
    rest.resize(rest_end);
  auto slash = rest.find('/');
  auto authority = rest.substr(0, slash);
  if (authority.empty())
    return std::nullopt;
  parts.origin = parts.scheme + "://" + authority;
  if (authority.front() == '[')
    parts.host = authority.substr(1, authority.find(']') - 1);
  else
    parts.host = authority.substr(0, authority.rfind(':'));
  if (slash != std::string::npos)
    parts.prefix = rest.substr(slash);
  while (!parts.prefix.empty() && parts.prefix.back() == '/')
    parts.prefix.pop_back();
  return parts;
}

/// The error when no HTTP response arrived. httplib reports a read timeout
/// as a plain read error, so the elapsed time tells a timeout from a
/// connection the server dropped.
void describe_transport_error(httplib::Error error, const std::string& url,
                              std::chrono::milliseconds timeout,
                              std::chrono::milliseconds connect_timeout,
                              std::chrono::milliseconds elapsed, model_reply& reply) {
  bool waited_out = elapsed * 10 >= timeout * 9;
  switch (error) {
  case httplib::Error::Connection:
    reply.error = "cannot connect to " + url + " (connection refused, host unreachable or unknown)";
    reply.unavailable = true;
    reply.fault = model_fault::unavailable;
    return;
  case httplib::Error::ConnectionTimeout:
    reply.error =
        "timed out after " + config::format_duration(connect_timeout) + " connecting to " + url;
    reply.unavailable = true;
    reply.fault = model_fault::unavailable;
    return;
  case httplib::Error::Read:
    reply.error =
        waited_out ? "timed out after " + config::format_duration(timeout) + " waiting for " + url
                   : "connection to " + url + " closed before a full response";
    reply.connection_dropped = !waited_out;
    reply.fault = waited_out ? model_fault::timeout : model_fault::connection;
    return;
  case httplib::Error::Write:
    reply.error = waited_out ? "timed out after " + config::format_duration(timeout) +
                                   " sending the request to " + url
                             : "connection to " + url + " closed while sending the request";
    reply.connection_dropped = !waited_out;
    reply.fault = waited_out ? model_fault::timeout : model_fault::connection;
    return;
  default:
    reply.error = "request to " + url + " failed: " + httplib::to_string(error);
    reply.fault = model_fault::connection;
    return;
  }
}

/// The error for a failed TLS set-up, with OpenSSL's own reason: "could
/// not be verified" alone does not tell a private CA from an expired
/// certificate or a wrong host name. Returns false for non-TLS errors.
bool describe_tls_error(httplib::Error error, const config::model_config& model,
                        const std::string& origin, const std::string& host, long verify_result,
                        model_reply& reply) {
  // OpenSSL's error queue is per thread (cleared before the request) and
  // httplib leaves it filled; the earliest entry is the handshake's reason
  // ("wrong version number"), later ones come from the shutdown after it.
  std::string reason;
  if (auto code = ERR_get_error(); code != 0)
    if (const char* text = ERR_reason_error_string(code))
      reason = text;
  ERR_clear_error();
  reply.fault =
      error == httplib::Error::SSLConnection ? model_fault::connection : model_fault::configuration;
  auto trust_hint = model.ca_file.empty()
                        ? std::string{"the system CA store does not trust it: set ca_file to the "
                                      "server's CA bundle"}
                        : "is ca_file " + model.ca_file.string() + " the server's CA?";
  switch (error) {
  case httplib::Error::SSLLoadingCerts:
    reply.error =
        "cannot load CA certificates from " +
        (model.ca_file.empty() ? std::string{"the system store"} : model.ca_file.string()) +
        " for " + origin + (reason.empty() ? "" : ": " + reason);
    reply.retryable = false;
    return true;
  case httplib::Error::SSLServerVerification:
    // httplib checks the chain first (verify_result), then the host name.
    if (verify_result != X509_V_OK)
      reply.error = "TLS handshake with " + origin +
                    " failed: certificate could not be verified: " +
                    X509_verify_cert_error_string(verify_result) + " (" + trust_hint + ")";
    else
      reply.error = "TLS handshake with " + origin + " failed: the certificate is not for host '" +
                    host + "' (its names must include the endpoint's host)";
    reply.retryable = false;
    return true;
  case httplib::Error::SSLConnection:
    reply.error = "TLS handshake with " + origin + " failed" +
                  (reason.empty() ? std::string{} : ": " + reason);
    if (reason.find("wrong version number") != std::string::npos)
      reply.error += " (is it a plain http:// server?)";
    return true;
  default:
    return false;
  }
}

/// `text` with every occurrence of `secret` masked. Servers and proxies echo
/// request headers in error bodies, and the api key must never reach a log
/// line or an attempt row.
std::string mask(std::string text, const std::string& secret) {
  if (secret.empty())
    return text;
  for (auto at = text.find(secret); at != std::string::npos; at = text.find(secret, at + 3))
    text.replace(at, secret.size(), "***");
  return text;
}

std::string json_type(const json& value) {
  switch (value.type()) {
  case json::value_t::array:
    return "an array";
  case json::value_t::string:
    return "a string";
  case json::value_t::boolean:
    return "a boolean";
  case json::value_t::null:
    return "null";
  case json::value_t::object:
    return "an object";
  default:
    return "a number";
  }
}

/// Index of the '}' closing the '{' at `open`, or npos when it never closes.
/// Braces inside strings (and escaped quotes inside those) do not count.
std::size_t closing_brace(const std::string& text, std::size_t open) {
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (auto i = open; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{') {
      ++depth;
    } else if (c == '}' && --depth == 0) {
      return i;
    }
  }
  return std::string::npos;
}

/// The JSON object in a model's content, or the reason there is none.
/// Models wrap JSON in prose and ```json fences even when asked not to, so
/// the first balanced {...} that parses is taken; a span that does not parse
/// is skipped whole, so a fragment nested in it is never mistaken for the
/// reply.
std::optional<json> find_object(const std::string& content, std::string* error) {
  auto whole = json::parse(content, nullptr, false);
  if (!whole.is_discarded()) {
    if (whole.is_object())
      return whole;
    *error = "reply is " + json_type(whole) + ", expected a JSON object: " + one_line(content);
    return std::nullopt;
  }
  // Each unclosed '{' costs a scan to the end; the cap keeps a pathological
  // reply ("{{{{...") linear.
  constexpr int max_unclosed = 64;
  int unclosed = 0;
  bool any_span = false;
  auto open = content.find('{');
  while (open != std::string::npos) {
    auto close = closing_brace(content, open);
    if (close == std::string::npos) {
      if (++unclosed > max_unclosed)
        break;
      open = content.find('{', open + 1);
      continue;
    }
    any_span = true;
    auto candidate =
        json::parse(content.begin() + static_cast<std::ptrdiff_t>(open),
                    content.begin() + static_cast<std::ptrdiff_t>(close) + 1, nullptr, false);
    if (!candidate.is_discarded() && candidate.is_object())
      return candidate;
    open = content.find('{', close + 1);
  }
  if (any_span)
    *error = "reply has no valid JSON object: " + one_line(content);
  else if (unclosed > 0)
    *error = "reply has an unterminated JSON object (truncated?): " + one_line(content);
  else
    *error = "reply has no JSON object: " + one_line(content);
  return std::nullopt;
}

} // namespace

bool says_context_overflow(const std::string& body) {
  auto text = lower(body);
  for (const char* phrase :
       {"context_length_exceeded", "context length", "context window", "maximum context",
        "prompt is too long", "too many tokens", "exceeds the context", "input is too long"})
    if (text.find(phrase) != std::string::npos)
      return true;
  return false;
}

std::optional<std::chrono::milliseconds>
parse_retry_after(const std::string& value, std::chrono::system_clock::time_point now) {
  constexpr std::chrono::milliseconds cap{3600 * 1000};
  auto first = value.find_first_not_of(" \t");
  if (first == std::string::npos)
    return std::nullopt;
  auto text = value.substr(first, value.find_last_not_of(" \t") - first + 1);
  if (std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); })) {
    if (text.size() > 9)
      return cap;
    return std::min(cap, std::chrono::milliseconds{std::stoll(text) * 1000});
  }
  // An HTTP-date: "Wed, 21 Oct 2015 07:28:00 GMT".
  std::tm tm{};
  const char* end = strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (end == nullptr || *end != '\0')
    return std::nullopt;
  auto at = std::chrono::system_clock::from_time_t(timegm(&tm));
  auto delay = std::chrono::duration_cast<std::chrono::milliseconds>(at - now);
  return std::clamp(delay, std::chrono::milliseconds{0}, cap);
}

/// The body is quoted because servers put the reason there
/// ({"error":"model 'x' not found, try pulling it first"}).
void classify_http_failure(const config::model_config& model, const std::string& url,
                           const std::string& api_key, int status, const std::string& body,
                           bool has_retry_after, model_reply& reply) {
  auto quoted = body.empty() ? std::string{"(empty body)"} : one_line(body);
  reply.fault = model_fault::http_status;
  reply.retryable = !(status == 400 || status == 401 || status == 403 || status == 404);
  reply.unavailable = false;
  reply.error = "HTTP " + std::to_string(status) + " from " + url + ": " + quoted;
  auto busy = lower(body).find("server busy") != std::string::npos;
  if (status == 429 || (status == 503 && (has_retry_after || busy))) {
    reply.fault = model_fault::throttled;
    reply.retryable = true;
    return;
  }
  if (status == 502 || status == 503 || status == 504) {
    reply.fault = model_fault::unavailable;
    reply.unavailable = true;
    return;
  }
  if ((status == 400 || status == 413 || status == 422 || status == 500) &&
      says_context_overflow(body)) {
    reply.fault = model_fault::context_overflow;
    reply.retryable = false; // the same prompt overflows the same model again
    return;
  }
  if (status == 404) {
    // Both APIs answer an unknown model with 404 and a body naming it; a 404
    // without that is a wrong path (an endpoint with a stray prefix, or the
    // wrong api for the server).
    reply.fault = model_fault::configuration;
    if (lower(body).find("model") != std::string::npos)
      reply.error = "model '" + model.model + "' not found (HTTP 404) at " + url + ": " + quoted;
    else
      reply.error += " (no such path: check the model's endpoint and api)";
    return;
  }
  if (status == 401 || status == 403) {
    reply.fault = model_fault::configuration;
    reply.error += model.api_key_env.empty() ? " (no api key sent: set api_key_env)"
                   : api_key.empty()
                       ? " (api key sent is empty: $" + model.api_key_env + " is unset or empty)"
                       : " (check the api key in $" + model.api_key_env + ")";
  }
}

std::string request_path(config::model_api api) {
  return api == config::model_api::openai ? "/v1/chat/completions" : "/api/chat";
}

json build_request_body(const config::model_config& model, const std::string& system_prompt,
                        const std::string& prompt) {
  auto messages = json::array();
  if (!system_prompt.empty())
    messages.push_back({{"role", "system"}, {"content", system_prompt}});
  messages.push_back({{"role", "user"}, {"content", prompt}});
  json body = {{"model", model.model}, {"messages", std::move(messages)}};
  if (model.api == config::model_api::openai) {
    if (model.temperature)
      body["temperature"] = *model.temperature;
    body["response_format"] = {{"type", "json_object"}};
    if (model.stream) {
      body["stream"] = true; // server-sent events, one delta per token
      // The last event then carries the token counts that budgets need.
      body["stream_options"] = {{"include_usage", true}};
    }
  } else {
    // Ollama streams one JSON line per token unless told "stream": false.
    body["stream"] = model.stream;
    body["format"] = "json";
    if (model.temperature)
      body["options"] = {{"temperature", *model.temperature}};
  }
  return body;
}

namespace {

// Ollama reports load_duration in nanoseconds on its (last) reply object.
double load_ms_of(const json& doc) {
  auto it = doc.find("load_duration");
  if (it == doc.end() || !it->is_number() || it->get<double>() <= 0)
    return 0;
  return it->get<double>() / 1e6;
}

// Ollama: prompt_eval_count + eval_count; OpenAI: usage.total_tokens (or
// its two parts). -1 when the object says neither.
int64_t tokens_of(const json& doc) {
  auto count = [](const json& obj, const char* key) -> int64_t {
    auto it = obj.find(key);
    return it != obj.end() && it->is_number_integer() && it->get<int64_t>() >= 0
               ? it->get<int64_t>()
               : -1;
  };
  if (auto usage = doc.find("usage"); usage != doc.end() && usage->is_object()) {
    if (auto total = count(*usage, "total_tokens"); total >= 0)
      return total;
    auto prompt = count(*usage, "prompt_tokens"), completion = count(*usage, "completion_tokens");
    if (prompt >= 0 || completion >= 0)
      return std::max<int64_t>(prompt, 0) + std::max<int64_t>(completion, 0);
  }
  auto prompt = count(doc, "prompt_eval_count"), answer = count(doc, "eval_count");
  if (prompt >= 0 || answer >= 0)
    return std::max<int64_t>(prompt, 0) + std::max<int64_t>(answer, 0);
  return -1;
}

} // namespace

streamed_reply read_streamed_reply(config::model_api api, const std::string& content_type,
                                   const std::string& body) {
  streamed_reply out;
  bool sse = content_type.find("text/event-stream") != std::string::npos;
  auto last = body.find_last_not_of(" \r\n\t");
  auto first = body.find_first_not_of(" \r\n\t");
  bool ndjson = !sse && api == config::model_api::ollama && last != std::string::npos &&
                (content_type.find("ndjson") != std::string::npos || body[first] == '{') &&
                body.find('\n', first) < last; // more than one line of JSON
  if (!sse && !ndjson) {
    // One JSON object: a server that does not stream, or a stream of one line.
    out.content = extract_content(api, body, &out.error);
    // Parsed again for the counts: bodies are model answers, small.
    if (out.content)
      if (auto doc = json::parse(body, nullptr, false); doc.is_object()) {
        out.load_ms = load_ms_of(doc);
        out.tokens = tokens_of(doc);
      }
    return out;
  }
  std::string content;
  std::istringstream in(body);
  std::string line;
  bool any = false;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r')
      line.pop_back();
    if (sse) {
      if (line.rfind("data:", 0) != 0)
        continue; // comments, event names, blank separators
      line.erase(0, line.find_first_not_of(' ', 5));
      if (line == "[DONE]")
        break;
    } else if (line.find_first_not_of(" \t") == std::string::npos) {
      continue;
    }
    auto doc = json::parse(line, nullptr, false);
    if (doc.is_discarded() || !doc.is_object()) {
      out.error = "stream line is not a JSON object: " + one_line(line);
      return out;
    }
    ++out.chunks;
    if (sse && out.tokens < 0)
      out.tokens = tokens_of(doc); // the usage chunk (stream_options.include_usage)
    if (auto e = doc.find("error"); e != doc.end()) {
      // Ollama sends it with HTTP 200 when a stream fails midway.
      out.server_error = true;
      out.error =
          "error in the stream after " + std::to_string(out.chunks - 1) + " chunk(s): " +
          one_line(e->is_string() ? e->get<std::string>()
                                  : e->dump(-1, ' ', false, json::error_handler_t::replace));
      return out;
    }
    const json* piece = nullptr;
    if (sse) {
      auto choices = doc.find("choices");
      if (choices != doc.end() && choices->is_array() && !choices->empty() &&
          choices->front().is_object())
        if (auto d = choices->front().find("delta"); d != choices->front().end() && d->is_object())
          if (auto c = d->find("content"); c != d->end() && c->is_string())
            piece = &*c;
    } else if (auto m = doc.find("message"); m != doc.end() && m->is_object()) {
      if (auto c = m->find("content"); c != m->end() && c->is_string())
        piece = &*c;
    }
    if (piece) {
      content += piece->get_ref<const std::string&>();
      any = true;
    }
    if (!sse && doc.value("done", false)) {
      out.load_ms = load_ms_of(doc);
      out.tokens = tokens_of(doc);
      break;
    }
  }
  if (!any) {
    out.error = "stream of " + std::to_string(out.chunks) + " chunk(s) has no content";
    return out;
  }
  out.content = std::move(content);
  return out;
}

std::optional<std::string> extract_content(config::model_api api, const std::string& body,
                                           std::string* error) {
  std::string ignored;
  if (!error)
    error = &ignored;
  auto doc = json::parse(body, nullptr, false);
  if (doc.is_discarded()) {
    *error = "response is not JSON: " + one_line(body);
    return std::nullopt;
  }
  const json* message = nullptr;
  if (doc.is_object()) {
    if (api == config::model_api::openai) {
      auto choices = doc.find("choices");
      if (choices != doc.end() && choices->is_array() && !choices->empty() &&
          choices->front().is_object()) {
        auto m = choices->front().find("message");
        if (m != choices->front().end())
          message = &*m;
      }
    } else {
      auto m = doc.find("message");
      if (m != doc.end())
        message = &*m;
    }
  }
  if (message && message->is_object()) {
    auto content = message->find("content");
    if (content != message->end() && content->is_string())
      return content->get<std::string>();
  }
  *error = api == config::model_api::openai ? "response has no choices[0].message.content"
                                            : "response has no message.content";
  // A 200 carrying {"error": ...} happens with proxies and Ollama's loader.
  if (doc.is_object() && doc.contains("error"))
    *error += "; server said: " +
              one_line(doc["error"].is_string()
                           ? doc["error"].get<std::string>()
                           : doc["error"].dump(-1, ' ', false, json::error_handler_t::replace));
  else
    *error += ": " + one_line(body);
  return std::nullopt;
}

model_reply call_model(const config::model_config& model, const std::string& api_key,
                       const std::string& system_prompt, const std::string& prompt,
                       std::chrono::milliseconds timeout,
                       const std::function<void(int64_t)>& on_tokens) {
  using clock = std::chrono::steady_clock;
  auto start = clock::now();
  model_reply reply;
  auto elapsed = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - start);
  };
  auto done = [&]() -> model_reply {
    reply.error = mask(std::move(reply.error), api_key);
    reply.latency_ms = std::chrono::duration<double, std::milli>(clock::now() - start).count();
    return std::move(reply);
  };
  try {
    auto parts = split_endpoint(model.endpoint);
    if (!parts) {
      reply.error = "endpoint '" + one_line(model.endpoint) +
                    "' is not an http:// or https:// URL with a host";
      reply.retryable = false;
      reply.fault = model_fault::configuration;
      return done();
    }
    auto path = parts->prefix + request_path(model.api);
    auto url = parts->origin + path;
    httplib::Client client(parts->origin);
    if (!client.is_valid()) {
      reply.error = "cannot make an HTTP client for " + url;
      reply.retryable = false;
      reply.fault = model_fault::configuration;
      return done();
    }
    if (parts->scheme == "https") {
      // httplib checks the chain and then the host name (SAN, else CN)
      // when verification is on. Without ca_file it loads OpenSSL's default
      // paths: the system store (/etc/ssl/certs on Debian), and
      // SSL_CERT_FILE / SSL_CERT_DIR when set.
      client.enable_server_certificate_verification(model.tls_verify);
      if (model.tls_verify && !model.ca_file.empty())
        client.set_ca_cert_path(model.ca_file.string());
    }
    auto connect_timeout = std::min(timeout, std::chrono::milliseconds{5000});
    client.set_connection_timeout(connect_timeout);
    // Streaming: the server sends as it generates, so silence longer than
    // idle_timeout is a hung call; without it, silence is the whole wait.
    auto idle = model.stream ? std::min(model.idle_timeout, timeout) : timeout;
    client.set_read_timeout(idle);
    client.set_write_timeout(timeout);
    httplib::Headers headers{{"Accept", "application/json"}};
    if (!api_key.empty())
      headers.emplace("Authorization", "Bearer " + api_key);
    // replace, not throw: a prompt rendered from a payload with a broken
    // byte should still reach the model rather than crash the call.
    auto body = build_request_body(model, system_prompt, prompt)
                    .dump(-1, ' ', false, json::error_handler_t::replace);
    ERR_clear_error(); // so a TLS error's reason is this call's
    // The body is read through a receiver that notes when each piece
    // arrived (an idle stream is told from a dropped connection) and gives
    // up past the total timeout (a stream that never ends).
    httplib::Request request;
    request.method = "POST";
    request.path = path;
    request.headers = headers;
    request.body = std::move(body);
    request.set_header("Content-Type", "application/json");
    std::string received;
    auto last_data = clock::now();
    bool over_time = false;
    // A piece starts a line with '{' (NDJSON) or "data:" (server-sent events).
    int64_t pieces = 0;
    bool line_start = true;
    request.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
      last_data = clock::now();
      if (elapsed() > timeout) {
        over_time = true;
        return false;
      }
      received.append(data, n);
      if (on_tokens) {
        auto before = pieces;
        for (size_t i = 0; i < n; ++i) {
          if (line_start && (data[i] == '{' || data[i] == 'd'))
            ++pieces;
          line_start = data[i] == '\n';
        }
        if (pieces != before)
          on_tokens(pieces);
      }
      return true;
    };
    auto result = client.send(request);
    if (!result) {
      auto silent = std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - last_data);
      if (over_time) {
        reply.error = "still streaming after " + config::format_duration(timeout) + " from " + url +
                      " (total timeout)";
        reply.fault = model_fault::timeout;
      } else if (model.stream && result.error() == httplib::Error::Read && idle < timeout &&
                 silent * 10 >= idle * 9) {
        reply.error = "nothing from " + url + " for " + config::format_duration(idle) +
                      " (idle_timeout) after " + std::to_string(received.size()) +
                      " bytes: the call is hung";
        reply.fault = model_fault::timeout;
      } else if (!describe_tls_error(result.error(), model, parts->origin, parts->host,
                                     client.get_openssl_verify_result(), reply)) {
        describe_transport_error(result.error(), url, timeout, connect_timeout, elapsed(), reply);
      }
      return done();
    }
    result->body = std::move(received);
    reply.http_status = result->status;
    if (result->status < 200 || result->status >= 300) {
      // Masked before it is quoted: a cut-off key would escape mask() later.
      auto retry_after = result->get_header_value("Retry-After");
      if (!retry_after.empty())
        reply.retry_after = parse_retry_after(retry_after, std::chrono::system_clock::now());
      classify_http_failure(model, url, api_key, result->status, mask(result->body, api_key),
                            !retry_after.empty(), reply);
      return done();
    }
    auto read = read_streamed_reply(model.api, result->get_header_value("Content-Type"),
                                    mask(result->body, api_key));
    if (!read.content) {
      reply.error = read.error + " (from " + url + ")";
      reply.fault = model_fault::garbage_reply;
      if (read.server_error) {
        reply.fault = says_context_overflow(read.error) ? model_fault::context_overflow
                                                        : model_fault::http_status;
        reply.retryable = reply.fault != model_fault::context_overflow;
      }
      return done();
    }
    reply.ok = true;
    reply.content = std::move(*read.content);
    reply.load_ms = read.load_ms;
    reply.tokens = read.tokens;
    return done();
  } catch (const std::exception& e) {
    reply.error = "model call failed: " + one_line(e.what());
    reply.fault = model_fault::connection;
  } catch (...) {
    reply.error = "model call failed: unknown exception";
    reply.fault = model_fault::connection;
  }
  reply.ok = false;
  return done();
}

reply_check check_reply(const config::stage_config& stage, const std::string& content) {
  reply_check check;
  auto object = find_object(content, &check.error);
  if (!object)
    return check;
  // null counts as missing: the stage downstream reads the value, and a
  // model that cannot fill a field writes null rather than leave it out.
  std::vector<std::string> missing;
  for (const auto& field : stage.required_fields) {
    auto it = object->find(field);
    if (it == object->end() || it->is_null())
      missing.push_back(field);
  }
  if (!missing.empty()) {
    std::vector<std::string> present;
    for (const auto& item : object->items())
      present.push_back(item.key());
    check.error = std::string{"reply lacks required field"} + (missing.size() > 1 ? "s " : " ") +
                  join(missing) + " (has: " + one_line(join(present)) + ")";
    return check;
  }
  std::string outcome;
  if (!stage.fixed_outcome.empty()) {
    outcome = stage.fixed_outcome;
  } else if (stage.outcome_field.empty()) {
    check.error = "stage " + stage.name + " has neither outcome_field nor fixed_outcome";
    return check;
  } else {
    auto allowed = join(stage.outcomes);
    auto it = object->find(stage.outcome_field);
    if (it == object->end() || it->is_null()) {
      check.error = "reply lacks outcome field '" + stage.outcome_field +
                    "' (expected one of: " + allowed + ")";
      return check;
    }
    if (!it->is_string()) {
      check.error = "outcome field '" + stage.outcome_field + "' is " + json_type(*it) + " (" +
                    one_line(it->dump(-1, ' ', false, json::error_handler_t::replace)) +
                    "), expected one of: " + allowed;
      return check;
    }
    outcome = it->get<std::string>();
    if (std::find(stage.outcomes.begin(), stage.outcomes.end(), outcome) == stage.outcomes.end()) {
      check.error = "outcome field '" + stage.outcome_field + "' is '" + one_line(outcome) +
                    "', expected one of: " + allowed;
      return check;
    }
  }
  check.ok = true;
  check.result.outcome = std::move(outcome);
  check.result.output = std::move(*object);
  return check;
}

} // namespace turing::actors
