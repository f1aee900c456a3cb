// Execution messages: what passes between a stage pump (the owner of every
// message it claimed), the executors that run handlers, and the owner's own
// timers. Every one names the lease (message id, epoch) it is about, so a
// message about an earlier execution is recognised as stale and ignored.
#pragma once

#include "messages/store.hpp"

#include <caf/meta/load_callback.hpp>
#include <caf/meta/type_name.hpp>
#include <memory>

namespace turing {

/// An executor began running a lease (a process id for scripts, else 0).
/// For model calls it is when the call leaves the endpoint's queue, and the
/// owner's deadline counts from here.
struct execution_started {
  persistence::lease fence;
  int64_t pid = 0;
};

/// The handler finished with an outcome.
struct execution_succeeded {
  persistence::lease fence;
  std::string outcome;
  persistence::json output;
  std::string model;
};

/// The handler failed; `retryable` false dead-letters the message at once
/// (e.g. a prompt with an unresolved placeholder: retrying cannot help).
/// `unavailable`: a model call that found its server down (connection
/// refused, HTTP 502/503/504); the model endpoint keeps such a call waiting
/// instead of passing the failure on, so an outage spends no attempts.
/// `connection_dropped`: the server closed the connection mid-call (it was
/// restarted, say); the endpoint runs such a call once more before passing
/// the failure on.
/// `fault`: a model call's fault class (one of model_fault below, empty for
/// other handlers); the endpoint acts on it (throttled: wait and slow down;
/// context overflow: the fallback model) and it leads the dead letter's
/// reason. `retry_after_ms`: the server's Retry-After, -1 when it sent none.
struct execution_failed {
  persistence::lease fence;
  std::string error;
  bool retryable = true;
  std::string model;
  bool unavailable = false;
  bool connection_dropped = false;
  std::string fault = {};
  int64_t retry_after_ms = -1;
};

/// The fault classes of a failed model call, as they appear in errors.
namespace model_fault {
inline constexpr const char* timeout = "timeout";
inline constexpr const char* http_status = "HTTP status";
inline constexpr const char* garbage_reply = "garbage reply";
inline constexpr const char* context_overflow = "context overflow";
inline constexpr const char* throttled = "throttled";
inline constexpr const char* unavailable = "unavailable";
inline constexpr const char* connection = "connection";
inline constexpr const char* configuration = "configuration";
} // namespace model_fault

/// From a model endpoint to the owner of a call: the model is unavailable
/// and the call waits in the endpoint's queue (its attempt is not spent).
/// The owner's deadline stops until execution_started says the call left
/// the queue again.
struct model_waiting {
  persistence::lease fence;
  std::string model;
  std::string reason;
};

/// A prompt for a model endpoint, on behalf of the owner that claimed `fence`.
struct model_call {
  persistence::lease fence;
  std::string stage;
  std::string system_prompt;
  std::string prompt;
  /// The HTTP call's own limit, so a hung server frees its thread eventually.
  persistence::millis timeout{0};
};

/// A model endpoint's raw answer to a model_call; the owner checks it
/// against its stage (JSON object, required fields, outcome).
struct model_answer {
  persistence::lease fence;
  std::string content;
  std::string model;
  double latency_ms = 0;
  /// Of latency_ms, the time the server spent loading the model (Ollama's
  /// load_duration; 0 when it was loaded already or the API does not say).
  double load_ms = 0;
  /// Prompt + completion tokens the server counted; -1 when it did not say.
  int64_t tokens = -1;
};

/// From a streaming model call to its endpoint, about once a second: the
/// pieces (about one token each) received so far.
struct model_progress {
  persistence::lease fence;
  int64_t tokens = 0;
};

/// A worker-mode script execution, from its owner to the stage's script
/// worker pool: `input` (the claimed payload, shared with the owner, never
/// copied) goes to an idle child as one line of JSON; the pool answers like a
/// script job. On the wire the payload travels as text.
struct script_call {
  persistence::lease fence;
  std::shared_ptr<const persistence::json> input;
};

/// The owner gave up on an execution (deadline passed, lease lost or
/// shutdown): the executor stops it if it still can.
struct execution_abandoned {
  persistence::lease fence;
};

/// The lease keeper found that a lease is no longer this node's (it was
/// rescued elsewhere): its owner must stop working on it and write nothing.
struct lease_lost {
  persistence::lease fence;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, execution_started& x) {
  return f(caf::meta::type_name("turing::execution_started"), x.fence, x.pid);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, execution_succeeded& x) {
  std::string output = x.output.dump();
  auto parse = caf::meta::load_callback(
      [&]() -> caf::error { return persistence::detail::parse_json_into(output, x.output); });
  return f(caf::meta::type_name("turing::execution_succeeded"), x.fence, x.outcome, output, parse,
           x.model);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, execution_failed& x) {
  return f(caf::meta::type_name("turing::execution_failed"), x.fence, x.error, x.retryable, x.model,
           x.unavailable, x.connection_dropped, x.fault, x.retry_after_ms);
}

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, model_waiting& x) {
  return f(caf::meta::type_name("turing::model_waiting"), x.fence, x.model, x.reason);
}

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, model_call& x) {
  return f(caf::meta::type_name("turing::model_call"), x.fence, x.stage, x.system_prompt, x.prompt,
           x.timeout);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, model_progress& x) {
  return f(caf::meta::type_name("turing::model_progress"), x.fence, x.tokens);
}

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, model_answer& x) {
  return f(caf::meta::type_name("turing::model_answer"), x.fence, x.content, x.model, x.latency_ms,
           x.load_ms, x.tokens);
}

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, script_call& x) {
  std::string input = x.input ? x.input->dump() : std::string("null");
  auto parse = caf::meta::load_callback([&]() -> caf::error {
    auto document = std::make_shared<persistence::json>();
    if (auto err = persistence::detail::parse_json_into(input, *document))
      return err;
    x.input = std::move(document);
    return caf::none;
  });
  return f(caf::meta::type_name("turing::script_call"), x.fence, input, parse);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, execution_abandoned& x) {
  return f(caf::meta::type_name("turing::execution_abandoned"), x.fence);
}

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, lease_lost& x) {
  return f(caf::meta::type_name("turing::lease_lost"), x.fence);
}

} // namespace turing
