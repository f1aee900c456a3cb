// Registration of the supervision messages and error category with CAF (see
// supervision.hpp), compiled once rather than in every includer.
#include "messages/supervision.hpp"

#include <caf/actor_system_config.hpp>

namespace turing {

void add_supervision_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<child_started>("turing::child_started");
  cfg.add_message_type<child_exited>("turing::child_exited");
  cfg.add_message_type<supervisor_gave_up>("turing::supervisor_gave_up");
  cfg.add_message_type<child_status>("turing::child_status");
  cfg.add_error_category(
      supervision_category, [](uint8_t code, caf::atom_value, const caf::message& ctx) {
        auto result = "supervision_error(" + to_string(static_cast<supervision_errc>(code));
        if (ctx.match_elements<std::string>())
          result += ", " + ctx.get_as<std::string>(0);
        else if (!ctx.empty())
          result += ", " + caf::to_string(ctx);
        return result + ")";
      });
}

} // namespace turing
