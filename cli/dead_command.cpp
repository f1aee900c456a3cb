// `turing dead list|retry|purge` and `turing audit`: the operator's view of
// dead letters and the audited actions on them, without SQL.
#include "cli/cli_context.hpp"
#include "cli/operations_cli.hpp"
#include "persistence/pg_store.hpp"
#include "persistence/store_error.hpp"

#include <iostream>
#include <spdlog/spdlog.h>

namespace turing::cli {

namespace {

using persistence::json;

/// The ids acted on, for a line of output: all of them up to a screenful.
std::string id_summary(const std::vector<int64_t>& ids, size_t shown = 20) {
  std::string out;
  for (size_t i = 0; i < ids.size() && i < shown; ++i)
    out += (i ? "," : "") + std::to_string(ids[i]);
  if (ids.size() > shown)
    out += ",... (" + std::to_string(ids.size() - shown) + " more)";
  return out;
}

/// Retry and purge act on what a filter names; no filter acts on every dead
/// letter, which must be asked for by name.
void require_filter_or_all(const dead_options& o, const char* action) {
  if (o.filter.empty() && !o.all)
    throw usage_error(std::string("dead ") + action +
                      ": no filter given; name --stage, --run or --reason, or --all to " + action +
                      " every dead letter");
}

/// A store refusal about what was asked (a cancelled run): bad input, exit 2.
[[noreturn]] void refused(const persistence::store_error& e, const std::string& what) {
  if (e.code() == persistence::store_errc::invalid_argument)
    throw usage_error(what + ": " + e.what());
  throw;
}

json attempt_json(const persistence::attempt_record& a) {
  return {{"attempt", a.attempt},
          {"epoch", a.epoch},
          {"node", a.node},
          {"result", persistence::to_string(a.result)},
          {"outcome", a.outcome.empty() ? json() : json(a.outcome)},
          {"error", a.error.empty() ? json() : json(a.error)},
          {"started_at", utc_time(a.started_at)},
          {"finished_at", utc_time(a.finished_at)}};
}

json dead_json(const persistence::dead_message& d) {
  json attempts = json::array();
  for (const auto& a : d.attempts)
    attempts.push_back(attempt_json(a));
  return {{"message_id", d.id},
          {"stage", d.stage},
          {"run", d.run_id},
          {"item", d.item_id},
          {"key", d.item_key ? json(*d.item_key) : json()},
          {"epoch", d.epoch},
          {"died_at", utc_time(d.died_at)},
          {"reason", d.reason},
          {"attempts", attempts}};
}

} // namespace

int dead_list_command(const dead_options& o) {
  auto builtins = make_builtins();
  auto config = load_checked_config(o.config, builtins);
  auto db = open_database(config, /*may_initialise=*/false);
  persistence::pg_store store{db.connection_string};
  auto dead = store.dead_messages(o.filter, o.limit);
  if (o.json) {
    json out = json::array();
    for (const auto& d : dead)
      out.push_back(dead_json(d));
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::cout << dead.size() << " dead letter(s)"
            << (static_cast<int>(dead.size()) == o.limit ? " (--limit reached)" : "") << "\n";
  for (const auto& d : dead) {
    std::cout << "message " << d.id << "  stage " << d.stage << "  run " << d.run_id << "  item "
              << d.item_id << (d.item_key ? " (" + *d.item_key + ")" : "") << "  epoch " << d.epoch
              << "  died " << utc_time(d.died_at) << "\n"
              << "  reason: " << d.reason << "\n";
    for (const auto& a : d.attempts)
      std::cout << "  attempt " << a.attempt << " on " << a.node << ": "
                << persistence::to_string(a.result)
                << (a.outcome.empty() ? "" : " (" + a.outcome + ")") << ", "
                << utc_time(a.started_at) << " - " << utc_time(a.finished_at)
                << (a.error.empty() ? "" : ": " + a.error) << "\n";
  }
  return 0;
}

// Retry and purge differ only in the store call and the words they print.
template <class Act>
persistence::operator_result act_on_dead_letters(const dead_options& o, const char* action,
                                                 const char* past, Act act) {
  require_filter_or_all(o, action);
  auto builtins = make_builtins();
  auto config = load_checked_config(o.config, builtins);
  auto db = open_database(config, /*may_initialise=*/false);
  persistence::pg_store store{db.connection_string};
  auto by = acting_operator(o.by);
  auto filter = o.filter.to_json().dump();
  persistence::operator_result result;
  try {
    result = act(store, by);
  } catch (const persistence::store_error& e) {
    refused(e, std::string("dead ") + action + " (filter " + filter + ")");
  }
  spdlog::info("dead {}: {} dead letter(s) {} by {} (filter {}): messages {}", action,
               result.count(), past, by, filter, id_summary(result.message_ids));
  std::cout << past << " " << result.count() << " dead letter(s)";
  return result;
}

int dead_retry_command(const dead_options& o) {
  auto result = act_on_dead_letters(o, "retry", "retried", [&](auto& store, const auto& by) {
    return store.retry_dead(o.filter, by);
  });
  if (result.skipped_cancelled > 0)
    std::cout << "; left " << result.skipped_cancelled << " of cancelled runs dead";
  std::cout << "\n";
  return 0;
}

int dead_purge_command(const dead_options& o) {
  act_on_dead_letters(o, "purge", "purged",
                      [&](auto& store, const auto& by) { return store.purge_dead(o.filter, by); });
  std::cout << "\n";
  return 0;
}

int audit_command(const audit_options& o) {
  auto builtins = make_builtins();
  auto config = load_checked_config(o.config, builtins);
  auto db = open_database(config, /*may_initialise=*/false);
  persistence::pg_store store{db.connection_string};
  auto log = store.operator_log(o.limit);
  if (o.json) {
    json out = json::array();
    for (const auto& a : log)
      out.push_back({{"id", a.id},
                     {"at", utc_time(a.at)},
                     {"by", a.by},
                     {"action", a.action},
                     {"filter", a.filter},
                     {"count", a.count},
                     {"message_ids", a.message_ids}});
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  if (log.empty())
    std::cout << "no operator actions recorded\n";
  for (const auto& a : log)
    std::cout << "#" << a.id << "  " << utc_time(a.at) << "  " << a.by << "  " << a.action << "  "
              << a.filter.dump() << "  " << a.count << " message(s)"
              << (a.message_ids.empty() ? "" : ": " + id_summary(a.message_ids, 50)) << "\n";
  return 0;
}

} // namespace turing::cli
