// `turing enqueue`: streams items from a JSON Lines file into an entry stage
// as one run, in one transaction. Every line is checked before anything is
// written (the error names file:line), so a file is enqueued whole or not at all.
#include "cli/cli_context.hpp"
#include "cli/commands.hpp"
#include "cli/item_line.hpp"
#include "config/byte_size.hpp"
#include "persistence/payload_size.hpp"
#include "persistence/pg_store.hpp"

#include <cstdio>
#include <fstream>
#include <iostream>
#include <spdlog/spdlog.h>
#include <unistd.h>

namespace turing::cli {

namespace {

constexpr size_t max_reported_errors = 20;

/// The file's items, read line by line (never the whole file at once); the
/// store rewinds it if its transaction has to start over.
class jsonl_items final : public persistence::item_source {
public:
  explicit jsonl_items(std::istream& in) : in_(in) {}

  void rewind() override {
    in_.clear();
    in_.seekg(0);
  }

  /// A checked line as it is: PostgreSQL parses it and reads its key.
  std::optional<persistence::new_item> next() override {
    std::string line;
    while (std::getline(in_, line)) {
      if (line.find_first_not_of(" \t\r") == std::string::npos)
        continue; // blank, as the check read it
      persistence::new_item item;
      item.payload_text = std::move(line);
      return item;
    }
    return std::nullopt;
  }

private:
  std::istream& in_;
};

/// Checks every line; prints the first errors as file:line: reason. Returns
/// the number of items.
int64_t check_items(std::istream& in, const std::string& name, const std::string& key_field,
                    std::uint64_t max_payload) {
  std::vector<std::string> errors;
  int64_t items = 0;
  std::string line;
  for (size_t number = 1; std::getline(in, line); ++number) {
    auto parsed = parse_item_line(line, key_field);
    // Stored compact, a payload is rarely longer than its line (only number
    // forms such as 1e5 print longer): count exactly only for long lines.
    if (parsed.item && line.size() > max_payload / 2) {
      auto size = persistence::json_text_size(parsed.item->payload);
      if (size > max_payload)
        parsed.error = "item is " + config::format_byte_size(size) + " (" + std::to_string(size) +
                       " bytes), over runtime.max_payload " + config::format_byte_size(max_payload);
    }
    if (parsed.item && parsed.error.empty())
      ++items;
    if (parsed.error.empty())
      continue;
    if (errors.size() < max_reported_errors)
      errors.push_back(name + ":" + std::to_string(number) + ": " + parsed.error);
    else if (errors.size() == max_reported_errors)
      errors.push_back(name + ": more errors follow; stopped reporting");
  }
  if (!errors.empty()) {
    for (const auto& e : errors)
      std::cerr << e << "\n";
    throw usage_error(name + ": invalid items; nothing was enqueued");
  }
  return items;
}

/// Standard input cannot be read twice: it is spooled to an unlinked
/// temporary file first.
std::filesystem::path spool_stdin() {
  auto dir = std::filesystem::temp_directory_path();
  std::string path = (dir / "turing-enqueue-XXXXXX").string();
  int fd = ::mkstemp(path.data());
  if (fd < 0)
    throw std::runtime_error("cannot create a temporary file in " + dir.string() +
                             " to hold standard input");
  ::close(fd);
  std::ofstream out{path, std::ios::binary};
  out << std::cin.rdbuf();
  if (!out)
    throw std::runtime_error("cannot spool standard input to " + path);
  return path;
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
  auto path = options.file;
  std::string name = options.file.string();
  std::optional<std::filesystem::path> spooled;
  if (options.file == "-") {
    spooled = spool_stdin();
    path = *spooled;
    name = "<stdin>";
  }
  struct remove_spool {
    std::optional<std::filesystem::path>& p;
    ~remove_spool() {
      if (p) {
        std::error_code ignored;
        std::filesystem::remove(*p, ignored);
      }
    }
  } cleanup{spooled};
  std::ifstream in{path, std::ios::binary};
  if (!in) {
    std::cerr << "turing enqueue: cannot read " << name << "\n";
    throw usage_error("unreadable " + name);
  }
  auto count = check_items(in, name, options.key_field, config.runtime.max_payload);
  auto db = open_database(config);
  persistence::pg_store store{db.connection_string};
  persistence::enqueue_request request;
  request.stage = options.stage;
  request.label = options.label.empty() ? options.file.filename().string() : options.label;
  request.max_attempts = stage->retry.max_attempts;
  request.key_field = options.key_field;
  jsonl_items items{in};
  auto total = store.enqueue_all(request, items);
  spdlog::info("enqueue: run {}: {} item(s) of {} into stage {} in one transaction, {} duplicate "
               "key(s) skipped",
               total.run_id, total.enqueued, count, options.stage, total.duplicates);
  std::cout << "run " << total.run_id << ": enqueued " << total.enqueued << " into "
            << options.stage << " (" << total.duplicates << " duplicates skipped)\n";
  return 0;
}

} // namespace turing::cli
