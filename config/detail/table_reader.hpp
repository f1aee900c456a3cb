// Typed reading of one TOML table: each getter checks type and range and
// reports problems under the key's dotted path; finish() reports the keys no
// getter asked for, which is how typos like `concurency` are caught.
#pragma once

#include "config/byte_size.hpp"
#include "config/detail/diagnostics.hpp"
#include "config/duration.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <toml++/toml.h>
#include <vector>

namespace turing::config::detail {

class table_reader {
public:
  /// `path` is the table's dotted path ("stages.lucy"), empty for the root.
  table_reader(const toml::table& table, std::string path, diagnostics& diag)
      : table_(table), path_(std::move(path)), diag_(diag) {}

  const toml::table& table() const { return table_; }
  const std::string& path() const { return path_; }
  std::string key_path(std::string_view key) const;
  /// The table's own position (its header); where missing keys are reported.
  source_location where() const { return diag_.location(table_.source()); }
  /// The key's value position, else the table's.
  source_location where(std::string_view key) const;

  /// Marks `key` as known and returns its value, or nullptr when absent.
  const toml::node* get(std::string_view key);
  /// Marks `key` as known without reading it.
  void allow(std::string_view key) { known_.emplace(key); }

  // Each getter returns nullopt when the key is absent or its value is wrong;
  // a wrong value has then been reported.

  std::optional<std::string> string(std::string_view key);
  std::optional<bool> boolean(std::string_view key);
  std::optional<std::int64_t> integer(std::string_view key, std::int64_t min, std::int64_t max);
  /// Integers are accepted too: `temperature = 0` means 0.0.
  std::optional<double> number(std::string_view key, double min, double max);
  /// A duration string greater than zero.
  std::optional<millis> duration(std::string_view key);
  /// A size: a string such as "16MB" or an integer of bytes, within [min, max].
  std::optional<std::uint64_t> byte_size(std::string_view key, std::uint64_t min,
                                         std::uint64_t max);
  /// An array of strings; nullopt if any element is not a string.
  std::optional<std::vector<std::string>> strings(std::string_view key);
  const toml::table* subtable(std::string_view key);

  /// Reports that a required key is absent, at the table's position.
  void missing(std::string_view key, std::string_view why = {});
  /// Reports a problem with `key`'s value.
  void error(std::string_view key, std::string message);
  void error(const toml::node& node, std::string key, std::string message);

  /// Reports every key not asked for. `misplaced` maps keys that are valid
  /// elsewhere (another handler's keys) to a message saying where.
  void finish(const std::map<std::string, std::string, std::less<>>& misplaced = {});

private:
  const toml::table& table_;
  std::string path_;
  diagnostics& diag_;
  std::set<std::string, std::less<>> known_;
};

/// "string", "integer", "table", ... as TOML calls them.
std::string_view type_name(const toml::node& node);

} // namespace turing::config::detail
