// The node's operations listener: /metrics (Prometheus text), /healthz,
// /api/status and the dashboard, on cpp-httplib with a small fixed pool.
#pragma once

#include "http/node_health.hpp"
#include "http/status_cache.hpp"
#include "metrics/node_metrics.hpp"

#include <atomic>
#include <memory>
#include <string>
#include <thread>

namespace httplib {
class Server;
}

namespace turing::http {

struct ops_server_options {
  std::string host = "127.0.0.1";
  uint16_t port = 9464; ///< 0: any free port
  std::string node;
  std::shared_ptr<status_cache> status;
  std::shared_ptr<node_health> health;
  metrics::node_metrics* metrics = nullptr;
  /// Requests are served by this many threads (a scrape, a browser or two).
  int threads = 2;
};

class ops_server {
public:
  explicit ops_server(ops_server_options options);
  ~ops_server();
  ops_server(const ops_server&) = delete;
  ops_server& operator=(const ops_server&) = delete;

  /// Binds the address; false with the reason in `error` when it cannot.
  bool bind(std::string& error);
  /// The bound port (the chosen one when port 0 was asked for).
  int port() const { return port_; }
  /// Serves on a thread of its own until stop().
  void start();
  void stop();

private:
  void add_routes();

  ops_server_options o_;
  std::unique_ptr<httplib::Server> server_;
  int port_ = 0;
  std::atomic<bool> serving_ended_{false};
  std::thread thread_;
};

} // namespace turing::http
