// Versioned schema migrations, applied at start in one transaction under an
// advisory lock so that processes starting together do not race.
#pragma once

#include <string>
#include <vector>

namespace pqxx {
class connection_base;
}

namespace turing::persistence {

struct migration {
  int version;
  const char* name;
  const char* sql;
};

/// Every migration turing knows, in version order.
const std::vector<migration>& all_migrations();

struct migration_report {
  int from_version = 0;
  int to_version = 0;
  std::vector<int> applied;
};

/// Applies the missing migrations; a no-op when the schema is current.
/// Throws store_error(schema) when a migration fails or the database is newer.
migration_report migrate(pqxx::connection_base& connection);

} // namespace turing::persistence
