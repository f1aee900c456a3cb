// Loading the config and opening the database, shared by every command.
#include "cli/cli_context.hpp"

#include "config/config_loader.hpp"
#include "examples/owl/builtins/owl_builtins.hpp"
#include "persistence/embedded_cluster.hpp"
#include "persistence/migrations.hpp"
#include "persistence/pg_store.hpp"
#include "persistence/store_error.hpp"

#include <iostream>
#include <pqxx/pqxx>
#include <spdlog/spdlog.h>

namespace turing::cli {

actors::builtin_registry make_builtins() {
  actors::builtin_registry registry;
  // The runtime's own: passes its input on unchanged (outcome "ok"), for
  // wiring, tests and benchmarks of the runtime's own overhead.
  registry.add("turing.pass", {"ok"}, [](const persistence::json&) {
    return actors::handler_result{"ok", persistence::json::object()};
  });
  examples::owl::register_builtins(registry);
  return registry;
}

config::pipeline_config load_checked_config(const std::filesystem::path& file,
                                            const actors::builtin_registry& builtins) {
  auto loaded = config::load_config_file(file, builtins.catalog());
  if (!loaded.ok()) {
    for (const auto& e : loaded.errors)
      std::cerr << e.to_string() << "\n";
    throw usage_error(std::to_string(loaded.errors.size()) + " error(s) in config " +
                      file.string());
  }
  config::apply_environment(*loaded.config);
  return std::move(*loaded.config);
}

database_handle open_database(const config::pipeline_config& config, bool may_initialise) {
  database_handle db;
  if (!config.database.url.empty()) {
    db.connection_string = config.database.url;
    db.description = persistence::describe_connection(config.database.url);
    spdlog::info("database: using server {}", db.description);
  } else {
    persistence::embedded_cluster_options options;
    options.data_dir = config.database.data_dir;
    options.may_initialise = may_initialise;
    auto cluster = persistence::embedded_cluster::ensure_running(options);
    db.connection_string = cluster.connection_string();
    db.description = "embedded cluster at " + cluster.cluster_dir().string();
    spdlog::info("database: {}: {}", db.description, cluster.found_state());
  }
  try {
    pqxx::connection connection{db.connection_string};
    auto report = persistence::migrate(connection);
    if (report.applied.empty())
      spdlog::info("database: schema at version {}, nothing to migrate", report.to_version);
    else
      spdlog::info("database: schema migrated from version {} to {}", report.from_version,
                   report.to_version);
  } catch (const persistence::store_error&) {
    throw;
  } catch (const std::exception& e) {
    std::string why = e.what();
    for (auto& c : why)
      if (c == '\n')
        c = ' ';
    throw persistence::store_error(persistence::store_errc::unavailable,
                                   "cannot connect to database " + db.description + ": " + why);
  }
  return db;
}

} // namespace turing::cli
