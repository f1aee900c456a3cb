// The stage-graph checks: incident 11 of the field report (stages that were
// never wired in) is the reason every one of them is an error, not a warning.
#include "config/detail/graph_check.hpp"

#include "config/detail/names.hpp"

#include <algorithm>
#include <deque>
#include <functional>
#include <set>

namespace turing::config::detail {

namespace {

bool contains(const std::vector<std::string>& xs, std::string_view x) {
  return std::find(xs.begin(), xs.end(), x) != xs.end();
}

class graph_checker {
public:
  graph_checker(pipeline_config& config, const graph_sources& sources, diagnostics& diag)
      : config_(config), sources_(sources), diag_(diag), edges_(config.stages.size()),
        guessed_edges_(config.stages.size()), sink_used_(config.sinks.size(), false) {
    for (std::size_t i = 0; i < config.stages.size(); ++i) {
      stage_index_.emplace(config.stages[i].name, i);
      stage_names_.push_back(config.stages[i].name);
    }
  }

  void run() {
    check_sinks();
    if (config_.stages.empty()) {
      diag_.error(sources_.stages, "stages", "no stages declared");
      return;
    }
    check_entry();
    for (std::size_t i = 0; i < config_.stages.size(); ++i) {
      resolve_routes(i);
      check_outcomes(i);
    }
    for (std::size_t i = 0; i < config_.stages.size(); ++i)
      check_join(i);
    check_reachable();
    check_sinks_used();
    check_cycles();
  }

private:
  std::string stage_key(std::size_t i) const { return "stages." + config_.stages[i].name; }

  std::string route_key(std::size_t i, const std::string& outcome) const {
    return stage_key(i) + ".routes." + outcome;
  }

  std::optional<std::size_t> stage_of(std::string_view name) const {
    auto i = stage_index_.find(std::string{name});
    if (i == stage_index_.end())
      return std::nullopt;
    return i->second;
  }

  std::optional<std::size_t> sink_of(std::string_view name) const {
    auto i = std::find(config_.sinks.begin(), config_.sinks.end(), name);
    if (i == config_.sinks.end())
      return std::nullopt;
    return static_cast<std::size_t>(i - config_.sinks.begin());
  }

  void check_sinks() {
    for (std::size_t i = 0; i < config_.sinks.size(); ++i) {
      const auto& name = config_.sinks[i];
      const auto& where = sources_.sinks_at[i];
      if (name == dead_letter_sink)
        diag_.error(where, "sinks",
                    "'dead' is reserved for the runtime's dead-letter sink and cannot be declared");
      else if (!is_valid_name(name))
        diag_.error(where, "sinks",
                    "invalid sink name " + in_quotes(name) +
                        ": use lowercase letters, digits and '_'");
      else if (sink_of(name) != i)
        diag_.error(where, "sinks", "sink " + in_quotes(name) + " is declared twice");
      else if (stage_of(name))
        diag_.error(
            where, "sinks",
            in_quotes(name) +
                " is both a stage and a sink; names must be unique across stages and sinks");
    }
  }

  void check_entry() {
    auto any = std::any_of(config_.stages.begin(), config_.stages.end(),
                           [](const auto& s) { return s.entry; });
    if (!any)
      diag_.error(sources_.stages, "stages",
                  "no entry stage: mark at least one stage with entry = true");
  }

  void resolve_routes(std::size_t i) {
    auto& stage = config_.stages[i];
    const auto& src = sources_.stages_at[i];
    for (auto& [outcome, targets] : stage.routes) {
      const auto& where = src.route_targets.at(outcome);
      std::vector<std::string> seen;
      for (std::size_t j = 0; j < targets.size(); ++j) {
        auto& target = targets[j];
        auto key = route_key(i, outcome);
        if (contains(seen, target.name)) {
          diag_.error(where[j], key, in_quotes(target.name) + " is listed twice");
          continue;
        }
        seen.push_back(target.name);
        if (target.name == dead_letter_sink) {
          diag_.error(where[j], key,
                      "'dead' is the runtime's dead-letter sink and cannot be routed to; "
                      "items reach it when their retries run out");
        } else if (target.name == stage.name) {
          diag_.error(where[j], key, "stage " + in_quotes(stage.name) + " routes to itself");
        } else if (auto t = stage_of(target.name)) {
          target.type = route_target::kind::stage;
          if (!contains_edge(i, *t))
            edges_[i].push_back(*t);
        } else if (auto s = sink_of(target.name)) {
          target.type = route_target::kind::sink;
          sink_used_[*s] = true;
        } else {
          // Reachability follows the likely intended stage, so that one typo
          // in a route does not also report everything downstream unwired.
          if (auto guess = closest(target.name, stage_names_))
            guessed_edges_[i].push_back(stage_index_.at(*guess));
          auto candidates = stage_names_;
          candidates.insert(candidates.end(), config_.sinks.begin(), config_.sinks.end());
          diag_.error(where[j], key,
                      "unknown route target " + in_quotes(target.name) +
                          did_you_mean(target.name, candidates) + " (not a stage or a sink)");
        }
      }
    }
  }

