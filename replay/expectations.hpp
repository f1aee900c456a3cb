// Checking a scenario's end: its expectations and the store's invariants,
// each violation one line naming the item, attempt or count involved.
#pragma once

#include "persistence/store.hpp"
#include "replay/scenario.hpp"
#include "replay/sim_world.hpp"
#include "replay/simulation.hpp"

namespace turing::replay {

/// Every item's end state, by key.
std::map<std::string, item_end_state> end_state_of(persistence::store& store,
                                                   const sim_world& world);

/// Appends to `out.failures` every expectation of `sc` that does not hold
/// and every invariant the store reports violated.
void check_expectations(const scenario& sc, persistence::store& store, const sim_world& world,
                        replay_result& out);

} // namespace turing::replay
