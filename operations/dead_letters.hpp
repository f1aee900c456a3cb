// The newest dead-lettered messages with their reasons, for the dashboard's
// dead-letter list (/api/status). A small query of its own for now.
#pragma once

#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

namespace turing::operations {

/// The newest `limit` dead messages, newest first: [{message_id, stage,
/// run_id, item_id, key, reason, dead_at_ms}]. Reads the partial index of
/// dead messages, so its cost follows the dead-letter count, not the history.
nlohmann::json newest_dead_letters(pqxx::connection& db, int limit = 100);

} // namespace turing::operations
