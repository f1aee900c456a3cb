// The node's operations listener (README "Metrics" and "Dashboard").
#include "http/ops_server.hpp"

#include "http/dashboard_assets.hpp"
#include "http/read_failure_log.hpp"

#include <cerrno>
#include <cstring>
#include <httplib.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

namespace turing::http {

namespace {

/// SO_REUSEADDR only: cpp-httplib's default adds SO_REUSEPORT, with which a
/// second node on the same address would share the port silently instead
/// of being refused.
void reuse_address_only(int sock) {
  int yes = 1;
  setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
}

} // namespace

ops_server::ops_server(ops_server_options options)
    : o_(std::move(options)), server_(std::make_unique<httplib::Server>()) {
  auto threads = static_cast<size_t>(std::max(1, o_.threads));
  server_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server_->set_socket_options(reuse_address_only);
  // A kept-alive connection holds a pool thread until it idles out: 1 s,
  // shorter than the dashboard's 2 s poll, so two browsers cannot take both
  // threads from a scrape.
  server_->set_keep_alive_max_count(20);
  server_->set_keep_alive_timeout(1);
  server_->set_read_timeout(5, 0);
  server_->set_write_timeout(5, 0);
  add_routes();
}

ops_server::~ops_server() {
  stop();
}

bool ops_server::bind(std::string& error) {
  errno = 0;
  if (o_.port == 0) {
    port_ = server_->bind_to_any_port(o_.host);
    if (port_ > 0)
      return true;
  } else if (server_->bind_to_port(o_.host, o_.port)) {
    port_ = o_.port;
    return true;
  }
  error = errno != 0 ? std::strerror(errno) : "the address cannot be bound";
  return false;
}

void ops_server::start() {
  thread_ = std::thread([this] {
    if (!server_->listen_after_bind())
      spdlog::warn("http: listener on {}:{} stopped unexpectedly", o_.host, port_);
    serving_ended_ = true;
  });
  // httplib's stop() does nothing until its loop runs: a stop right after
  // start would leave the thread serving and its join waiting forever.
  while (!server_->is_running() && !serving_ended_)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

void ops_server::stop() {
  if (!thread_.joinable())
    return;
  server_->stop();
  thread_.join();
}

void ops_server::add_routes() {
  auto progress_reads =
      std::make_shared<read_failure_log>("http: /metrics: node " + o_.node + ": run progress");
  auto status_reads = std::make_shared<read_failure_log>("http: /api/status: node " + o_.node);
  server_->Get("/metrics", [this, progress_reads](const httplib::Request&, httplib::Response& res) {
    // Run progress comes from the run tallies (one small query, at most once
    // per couple of seconds); everything else is read from the atomics.
    if (o_.status && o_.metrics) {
      try {
        for (const auto& r : o_.status->runs()) {
          auto id = std::to_string(r.id);
          o_.metrics->run_items_done(id).set(static_cast<double>(r.items_total - r.pending));
          o_.metrics->run_items_total(id).set(static_cast<double>(r.items_total));
        }
        progress_reads->succeeded();
      } catch (const std::exception& e) {
        progress_reads->failed(e.what());
      }
    }
    auto body = o_.metrics ? o_.metrics->owner().exposition() : std::string{};
    res.set_content(body, "text/plain; version=0.0.4; charset=utf-8");
  });

  server_->Get("/healthz", [this](const httplib::Request&, httplib::Response& res) {
    if (!o_.health || !o_.health->up()) {
      res.status = 503;
      res.set_content("node " + o_.node + " is not running\n", "text/plain");
      return;
    }
    auto failed = o_.health->failed_stages();
    if (failed.empty()) {
      res.set_content("ok\n", "text/plain");
      return;
    }
    std::string text = "failed stages:";
    for (const auto& [stage, reason] : failed)
      text += " " + stage + " (" + reason + ")";
    res.status = 503;
    res.set_content(text + "\n", "text/plain");
  });

  server_->Get(
      "/api/status", [this, status_reads](const httplib::Request&, httplib::Response& res) {
        try {
          auto status = o_.status->get();
          status_reads->succeeded();
          auto doc = *status; // this_node is live, the rest cached
          auto failed = nlohmann::json::object();
          if (o_.health)
            for (const auto& [stage, reason] : o_.health->failed_stages())
              failed[stage] = reason;
          doc["this_node"] = {
              {"name", o_.node}, {"up", o_.health && o_.health->up()}, {"failed_stages", failed}};
          res.set_header("Cache-Control", "no-store");
          res.set_content(doc.dump(), "application/json");
        } catch (const std::exception& e) {
          status_reads->failed(e.what());
          res.status = 503;
          res.set_content(
              nlohmann::json{{"error", e.what()}, {"this_node", {{"name", o_.node}}}}.dump(),
              "application/json");
        }
      });

  auto asset = [this](const char* path, const char* type, const char* body) {
    server_->Get(path, [type, body](const httplib::Request&, httplib::Response& res) {
      res.set_content(body, type);
    });
  };
  asset("/", "text/html; charset=utf-8", dashboard_html);
  asset("/dashboard.js", "application/javascript; charset=utf-8", dashboard_js);
  asset("/dashboard.css", "text/css; charset=utf-8", dashboard_css);
}

} // namespace turing::http
