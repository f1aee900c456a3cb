// Loading a config file: the TOML parse, the database, runtime, models and
// sinks sections, then each stage (stage_reader) and the graph (graph_check).
#include "config/config_loader.hpp"

#include "config/detail/diagnostics.hpp"
#include "config/detail/graph_check.hpp"
#include "config/detail/names.hpp"
#include "config/detail/stage_reader.hpp"
#include "config/detail/table_reader.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <system_error>
#include <toml++/toml.h>
#include <tuple>

namespace turing::config {

using detail::diagnostics;
using detail::in_quotes;
using detail::table_reader;

namespace {

constexpr std::int64_t max_concurrency = max_stage_concurrency;
constexpr std::int64_t max_claim_batch = 10000;

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// Accepts http(s)://host[:port][/path] and drops trailing slashes, so that
// the runtime can append "/api/chat" without producing "//api/chat".
std::optional<std::string> check_endpoint(std::string_view url, std::string& why) {
  std::string_view rest;
  if (starts_with(url, "http://"))
    rest = url.substr(7);
  else if (starts_with(url, "https://"))
    rest = url.substr(8);
  else {
    why = "must start with http:// or https://";
    return std::nullopt;
  }
  auto path_start = rest.find('/');
  auto authority = rest.substr(0, path_start);
  std::string_view host = authority;
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    // IPv6 literal: [::1]:11434
    auto close = authority.find(']');
    if (close == std::string_view::npos) {
      why = "has an unclosed '[' in its host";
      return std::nullopt;
    }
    host = authority.substr(0, close + 1);
    auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        why = "has junk after its host";
        return std::nullopt;
      }
      port = after.substr(1);
    }
  } else if (auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
    if (port.empty()) {
      why = "has an empty port";
      return std::nullopt;
    }
  }
  auto host_ok = !host.empty() && std::all_of(host.begin(), host.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '[' ||
           c == ']' || c == ':';
  });
  if (!host_ok) {
    why = "has no valid host";
    return std::nullopt;
  }
  if (!port.empty() || authority.find(':') != std::string_view::npos) {
    if (port.empty() || port.size() > 5 ||
        !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
        std::stoi(std::string{port}) < 1 || std::stoi(std::string{port}) > 65535) {
      why = "has an invalid port";
      return std::nullopt;
    }
  }
  if (path_start != std::string_view::npos) {
    auto path = rest.substr(path_start);
    if (path.find_first_of(" \t\r\n?#") != std::string_view::npos) {
      why = "may hold a path but no spaces, query or fragment";
      return std::nullopt;
    }
  }
  std::string out{url};
  while (!out.empty() && out.back() == '/')
    out.pop_back();
  return out;
}

// A libpq URL, or key=value pairs ("host=/run/pg dbname=turing").
bool looks_like_connection_string(std::string_view url) {
  return starts_with(url, "postgresql://") || starts_with(url, "postgres://") ||
         url.find('=') != std::string_view::npos;
}

/// "host:port" or "[v6]:port" into its parts; port 0 ("any free port") only
/// when `allow_any_port`.
bool split_host_port(const std::string& text, std::string& host, uint16_t& port, std::string& why,
                     bool allow_any_port = false) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    why = "expected host:port";
    return false;
  }
  host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  auto digits = text.substr(colon + 1);
  if (digits.empty() || digits.size() > 5 ||
      digits.find_first_not_of("0123456789") != std::string::npos ||
      (std::stoul(digits) == 0 && !allow_any_port) || std::stoul(digits) > 65535) {
    why = allow_any_port ? "the port must be a number in 0..65535 (0: any free port)"
                         : "the port must be a number in 1..65535";
    return false;
  }
  port = static_cast<uint16_t>(std::stoul(digits));
  return true;
}

bool is_wildcard_host(const std::string& host) {
  return host == "0.0.0.0" || host == "::" || host == "*";
}

class loader {
public:
  loader(const toml::table& root, std::string file, std::filesystem::path base_dir,
         const builtin_catalog& builtins)
      : diag_(std::move(file)), root_(root), top_(root, "", diag_), base_dir_(std::move(base_dir)),
        builtins_(builtins) {}

