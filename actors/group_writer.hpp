// The node's group commit: the completions and failures of every pump of a
// node, merged into shared transactions before they reach the store.
#pragma once

#include "actors/actor_directory.hpp"
#include "actors/handoff_room.hpp"
#include "persistence/types.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <chrono>
#include <memory>

namespace turing::actors {

/// Name of the writer in the node's directory.
inline constexpr const char* group_writer_name = "writer";

struct group_writer_options {
  /// Merged batches of one kind (completions or failures) being written at
  /// once; the store pool's other workers stay free for claims.
  int max_in_flight = 2;
  /// While a batch is in flight, the next one waits until this many rows
  /// are queued (a shallow queue lingers, a deep one goes at once).
  size_t deep_queue = 64;
  /// Rows per transaction: a larger batch holds its row locks longer.
  size_t max_rows = 1024;
  std::chrono::seconds store_timeout{60};
  /// After a completion batch commits, wake this node's pumps of the stages
  /// it handed off to (directory name "pump/<stage>") without waiting for
  /// the NOTIFY to come back through PostgreSQL.
  bool wake_local_pumps = true;
  /// The node's handoff rooms: a completion batch reserves places its
  /// stages' pumps offer and hands that many of its messages to them
  /// already claimed for `node` (lease `lease_ttl`). Null: none.
  std::shared_ptr<handoff_rooms> rooms;
  std::string node;
  persistence::millis lease_ttl{30000};
};

/// How it works: a pump sends a std::vector<completion> (or <failure>) as it
/// would to the store and gets the same std::vector<fence_result> back.
/// The writer queues each batch with its response promise; when fewer than
/// max_in_flight merged batches are being written (and the queue is deep
/// enough, if one is), it concatenates whole queued batches, up to max_rows,
/// writes them through "store" in one transaction, and answers each sender
/// with its slice of the results. A failed write fails every batch in it;
/// the pumps keep their entries and send them again (every entry is fenced
/// by (id, epoch), so a retry never applies anything twice).
/// Before a completion batch goes, it reserves places in the rooms of the
/// stages the batch hands off to; once answered, each such pump gets a
/// handoffs_claimed with its reservation and the messages claimed for it
/// (none if the write failed), and only stages handed messages it did not
/// claim are woken.
caf::actor spawn_group_writer(caf::actor_system& sys, group_writer_options options,
                              std::shared_ptr<actor_directory> dir);

} // namespace turing::actors
