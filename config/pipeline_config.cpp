// Lookups on a loaded pipeline_config.
#include "config/pipeline_config.hpp"

#include <algorithm>

namespace turing::config {

const stage_config* pipeline_config::find_stage(std::string_view name) const {
  auto i =
      std::find_if(stages.begin(), stages.end(), [&](const auto& s) { return s.name == name; });
  return i != stages.end() ? &*i : nullptr;
}

const model_config* pipeline_config::find_model(std::string_view name) const {
  auto i =
      std::find_if(models.begin(), models.end(), [&](const auto& m) { return m.name == name; });
  return i != models.end() ? &*i : nullptr;
}

const gpu_config* pipeline_config::find_gpu(std::string_view name) const {
  auto i = std::find_if(gpus.begin(), gpus.end(), [&](const auto& g) { return g.name == name; });
  return i != gpus.end() ? &*i : nullptr;
}

const api_key_budget* pipeline_config::find_api_key(std::string_view env) const {
  auto i =
      std::find_if(api_keys.begin(), api_keys.end(), [&](const auto& k) { return k.env == env; });
  return i != api_keys.end() ? &*i : nullptr;
}

millis gpu_config::linger_or_default() const {
  if (linger)
    return *linger;
  return std::clamp(swap_cost / 10, millis{10}, millis{2000});
}

bool pipeline_config::is_sink(std::string_view name) const {
  return std::find(sinks.begin(), sinks.end(), name) != sinks.end();
}

millis pipeline_config::timeout_of(const stage_config& stage) const {
  if (stage.auto_timeout)
    return stage.auto_timeout->midpoint();
  return stage.timeout.value_or(runtime.default_timeout);
}

std::string_view to_string(handler_kind kind) {
  switch (kind) {
  case handler_kind::builtin:
    return "builtin";
  case handler_kind::script:
    return "script";
  case handler_kind::model:
    return "model";
  }
  return "?";
}

std::string_view to_string(script_mode mode) {
  switch (mode) {
  case script_mode::process:
    return "process";
  case script_mode::worker:
    return "worker";
  }
  return "?";
}

std::string_view to_string(model_api api) {
  switch (api) {
  case model_api::ollama:
    return "ollama";
  case model_api::openai:
    return "openai";
  }
  return "?";
}

std::string pipeline_config::model_host(std::string_view model) const {
  for (const auto& n : nodes)
    if (std::find(n.models.begin(), n.models.end(), model) != n.models.end())
      return n.node;
  return {};
}

bool pipeline_config::runs_stage(std::string_view node, std::string_view stage) const {
  for (const auto& n : nodes)
    if (n.node == node)
      return !n.stages || std::find(n.stages->begin(), n.stages->end(), stage) != n.stages->end();
  return true;
}

} // namespace turing::config
