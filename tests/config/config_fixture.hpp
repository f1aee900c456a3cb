// Shared by the config tests: a private temporary directory to load from, a
// builtin catalog like the OWL example's, and lookup of an expected error.
#pragma once

#include "config/config_loader.hpp"

#include <caf/test/unit_test.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace turing::config::test {

/// A directory under /tmp that lives as long as the fixture.
class temp_dir {
public:
  temp_dir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "turing-config-test-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr)
      throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  const std::filesystem::path& path() const { return path_; }

  /// Writes `text` to `name` (relative to the directory), creating parents.
  std::filesystem::path write(const std::string& name, std::string_view text) const {
    auto file = path_ / name;
    std::filesystem::create_directories(file.parent_path());
    std::ofstream{file, std::ios::binary} << text;
    return file;
  }

private:
  std::filesystem::path path_;
};

struct config_fixture {
  temp_dir dir;
  builtin_catalog builtins{{"owl.create_entity", {"created"}},
                           {"owl.compare_proposals", {"agree", "disagree"}},
                           {"owl.normalize", {"ok"}}};

  /// Parses `text` as if it were `pipeline.toml` in the temporary directory.
  load_result load(std::string_view text) const {
    return parse_config(text, "pipeline.toml", dir.path(), builtins);
  }

  /// A one-stage pipeline whose [runtime] table (line 2; its keys from line
  /// 3 on) holds `runtime_lines`, its sink named `sink`.
  static std::string with_runtime(const std::string& runtime_lines,
                                  const std::string& sink = "done") {
    return "sinks = [\"" + sink + "\"]\n[runtime]\n" + runtime_lines +
           "\n[stages.only]\nhandler = \"builtin\"\nentry = true\nfunction = "
           "\"owl.normalize\"\nroutes = { ok = \"" +
           sink + "\" }\n";
  }

  /// The first error on `key` whose message contains `phrase`; logs every
  /// error when there is none, so that a failing test shows what it got.
  static const config_error* find_error(const load_result& result, std::string_view key,
                                        std::string_view phrase) {
    for (const auto& e : result.errors)
      if (e.key == key && e.message.find(phrase) != std::string::npos)
        return &e;
    CAF_MESSAGE("no error on '" << key << "' containing '" << phrase << "'; got:");
    for (const auto& e : result.errors)
      CAF_MESSAGE("  " << e.to_string());
    return nullptr;
  }

  static bool contains(std::string_view text, std::string_view part) {
    return text.find(part) != std::string_view::npos;
  }
};

} // namespace turing::config::test
