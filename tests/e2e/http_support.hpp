// Shared by the e2e tests of the operations listener: an [http] section added
// to a config, the port a node logged, `turing status --json`, and GETs.
#pragma once

#include "tests/e2e/e2e_support.hpp"

#include <fstream>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <string>

namespace turing::testing {

/// Appends `[http] listen = "<listen>"` to the config file.
inline void add_http_section(const std::filesystem::path& config, const std::string& listen) {
  std::ofstream{config, std::ios::app} << "\n[http]\nlisten = \"" << listen << "\"\n";
}

/// The port in the node's "http: listening on http://127.0.0.1:<port>/" line,
/// once it is logged (within `timeout`); nullopt otherwise.
inline std::optional<int> logged_http_port(child_process& node, std::chrono::milliseconds timeout) {
  std::optional<int> port;
  eventually(
      [&] {
        std::smatch m;
        auto log = node.output();
        static const std::regex line{R"(http: listening on http://127\.0\.0\.1:([0-9]+)/)"};
        if (std::regex_search(log, m, line))
          port = std::stoi(m[1].str());
        return port.has_value() || !node.running();
      },
      timeout);
  return port;
}

/// `turing status --json` for the config, parsed (null when it failed).
inline nlohmann::json status_json(const temp_dir& dir, const std::filesystem::path& config) {
  std::string out;
  if (run_turing(dir, {"status", "--config", config.string(), "--json"}, &out) != 0)
    return nullptr;
  // Pretty-printed: from the line that opens the object to the line that
  // closes it (log lines on stderr may come around it).
  auto start = out.rfind('{', 0) == 0 ? 0 : out.find("\n{");
  auto end = out.rfind("\n}");
  if (start == std::string::npos || end == std::string::npos)
    return nullptr;
  if (start > 0)
    ++start;
  auto j = nlohmann::json::parse(out.substr(start, end + 2 - start), nullptr, false);
  return j.is_discarded() ? nlohmann::json(nullptr) : j;
}

struct http_reply {
  int status = 0; ///< 0: no answer
  std::string body;
};

inline http_reply http_get(int port, const std::string& path) {
  httplib::Client c{"127.0.0.1", port};
  c.set_connection_timeout(2, 0);
  c.set_read_timeout(10, 0);
  auto r = c.Get(path.c_str());
  if (!r)
    return {};
  return {r->status, r->body};
}

} // namespace turing::testing
