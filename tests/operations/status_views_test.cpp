// The status views rendered from a hand-written snapshot: the plain tables
// keep their columns, the watch frame fits its width, bars and ETAs read right.
#define CAF_SUITE status_views
#include "operations/status_text.hpp"
#include "operations/watch_view.hpp"

#include <caf/test/unit_test.hpp>

using nlohmann::json;
using namespace turing::operations;

namespace {

json stage(const std::string& name, int64_t ready, int64_t running, int64_t done, int64_t dead) {
  return {{"stage", name},
          {"ready", ready},
          {"delayed", 0},
          {"retrying", 0},
          {"running", running},
          {"expired", 0},
          {"done", done},
          {"dead", dead},
          {"oldest_running_age_ms", nullptr},
          {"oldest_heartbeat_age_ms", nullptr},
          {"configured", true},
          {"dead_lost", 0},
          {"last_minute", {{"fail_rate", 0.25}}},
          {"latency", {{"samples", 40}, {"p50_ms", 120}, {"p95_ms", 900}, {"p99_ms", 1500}}},
          {"timeout", {{"mode", "fixed"}, {"current_ms", 20000}, {"recommended_ms", 3000}}},
          {"waiting_for_models", json::array()}};
}

json snapshot() {
  return {{"database", "test db"},
          {"stages", {stage("lucy", 12, 3, 4000, 0), stage("alma", 1234567, 8, 5, 17)}},
          {"models",
           {{{"model", "mistral"},
             {"concurrency", 8},
             {"in_flight", 5},
             {"calls_last_minute", 120},
             {"tokens_last_minute", 6000},
             {"errors_last_minute", {{"failed", 1}, {"timeout", 2}, {"crashed", 0}}},
             {"unavailable_on", json::array()},
             {"requests_per_minute", nullptr},
             {"tokens_per_minute", nullptr},
             {"gpu", nullptr}}}},
          {"runs",
           {{{"id", 7},
             {"label", "skills"},
             {"entry_stage", "lucy"},
             {"items", 2000},
             {"done", 500},
             {"pending", 1500},
             {"finished", false},
             {"progress", 0.25},
             {"elapsed_s", 10.0},
             {"items_per_s", 50.0},
             {"items_per_s_last_minute", 60.0},
             {"eta_s", 25.0}}}},
          {"sinks", {{"committed", 480}, {"dead", 20}}},
          {"nodes", json::array()}};
}

} // namespace

CAF_TEST(plain_status_pads_every_count_to_its_column) {
  auto text = status_text(snapshot());
  // stage 16 wide, ready 8, delayed 9, retrying 9, running 9, expired 9, done 9, dead 7.
  CAF_CHECK(
      text.find("lucy                  12        0        0        3        0     4000      0") !=
      std::string::npos);
  CAF_CHECK(
      text.find("alma             1234567        0        0        8        0        5     17") !=
      std::string::npos);
  CAF_CHECK(text.find("concurrency 8, 5 in flight") != std::string::npos);
  CAF_CHECK(text.find("sinks: committed=480 dead=20") != std::string::npos);
  CAF_CHECK(text.find("run 7 'skills' into lucy: 2000 items, 1500 pending") != std::string::npos);
}

CAF_TEST(progress_bar_fills_in_proportion_and_clamps) {
  CAF_CHECK_EQUAL(progress_bar(0.0, 10), "[..........]   0%");
  CAF_CHECK_EQUAL(progress_bar(0.25, 10), "[##........]  25%");
  CAF_CHECK_EQUAL(progress_bar(1.0, 10), "[##########] 100%");
  CAF_CHECK_EQUAL(progress_bar(1.7, 4), "[####] 100%");
  CAF_CHECK_EQUAL(progress_bar(-1, 4), "[....]   0%");
}

CAF_TEST(eta_reads_in_seconds_minutes_or_hours) {
  CAF_CHECK_EQUAL(eta_text(json(25.0)), "25s");
  CAF_CHECK_EQUAL(eta_text(json(245.0)), "4m05s");
  CAF_CHECK_EQUAL(eta_text(json(7800.0)), "2h10m");
  CAF_CHECK_EQUAL(eta_text(json()), "-");
}

CAF_TEST(a_run_line_prefers_the_last_minute_rate) {
  auto line = run_progress_line(snapshot()["runs"][0], 10);
  CAF_CHECK_EQUAL(line, "run 7 'skills' [##........]  25%  500/2000  60.0 items/s  ETA 25s");
}

CAF_TEST(a_cancelled_run_says_who_cancelled_it) {
  auto s = snapshot();
  auto& run = s["runs"][0];
  run["finished"] = true;
  run["cancelled_by"] = "carol@ops";
  CAF_CHECK(status_text(s).find("1500 pending, cancelled by carol@ops after") != std::string::npos);
  CAF_CHECK(run_progress_line(run, 10).find("cancelled by carol@ops") != std::string::npos);
  CAF_CHECK(run_progress_line(snapshot()["runs"][0], 10).find("cancelled") == std::string::npos);
}

CAF_TEST(the_watch_frame_fits_its_width_and_shows_every_section) {
  for (int width : {60, 80, 132}) {
    auto frame = watch_frame(snapshot(), width);
    std::string all;
    for (const auto& line : frame) {
      CAF_CHECK(static_cast<int>(line.size()) <= width);
      CAF_CHECK(line.find('\x1b') == std::string::npos);
      all += line + "\n";
    }
    for (auto section : {"RUNS", "STAGES", "MODELS", "NODES"})
      CAF_CHECK(all.find(section) != std::string::npos);
  }
  std::string all;
  for (const auto& line : watch_frame(snapshot(), 132))
    all += line + "\n";
  CAF_CHECK(all.find("25.0%") != std::string::npos); // alma's fail rate
  CAF_CHECK(all.find("5/8") != std::string::npos);   // mistral in flight / concurrency
  CAF_CHECK(all.find("2.0") != std::string::npos);   // 120 calls a minute = 2.0/s
}
