// `turing record`: a finished run of the configured database, written as a
// scenario file that `turing replay` plays back in simulation.
#include "cli/cli_context.hpp"
#include "cli/commands.hpp"
#include "persistence/pg_store.hpp"
#include "replay/recorder.hpp"

#include <fstream>
#include <spdlog/spdlog.h>

namespace turing::cli {

int record_command(const record_options& o) {
  auto builtins = make_builtins();
  auto pipeline = load_checked_config(o.config, builtins);
  auto db = open_database(pipeline, /*may_initialise=*/false);
  persistence::pg_store store{db.connection_string};
  int64_t run_id = 0;
  if (o.run_id) {
    run_id = *o.run_id;
  } else {
    for (const auto& r : store.runs(false))
      run_id = std::max(run_id, r.id);
    if (run_id == 0)
      throw usage_error("record: the database has no run to record");
  }
  replay::recording rec;
  try {
    rec = replay::record_run(store, run_id, pipeline, o.config);
  } catch (const std::invalid_argument& e) {
    throw usage_error(std::string("record: ") + e.what());
  }
  std::ofstream out{o.out};
  out << rec.scenario_toml;
  out.close();
  if (!out)
    throw usage_error("record: cannot write " + o.out.string());
  spdlog::info("record: run {} -> {}: {} item(s), {} attempt(s){}", run_id, o.out.string(),
               rec.items, rec.attempts,
               rec.approximated ? ", " + std::to_string(rec.approximated) +
                                      " replayed as hangs (lost, crashed or released)"
                                : std::string());
  return 0;
}

} // namespace turing::cli
