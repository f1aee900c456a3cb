// `turing report`: what a run produced — how many items ended in each sink,
// one sink's results grouped by a field (the skill pipeline's domain tree),
// and the run's throughput.
#include "cli/cli_context.hpp"
#include "cli/commands.hpp"
#include "config/duration.hpp"
#include "persistence/pg_store.hpp"

#include <iomanip>
#include <iostream>

namespace turing::cli {

int report_command(const report_options& options) {
  auto builtins = make_builtins();
  auto config = load_checked_config(options.config, builtins);
  auto db = open_database(config, /*may_initialise=*/false);
  persistence::pg_store store{db.connection_string};
  std::optional<persistence::run_status> run;
  if (options.run_id) {
    run = store.run(*options.run_id);
  } else {
    auto all = store.runs(false);
    if (!all.empty())
      run = all.back();
  }
  if (!run) {
    std::cerr << "turing report: no run "
              << (options.run_id ? std::to_string(*options.run_id) : std::string("yet")) << " in "
              << db.description << "\n";
    throw usage_error("no such run");
  }
  std::cout << "run " << run->id << " '" << run->label << "': " << run->items_total << " items, "
            << run->pending << " pending\n";
  if (!options.sink.empty() && !options.group_by.empty()) {
    auto groups = store.result_counts(run->id, options.sink, options.group_by);
    int64_t total = 0;
    for (const auto& g : groups)
      total += g.items;
    std::cout << options.sink << " (" << total << ")\n";
    for (size_t i = 0; i < groups.size(); ++i)
      std::cout << (i + 1 == groups.size() ? "└── " : "├── ") << std::left << std::setw(28)
                << (groups[i].sink.empty() ? "(no " + options.group_by + ")" : groups[i].sink)
                << std::right << std::setw(7) << groups[i].items << "\n";
  }
  std::cout << "sinks:";
  for (const auto& s : store.sink_counts(run->id))
    std::cout << " " << s.sink << "=" << s.items;
  std::cout << "\n";
  auto end = run->finished_at.value_or(persistence::wall_clock::now());
  auto elapsed = std::chrono::duration<double>(end - run->created_at).count();
  auto finished = run->items_total - run->pending;
  std::cout << std::fixed << std::setprecision(1) << "throughput: " << finished
            << " items finished in " << elapsed
            << " s = " << (elapsed > 0 ? finished / elapsed : 0.0) << " items/s"
            << (run->finished_at ? "" : " (run still in progress)") << "\n";
  return 0;
}

} // namespace turing::cli
