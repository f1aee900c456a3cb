// Simulator configuration: defaults and the TOML reader (see sim_config.hpp).
#include "sim_config.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <toml++/toml.h>

namespace turing::model_sim {

namespace {

#ifndef TURING_OWL_KNOWN_SKILLS
#define TURING_OWL_KNOWN_SKILLS ""
#endif

model_profile make_profile(std::string name, double p50, double p95, double max, double bias) {
  model_profile p;
  p.name = std::move(name);
  p.latency = latency_profile{p50, p95, max};
  p.bias = bias;
  return p;
}

// Reads a TOML document; every problem becomes "source:line: message".
class reader {
public:
  reader(sim_config& config, std::string source, std::string base_dir)
      : config_(config), source_(std::move(source)), base_dir_(std::move(base_dir)) {}

  std::optional<std::string> read(const toml::table& root) {
    for (auto&& [key, node] : root) {
      auto k = std::string{key.str()};
      if (k == "host")
        string_value(node, k, config_.host);
      else if (k == "port")
        int_value(node, k, config_.port);
      else if (k == "latency_scale")
        number_value(node, k, config_.latency_scale);
      else if (k == "accept_any_model")
        bool_value(node, k, config_.accept_any_model);
      else if (k == "known_skills")
        path_value(node, k, config_.known_skills_path);
      else if (k == "threads")
        int_value(node, k, config_.threads);
      else if (k == "hang_max_ms")
        number_value(node, k, config_.hang_max_ms);
      else if (k == "seed")
        seed_value(node, k);
      else if (k == "default_model")
        profile(node, "default_model", config_.default_model);
      else if (k == "models")
        models(node);
      else if (k == "gpus")
        gpus(node);
      else
        fail(node, "unknown key '" + k + "'");
      if (error_)
        return error_;
    }
    return error_;
  }

private:
  void fail(const toml::node& node, const std::string& message) {
    if (error_)
      return;
    std::ostringstream out;
    out << source_ << ':' << node.source().begin.line << ": " << message;
    error_ = out.str();
  }

  void string_value(const toml::node& node, const std::string& key, std::string& out) {
    if (auto v = node.value<std::string>())
      out = *v;
    else
      fail(node, "'" + key + "' must be a string");
  }

  void path_value(const toml::node& node, const std::string& key, std::string& out) {
    string_value(node, key, out);
    if (!error_ && !out.empty() && std::filesystem::path{out}.is_relative() && !base_dir_.empty())
      out = (std::filesystem::path{base_dir_} / out).lexically_normal().string();
  }

  void int_value(const toml::node& node, const std::string& key, int& out) {
    if (auto v = node.as_integer())
      out = static_cast<int>(v->get());
    else
      fail(node, "'" + key + "' must be an integer");
  }

  void number_value(const toml::node& node, const std::string& key, double& out) {
    if (node.is_number())
      out = *node.value<double>();
    else
      fail(node, "'" + key + "' must be a number");
  }

  // A number TOML may spell inf or nan, so the range is checked here too,
  // where the line is known.
  void finite_non_negative(const toml::node& node, const std::string& key, double& out) {
    number_value(node, key, out);
    if (!error_ && !(std::isfinite(out) && out >= 0.0))
      fail(node, "'" + key + "' must be a finite number of at least 0");
  }

  void bool_value(const toml::node& node, const std::string& key, bool& out) {
    if (auto v = node.as_boolean())
      out = v->get();
    else
      fail(node, "'" + key + "' must be true or false");
  }

  void seed_value(const toml::node& node, const std::string& key) {
    if (auto v = node.as_integer(); v && v->get() >= 0)
      config_.seed = static_cast<std::uint64_t>(v->get());
    else
      fail(node, "'" + key + "' must be a non-negative integer");
  }

  void models(const toml::node& node) {
    const auto* table = node.as_table();
    if (table == nullptr)
      return fail(node, "'models' must be a table of [models.\"<name>\"] tables");
    for (auto&& [name, model] : *table) {
      auto& p = config_.model(name.str());
      profile(model, "models.\"" + std::string{name.str()} + "\"", p);
      if (error_)
        return;
    }
  }

  void gpus(const toml::node& node) {
    const auto* table = node.as_table();
    if (table == nullptr)
      return fail(node, "'gpus' must be a table of [gpus.<name>] tables");
    for (auto&& [name, gpu] : *table) {
      gpu_table(gpu, "gpus." + std::string{name.str()}, config_.gpu(name.str()));
      if (error_)
        return;
    }
  }

