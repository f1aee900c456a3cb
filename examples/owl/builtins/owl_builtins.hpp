// The skill pipeline's C++ stages: Carl creates the entity, compare_proposals
// joins Clara A and Clara B, Commit writes the is_a relation.
#pragma once

#include "actors/builtin_registry.hpp"

namespace turing::examples::owl {

/// The 8 domains of the skill registry.
const std::vector<std::string>& domains();

/// Registers owl.create_entity, owl.compare_proposals and owl.commit.
void register_builtins(actors::builtin_registry& registry);

} // namespace turing::examples::owl
