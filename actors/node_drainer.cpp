// The node drainer: every pump drains at once; the reports are summed.
#include "actors/node_drainer.hpp"

#include "messages/registry.hpp"

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

namespace turing::actors {

namespace {

caf::behavior drainer(caf::event_based_actor* self,
                      std::shared_ptr<const config::pipeline_config> pipeline,
                      std::shared_ptr<actors::actor_directory> dir) {
  return {[=](drain_all_atom) {
    auto promise = self->make_response_promise<drain_report>();
    struct tally {
      drain_report total;
      size_t waiting = 0;
    };
    auto t = std::make_shared<tally>();
    auto grace = pipeline->runtime.shutdown_grace;
    for (const auto& s : pipeline->stages) {
      auto pump = dir->get("pump/" + s.name);
      if (!pump)
        continue;
      ++t->waiting;
      auto done = [=]() mutable {
        if (--t->waiting == 0)
          promise.deliver(t->total);
      };
      self->request(pump, grace + std::chrono::seconds(15), drain_request{grace})
          .then(
              [=](const drain_report& r) mutable {
                t->total.finished += r.finished;
                t->total.released += r.released;
                done();
              },
              [=](caf::error& e) mutable {
                spdlog::warn("shutdown: stage {} did not report its drain: {}", s.name,
                             self->system().render(e));
                done();
              });
    }
    if (t->waiting == 0)
      promise.deliver(t->total);
    return promise;
  }};
}

} // namespace

caf::actor spawn_node_drainer(caf::actor_system& sys,
                              std::shared_ptr<const config::pipeline_config> pipeline,
                              std::shared_ptr<actor_directory> dir) {
  return sys.spawn(drainer, std::move(pipeline), std::move(dir));
}

} // namespace turing::actors
