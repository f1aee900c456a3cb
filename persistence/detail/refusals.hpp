// Refusals both stores make before writing: data PostgreSQL cannot store is
// named (which item, which message, where in its JSON) instead of failing later.
#pragma once

#include "persistence/storable_text.hpp"
#include "persistence/store_error.hpp"
#include "persistence/types.hpp"

#include <vector>

namespace turing::persistence::detail {

/// Items of an enqueue: the first unstorable key or payload, by position.
inline void refuse_unstorable(const std::vector<new_item>& items) {
  for (size_t i = 0; i < items.size(); ++i) {
    auto why = items[i].key ? unstorable_text(*items[i].key) : std::nullopt;
    if (why)
      *why = "key " + *why;
    else
      why = unstorable_json(items[i].payload);
    if (why)
      throw store_error(store_errc::refused,
                        "enqueue: item " + std::to_string(i + 1) + " of the batch: " + *why);
  }
}

/// A completion whose output or deliveries cannot be stored fails the
/// batch as refused, naming the message, before anything is written.
inline void refuse_unstorable(const std::vector<completion>& batch) {
  for (const auto& c : batch) {
    auto why = unstorable_json(c.output);
    for (size_t i = 0; !why && i < c.deliveries.size(); ++i)
      why = unstorable_json(c.deliveries[i].payload);
    if (why)
      throw store_error(store_errc::refused,
                        "complete: message " + std::to_string(c.fence.message_id) + " epoch " +
                            std::to_string(c.fence.epoch) + ": output: " + *why);
  }
}

} // namespace turing::persistence::detail