  load_result run() {
    config_.file = diag_.file();
    // Until a [stages] table says otherwise, stage-level errors point at the
    // start of the file.
    sources_.stages = diag_.location(root_.source());
    read_database();
    read_runtime();
    read_cluster();
    read_http();
    read_model_endpoint();
    read_gpus();
    read_api_keys();
    read_models();
    read_sinks();
    read_stages();
    read_nodes();
    top_.finish();
    detail::check_graph(config_, sources_, diag_);
    load_result out;
    out.errors = diag_.take();
    if (out.errors.empty())
      out.config = std::move(config_);
    return out;
  }

  diagnostics& diag() { return diag_; }

private:
  void read_database() {
    auto& db = config_.database;
    db.data_dir = base_dir_ / ".turing";
    auto* table = top_.subtable("database");
    if (table == nullptr)
      return;
    table_reader r{*table, "database", diag_};
    if (auto url = r.string("url")) {
      if (!url->empty() && !looks_like_connection_string(*url))
        r.error("url", "not a PostgreSQL connection string: expected postgresql://... or "
                       "key=value pairs, or empty for the embedded cluster");
      db.url = *url;
    }
    if (auto dir = r.string("data_dir")) {
      if (dir->empty())
        r.error("data_dir", "data_dir is empty");
      else
        db.data_dir = (base_dir_ / *dir).lexically_normal();
    }
    r.finish();
  }

  void read_runtime() {
    auto* table = top_.subtable("runtime");
    if (table == nullptr)
      return;
    auto& rt = config_.runtime;
    table_reader r{*table, "runtime", diag_};
    if (auto node = r.string("node"))
      rt.node = *node;
    auto lease_ttl = r.duration("lease_ttl");
    auto heartbeat = r.duration("heartbeat_interval");
    if (lease_ttl)
      rt.lease_ttl = *lease_ttl;
    if (heartbeat)
      rt.heartbeat_interval = *heartbeat;
    if (auto d = r.duration("rescue_interval"))
      rt.rescue_interval = *d;
    if (auto d = r.duration("poll_interval"))
      rt.poll_interval = *d;
    if (auto d = r.duration("shutdown_grace"))
      rt.shutdown_grace = *d;
    if (auto d = r.duration("default_timeout"))
      rt.default_timeout = *d;
    if (auto d = r.duration("stall_timeout"))
      rt.stall_timeout = *d;
    if (auto n = r.integer("claim_batch", 1, max_claim_batch))
      rt.claim_batch = static_cast<int>(*n);
    if (auto n = r.integer("max_lost_attempts", 1, 1000000))
      rt.max_lost_attempts = static_cast<int>(*n);
    read_retention(r, table->get("retain_done"));
    // A jsonb value cannot exceed 255 MB in PostgreSQL.
    constexpr std::uint64_t max_size = std::uint64_t{255} << 20;
    if (auto n = r.byte_size("max_payload", 1024, max_size))
      rt.max_payload = *n;
    if (auto n = r.byte_size("max_prompt", 256, max_size))
      rt.max_prompt = *n;
    if (auto n = r.byte_size("claim_bytes", 1024, std::uint64_t{1} << 40))
      rt.claim_bytes = *n;
    if (auto b = r.boolean("claim_handoffs"))
      rt.claim_handoffs = *b;
    bool lease_ok = lease_ttl || table->get("lease_ttl") == nullptr;
    bool heartbeat_ok = heartbeat || table->get("heartbeat_interval") == nullptr;
    if (lease_ok && heartbeat_ok && rt.heartbeat_interval >= rt.lease_ttl) {
      auto key = heartbeat ? "heartbeat_interval" : "lease_ttl";
      r.error(key, "heartbeat_interval (" + format_duration(rt.heartbeat_interval) +
                       ") must be shorter than lease_ttl (" + format_duration(rt.lease_ttl) +
                       "): a lease would expire between heartbeats");
    }
    r.finish();
  }

