// The fixtures of the store conformance suite: the same test code runs
// against memory_store (virtual clock) and pg_store (a private cluster), the
// latter on the wall clock or, like memory_store, on an injected clock.
#pragma once

#include "persistence/memory_store.hpp"

#include <memory>

#ifdef TURING_CONFORMANCE_POSTGRES
#include "persistence/migrations.hpp"
#include "persistence/pg_store.hpp"
#include "tests/support/pg_test_cluster.hpp"

#include <pqxx/pqxx>
#endif

namespace turing::testing {

using namespace turing::persistence;

/// Where the virtual clocks start: 50 years after the epoch, in whole microseconds.
inline const time_point virtual_epoch = time_point{std::chrono::hours{24 * 365 * 50}};

#if defined(TURING_CONFORMANCE_POSTGRES) && defined(TURING_CONFORMANCE_INJECTED_CLOCK)

/// The store's clock is a variable the test moves (as for memory_store), so
/// cases can expect exact times. Defined where that holds.
#define TURING_FIXTURE_VIRTUAL_CLOCK 1

/// A fresh, migrated database per test; pg_store runs on an injected clock,
/// which every transaction hands to PostgreSQL as turing.now().
struct store_fixture {
  time_point now = virtual_epoch;
  std::string dsn = pg_test_cluster::instance().fresh_database();
  std::unique_ptr<pg_store> owned = make();
  store& s = *owned;

  std::unique_ptr<pg_store> make() {
    pqxx::connection c{dsn};
    migrate(c);
    return std::make_unique<pg_store>(dsn, [this] { return now; });
  }
  std::unique_ptr<store> another_connection() {
    return std::make_unique<pg_store>(dsn, [this] { return now; });
  }
  void advance(millis d) { now += d; }
};

#elif defined(TURING_CONFORMANCE_POSTGRES)

/// A fresh, migrated database per test. Time moves forward by shifting every
/// stored timestamp back, which is what the clock moving forward looks like
/// to the rows, so lease expiry and backoff need no waiting.
struct store_fixture {
  std::string dsn = pg_test_cluster::instance().fresh_database();
  std::unique_ptr<pg_store> owned = make();
  store& s = *owned;

  std::unique_ptr<pg_store> make() {
    pqxx::connection c{dsn};
    migrate(c);
    return std::make_unique<pg_store>(dsn);
  }
  std::unique_ptr<store> another_connection() { return std::make_unique<pg_store>(dsn); }

  void advance(millis d) {
    pqxx::connection c{dsn};
    pqxx::work tx{c};
    auto by = "(" + std::to_string(d.count()) + " * interval '1 millisecond')";
    tx.exec("UPDATE turing.messages SET available_at = available_at - " + by +
            ", lease_expires_at = lease_expires_at - " + by + ", heartbeat_at = heartbeat_at - " +
            by + ", started_at = started_at - " + by + ", finished_at = finished_at - " + by +
            ", created_at = created_at - " + by);
    tx.exec("UPDATE turing.items SET created_at = created_at - " + by +
            ", finished_at = finished_at - " + by);
    tx.exec("UPDATE turing.runs SET created_at = created_at - " + by);
    tx.commit();
  }
};

#else

#define TURING_FIXTURE_VIRTUAL_CLOCK 1

struct store_fixture {
  time_point now = virtual_epoch;
  std::unique_ptr<memory_store> owned = std::make_unique<memory_store>([this] { return now; });
  store& s = *owned;

  /// One memory store is one database: a second "connection" is the same object.
  store* another_connection_ptr() { return owned.get(); }
  void advance(millis d) { now += d; }
};

#endif

} // namespace turing::testing