  void gpu_table(const toml::node& node, const std::string& where, gpu_profile& g) {
    const auto* table = node.as_table();
    if (table == nullptr)
      return fail(node, "'" + where + "' must be a table");
    for (auto&& [key, value] : *table) {
      auto k = std::string{key.str()};
      if (k == "models")
        model_names(value, where, g.models);
      else if (k == "max_loaded")
        whole_number(value, k, 1, 1024, g.max_loaded);
      else if (k == "load_ms")
        number_value(value, k, g.load_ms);
      else
        fail(value,
             "unknown key '" + k + "' in " + where + " (expected models, max_loaded, load_ms)");
      if (error_)
        return;
    }
  }

  void model_names(const toml::node& node, const std::string& where,
                   std::vector<std::string>& out) {
    const auto* list = node.as_array();
    if (list == nullptr)
      return fail(node, "'models' in " + where + " must be an array of model names");
    out.clear();
    for (const auto& item : *list) {
      auto name = item.value<std::string>();
      if (!name || !item.is_string() || name->empty())
        return fail(item, "'models' in " + where + " must hold non-empty strings");
      out.push_back(*name);
    }
  }

  void profile(const toml::node& node, const std::string& where, model_profile& p) {
    const auto* table = node.as_table();
    if (table == nullptr)
      return fail(node, "'" + where + "' must be a table");
    for (auto&& [key, value] : *table) {
      auto k = std::string{key.str()};
      if (k == "p50_ms")
        number_value(value, k, p.latency.p50_ms);
      else if (k == "p95_ms")
        number_value(value, k, p.latency.p95_ms);
      else if (k == "max_ms")
        number_value(value, k, p.latency.max_ms);
      else if (k == "bias")
        number_value(value, k, p.bias);
      else if (k == "faults")
        faults(value, p.faults);
      else if (k == "retry_after_s")
        whole_number(value, k, 0, 3600, p.retry_after_s);
      else if (k == "context_chars")
        whole_number(value, k, 0, 1LL << 40, p.context_chars);
      else if (k == "slowdown")
        finite_non_negative(value, k, p.slowdown);
      else
        fail(value, "unknown key '" + k + "' in " + where +
                        " (expected p50_ms, p95_ms, max_ms, bias, faults, retry_after_s, "
                        "context_chars, slowdown)");
      if (error_)
        return;
    }
  }

  template <class Int>
  void whole_number(const toml::node& node, const std::string& key, long long min, long long max,
                    Int& out) {
    auto v = node.value<int64_t>();
    if (!v || !node.is_integer() || *v < min || *v > max)
      return fail(node, "'" + key + "' must be a whole number from " + std::to_string(min) +
                            " to " + std::to_string(max));
    out = static_cast<Int>(*v);
  }

  void faults(const toml::node& node, fault_rates& rates) {
    const auto* table = node.as_table();
    if (table == nullptr)
      return fail(node, "'faults' must be a table like { hang = 0.01, http_500 = 0.02 }");
    for (auto&& [key, value] : *table) {
      auto k = std::string{key.str()};
      auto f = parse_fault(k);
      double* slot = f ? rates.slot(*f) : nullptr;
      if (slot == nullptr)
        return fail(value, "unknown fault '" + k +
                               "' (expected hang, http_500, garbage, slow, crash, http_429)");
      number_value(value, k, *slot);
      if (error_)
        return;
    }
  }