  /// `[cluster]`: distributed mode's address, certificates and bounds.
  void read_cluster() {
    auto* table = top_.subtable("cluster");
    if (table == nullptr)
      return;
    auto& c = config_.cluster;
    c.enabled = true;
    table_reader r{*table, "cluster", diag_};
    c.where = r.where();
    if (auto listen = r.string("listen")) {
      std::string why;
      if (!split_host_port(*listen, c.listen_host, c.listen_port, why))
        r.error("listen", "bad listen address " + in_quotes(*listen) + ": " + why);
    } else if (table->get("listen") == nullptr) {
      r.missing("listen", "the address this node listens on for its peers, e.g. "
                          "\"0.0.0.0:7400\"");
    }
    if (auto advertise = r.string("advertise")) {
      std::string why;
      if (!split_host_port(*advertise, c.advertise_host, c.advertise_port, why))
        r.error("advertise", "bad advertised address " + in_quotes(*advertise) + ": " + why);
      else if (is_wildcard_host(c.advertise_host))
        r.error("advertise",
                "advertise " + in_quotes(*advertise) + " is not an address a peer can connect to");
    } else if (!c.listen_host.empty()) {
      if (is_wildcard_host(c.listen_host))
        r.missing("advertise", "listen " + in_quotes(c.listen_host) +
                                   " is every interface: say where peers reach this node, e.g. "
                                   "\"10.0.0.5:7400\"");
      c.advertise_host = c.listen_host;
      c.advertise_port = c.listen_port;
    }
    std::string missing;
    for (auto [key, path] : {std::pair{"certificate", &c.certificate}, std::pair{"key", &c.key},
                             std::pair{"ca", &c.ca}}) {
      if (auto file = r.string(key)) {
        if (file->empty())
          r.error(key, std::string{key} + " is empty");
        else
          *path = (base_dir_ / *file).lexically_normal();
      } else if (table->get(key) == nullptr) {
        missing += (missing.empty() ? "" : ", ") + std::string{key};
      }
    }
    // One line for all three: the fix is the same (make them, name them).
    if (!missing.empty())
      diag_.error(c.where, "cluster",
                  "distributed mode needs certificate, key and ca (missing: " + missing +
                      "): it runs over mutual TLS only, since without certificates CAF uses an "
                      "anonymous cipher anyone can connect to; scripts/make-node-certs makes a "
                      "private CA and node certificates");
    if (auto d = r.duration("heartbeat_interval"))
      c.heartbeat_interval = *d;
    if (auto d = r.duration("connection_timeout"))
      c.connection_timeout = *d;
    if (auto d = r.duration("connect_timeout"))
      c.connect_timeout = *d;
    if (c.connection_timeout <= c.heartbeat_interval)
      r.error(table->get("connection_timeout") ? "connection_timeout" : "heartbeat_interval",
              "connection_timeout (" + format_duration(c.connection_timeout) +
                  ") must be longer than heartbeat_interval (" +
                  format_duration(c.heartbeat_interval) +
                  "): a quiet but healthy peer would be dropped");
    r.finish();
  }

  /// `[http]`: the operations listener. listen = "" or enabled = false
  /// turns it off; an address written here must be bound (see http_config).
  void read_http() {
    auto* table = top_.subtable("http");
    if (table == nullptr)
      return;
    auto& h = config_.http;
    table_reader r{*table, "http", diag_};
    h.where = r.where();
    if (auto enabled = r.boolean("enabled"))
      h.enabled = *enabled;
    if (auto listen = r.string("listen")) {
      std::string why;
      if (listen->empty())
        h.enabled = false;
      else if (!split_host_port(*listen, h.listen_host, h.listen_port, why, true))
        r.error("listen", "bad listen address " + in_quotes(*listen) + ": " + why);
      else
        h.explicit_listen = true;
    }
    r.finish();
  }

