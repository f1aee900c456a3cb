// Pass-chain configs, numbered items and the end-state query for the
// deployment tests.
#include "tests/e2e/pass_chain.hpp"

#include <fstream>
#include <pqxx/pqxx>

namespace turing::testing {

namespace fs = std::filesystem;

fs::path write_pass_chain_config(const temp_dir& dir, const std::string& database_toml, int stages,
                                 const std::string& runtime_toml, const std::string& file_name) {
  auto path = dir.path / file_name;
  std::ofstream out{path};
  out << "sinks = [\"out\"]\n\n[database]\n"
      << database_toml << "\n\n[runtime]\n"
      << runtime_toml << "\n";
  for (int i = 1; i <= stages; ++i) {
    out << "\n[stages.s" << i << "]\nhandler = \"builtin\"\nfunction = \"turing.pass\"\n";
    if (i == 1)
      out << "entry = true\n";
    out << "routes = { ok = \"" << (i == stages ? std::string("out") : "s" + std::to_string(i + 1))
        << "\" }\n";
  }
  return path;
}

fs::path write_numbered_items(const temp_dir& dir, size_t n) {
  auto path = dir.path / "items.jsonl";
  std::ofstream out{path};
  for (size_t i = 0; i < n; ++i)
    out << "{\"n\": " << i << "}\n";
  return path;
}

chain_end_state read_chain_end_state(const std::string& dsn) {
  pqxx::connection c{dsn};
  pqxx::work tx{c};
  chain_end_state s;
  auto one = [&](const char* sql) { return tx.exec1(sql)[0].as<int64_t>(); };
  s.items = one("SELECT count(*) FROM turing.items");
  s.finished_in_out = one("SELECT count(*) FROM turing.items WHERE finished_at IS NOT NULL AND "
                          "sink = 'out'");
  s.unfinished_or_else = s.items - s.finished_in_out;
  s.live_messages = one("SELECT count(*) FROM turing.messages WHERE state IN ('ready', 'running')");
  s.duplicate_messages = one("SELECT count(*) FROM (SELECT item_id, stage FROM turing.messages "
                             "GROUP BY item_id, stage HAVING count(*) > 1) d");
  s.completed_twice = one("SELECT count(*) FROM (SELECT message_id FROM turing.attempts WHERE "
                          "result = 'completed' GROUP BY message_id HAVING count(*) > 1) d");
  for (const auto& row :
       tx.exec("SELECT node, count(*) FROM turing.attempts WHERE result = 'completed' "
               "GROUP BY node"))
    s.completions_by_node[row[0].as<std::string>()] = row[1].as<int64_t>();
  for (const auto& row : tx.exec("SELECT result, count(*) FROM turing.attempts GROUP BY result"))
    s.attempts_by_result[row[0].as<std::string>()] = row[1].as<int64_t>();
  return s;
}

} // namespace turing::testing
