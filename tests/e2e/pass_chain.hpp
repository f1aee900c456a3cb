// A chain of turing.pass builtins for the deployment tests: the config (on a
// server URL or an embedded data_dir), numbered items, and the end state every
// such run must reach, read from the tables themselves.
#pragma once

#include "tests/e2e/e2e_support.hpp"

#include <filesystem>
#include <map>
#include <string>

namespace turing::testing {

/// Stages s1 → s2 → … → s<stages>, each `turing.pass`, the last routing to
/// the sink "out". `database_toml` is the body of [database] (a url or a
/// data_dir line); `runtime_toml` extra [runtime] lines.
std::filesystem::path write_pass_chain_config(const temp_dir& dir, const std::string& database_toml,
                                              int stages, const std::string& runtime_toml,
                                              const std::string& file_name = "chain.toml");

/// `n` items {"n": i}, one JSON object per line.
std::filesystem::path write_numbered_items(const temp_dir& dir, size_t n);

/// What one finished run of a pass chain left in the database.
struct chain_end_state {
  int64_t items = 0;
  int64_t finished_in_out = 0;    ///< finished items whose sink is "out"
  int64_t unfinished_or_else = 0; ///< any other item
  int64_t live_messages = 0;      ///< ready or running
  int64_t duplicate_messages = 0; ///< (item, stage) pairs with more than one message row
  int64_t completed_twice = 0;    ///< messages with more than one completed attempt
  std::map<std::string, int64_t> completions_by_node;
  std::map<std::string, int64_t> attempts_by_result;
};

/// Reads the end state with plain SQL on `dsn`.
chain_end_state read_chain_end_state(const std::string& dsn);

} // namespace turing::testing
