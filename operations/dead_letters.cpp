// The newest dead letters (dead, not purged) with their reasons, for /api/status;
// `turing dead list` (store::dead_messages) gives their attempt histories.
#include "operations/dead_letters.hpp"

namespace turing::operations {

nlohmann::json newest_dead_letters(pqxx::connection& db, int limit) {
  pqxx::read_transaction tx{db};
  auto rows = tx.exec_params(R"sql(
    SELECT m.id, m.stage, m.run_id, m.item_id, i.key, coalesce(m.last_error, ''),
           (extract(epoch FROM m.finished_at) * 1000)::bigint
    FROM turing.messages m JOIN turing.items i ON i.id = m.item_id
    WHERE m.state = 'dead' AND m.purged_at IS NULL
    ORDER BY m.finished_at DESC, m.id DESC
    LIMIT $1)sql",
                             limit);
  auto out = nlohmann::json::array();
  for (const auto& r : rows)
    out.push_back(
        {{"message_id", r[0].as<int64_t>()},
         {"stage", r[1].as<std::string>()},
         {"run_id", r[2].as<int64_t>()},
         {"item_id", r[3].as<int64_t>()},
         {"key", r[4].is_null() ? nlohmann::json() : nlohmann::json(r[4].as<std::string>())},
         {"reason", r[5].as<std::string>()},
         {"dead_at_ms", r[6].is_null() ? nlohmann::json() : nlohmann::json(r[6].as<int64_t>())}});
  return out;
}

} // namespace turing::operations
