// Collects config errors while loading goes on, so that one pass reports
// every problem in the file.
#pragma once

#include "config/config_loader.hpp"

#include <string>
#include <toml++/toml.h>
#include <vector>

namespace turing::config::detail {

class diagnostics {
public:
  explicit diagnostics(std::string file) : file_(std::move(file)) {}

  const std::string& file() const { return file_; }

  source_location location(const toml::source_region& region) const {
    return {file_, static_cast<int>(region.begin.line), static_cast<int>(region.begin.column)};
  }

  void error(source_location where, std::string key, std::string message) {
    errors_.push_back({std::move(where), std::move(key), std::move(message)});
  }

  void error(const toml::source_region& region, std::string key, std::string message) {
    error(location(region), std::move(key), std::move(message));
  }

  bool empty() const { return errors_.empty(); }

  /// The errors in file order; errors without a position come first.
  std::vector<config_error> take();

private:
  std::string file_;
  std::vector<config_error> errors_;
};

} // namespace turing::config::detail
