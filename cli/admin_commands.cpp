// `turing migrate`, `turing validate` and `turing db start|stop`: the
// small administrative commands.
#include "cli/cli_context.hpp"
#include "cli/commands.hpp"
#include "persistence/embedded_cluster.hpp"
#include "persistence/pg_store.hpp"

#include <iostream>
#include <spdlog/spdlog.h>

namespace turing::cli {

int migrate_command(const std::filesystem::path& config_file) {
  auto builtins = make_builtins();
  auto config = load_checked_config(config_file, builtins);
  open_database(config);
  return 0;
}

int check_command(const std::filesystem::path& config_file) {
  auto builtins = make_builtins();
  auto config = load_checked_config(config_file, builtins);
  auto db = open_database(config, /*may_initialise=*/false);
  persistence::pg_store store{db.connection_string};
  auto violations = store.check_invariants();
  for (const auto& v : violations)
    std::cout << "violated: " << v << "\n";
  if (violations.empty()) {
    std::cout << "invariants hold: every finished item in one sink, run counts exact, no "
                 "message completed twice, no late result applied, attempts ordered\n";
    return 0;
  }
  spdlog::error("check: {} invariant violation(s) in {}", violations.size(), db.description);
  return 4;
}

int validate_command(const std::filesystem::path& config_file) {
  auto builtins = make_builtins();
  auto config = load_checked_config(config_file, builtins);
  std::cout << config.file.string() << ": ok (" << config.stages.size() << " stages, "
            << config.models.size() << " models, " << config.sinks.size() << " sinks)\n";
  return 0;
}

int db_command(const std::filesystem::path& config_file, const std::string& action) {
  auto builtins = make_builtins();
  auto config = load_checked_config(config_file, builtins);
  if (!config.database.url.empty()) {
    std::cerr << "turing db " << action << ": " << config_file.string()
              << " names a database server (database.url or TURING_DATABASE_URL); turing "
                 "manages only its embedded cluster\n";
    throw usage_error("not an embedded database");
  }
  const auto& dir = config.database.data_dir;
  if (action == "start") {
    open_database(config);
    return 0;
  }
  if (action == "stop") {
    bool was_running = persistence::embedded_cluster::stop(dir);
    std::cout << "embedded cluster at " << dir.string()
              << (was_running ? ": stopped\n" : ": was not running\n");
    return 0;
  }
  std::cerr << "turing db: unknown action '" << action << "' (start, stop)\n";
  throw usage_error("unknown db action");
}

} // namespace turing::cli
