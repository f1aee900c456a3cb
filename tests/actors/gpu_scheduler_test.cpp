// gpu_scheduler on CAF's deterministic test scheduler, with fake endpoints
// that report demand on cue: who gets a turn, when a wave is over, and when
// the fairness bound makes a loaded model drain for a waiting one.
#define CAF_SUITE gpu_scheduler
#include "actors/gpu_scheduler.hpp"
#include "messages/registry.hpp"

#include <caf/all.hpp>
#include <caf/test/dsl.hpp>
#include <map>
#include <memory>
#include <optional>
#include <vector>

using namespace turing;
using namespace turing::actors;
using namespace std::chrono_literals;

namespace {

using report_atom = caf::atom_constant<caf::atom("treport")>;

/// The turns each fake endpoint was told, in order.
using turns = std::map<std::string, std::vector<bool>>;

/// A model endpoint reduced to its GPU protocol: reports (queued, running)
/// when told to, and records each turn.
caf::behavior fake_endpoint(caf::event_based_actor* self, std::string model,
                            std::shared_ptr<turns> told) {
  return {
      [=](report_atom, caf::actor gpu, int64_t queued, int64_t running) {
        self->send(gpu, gpu_demand{model, queued, running});
      },
      [=](gpu_turn& t) { (*told)[t.model].push_back(t.may_start); },
      [=](gpu_sync_atom) {},
  };
}

struct fixture : test_coordinator_fixture<> {
  std::shared_ptr<turns> told = std::make_shared<turns>();
  std::map<std::string, caf::actor> endpoints;
  caf::actor gpu;

  void start(config::gpu_config g) {
    for (const auto& m : g.models)
      endpoints[m] = sys.spawn(fake_endpoint, m, told);
    gpu_scheduler_options o;
    o.gpu = std::move(g);
    gpu = spawn_gpu_scheduler(sys, o);
    sched.run();
  }

  void demand(const std::string& model, int64_t queued, int64_t running) {
    caf::anon_send(endpoints[model], report_atom::value, gpu, queued, running);
    sched.run();
  }

  /// Moves virtual time on, firing the scheduler's timers on the way.
  void wait(caf::timespan d) {
    sched.advance_time(d);
    sched.run();
  }

  /// The last turn `model` was told; nullopt if never.
  std::optional<bool> turn(const std::string& model) {
    auto it = told->find(model);
    if (it == told->end() || it->second.empty())
      return std::nullopt;
    return it->second.back();
  }

  ~fixture() {
    caf::anon_send_exit(gpu, caf::exit_reason::user_shutdown);
    for (auto& [name, e] : endpoints)
      caf::anon_send_exit(e, caf::exit_reason::user_shutdown);
    sched.run();
  }
};

config::gpu_config one_gpu(std::vector<std::string> models, int max_loaded = 1) {
  config::gpu_config g;
  g.name = "gpu0";
  g.max_loaded = max_loaded;
  g.swap_cost = 2s;
  g.max_wait = 30s;
  g.linger = 200ms;
  g.models = std::move(models);
  return g;
}

} // namespace

CAF_TEST_FIXTURE_SCOPE(gpu_scheduler_tests, fixture)

CAF_TEST(the_first_model_with_calls_takes_the_turn_and_the_other_waits) {
  start(one_gpu({"a", "b"}));
  demand("a", 3, 0);
  CAF_CHECK(turn("a") == true);
  demand("b", 2, 0);
  CAF_CHECK(turn("b") == false);
  demand("a", 1, 2); // a's wave goes on: b still waits
  CAF_CHECK(turn("a") == true);
  CAF_CHECK(turn("b") == false);
}

CAF_TEST(a_drained_wave_passes_the_turn_once_the_linger_is_over) {
  start(one_gpu({"a", "b"}));
  demand("a", 1, 0);
  demand("b", 2, 0);
  demand("a", 0, 0);
  wait(100ms);
  CAF_CHECK(turn("b") == false); // a may still hand over its next call
  wait(150ms);
  CAF_CHECK(turn("a") == false);
  CAF_CHECK(turn("b") == true);
}

CAF_TEST(a_call_handed_over_within_the_linger_keeps_the_wave) {
  start(one_gpu({"a", "b"}));
  demand("a", 1, 0);
  demand("b", 2, 0);
  demand("a", 0, 0);
  wait(100ms);
  demand("a", 1, 0);
  wait(10s);
  CAF_CHECK(turn("a") == true);
  CAF_CHECK(turn("b") == false);
}

CAF_TEST(past_max_wait_the_loaded_model_drains_then_the_waiting_one_runs) {
  start(one_gpu({"a", "b"}));
  demand("a", 5, 2);
  demand("b", 1, 0);
  wait(29s);
  CAF_CHECK(turn("a") == true);
  wait(2s);
  CAF_CHECK(turn("a") == false); // starts nothing more
  CAF_CHECK(turn("b") == false); // until a's calls in flight end
  demand("a", 5, 1);
  CAF_CHECK(turn("b") == false);
  demand("a", 5, 0);
  CAF_CHECK(turn("b") == true);
  // a waits from now on, so it gets its turn back max_wait later at the latest.
  demand("b", 0, 1);
  wait(31s);
  CAF_CHECK(turn("a") == false); // b's call is still in flight
  demand("b", 0, 0);
  CAF_CHECK(turn("a") == true);
}

CAF_TEST(max_loaded_two_runs_two_models_at_once_and_the_third_waits) {
  start(one_gpu({"a", "b", "c"}, 2));
  demand("a", 1, 0);
  demand("b", 1, 0);
  demand("c", 1, 0);
  CAF_CHECK(turn("a") == true);
  CAF_CHECK(turn("b") == true);
  CAF_CHECK(turn("c") == false);
  demand("b", 0, 0);
  wait(250ms); // b's wave is over: c replaces it, a keeps its turn
  CAF_CHECK(turn("a") == true);
  CAF_CHECK(turn("b") == false);
  CAF_CHECK(turn("c") == true);
}

CAF_TEST(an_endpoint_that_dies_gives_up_its_turn) {
  start(one_gpu({"a", "b"}));
  demand("a", 2, 1);
  demand("b", 1, 0);
  caf::anon_send_exit(endpoints["a"], caf::exit_reason::kill);
  sched.run();
  wait(250ms);
  CAF_CHECK(turn("b") == true);
}

CAF_TEST_FIXTURE_SCOPE_END()
