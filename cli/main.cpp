// The turing command line: parses arguments, runs one subcommand, and turns
// every failure into one line on stderr and a non-zero exit status.
#include "cli/cli_context.hpp"
#include "cli/commands.hpp"
#include "cli/log_setup.hpp"
#include "cli/operations_cli.hpp"
#include "persistence/embedded_cluster.hpp"
#include "persistence/store_error.hpp"

#include <CLI/CLI.hpp>
#include <iostream>
#include <malloc.h>
#include <spdlog/spdlog.h>

int main(int argc, char** argv) {
  // Payloads of megabytes come and go all the time: keep every block of
  // 1 MB or more in its own mapping, returned to the system when freed.
  // glibc's default threshold rises to 32 MB after the first such free, and
  // the heap then holds on to freed payloads (5 MB items: 283 -> 236 MB RSS).
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  using namespace turing::cli;
  CLI::App app{"turing: a self-healing runtime for durable pipelines of actors"};
  app.require_subcommand(1);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  std::string log_format_name = "text";
  app.add_option("--log-format", log_format_name,
                 "text (default; a progress bar on a terminal) or json (one object per line)")
      ->check(CLI::IsMember({"text", "json"}));

  std::filesystem::path config;
  auto add_config = [&](CLI::App* cmd) {
    cmd->add_option("-c,--config", config, "pipeline config file (TOML)")->required();
  };

  auto* run = app.add_subcommand("run", "run the pipeline's stages on this node");
  run_options run_opts;
  add_config(run);
  run->add_flag("--until-drained", run_opts.until_drained,
                "exit 0 once nothing is ready, delayed or running");
  run->add_option("--node", run_opts.node,
                  "this node's name (default: runtime.node, else "
                  "<hostname>-<pid>)");

  auto* enqueue = app.add_subcommand("enqueue", "enqueue items (JSON Lines) into an entry stage");
  enqueue_options enqueue_opts;
  add_config(enqueue);
  enqueue->add_option("-s,--stage", enqueue_opts.stage, "entry stage")->required();
  enqueue->add_option("-f,--file", enqueue_opts.file, "JSON Lines file, or - for stdin")
      ->required();
  enqueue->add_option("--label", enqueue_opts.label, "run label (default: the file name)");
  enqueue
      ->add_option("--key-field", enqueue_opts.key_field,
                   "item field used as its unique key; items whose key exists are skipped")
      ->capture_default_str();

  auto* status = app.add_subcommand("status", "show per-stage counts, runs and sinks");
  status_options status_opts;
  add_config(status);
  auto* status_json = status->add_flag("--json", status_opts.json, "print JSON");
  status
      ->add_flag("-w,--watch", status_opts.watch,
                 "live view on a terminal (q or Ctrl-C quits); without one, a single snapshot")
      ->excludes(status_json);
  double watch_seconds = 1.0;
  status->add_option("--interval", watch_seconds, "--watch: seconds between redraws")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();

  auto* report =
      app.add_subcommand("report", "summarise a run: sinks, grouped results, throughput");
  report_options report_opts;
  add_config(report);
  int64_t report_run = 0;
  report->add_option("--run", report_run, "run id (default: the latest)");
  report->add_option("--sink", report_opts.sink, "group this sink's results ...");
  report->add_option("--group-by", report_opts.group_by, "... by this result field");

  auto* check = app.add_subcommand("check", "check the runtime's invariants on the database");
  add_config(check);

  auto* migrate = app.add_subcommand("migrate", "open the database and apply migrations");
  add_config(migrate);

  auto* validate = app.add_subcommand("validate", "check a config file and its stage graph");
  add_config(validate);

  auto* replay = app.add_subcommand(
      "replay", "run scenario files in the deterministic simulation (tests/scenarios/README.md)");
  replay_options replay_opts;
  replay->add_option("files", replay_opts.files, "scenario files (TOML)")
      ->required()
      ->check(CLI::ExistingFile);
  replay->add_option("--store", replay_opts.store, "memory (default) or postgres")
      ->check(CLI::IsMember({"memory", "postgres"}));
  replay->add_flag("--compare-stores", replay_opts.compare_stores,
                   "also run on the other store and compare every item's end state");
  bool replay_once = false;
  replay->add_flag("--once", replay_once, "run once (default: twice, traces must be identical)");
  replay->add_flag("--trace", replay_opts.print_trace, "print the trace of passing scenarios too");
  replay
      ->add_option("--real-time", replay_opts.real_time_scale,
                   "run in real time on CAF's threads, every duration times SCALE (e.g. 0.05), "
                   "and require the deterministic run's outcome")
      ->check(CLI::Range(0.001, 1.0));
  replay->add_option("--trace-level", replay_opts.trace_level, "runtime log level in the trace")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  replay->add_option("--database", replay_opts.database_url,
                     "postgres: a database reserved for replays (its turing schema is dropped)");
  replay
      ->add_option("--data-dir", replay_opts.data_dir,
                   "postgres without --database: the embedded cluster's directory")
      ->capture_default_str();

  auto* record = app.add_subcommand("record", "write a finished run as a replayable scenario");
  record_options record_opts;
  add_config(record);
  int64_t record_run = 0;
  record->add_option("--run", record_run, "run id (default: the latest)");
  record->add_option("-o,--out", record_opts.out, "scenario file to write")->required();

  auto* db = app.add_subcommand("db", "manage the embedded PostgreSQL cluster");
  std::string db_action;
  add_config(db);
  db->add_option("action", db_action, "start or stop")
      ->required()
      ->check(CLI::IsMember({"start", "stop"}));

  auto run_operations_command = add_operations_commands(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  set_up_logging(log_level, log_format_name == "json" ? log_format::json : log_format::text);
  try {
    if (auto status = run_operations_command())
      return *status;
    if (*run) {
      run_opts.config = config;
      return run_command(run_opts);
    }
    if (*enqueue) {
      enqueue_opts.config = config;
      return enqueue_command(enqueue_opts);
    }
    if (*status) {
      status_opts.config = config;
      status_opts.watch_interval =
          std::chrono::milliseconds(static_cast<int64_t>(watch_seconds * 1000));
      return status_command(status_opts);
    }
    if (*report) {
      report_opts.config = config;
      if (report_run > 0)
        report_opts.run_id = report_run;
      return report_command(report_opts);
    }
    if (*check)
      return check_command(config);
    if (*migrate)
      return migrate_command(config);
    if (*validate)
      return validate_command(config);
    if (*db)
      return db_command(config, db_action);
    if (*replay) {
      replay_opts.repeat_check = !replay_once;
      return replay_command(replay_opts);
    }
    if (*record) {
      record_opts.config = config;
      if (record_run > 0)
        record_opts.run_id = record_run;
      return record_command(record_opts);
    }
  } catch (const usage_error& e) {
    spdlog::error("{}", e.what());
    return 2;
  } catch (const turing::persistence::cluster_error& e) {
    spdlog::error("embedded database: {}", e.what());
    return 1;
  } catch (const turing::persistence::store_error& e) {
    spdlog::error("database: {}", e.what());
    return 1;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
  return 0;
}
