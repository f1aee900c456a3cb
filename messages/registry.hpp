// The one place every message type is registered with CAF, by a stable name,
// so that nodes agree on the wire and unknown types fail loudly.
#pragma once

#include "messages/cluster.hpp"
#include "messages/execution.hpp"
#include "messages/models.hpp"
#include "messages/runtime.hpp"
#include "messages/store.hpp"
#include "messages/supervision.hpp"

#include <caf/actor_system_config.hpp>

namespace turing {

/// Registers every message type by its stable name (and the supervision
/// error category). Defined in registry.cpp: instantiating CAF's type-erased
/// machinery for every message costs about 20 s of compile time, paid once
/// there instead of in every file that includes this header for the types.
void add_message_types(caf::actor_system_config& cfg);

} // namespace turing
