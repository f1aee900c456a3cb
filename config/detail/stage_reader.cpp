// Reading and checking one stage table.
#include "config/detail/stage_reader.hpp"

#include "config/detail/names.hpp"
#include "config/detail/table_reader.hpp"
#include "config/prompt_template.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <system_error>

namespace turing::config::detail {

namespace {

constexpr int max_concurrency = 10000;
constexpr int max_attempts_limit = 1000;

// Keys that belong to exactly one handler kind; a stage of another kind that
// uses one gets "applies to X stages" instead of a bare "unknown key".
const std::vector<std::pair<std::string, handler_kind>>& kind_keys() {
  static const std::vector<std::pair<std::string, handler_kind>> keys = {
      {"function", handler_kind::builtin},      {"command", handler_kind::script},
      {"working_dir", handler_kind::script},    {"env", handler_kind::script},
      {"model", handler_kind::model},           {"system", handler_kind::model},
      {"prompt", handler_kind::model},          {"prompt_file", handler_kind::model},
      {"outcome_field", handler_kind::model},   {"outcome", handler_kind::model},
      {"required_fields", handler_kind::model}, {"mode", handler_kind::script}};
  return keys;
}

std::optional<handler_kind> parse_handler(std::string_view text) {
  for (auto kind : {handler_kind::builtin, handler_kind::script, handler_kind::model})
    if (to_string(kind) == text)
      return kind;
  return std::nullopt;
}

bool same_set(std::vector<std::string> x, std::vector<std::string> y) {
  std::sort(x.begin(), x.end());
  std::sort(y.begin(), y.end());
  return x == y;
}

std::string bracketed(const std::vector<std::string>& names) {
  std::string out = "[";
  for (std::size_t i = 0; i < names.size(); ++i)
    out += (i == 0 ? "" : ", ") + names[i];
  return out + "]";
}

// Line and column (1-based) of a byte offset in a text.
std::pair<int, int> line_column(std::string_view text, std::size_t offset) {
  int line = 1;
  int column = 1;
  for (std::size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return {line, column};
}

class stage_parser {
public:
  stage_parser(const toml::table& table, const std::string& name, const stage_context& context,
               diagnostics& diag)
      : reader_(table, "stages." + name, diag), context_(context), diag_(diag) {
    out_.stage.name = name;
    out_.stage.where = reader_.where();
    out_.sources.table = reader_.where();
    out_.sources.routes = reader_.where();
  }

  read_stage_result run() {
    check_name();
    auto kind = read_handler();
    read_common();
    std::map<std::string, std::string, std::less<>> misplaced;
    if (kind) {
      switch (*kind) {
      case handler_kind::builtin:
        read_builtin();
        break;
      case handler_kind::script:
        read_script();
        break;
      case handler_kind::model:
        read_model();
        break;
      }
      for (const auto& [key, owner] : kind_keys())
        if (owner != *kind)
          misplaced.emplace(key, "key " + in_quotes(key) + " applies to " +
                                     std::string{to_string(owner)} + " stages, not " +
                                     std::string{to_string(*kind)} + " ones");
    } else {
      // Without a handler there is no telling which keys belong; the handler
      // error already says what is wrong.
      for (const auto& entry : kind_keys())
        reader_.allow(entry.first);
      out_.sources.outcomes_known = false;
    }
    reader_.finish(misplaced);
    return std::move(out_);
  }

private:
  stage_config& stage() { return out_.stage; }
  stage_sources& sources() { return out_.sources; }

  void check_name() {
    const auto& name = stage().name;
    if (name == dead_letter_sink)
      diag_.error(reader_.where(), reader_.path(),
                  "'dead' is reserved for the runtime's dead-letter sink");
    else if (!is_valid_name(name))
      diag_.error(reader_.where(), reader_.path(),
                  "invalid stage name " + in_quotes(name) +
                      ": use lowercase letters, digits and '_'");
  }

  std::optional<handler_kind> read_handler() {
    auto text = reader_.string("handler");
    if (!text) {
      if (reader_.table().get("handler") == nullptr)
        reader_.missing("handler", "one of builtin, script, model");
      return std::nullopt;
    }
    auto kind = parse_handler(*text);
    if (!kind) {
      reader_.error("handler", "unknown handler " + in_quotes(*text) +
                                   did_you_mean(*text, {"builtin", "script", "model"}) +
                                   " (handlers: builtin, script, model)");
      return std::nullopt;
    }
    stage().handler = *kind;
    return kind;
  }

  void read_common() {
    if (auto entry = reader_.boolean("entry"))
      stage().entry = *entry;
    sources().entry = reader_.where("entry");
    if (auto n = reader_.integer("concurrency", 1, max_concurrency))
      stage().concurrency = static_cast<int>(*n);
    read_timeout();
    if (auto* retry = reader_.subtable("retry"))
      read_retry(*retry);
    read_outcomes();
    read_routes();
    read_join();
  }

  /// A duration, or "auto" with a ceiling (and optionally a floor and a
  /// factor): a deadline that follows the stage's latency must still end a
  /// hung call within a bound the user chose.
  void read_timeout() {
    const auto* node = reader_.table().get("timeout");
    bool automatic = node && node->is_string() && node->value<std::string>() == "auto";
    if (!automatic) {
      stage().timeout = reader_.duration("timeout");
      for (const char* key : {"timeout_floor", "timeout_ceiling", "timeout_factor"})
        if (reader_.get(key))
          reader_.error(key, std::string{key} + " is only for timeout = \"auto\"");
      return;
    }
    reader_.allow("timeout");
    adaptive_timeout a;
    if (auto floor = reader_.duration("timeout_floor"))
      a.floor = *floor;
    if (auto factor = reader_.number("timeout_factor", 1.0, 100.0))
      a.factor = *factor;
    auto ceiling = reader_.duration("timeout_ceiling");
    if (!ceiling) {
      if (!reader_.table().get("timeout_ceiling"))
        reader_.missing("timeout_ceiling",
                        "timeout = \"auto\" needs a ceiling, the longest a call may run "
                        "(e.g. \"10m\")");
      return;
    }
    if (*ceiling <= a.floor) {
      reader_.error("timeout_ceiling", "timeout_ceiling " + format_duration(*ceiling) +
                                           " must be longer than timeout_floor " +
                                           format_duration(a.floor));
      return;
    }
    a.ceiling = *ceiling;
    stage().auto_timeout = a;
  }

  void read_retry(const toml::table& table) {
    table_reader r{table, reader_.key_path("retry"), diag_};
    auto& policy = stage().retry;
    if (auto n = r.integer("max_attempts", 1, max_attempts_limit))
      policy.max_attempts = static_cast<int>(*n);
    auto backoff = r.duration("backoff");
    auto backoff_max = r.duration("backoff_max");
    if (backoff)
      policy.backoff = *backoff;
    if (backoff_max)
      policy.backoff_max = *backoff_max;
    if (auto m = r.number("backoff_multiplier", 1.0, 100.0))
      policy.backoff_multiplier = *m;
    if (auto j = r.number("jitter", 0.0, 1.0))
      policy.jitter = *j;
    // Only compare values that parsed, else one typo yields two errors.
    bool backoff_ok = backoff || table.get("backoff") == nullptr;
    bool backoff_max_ok = backoff_max || table.get("backoff_max") == nullptr;
    if (backoff_ok && backoff_max_ok && policy.backoff_max < policy.backoff) {
      auto key = backoff_max ? "backoff_max" : "backoff";
      r.error(key, "backoff_max (" + format_duration(policy.backoff_max) +
                       (backoff_max ? "" : ", the default") + ") must be at least backoff (" +
                       format_duration(policy.backoff) + ")");
    }
    r.finish();
  }

  // Outcome labels as declared; for builtins they may come from the catalog
  // instead (read_builtin).
  void read_outcomes() {
    auto list = reader_.strings("outcomes");
    if (!list) {
      if (reader_.table().get("outcomes") != nullptr)
        sources().outcomes_known = false;
      return;
    }
    auto* array = reader_.table().get("outcomes")->as_array();
    std::vector<std::string> seen;
    for (std::size_t i = 0; i < list->size(); ++i) {
      const auto& label = (*list)[i];
      auto key = reader_.key_path("outcomes") + "[" + std::to_string(i) + "]";
      if (!is_valid_name(label)) {
        reader_.error(*array->get(i), key,
                      "invalid outcome " + in_quotes(label) +
                          ": use lowercase letters, digits and '_'");
        sources().outcomes_known = false;
      } else if (std::find(seen.begin(), seen.end(), label) != seen.end()) {
        reader_.error(*array->get(i), key, "outcome " + in_quotes(label) + " is listed twice");
      } else {
        seen.push_back(label);
      }
    }
    declared_outcomes_ = true;
    stage().outcomes = std::move(seen);
  }

  void read_routes() {
    auto* routes = reader_.subtable("routes");
    if (routes == nullptr)
      return;
    sources().routes = diag_.location(routes->source());
    for (auto&& [key, value] : *routes) {
      std::string outcome{key.str()};
      auto key_path = reader_.key_path("routes") + "." + outcome;
      sources().route_keys[outcome] = diag_.location(key.source());
      auto& targets = stage().routes[outcome];
      auto& where = sources().route_targets[outcome];
      auto add = [&](const toml::node& node) {
        if (auto* s = node.as_string()) {
          targets.push_back({route_target::kind::stage, s->get()});
          where.push_back(diag_.location(node.source()));
        } else {
          reader_.error(node, key_path,
                        "expected a stage or sink name, got " + std::string{type_name(node)});
        }
      };
      if (auto* array = value.as_array()) {
        if (array->empty())
          reader_.error(value, key_path, "routes nowhere: give a stage or sink name");
        for (const auto& element : *array)
          add(element);
      } else if (value.is_string()) {
        add(value);
      } else {
        reader_.error(value, key_path,
                      "expected a stage or sink name, or an array of them, got " +
                          std::string{type_name(value)});
      }
    }
  }

  void read_join() {
    auto list = reader_.strings("join");
    sources().join = reader_.where("join");
    if (!list)
      return;
    auto* array = reader_.table().get("join")->as_array();
    for (std::size_t i = 0; i < list->size(); ++i)
      sources().join_entries.push_back(diag_.location(array->get(i)->source()));
    stage().join = std::move(*list);
  }

  void read_builtin() {
    auto function = reader_.string("function");
    if (!function) {
      if (reader_.table().get("function") == nullptr)
        reader_.missing("function", "the name of a function in the builtin catalog");
      if (!declared_outcomes_)
        sources().outcomes_known = false;
      return;
    }
    stage().function = *function;
    auto entry = context_.builtins.find(*function);
    if (entry == context_.builtins.end()) {
      std::vector<std::string> known;
      for (const auto& f : context_.builtins)
        known.push_back(f.first);
      reader_.error("function", "unknown builtin function " + in_quotes(*function) +
                                    did_you_mean(*function, known) +
                                    " (known: " + join_names(known) + ")");
      // Declared outcomes still let the graph be checked.
      if (!declared_outcomes_)
        sources().outcomes_known = false;
      return;
    }
    if (declared_outcomes_ && !same_set(stage().outcomes, entry->second)) {
      reader_.error("outcomes", "outcomes " + bracketed(stage().outcomes) +
                                    " do not match builtin " + in_quotes(*function) +
                                    ", which produces " + bracketed(entry->second) +
                                    " (leave outcomes out to take the catalog's)");
    }
    // The catalog is the truth: the function produces what it produces.
    stage().outcomes = entry->second;
  }

  void require_outcomes(std::string_view why) {
    if (reader_.table().get("outcomes") == nullptr) {
      reader_.missing("outcomes", why);
      sources().outcomes_known = false;
    } else if (declared_outcomes_ && stage().outcomes.empty() && sources().outcomes_known) {
      reader_.error("outcomes", "outcomes is empty: list the labels the handler may produce");
    }
  }

  void read_script() {
    if (auto command = reader_.strings("command")) {
      if (command->empty() || command->front().empty())
        reader_.error("command", "command is empty: give the program and its arguments, e.g. "
                                 "[\"python3\", \"step.py\"]");
      stage().command = std::move(*command);
    } else if (reader_.table().get("command") == nullptr) {
      reader_.missing("command", "the program and its arguments, e.g. [\"python3\", \"step.py\"]");
    }
    stage().working_dir = context_.base_dir;
    if (auto dir = reader_.string("working_dir")) {
      auto path = (context_.base_dir / *dir).lexically_normal();
      std::error_code ec;
      if (dir->empty())
        reader_.error("working_dir", "working_dir is empty");
      else if (!std::filesystem::is_directory(path, ec))
        reader_.error("working_dir",
                      "working_dir " + in_quotes(path.string()) + " is not a directory");
      stage().working_dir = path;
    }
    if (auto* env = reader_.subtable("env")) {
      for (auto&& [key, value] : *env) {
        std::string name{key.str()};
        auto key_path = reader_.key_path("env") + "." + name;
        if (!is_valid_env_name(name))
          diag_.error(key.source(), key_path,
                      "invalid environment variable name " + in_quotes(name));
        if (auto* s = value.as_string())
          stage().env[name] = s->get();
        else
          reader_.error(value, key_path, "expected a string, got " + std::string{type_name(value)});
      }
    }
    read_script_mode();
    require_outcomes("the labels the script may print as \"outcome\"");
  }

  void read_script_mode() {
    auto text = reader_.string("mode");
    if (!text)
      return;
    for (auto mode : {script_mode::process, script_mode::worker})
      if (to_string(mode) == *text) {
        stage().mode = mode;
        return;
      }
    reader_.error("mode", "unknown mode " + in_quotes(*text) +
                              did_you_mean(*text, {"process", "worker"}) +
                              " (modes: process, worker)");
  }

  void read_model() {
    read_model_name();
    if (auto system = reader_.string("system"))
      stage().system_prompt = *system;
    read_prompt();
    auto field = reader_.string("outcome_field");
    auto fixed = reader_.string("outcome");
    bool has_field = reader_.table().get("outcome_field") != nullptr;
    bool has_fixed = reader_.table().get("outcome") != nullptr;
    if (has_field && has_fixed) {
      reader_.error("outcome", "give either outcome_field or outcome, not both");
      sources().outcomes_known = false;
    } else if (!has_field && !has_fixed) {
      reader_.missing("outcome_field",
                      "a model stage reads its outcome from a reply field (outcome_field) or "
                      "always produces one label (outcome)");
      sources().outcomes_known = false;
    } else if (field) {
      if (field->empty())
        reader_.error("outcome_field", "outcome_field is empty");
      stage().outcome_field = *field;
      require_outcomes("the values outcome_field may take");
    } else if (fixed) {
      read_fixed_outcome(*fixed);
    } else {
      sources().outcomes_known = false;
    }
    if (auto fields = reader_.strings("required_fields")) {
      for (std::size_t i = 0; i < fields->size(); ++i) {
        const auto& f = (*fields)[i];
        if (f.empty() || std::find(fields->begin(), fields->begin() + i, f) != fields->begin() + i)
          reader_.error("required_fields",
                        "required_fields has an empty or repeated entry " + in_quotes(f));
      }
      stage().required_fields = std::move(*fields);
    }
  }

  void read_model_name() {
    auto model = reader_.string("model");
    if (!model) {
      if (reader_.table().get("model") == nullptr)
        reader_.missing("model", "the name of a [models.X] table");
      return;
    }
    stage().model = *model;
    const auto& known = context_.models;
    if (std::find(known.begin(), known.end(), *model) == known.end())
      reader_.error("model", "unknown model " + in_quotes(*model) + did_you_mean(*model, known) +
                                 " (known: " + join_names(known) + ")");
  }

  void read_prompt() {
    auto prompt = reader_.string("prompt");
    auto file = reader_.string("prompt_file");
    bool has_prompt = reader_.table().get("prompt") != nullptr;
    bool has_file = reader_.table().get("prompt_file") != nullptr;
    if (has_prompt && has_file) {
      reader_.error("prompt_file", "give either prompt or prompt_file, not both");
      return;
    }
    if (!has_prompt && !has_file) {
      reader_.missing("prompt", "a model stage needs prompt or prompt_file");
      return;
    }
    if (prompt) {
      if (prompt->empty())
        reader_.error("prompt", "prompt is empty");
      else if (auto bad = check_template(*prompt)) {
        auto [line, column] = line_column(*prompt, bad->offset);
        reader_.error("prompt", "bad template at prompt line " + std::to_string(line) +
                                    ", column " + std::to_string(column) + ": " + bad->message);
      }
      stage().prompt = std::move(*prompt);
    } else if (file) {
      read_prompt_file(*file);
    }
  }

  void read_prompt_file(const std::string& name) {
    if (name.empty()) {
      reader_.error("prompt_file", "prompt_file is empty");
      return;
    }
    auto path = (context_.base_dir / name).lexically_normal();
    std::ifstream in{path, std::ios::binary};
    std::error_code ec;
    if (!in || std::filesystem::is_directory(path, ec)) {
      reader_.error("prompt_file", "cannot read prompt file " + in_quotes(path.string()));
      return;
    }
    std::ostringstream text;
    text << in.rdbuf();
    stage().prompt = text.str();
    if (stage().prompt.empty())
      reader_.error("prompt_file", "prompt file " + in_quotes(path.string()) + " is empty");
    else if (auto bad = check_template(stage().prompt)) {
      auto [line, column] = line_column(stage().prompt, bad->offset);
      reader_.error("prompt_file", "bad template in " + path.string() + ":" + std::to_string(line) +
                                       ":" + std::to_string(column) + ": " + bad->message);
    }
  }

  void read_fixed_outcome(const std::string& label) {
    if (!is_valid_name(label)) {
      reader_.error("outcome", "invalid outcome " + in_quotes(label) +
                                   ": use lowercase letters, digits and '_'");
      sources().outcomes_known = false;
      return;
    }
    stage().fixed_outcome = label;
    if (declared_outcomes_ && stage().outcomes != std::vector<std::string>{label})
      reader_.error("outcomes", "with a fixed outcome " + in_quotes(label) +
                                    ", outcomes must be [" + label + "] or left out");
    stage().outcomes = {label};
  }

  table_reader reader_;
  const stage_context& context_;
  diagnostics& diag_;
  read_stage_result out_;
  bool declared_outcomes_ = false;
};

} // namespace

read_stage_result read_stage(const toml::table& table, const std::string& name,
                             const stage_context& context, diagnostics& diag) {
  return stage_parser{table, name, context, diag}.run();
}

} // namespace turing::config::detail