  /// `[nodes.<name>]`: which node hosts which models and runs which stages.
  /// Read after [models] and [stages], which it names.
  void read_nodes() {
    auto* table = top_.subtable("nodes");
    if (table == nullptr)
      return;
    std::map<std::string, std::string> host_of; // model -> node
    for (auto&& [key, value] : *table) {
      std::string name{key.str()};
      auto* node_table = value.as_table();
      if (node_table == nullptr) {
        diag_.error(value.source(), "nodes." + name,
                    "expected a table [nodes." + name + "], got " +
                        std::string{detail::type_name(value)});
        continue;
      }
      node_placement n;
      n.node = name;
      table_reader r{*node_table, "nodes." + name, diag_};
      n.where = r.where();
      if (name.empty() || name.size() > 64 ||
          name.find_first_not_of(
              "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
              std::string::npos)
        diag_.error(
            n.where, r.path(),
            "invalid node name " + in_quotes(name) +
                ": a node is named by its certificate's CN: letters, digits, '.', '_', '-'");
      if (auto models = r.strings("models")) {
        for (const auto& m : *models) {
          if (config_.find_model(m) == nullptr) {
            r.error("models", "model " + in_quotes(m) + " is not in [models]");
            continue;
          }
          auto [it, fresh] = host_of.emplace(m, name);
          if (!fresh) {
            r.error("models", "model " + in_quotes(m) + " is hosted by node " +
                                  in_quotes(it->second) +
                                  " already: a model lives on one node, so that its limits "
                                  "hold once for the cluster");
            continue;
          }
          n.models.push_back(m);
        }
      }
      if (auto stages = r.strings("stages")) {
        for (const auto& st : *stages)
          if (config_.find_stage(st) == nullptr)
            r.error("stages", "stage " + in_quotes(st) + " is not in [stages]");
        n.stages = *stages;
      }
      r.finish();
      config_.nodes.push_back(std::move(n));
    }
    std::stable_sort(config_.nodes.begin(), config_.nodes.end(), [](const auto& x, const auto& y) {
      return std::tie(x.where.line, x.where.column) < std::tie(y.where.line, y.where.column);
    });
    // A GPU's scheduler lives with its models' endpoints: one node, or all.
    for (const auto& g : config_.gpus) {
      std::set<std::string> hosts;
      for (const auto& m : g.models) {
        auto it = host_of.find(m);
        hosts.insert(it == host_of.end() ? std::string{"(every node)"} : it->second);
      }
      if (hosts.size() > 1) {
        std::string list;
        for (const auto& h : hosts)
          list += (list.empty() ? "" : ", ") + h;
        diag_.error(g.where, "gpus." + g.name,
                    "the models on GPU " + in_quotes(g.name) + " are placed on different nodes (" +
                        list +
                        "): a GPU's turns are kept where its models' endpoints live, so place "
                        "them on one node");
      }
    }
    // Other nodes reach a placed model over CAF only.
    if (!host_of.empty() && !config_.cluster.enabled)
      diag_.error(config_.nodes.front().where, "nodes",
                  "[nodes] places models on nodes, which other nodes call over CAF: it needs "
                  "[cluster] (distributed mode)");
  }

  /// `runtime.retain_done`: a duration, or "forever" to keep every done message.
  void read_retention(table_reader& r, const toml::node* node) {
    if (node == nullptr)
      return;
    auto text = node->value<std::string>();
    if (text && *text == "forever") {
      r.string("retain_done"); // marks the key as read
      config_.runtime.retain_done = millis{0};
      return;
    }
    if (text && !parse_duration(*text)) {
      r.string("retain_done");
      r.error("retain_done", "malformed duration '" + *text +
                                 "' (write e.g. \"7d\", \"36h\", or \"forever\" to keep done "
                                 "messages)");
      return;
    }
    if (auto d = r.duration("retain_done"))
      config_.runtime.retain_done = *d;
  }

  /// `model_endpoint`: the endpoint of every model that names none, so a
  /// pipeline moves to another server (a real Ollama) by one line.
  void read_model_endpoint() {
    auto endpoint = top_.string("model_endpoint");
    if (!endpoint)
      return;
    std::string why;
    if (auto url = check_endpoint(*endpoint, why))
      default_endpoint_ = *url;
    else
      diag_.error(diag_.location(root_.get("model_endpoint")->source()), "model_endpoint",
                  "bad endpoint URL " + in_quotes(*endpoint) + ": " + why);
  }

  void read_models() {
    auto* table = top_.subtable("models");
    if (table == nullptr)
      return;
    std::vector<std::string> broken;
    for (auto&& [key, value] : *table) {
      std::string name{key.str()};
      auto* model_table = value.as_table();
      if (model_table == nullptr) {
        diag_.error(value.source(), "models." + name,
                    "expected a table [models." + name + "], got " +
                        std::string{detail::type_name(value)});
        broken.push_back(name);
        continue;
      }
      config_.models.push_back(read_model(*model_table, name));
    }
    std::stable_sort(
        config_.models.begin(), config_.models.end(), [](const auto& x, const auto& y) {
          return std::tie(x.where.line, x.where.column) < std::tie(y.where.line, y.where.column);
        });
    for (const auto& m : config_.models)
      model_names_.push_back(m.name);
    check_fallbacks();
    check_gpus();
    check_api_keys();
    // A stage naming a broken model gets no second error for it.
    model_names_.insert(model_names_.end(), broken.begin(), broken.end());
  }

  /// `[gpus.<name>]`: what each GPU holds at once and how its scheduler
  /// trades waves against waiting.
  void read_gpus() {
    auto* table = top_.subtable("gpus");
    if (table == nullptr)
      return;
    for (auto&& [key, value] : *table) {
      std::string name{key.str()};
      auto* gpu_table = value.as_table();
      if (gpu_table == nullptr) {
        diag_.error(value.source(), "gpus." + name,
                    "expected a table [gpus." + name + "], got " +
                        std::string{detail::type_name(value)});
        gpu_names_.push_back(name);
        continue;
      }
      gpu_config g;
      g.name = name;
      table_reader r{*gpu_table, "gpus." + name, diag_};
      g.where = r.where();
      if (!detail::is_valid_name(name))
        diag_.error(g.where, r.path(),
                    "invalid GPU name " + in_quotes(name) +
                        ": use lowercase letters, digits and '_'");
      if (auto n = r.integer("max_loaded", 1, 64))
        g.max_loaded = static_cast<int>(*n);
      if (auto d = r.duration("swap_cost"))
        g.swap_cost = *d;
      // A bound of 0 would swap for every call: the mixing waves exist to avoid.
      if (auto d = r.duration("max_wait"))
        g.max_wait = *d;
      if (auto d = r.duration("linger"))
        g.linger = *d;
      if (g.linger && *g.linger >= g.max_wait)
        r.error("linger", "linger (" + format_duration(*g.linger) +
                              ") must be shorter than max_wait (" + format_duration(g.max_wait) +
                              "), the fairness bound");
      r.finish();
      gpu_names_.push_back(name);
      config_.gpus.push_back(std::move(g));
    }
    std::stable_sort(config_.gpus.begin(), config_.gpus.end(), [](const auto& x, const auto& y) {
      return std::tie(x.where.line, x.where.column) < std::tie(y.where.line, y.where.column);
    });
  }

  /// `[api_keys.<VAR>]`: request and token budgets per API key, shared by
  /// the models whose api_key_env is VAR.
  void read_api_keys() {
    auto* table = top_.subtable("api_keys");
    if (table == nullptr)
      return;
    for (auto&& [key, value] : *table) {
      std::string name{key.str()};
      auto* key_table = value.as_table();
      if (key_table == nullptr) {
        diag_.error(value.source(), "api_keys." + name,
                    "expected a table [api_keys." + name + "], got " +
                        std::string{detail::type_name(value)});
        continue;
      }
      api_key_budget k;
      k.env = name;
      table_reader r{*key_table, "api_keys." + name, diag_};
      k.where = r.where();
      if (!detail::is_valid_env_name(name))
        diag_.error(k.where, r.path(),
                    "invalid environment variable name " + in_quotes(name) +
                        ": [api_keys] is keyed by the variable the models' api_key_env names");
      if (auto n = r.integer("requests_per_minute", 1, 100000000))
        k.requests_per_minute = *n;
      if (auto n = r.integer("tokens_per_minute", 1, 1000000000000))
        k.tokens_per_minute = *n;
      if (!key_table->get("requests_per_minute") && !key_table->get("tokens_per_minute"))
        r.missing("requests_per_minute", "or tokens_per_minute: the budget this key shares");
      r.finish();
      config_.api_keys.push_back(std::move(k));
    }
    std::stable_sort(
        config_.api_keys.begin(), config_.api_keys.end(), [](const auto& x, const auto& y) {
          return std::tie(x.where.line, x.where.column) < std::tie(y.where.line, y.where.column);
        });
  }

  /// Every [api_keys] entry is some model's api_key_env.
  void check_api_keys() {
    for (auto& k : config_.api_keys) {
      for (const auto& m : config_.models)
        if (m.api_key_env == k.env)
          k.models.push_back(m.name);
      if (k.models.empty())
        diag_.error(k.where, "api_keys." + k.env,
                    "no model has api_key_env = " + in_quotes(k.env) +
                        ": this budget would apply to nothing");
    }
  }

  /// Every model's gpu is a [gpus] entry, and every GPU holds some model.
  void check_gpus() {
    for (const auto& m : config_.models) {
      if (m.gpu.empty())
        continue;
      auto it = std::find_if(config_.gpus.begin(), config_.gpus.end(),
                             [&](const auto& g) { return g.name == m.gpu; });
      if (it != config_.gpus.end()) {
        it->models.push_back(m.name);
        continue;
      }
      if (std::find(gpu_names_.begin(), gpu_names_.end(), m.gpu) != gpu_names_.end())
        continue; // a broken [gpus] entry, reported already
      diag_.error(m.where, "models." + m.name + ".gpu",
                  "gpu " + in_quotes(m.gpu) + " is not a GPU in [gpus]" +
                      (gpu_names_.empty() ? std::string{" (there is no [gpus] table)"}
                                          : detail::did_you_mean(m.gpu, gpu_names_)));
    }
    for (const auto& g : config_.gpus)
      if (g.models.empty())
        diag_.error(g.where, "gpus." + g.name,
                    "no model is on GPU " + in_quotes(g.name) + ": set gpu = " + in_quotes(g.name) +
                        " in the [models] it holds");
  }

  /// Every fallback_model names a model, and following them never comes
  /// back to where it started (a call would go round for ever).
  void check_fallbacks() {
    auto find = [&](const std::string& name) -> const model_config* {
      for (const auto& m : config_.models)
        if (m.name == name)
          return &m;
      return nullptr;
    };
    for (const auto& m : config_.models) {
      if (m.fallback_model.empty() || m.fallback_model == m.name)
        continue;
      if (!find(m.fallback_model)) {
        diag_.error(m.where, "models." + m.name + ".fallback_model",
                    "fallback_model " + in_quotes(m.fallback_model) +
                        " is not a model in [models]" +
                        detail::did_you_mean(m.fallback_model, model_names_));
        continue;
      }
      std::vector<std::string> path{m.name};
      for (auto* next = find(m.fallback_model); next != nullptr;
           next = next->fallback_model.empty() ? nullptr : find(next->fallback_model)) {
        if (std::find(path.begin(), path.end(), next->name) != path.end()) {
          std::string loop;
          for (const auto& n : path)
            loop += n + " -> ";
          diag_.error(m.where, "models." + m.name + ".fallback_model",
                      "fallback models go round in a circle: " + loop + next->name);
          break;
        }
        path.push_back(next->name);
      }
    }
  }

  model_config read_model(const toml::table& table, const std::string& name) {
    model_config m;
    m.name = name;
    table_reader r{table, "models." + name, diag_};
    m.where = r.where();
    if (!detail::is_valid_name(name))
      diag_.error(m.where, r.path(),
                  "invalid model name " + in_quotes(name) +
                      ": use lowercase letters, digits and '_'");
    if (auto api = r.string("api")) {
      if (*api == "ollama")
        m.api = model_api::ollama;
      else if (*api == "openai")
        m.api = model_api::openai;
      else
        r.error("api", "unknown api " + in_quotes(*api) +
                           detail::did_you_mean(*api, {"ollama", "openai"}) +
                           " (apis: ollama, openai)");
    } else if (table.get("api") == nullptr) {
      r.missing("api", "ollama or openai");
    }
    if (auto endpoint = r.string("endpoint")) {
      std::string why;
      if (auto url = check_endpoint(*endpoint, why))
        m.endpoint = *url;
      else
        r.error("endpoint", "bad endpoint URL " + in_quotes(*endpoint) + ": " + why);
    } else if (table.get("endpoint") == nullptr) {
      if (default_endpoint_)
        m.endpoint = *default_endpoint_;
      else if (!root_.get("model_endpoint"))
        r.missing("endpoint", "e.g. \"http://127.0.0.1:11434\", or a top-level model_endpoint");
    }
    if (auto model = r.string("model")) {
      if (model->empty())
        r.error("model", "model is empty: give the model name the server knows");
      m.model = *model;
    } else if (table.get("model") == nullptr) {
      r.missing("model", "the model name the server knows, e.g. \"mistral-nemo:12b\"");
    }
    if (auto n = r.integer("concurrency", 1, max_concurrency))
      m.concurrency = static_cast<int>(*n);
    m.temperature = r.number("temperature", 0.0, 2.0);
    if (auto env = r.string("api_key_env")) {
      if (!env->empty() && !detail::is_valid_env_name(*env))
        r.error("api_key_env", "invalid environment variable name " + in_quotes(*env));
      m.api_key_env = *env;
    }
    if (auto d = r.duration("max_unavailable")) {
      if (d->count() <= 0)
        r.error("max_unavailable", "must be longer than 0 (how long calls wait for a model server "
                                   "that is down, e.g. \"6h\")");
      else
        m.max_unavailable = *d;
    }
    if (auto b = r.boolean("stream"))
      m.stream = *b;
    if (auto d = r.duration("idle_timeout"))
      m.idle_timeout = *d;
    if (auto n = r.integer("max_throttled", 1, 100000))
      m.max_throttled = static_cast<int>(*n);
    if (auto gpu = r.string("gpu"))
      m.gpu = *gpu;
    if (auto n = r.integer("requests_per_minute", 1, 100000000))
      m.requests_per_minute = *n;
    if (auto n = r.integer("tokens_per_minute", 1, 1000000000000))
      m.tokens_per_minute = *n;
    if (auto fallback = r.string("fallback_model")) {
      if (*fallback == name)
        r.error("fallback_model", "a model cannot be its own fallback_model");
      m.fallback_model = *fallback;
    }
    read_tls(r, m);
    r.finish();
    return m;
  }

  /// `ca_file` and `tls_verify`. Both are errors on an http:// endpoint,
  /// where they would silently do nothing; the CA file is read now, so a
  /// wrong path fails here rather than as a handshake error on every call.
  void read_tls(table_reader& r, model_config& m) {
    bool http = starts_with(m.endpoint, "http://");
    if (auto file = r.string("ca_file")) {
      if (file->empty()) {
        r.error("ca_file", "ca_file is empty");
      } else {
        auto path = (base_dir_ / *file).lexically_normal();
        m.ca_file = path;
        std::error_code ec;
        std::ifstream in{path, std::ios::binary};
        std::string why;
        if (std::filesystem::is_directory(path, ec))
          why = "it is a directory";
        else if (!in)
          why = std::strerror(errno);
        if (!why.empty()) {
          r.error("ca_file", "cannot read CA file " + in_quotes(path.string()) + ": " + why);
        } else {
          std::ostringstream text;
          text << in.rdbuf();
          if (text.str().find("-----BEGIN CERTIFICATE-----") == std::string::npos)
            r.error("ca_file", "CA file " + in_quotes(path.string()) +
                                   " holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
        }
        if (http)
          r.error("ca_file", "ca_file applies to https:// endpoints only; endpoint is " +
                                 in_quotes(m.endpoint));
      }
    }
    if (auto verify = r.boolean("tls_verify")) {
      m.tls_verify = *verify;
      if (!*verify && http)
        r.error("tls_verify",
                "tls_verify = false applies to https:// endpoints only; endpoint is " +
                    in_quotes(m.endpoint));
    }
  }

  void read_sinks() {
    auto sinks = top_.strings("sinks");
    if (!sinks)
      return;
    auto* array = root_.get("sinks")->as_array();
    for (std::size_t i = 0; i < sinks->size(); ++i)
      sources_.sinks_at.push_back(diag_.location(array->get(i)->source()));
    config_.sinks = std::move(*sinks);
  }

  void read_stages() {
    auto* table = top_.subtable("stages");
    if (table == nullptr)
      return;
    sources_.stages = diag_.location(table->source());
    detail::stage_context context{model_names_, builtins_, base_dir_};
    std::vector<detail::read_stage_result> stages;
    for (auto&& [key, value] : *table) {
      std::string name{key.str()};
      auto* stage_table = value.as_table();
      if (stage_table == nullptr) {
        diag_.error(value.source(), "stages." + name,
                    "expected a table [stages." + name + "], got " +
                        std::string{detail::type_name(value)});
        continue;
      }
      stages.push_back(detail::read_stage(*stage_table, name, context, diag_));
      // Unset concurrency: a builtin is cheap, so many in flight (its pump
      // batches claims and writes); a model stage sends as many calls as
      // its model takes at once; a script runs one child.
      auto& stage = stages.back().stage;
      if (stage_table->get("concurrency") == nullptr) {
        if (stage.handler == handler_kind::builtin)
          stage.concurrency = builtin_concurrency_for(config_.runtime.claim_batch);
        else if (stage.handler == handler_kind::model)
          for (const auto& m : config_.models)
            if (m.name == stage.model)
              stage.concurrency = m.concurrency;
      }
    }
    // TOML tables are unordered; file order is what a reader expects.
    std::stable_sort(stages.begin(), stages.end(), [](const auto& x, const auto& y) {
      const auto& a = x.stage.where;
      const auto& b = y.stage.where;
      return std::tie(a.line, a.column) < std::tie(b.line, b.column);
    });
    for (auto& s : stages) {
      config_.stages.push_back(std::move(s.stage));
      sources_.stages_at.push_back(std::move(s.sources));
    }
  }

  diagnostics diag_;
  const toml::table& root_;
  table_reader top_;
  std::filesystem::path base_dir_;
  const builtin_catalog& builtins_;
  pipeline_config config_;
  detail::graph_sources sources_;
  std::vector<std::string> model_names_;
  std::vector<std::string> gpu_names_;
  std::optional<std::string> default_endpoint_;
};

} // namespace

std::string config_error::to_string() const {
  std::string out = where.file;
  if (where.line > 0) {
    out += ":" + std::to_string(where.line);
    if (where.column > 0)
      out += ":" + std::to_string(where.column);
  }
  out += ": ";
  if (!key.empty())
    out += key + ": ";
  return out + message;
}

load_result parse_config(std::string_view toml_text, const std::string& file_name,
                         const std::filesystem::path& base_dir, const builtin_catalog& builtins) {
  toml::table root;
  try {
    root = toml::parse(toml_text, std::string_view{file_name});
  } catch (const toml::parse_error& e) {
    diagnostics diag{file_name};
    diag.error(e.source(), "", "TOML syntax error: " + std::string{e.description()});
    return {std::nullopt, diag.take()};
  }
  std::error_code ec;
  auto base = std::filesystem::absolute(base_dir, ec);
  if (ec)
    base = base_dir;
  // The root table's node keys and sources point into `root`, which outlives
  // the loader.
  return loader{root, file_name, base.lexically_normal(), builtins}.run();
}

load_result load_config_file(const std::filesystem::path& file, const builtin_catalog& builtins) {
  auto fail = [&](std::string why) {
    load_result out;
    out.errors.push_back({{file.string(), 0, 0}, "", "cannot read config file: " + why});
    return out;
  };
  std::error_code ec;
  if (std::filesystem::is_directory(file, ec))
    return fail("it is a directory");
  std::ifstream in{file, std::ios::binary};
  if (!in)
    return fail(std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad())
    return fail(std::strerror(errno));
  auto absolute = std::filesystem::absolute(file, ec);
  if (ec)
    absolute = file;
  absolute = absolute.lexically_normal();
  auto result = parse_config(text.str(), file.string(), absolute.parent_path(), builtins);
  if (result.config)
    result.config->file = absolute;
  return result;
}

void apply_environment(pipeline_config& config) {
  if (const char* url = std::getenv(database_url_env); url != nullptr && *url != '\0')
    config.database.url = url;
}

} // namespace turing::config
