// `turing enqueue`: reads items from a JSON Lines file and enqueues them into
// an entry stage as one run. Every line is checked before anything is written.
#include "cli/cli_context.hpp"
#include "cli/commands.hpp"
#include "persistence/pg_store.hpp"

#include <fstream>
#include <iostream>
#include <spdlog/spdlog.h>

namespace turing::cli {

namespace {

constexpr size_t chunk_size = 5000;
constexpr size_t max_reported_errors = 20;

std::vector<persistence::new_item> read_items(std::istream& in, const std::string& name,
                                              const std::string& key_field) {
  std::vector<persistence::new_item> items;
  std::vector<std::string> errors;
  std::string line;
  for (size_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos)
      continue;
    auto report = [&](const std::string& what) {
      if (errors.size() < max_reported_errors)
        errors.push_back(name + ":" + std::to_string(number) + ": " + what);
      else if (errors.size() == max_reported_errors)
        errors.push_back(name + ": more errors follow; stopped reporting");
    };
    auto item = nlohmann::json::parse(line, nullptr, false);
    if (item.is_discarded()) {
      report("not valid JSON");
      continue;
    }
    if (!item.is_object()) {
      report("an item must be a JSON object, got " + std::string(item.type_name()));
      continue;
    }
    persistence::new_item n;
    if (auto k = item.find(key_field); k != item.end()) {
      if (k->is_string())
        n.key = k->get<std::string>();
      else if (k->is_number_integer())
        n.key = std::to_string(k->get<int64_t>());
      else {
        report("field '" + key_field + "' must be a string or an integer");
        continue;
      }
    }
    n.payload = std::move(item);
    items.push_back(std::move(n));
  }
  if (!errors.empty()) {
    for (const auto& e : errors)
      std::cerr << e << "\n";
    throw usage_error(name + ": invalid items; nothing was enqueued");
  }
  return items;
}

} // namespace

int enqueue_command(const enqueue_options& options) {
  auto builtins = make_builtins();
  auto config = load_checked_config(options.config, builtins);
  const auto* stage = config.find_stage(options.stage);
  if (!stage) {
    std::cerr << "turing enqueue: no stage '" << options.stage << "' in " << config.file.string()
              << "\n";
    throw usage_error("unknown stage " + options.stage);
  }
  if (!stage->entry) {
    std::cerr << "turing enqueue: stage '" << options.stage
              << "' is not an entry stage (entry = true) in " << config.file.string() << "\n";
    throw usage_error("not an entry stage " + options.stage);
  }
  std::vector<persistence::new_item> items;
  if (options.file == "-") {
    items = read_items(std::cin, "<stdin>", options.key_field);
  } else {
    std::ifstream in{options.file};
    if (!in) {
      std::cerr << "turing enqueue: cannot read " << options.file.string() << "\n";
      throw usage_error("unreadable " + options.file.string());
    }
    items = read_items(in, options.file.string(), options.key_field);
  }
  auto db = open_database(config);
  persistence::pg_store store{db.connection_string};
  persistence::enqueue_result total;
  auto label = options.label.empty() ? options.file.filename().string() : options.label;
  for (size_t from = 0; from < items.size() || from == 0; from += chunk_size) {
    persistence::enqueue_request request;
    request.stage = options.stage;
    request.label = label;
    request.max_attempts = stage->retry.max_attempts;
    if (total.run_id)
      request.run_id = total.run_id;
    auto to = std::min(items.size(), from + chunk_size);
    request.items.assign(std::make_move_iterator(items.begin() + from),
                         std::make_move_iterator(items.begin() + to));
    auto r = store.enqueue(request);
    total.run_id = r.run_id;
    total.enqueued += r.enqueued;
    total.duplicates += r.duplicates;
    if (items.empty())
      break;
  }
  spdlog::info("enqueue: run {}: {} item(s) into stage {}, {} duplicate key(s) skipped",
               total.run_id, total.enqueued, options.stage, total.duplicates);
  std::cout << "run " << total.run_id << ": enqueued " << total.enqueued << " into "
            << options.stage << " (" << total.duplicates << " duplicates skipped)\n";
  return 0;
}

} // namespace turing::cli