  bool contains_edge(std::size_t from, std::size_t to) const {
    return std::find(edges_[from].begin(), edges_[from].end(), to) != edges_[from].end();
  }

  void check_outcomes(std::size_t i) {
    const auto& stage = config_.stages[i];
    const auto& src = sources_.stages_at[i];
    if (!src.outcomes_known)
      return;
    for (const auto& outcome : stage.outcomes)
      if (stage.routes.count(outcome) == 0)
        diag_.error(src.routes, stage_key(i) + ".routes",
                    "outcome " + in_quotes(outcome) + " is not routed: add routes." + outcome +
                        " = \"<stage or sink>\" (an unrouted outcome strands its items)");
    for (const auto& [outcome, targets] : stage.routes)
      if (!contains(stage.outcomes, outcome))
        diag_.error(src.route_keys.at(outcome), route_key(i, outcome),
                    in_quotes(outcome) + " is not an outcome of stage " + in_quotes(stage.name) +
                        did_you_mean(outcome, stage.outcomes) +
                        " (outcomes: " + join_names(stage.outcomes) + ")");
  }

  void check_join(std::size_t j) {
    const auto& join_stage = config_.stages[j];
    const auto& src = sources_.stages_at[j];
    if (join_stage.join.empty())
      return;
    auto join_key = stage_key(j) + ".join";
    if (join_stage.entry)
      diag_.error(src.entry, stage_key(j) + ".entry",
                  "a join stage cannot be an entry stage: its items arrive from the stages it "
                  "joins");
    if (join_stage.join.size() < 2)
      diag_.error(src.join, join_key,
                  "a join waits for at least two upstream stages; without join this is an "
                  "ordinary stage");
    for (std::size_t k = 0; k < join_stage.join.size(); ++k) {
      const auto& up = join_stage.join[k];
      const auto& where = src.join_entries[k];
      auto upstream = stage_of(up);
      if (std::find(join_stage.join.begin(), join_stage.join.begin() + k, up) !=
          join_stage.join.begin() + k)
        diag_.error(where, join_key, in_quotes(up) + " is listed twice");
      else if (up == join_stage.name)
        diag_.error(where, join_key, "a stage cannot join itself");
      else if (!upstream)
        diag_.error(where, join_key,
                    "unknown stage " + in_quotes(up) + " in join" + did_you_mean(up, stage_names_));
      else if (!contains_edge(*upstream, j))
        diag_.error(where, join_key,
                    in_quotes(up) + " does not route to " + in_quotes(join_stage.name) +
                        "; a join waits only for stages that route to it");
    }
    // Items from a stage the join does not wait for would never be matched.
    for (std::size_t i = 0; i < config_.stages.size(); ++i) {
      const auto& stage = config_.stages[i];
      if (i == j || contains(join_stage.join, stage.name))
        continue;
      for (const auto& [outcome, targets] : stage.routes)
        for (std::size_t t = 0; t < targets.size(); ++t)
          if (targets[t].name == join_stage.name)
            diag_.error(sources_.stages_at[i].route_targets.at(outcome)[t], route_key(i, outcome),
                        in_quotes(join_stage.name) + " is a join stage and " +
                            in_quotes(stage.name) + " is not in its join list (join = [" +
                            join_names(join_stage.join) + "])");
    }
  }

