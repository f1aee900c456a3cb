// The history pruner.
#include "actors/history_pruner.hpp"

#include "config/duration.hpp"
#include "messages/registry.hpp"

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

namespace turing::actors {

namespace {

using prune_pass_atom = caf::atom_constant<caf::atom("prunepass")>;
using prune_batch_atom = caf::atom_constant<caf::atom("prunebtch")>;

} // namespace

caf::behavior history_pruner(caf::event_based_actor* self, history_pruner_options options,
                             std::shared_ptr<actor_directory> dir) {
  struct pass_state {
    int64_t passes = 0;
    int64_t batches = 0;
    persistence::prune_result removed;
  };
  auto pass = std::make_shared<pass_state>();
  auto retain = config::format_duration(options.retain);
  self->delayed_send(self, options.first_pass_after, prune_pass_atom::value);
  auto end_pass = [=] {
    if (pass->removed.messages > 0)
      spdlog::info("retention: pass {} removed {} done message(s) and {} attempt(s) of items "
                   "finished over {} ago, in {} batch(es)",
                   pass->passes, pass->removed.messages, pass->removed.attempts, retain,
                   pass->batches);
    else if (pass->passes == 1)
      spdlog::info("retention: first pass found no done messages older than {} to remove", retain);
    else
      spdlog::debug("retention: pass {} found nothing to remove", pass->passes);
    self->delayed_send(self, options.interval, prune_pass_atom::value);
  };
  return {
      [=](prune_pass_atom) {
        ++pass->passes;
        pass->batches = 0;
        pass->removed = {};
        self->send(self, prune_batch_atom::value);
      },
      [=](prune_batch_atom) {
        auto store = dir->get("store");
        if (!store) {
          self->delayed_send(self, options.interval, prune_pass_atom::value);
          return;
        }
        self->request(store, std::chrono::minutes(2), prune_request{options.retain, options.batch})
            .then(
                [=](const persistence::prune_result& r) {
                  ++pass->batches;
                  pass->removed.messages += r.messages;
                  pass->removed.attempts += r.attempts;
                  // A full batch means more may wait: the next goes behind
                  // whatever the store's mailbox holds meanwhile.
                  if (r.messages >= options.batch)
                    self->send(self, prune_batch_atom::value);
                  else
                    end_pass();
                },
                [=](caf::error& e) {
                  spdlog::log(persistence::secondhand_level(options.outage),
                              "retention: pass {} failed after removing {} done message(s): {}",
                              pass->passes, pass->removed.messages, self->system().render(e));
                  self->delayed_send(self, options.interval, prune_pass_atom::value);
                });
      },
  };
}

} // namespace turing::actors
