// The progress bar `turing run` shows on a terminal instead of the periodic
// `progress:` log line: the runs this node is working on, done/total, rate, ETA.
#include "cli/run_progress.hpp"

#include "cli/log_setup.hpp"
#include "cli/terminal.hpp"
#include "operations/run_rate_tracker.hpp"
#include "operations/watch_view.hpp"
#include "persistence/pg_store.hpp"

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <unistd.h>

namespace turing::cli {

run_progress::run_progress(std::string dsn) : dsn_(std::move(dsn)) {
  thread_ = std::thread([this] { loop(); });
}

run_progress::~run_progress() {
  stop_ = true;
  thread_.join();
}

namespace {

nlohmann::json run_json(const persistence::run_status& r, operations::run_rate_tracker& rates) {
  auto done = r.items_total - r.pending;
  auto end = r.finished_at ? *r.finished_at : persistence::wall_clock::now();
  auto elapsed = std::max(0.0, std::chrono::duration<double>(end - r.created_at).count());
  rates.observe(r.id, done, operations::run_rate_tracker::clock::now());
  auto recent = rates.rate(r.id);
  auto overall = elapsed > 0 ? done / elapsed : 0.0;
  auto pace = recent ? *recent : overall;
  nlohmann::json eta;
  if (r.finished())
    eta = 0;
  else if (pace > 0)
    eta = r.pending / pace;
  return {{"id", r.id},
          {"label", r.label},
          {"items", r.items_total},
          {"done", done},
          {"finished", r.finished()},
          {"progress", r.items_total > 0 ? static_cast<double>(done) / r.items_total : 1.0},
          {"elapsed_s", elapsed},
          {"items_per_s", overall},
          {"items_per_s_last_minute", recent ? nlohmann::json(*recent) : nlohmann::json()},
          {"eta_s", eta}};
}

} // namespace

void run_progress::loop() {
  operations::run_rate_tracker rates;
  std::map<int64_t, persistence::run_status> shown; // unfinished when first seen
  std::unique_ptr<persistence::pg_store> store;
  auto next = std::chrono::steady_clock::now();
  std::string line;
  for (bool last = false; !last;) {
    // Once stopping, one more look, so the line left behind is the final one.
    last = stop_;
    try {
      if (!store)
        store = std::make_unique<persistence::pg_store>(dsn_);
      for (const auto& r : store->runs(/*unfinished_only=*/true))
        shown[r.id] = r;
      line.clear();
      int more = 0;
      for (auto it = shown.begin(); it != shown.end();) {
        auto now = store->run(it->first);
        if (!now) {
          it = shown.erase(it);
          continue;
        }
        if (line.empty()) {
          auto width = terminal_width(STDERR_FILENO);
          line =
              operations::run_progress_line(run_json(*now, rates), std::clamp(width - 75, 10, 40));
        } else {
          ++more;
        }
        // A finished run stays on the line until the next one shows.
        if (now->finished() && shown.size() > 1)
          it = shown.erase(it);
        else
          ++it;
      }
      if (more > 0)
        line += "  (+" + std::to_string(more) + " more run(s))";
      show_status_line(line);
    } catch (const std::exception&) {
      // The database's outage is logged by the actors that own its work; the
      // bar just waits for it (and reconnects).
      store.reset();
    }
    next += std::chrono::seconds(1);
    while (!stop_ && std::chrono::steady_clock::now() < next)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  // Leave the final state in the scrollback as a log line, the bar gone.
  show_status_line("");
  if (!line.empty())
    spdlog::info("{}", line);
}

} // namespace turing::cli