  sim_config& config_;
  std::string source_;
  std::string base_dir_;
  std::optional<std::string> error_;
};

// A GPU's limits, and no model on two GPUs (or twice on one): a request
// must know the one GPU whose memory it needs.
std::optional<std::string> check_gpus(const std::vector<gpu_profile>& gpus) {
  std::map<std::string, std::string> owner; // model -> GPU
  for (const auto& g : gpus) {
    auto where = "GPU '" + g.name + "'";
    if (g.name.empty())
      return std::string{"a GPU needs a non-empty name"};
    if (g.max_loaded < 1)
      return where + ": max_loaded must be at least 1, got " + std::to_string(g.max_loaded);
    if (!(g.load_ms >= 0.0 && g.load_ms <= 86'400'000.0))
      return where + ": load_ms must be between 0 and 86400000 (a day)";
    for (const auto& m : g.models) {
      if (m.empty())
        return where + ": a model name is empty";
      auto [at, fresh] = owner.emplace(m, g.name);
      if (!fresh && at->second == g.name)
        return where + ": model '" + m + "' is listed twice";
      if (!fresh)
        return "model '" + m + "' is on GPU '" + at->second + "' and on GPU '" + g.name +
               "'; a model may be on one GPU only";
    }
  }
  return std::nullopt;
}

} // namespace

const model_profile* sim_config::find_model(std::string_view name) const {
  auto i = std::find_if(models.begin(), models.end(),
                        [&](const model_profile& p) { return p.name == name; });
  return i == models.end() ? nullptr : &*i;
}

model_profile& sim_config::model(std::string_view name) {
  auto i = std::find_if(models.begin(), models.end(),
                        [&](const model_profile& p) { return p.name == name; });
  if (i != models.end())
    return *i;
  auto p = default_model;
  p.name = std::string{name};
  return models.emplace_back(std::move(p));
}

gpu_profile& sim_config::gpu(std::string_view name) {
  auto i =
      std::find_if(gpus.begin(), gpus.end(), [&](const gpu_profile& g) { return g.name == name; });
  if (i != gpus.end())
    return *i;
  gpu_profile g;
  g.name = std::string{name};
  return gpus.emplace_back(std::move(g));
}

sim_config default_sim_config() {
  sim_config c;
  c.known_skills_path = TURING_OWL_KNOWN_SKILLS;
  // Any LLM call (field report: p50 12.0 s, p95 48.8 s; 600 s is the
  // longest call anyone saw before giving up).
  c.default_model = make_profile("default", 12'000, 48'800, 600'000, 0.10);
  // Clara A (and Alma): the mistral skeptic runs, p50 20.9 s, p95 77.9 s.
  c.models.push_back(make_profile("mistral-nemo:12b", 20'900, 77'900, 405'000, 0.05));
  // Clara B: qwen2.5 skill extraction, p50 19.5 s, p95 48 s, max 95 s.
  c.models.push_back(make_profile("qwen2.5-coder:7b", 19'500, 48'000, 95'000, 0.15));
  // The arbitrator: a generic LLM call.
  c.models.push_back(make_profile("gemma2", 12'000, 48'800, 229'600, 0.0));
  return c;
}

std::optional<std::string> apply_toml_text(sim_config& config, std::string_view text,
                                           const std::string& source, const std::string& base_dir) {
  try {
    auto root = toml::parse(text, source);
    return reader{config, source, base_dir}.read(root);
  } catch (const toml::parse_error& e) {
    std::ostringstream out;
    out << source << ':' << e.source().begin.line << ": " << e.description();
    return out.str();
  }
}

std::optional<std::string> apply_toml_file(sim_config& config, const std::string& path) {
  std::ifstream in{path};
  if (!in)
    return "cannot read config file '" + path + "'";
  std::ostringstream text;
  text << in.rdbuf();
  auto dir = std::filesystem::path{path}.parent_path().string();
  return apply_toml_text(config, text.str(), path, dir);
}

std::optional<std::string> check_config(const sim_config& c) {
  if (c.port < 0 || c.port > 65535)
    return "port must be between 0 and 65535";
  if (!(c.latency_scale > 0.0))
    return "latency_scale must be positive";
  if (c.threads < 1 || c.threads > 4096)
    return "threads must be between 1 and 4096";
  if (!(c.hang_max_ms > 0.0))
    return "hang_max_ms must be positive";
  if (c.tls_cert.empty() != c.tls_key.empty())
    return "give both --tls-cert and --tls-key, or neither";
  std::vector<const model_profile*> all{&c.default_model};
  for (const auto& m : c.models)
    all.push_back(&m);
  for (const auto* m : all) {
    auto where = m == &c.default_model ? std::string{"default_model"} : "model '" + m->name + "'";
    if (auto e = check_latency_profile(m->latency))
      return where + ": " + *e;
    if (!(m->bias >= 0.0 && m->bias <= 1.0))
      return where + ": bias must be between 0 and 1";
    if (!(std::isfinite(m->slowdown) && m->slowdown >= 0.0)) {
      std::ostringstream got;
      got << m->slowdown;
      return where + ": slowdown must be a finite number of at least 0, got " + got.str();
    }
    if (auto e = check_fault_rates(m->faults))
      return where + ": " + *e;
  }
  return check_gpus(c.gpus);
}

} // namespace turing::model_sim
