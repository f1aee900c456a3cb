// Registers the operator's commands (dead letters, runs, cancel, audit) on the
// command line and runs the one given; main.cpp only calls in here.
#include "cli/operations_cli.hpp"

#include <CLI/CLI.hpp>
#include <climits>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <unistd.h>

namespace turing::cli {

std::string acting_operator(const std::string& by) {
  if (!by.empty())
    return by;
  const char* user = std::getenv("USER");
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  return std::string(user && *user ? user : "unknown") + "@" + (*host ? host : "localhost");
}

std::string utc_time(persistence::time_point t) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm utc{};
  gmtime_r(&secs, &utc);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
  char out[48];
  std::snprintf(out, sizeof out, "%s.%03dZ", stamp, static_cast<int>(ms % 1000));
  return out;
}

namespace {

/// Everything the commands' options are parsed into; lives as long as the
/// function add_operations_commands returns.
struct parsed {
  std::filesystem::path config;
  CLI::App* dead_list = nullptr;
  CLI::App* dead_retry = nullptr;
  CLI::App* dead_purge = nullptr;
  CLI::App* runs = nullptr;
  CLI::App* cancel = nullptr;
  CLI::App* audit = nullptr;
  std::string stage, reason;
  int64_t run_id = 0;
  dead_options dead;
  runs_options runs_opts;
  cancel_options cancel_opts;
  audit_options audit_opts;
};

} // namespace

std::function<std::optional<int>()> add_operations_commands(CLI::App& app) {
  auto p = std::make_shared<parsed>();
  auto add_config = [p](CLI::App* cmd) {
    cmd->add_option("-c,--config", p->config, "pipeline config file (TOML)")->required();
  };
  auto add_filter = [p](CLI::App* cmd) {
    cmd->add_option("--stage", p->stage, "only dead letters of this stage");
    cmd->add_option("--run", p->run_id, "only dead letters of this run")
        ->check(CLI::Range(int64_t{1}, int64_t{LLONG_MAX}));
    cmd->add_option("--reason", p->reason,
                    "only dead letters whose last error contains this text (any case)");
  };

  auto* dead = app.add_subcommand("dead", "list, retry or purge dead letters (audited)");
  dead->require_subcommand(1);
  p->dead_list = dead->add_subcommand(
      "list", "dead letters with their reason and attempt history, oldest first");
  add_config(p->dead_list);
  add_filter(p->dead_list);
  p->dead_list->add_option("--limit", p->dead.limit, "at most this many")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  p->dead_list->add_flag("--json", p->dead.json, "print JSON");
  for (auto** cmd : {&p->dead_retry, &p->dead_purge}) {
    bool retry = cmd == &p->dead_retry;
    *cmd =
        dead->add_subcommand(retry ? "retry" : "purge",
                             retry ? "put matching dead letters back to ready as fresh messages"
                                   : "mark matching dead letters purged (kept, no longer listed)");
    add_config(*cmd);
    add_filter(*cmd);
    (*cmd)->add_flag("--all", p->dead.all, "every dead letter, when no filter is given");
    (*cmd)->add_option("--by", p->dead.by, "who acts, for the audit log (default $USER@host)");
  }

  p->runs = app.add_subcommand("runs", "list runs: progress, dead items, state");
  add_config(p->runs);
  p->runs->add_flag("--json", p->runs_opts.json, "print JSON");
  p->runs->add_flag("--unfinished", p->runs_opts.unfinished, "only runs still running");

  p->cancel = app.add_subcommand("cancel", "stop a run: its live messages are dead-lettered");
  add_config(p->cancel);
  p->cancel->add_option("--run", p->cancel_opts.run_id, "the run to cancel")
      ->required()
      ->check(CLI::Range(int64_t{1}, int64_t{LLONG_MAX}));
  p->cancel->add_option("--by", p->cancel_opts.by,
                        "who acts, for the audit log (default $USER@host)");

  p->audit = app.add_subcommand("audit", "the operators' actions: who, when, what, which messages");
  add_config(p->audit);
  p->audit->add_option("--limit", p->audit_opts.limit, "at most this many, newest first")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  p->audit->add_flag("--json", p->audit_opts.json, "print JSON");

  return [p]() -> std::optional<int> {
    auto dead_opts = [&] {
      auto o = p->dead;
      o.config = p->config;
      if (!p->stage.empty())
        o.filter.stage = p->stage;
      if (p->run_id > 0)
        o.filter.run_id = p->run_id;
      if (!p->reason.empty())
        o.filter.reason = p->reason;
      return o;
    };
    if (*p->dead_list)
      return dead_list_command(dead_opts());
    if (*p->dead_retry)
      return dead_retry_command(dead_opts());
    if (*p->dead_purge)
      return dead_purge_command(dead_opts());
    if (*p->runs) {
      p->runs_opts.config = p->config;
      return runs_command(p->runs_opts);
    }
    if (*p->cancel) {
      p->cancel_opts.config = p->config;
      return cancel_command(p->cancel_opts);
    }
    if (*p->audit) {
      p->audit_opts.config = p->config;
      return audit_command(p->audit_opts);
    }
    return std::nullopt;
  };
}

} // namespace turing::cli
