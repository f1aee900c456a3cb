// Job actors for builtins and scripts.
#include "actors/job_runner.hpp"

#include "messages/registry.hpp"

#include <caf/all.hpp>

namespace turing::actors {

caf::behavior builtin_job(caf::event_based_actor* self, caf::actor owner,
                          std::shared_ptr<const persistence::claimed_message> job,
                          std::string function_name, builtin_function function) {
  auto fence = job->fencing();
  try {
    auto r = function(job->payload);
    self->send(owner, execution_succeeded{fence, r.outcome, std::move(r.output), ""});
    self->quit();
  } catch (const handler_failure& e) {
    self->send(owner, execution_failed{fence, function_name + ": " + e.what(), true, ""});
    self->quit();
  } catch (const std::exception& e) {
    self->quit(caf::make_error(caf::sec::runtime_error,
                               "builtin " + function_name + " threw: " + e.what()));
  } catch (...) {
    self->quit(caf::make_error(caf::sec::runtime_error,
                               "builtin " + function_name + " threw a non-exception"));
  }
  return {};
}

caf::behavior script_job(caf::event_based_actor* self, caf::actor owner,
                         std::shared_ptr<const persistence::claimed_message> job,
                         script_spec spec) {
  auto fence = job->fencing();
  auto r = run_script_streamed(spec, job->payload, [&](pid_t pid) {
    self->send(owner, execution_started{fence, static_cast<int64_t>(pid)});
  });
  if (r.ok)
    self->send(owner, execution_succeeded{fence, r.outcome, std::move(r.output), ""});
  else
    self->send(owner, execution_failed{fence, r.error, true, ""});
  self->quit();
  return {};
}

} // namespace turing::actors