  void check_reachable() {
    std::vector<bool> reached(config_.stages.size(), false);
    std::deque<std::size_t> todo;
    for (std::size_t i = 0; i < config_.stages.size(); ++i)
      if (config_.stages[i].entry) {
        reached[i] = true;
        todo.push_back(i);
      }
    while (!todo.empty()) {
      auto i = todo.front();
      todo.pop_front();
      for (const auto* edges : {&edges_[i], &guessed_edges_[i]})
        for (auto t : *edges)
          if (!reached[t]) {
            reached[t] = true;
            todo.push_back(t);
          }
    }
    for (std::size_t i = 0; i < config_.stages.size(); ++i)
      if (!reached[i])
        diag_.error(sources_.stages_at[i].table, stage_key(i),
                    "stage " + in_quotes(config_.stages[i].name) +
                        " is unreachable: no entry stage leads to it (route an outcome to it or "
                        "set entry = true)");
  }

  void check_sinks_used() {
    for (std::size_t i = 0; i < config_.sinks.size(); ++i) {
      const auto& name = config_.sinks[i];
      // Bad or duplicate sinks were reported by check_sinks already.
      if (!sink_used_[i] && is_valid_name(name) && name != dead_letter_sink && sink_of(name) == i &&
          !stage_of(name))
        diag_.error(sources_.sinks_at[i], "sinks",
                    "sink " + in_quotes(name) + " is never routed to");
    }
  }

  // Tarjan's strongly connected components: every component with more than
  // one stage holds a cycle (self-routes were reported by resolve_routes).
  void check_cycles() {
    auto n = config_.stages.size();
    std::vector<int> index(n, -1), low(n, 0), component(n, -1);
    std::vector<bool> on_stack(n, false);
    std::vector<std::size_t> stack;
    int counter = 0;
    int components = 0;
    std::function<void(std::size_t)> visit = [&](std::size_t v) {
      index[v] = low[v] = counter++;
      stack.push_back(v);
      on_stack[v] = true;
      for (auto w : edges_[v]) {
        if (index[w] < 0) {
          visit(w);
          low[v] = std::min(low[v], low[w]);
        } else if (on_stack[w]) {
          low[v] = std::min(low[v], index[w]);
        }
      }
      if (low[v] == index[v]) {
        std::size_t w = 0;
        do {
          w = stack.back();
          stack.pop_back();
          on_stack[w] = false;
          component[w] = components;
        } while (w != v);
        ++components;
      }
    };
    for (std::size_t v = 0; v < n; ++v)
      if (index[v] < 0)
        visit(v);
    std::set<int> reported;
    // Stages are in file order, so each cycle is reported at its first stage.
    for (std::size_t v = 0; v < n; ++v) {
      auto c = component[v];
      auto size = std::count(component.begin(), component.end(), c);
      if (size < 2 || !reported.insert(c).second)
        continue;
      auto path = cycle_through(v, component);
      std::string text;
      for (auto s : path)
        text += config_.stages[s].name + " -> ";
      text += config_.stages[v].name;
      diag_.error(sources_.stages_at[v].table, stage_key(v),
                  "routes form a cycle: " + text + " (a pipeline must be acyclic)");
    }
  }

  // A path start -> ... -> (back to start) inside start's component.
  std::vector<std::size_t> cycle_through(std::size_t start, const std::vector<int>& component) {
    std::vector<std::size_t> path{start};
    std::vector<bool> visited(config_.stages.size(), false);
    visited[start] = true;
    std::function<bool(std::size_t)> walk = [&](std::size_t v) {
      for (auto w : edges_[v]) {
        if (component[w] != component[start])
          continue;
        if (w == start)
          return true;
        if (visited[w])
          continue;
        visited[w] = true;
        path.push_back(w);
        if (walk(w))
          return true;
        path.pop_back();
      }
      return false;
    };
    walk(start);
    return path;
  }

  pipeline_config& config_;
  const graph_sources& sources_;
  diagnostics& diag_;
  std::map<std::string, std::size_t> stage_index_;
  std::vector<std::string> stage_names_;
  /// Stage -> stages it routes to, each once.
  std::vector<std::vector<std::size_t>> edges_;
  /// Stage -> stages its misspelt route targets probably meant.
  std::vector<std::vector<std::size_t>> guessed_edges_;
  std::vector<bool> sink_used_;
};

} // namespace

void check_graph(pipeline_config& config, const graph_sources& sources, diagnostics& diag) {
  graph_checker{config, sources, diag}.run();
}

} // namespace turing::config::detail
