// `turing status`: per stage what is ready, running, done and dead, latency and
// timeouts, models, runs, sinks, nodes; once (plain or --json) or live (--watch).
#include "cli/cli_context.hpp"
#include "cli/commands.hpp"
#include "cli/terminal.hpp"
#include "operations/status_snapshot.hpp"
#include "operations/status_text.hpp"
#include "operations/watch_view.hpp"
#include "persistence/pg_store.hpp"

#include <iostream>
#include <spdlog/spdlog.h>
#include <unistd.h>

namespace turing::cli {

namespace {

/// Redraws the live view every `interval` until q, Ctrl-C or SIGTERM. A
/// database that stops answering is shown in the frame and retried: the
/// view outlives an outage rather than dying with it.
int watch(persistence::pg_store& store, const config::pipeline_config& config,
          const std::string& description, std::chrono::milliseconds interval) {
  operations::run_rate_tracker rates;
  nlohmann::json last;
  terminal_session screen;
  do {
    try {
      last = operations::status_snapshot(store, config, description, &rates);
    } catch (const std::exception& e) {
      if (last.is_null())
        last = {{"database", description},
                {"runs", nlohmann::json::array()},
                {"stages", nlohmann::json::array()},
                {"models", nlohmann::json::array()},
                {"nodes", nlohmann::json::array()}};
      last["error"] = e.what();
    }
    screen.draw(operations::watch_frame(last, terminal_width(STDOUT_FILENO)));
  } while (!screen.wait_for_quit(interval));
  return 0;
}

} // namespace

int status_command(const status_options& options) {
  auto builtins = make_builtins();
  auto config = load_checked_config(options.config, builtins);
  auto db = open_database(config, /*may_initialise=*/false);
  persistence::pg_store store{db.connection_string};
  if (options.watch) {
    if (is_terminal(STDOUT_FILENO))
      return watch(store, config, db.description, options.watch_interval);
    // No terminal to redraw: one plain snapshot of the same view.
    for (const auto& line :
         operations::watch_frame(operations::status_snapshot(store, config, db.description), 100))
      std::cout << line << "\n";
    return 0;
  }
  auto snapshot = operations::status_snapshot(store, config, db.description);
  if (options.json)
    std::cout << snapshot.dump(2) << "\n";
  else
    std::cout << operations::status_text(snapshot);
  return 0;
}

} // namespace turing::cli
