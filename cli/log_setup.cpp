// How `turing` logs: coloured text lines or JSON lines on stderr, and the
// progress bar that `turing run` keeps under the log lines on a terminal.
#include "cli/log_setup.hpp"

#include <chrono>
#include <ctime>
#include <mutex>
#include <nlohmann/json.hpp>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

namespace turing::cli {

namespace {

log_format chosen_format = log_format::text;

/// One JSON object per log line; the message escaped by nlohmann (invalid
/// UTF-8 replaced), so a shipper never sees a broken line.
class json_line_formatter final : public spdlog::formatter {
public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    auto t = std::chrono::system_clock::to_time_t(msg.time);
    auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(msg.time.time_since_epoch()).count() %
        1000;
    std::tm utc{};
    gmtime_r(&t, &utc);
    char stamp[40];
    auto n = std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
    std::snprintf(stamp + n, sizeof stamp - n, ".%03lldZ", static_cast<long long>(ms));
    auto level = spdlog::level::to_string_view(msg.level);
    nlohmann::json line = {{"time", stamp},
                           {"level", std::string(level.data(), level.size())},
                           {"message", std::string(msg.payload.data(), msg.payload.size())},
                           {"thread", msg.thread_id}};
    auto text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    text += '\n';
    dest.append(text.data(), text.data() + text.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<json_line_formatter>();
  }
};

/// stderr with a status line kept below the log lines.
class status_line_sink final : public spdlog::sinks::base_sink<std::mutex> {
public:
  status_line_sink() : inner_(std::make_shared<spdlog::sinks::stderr_color_sink_st>()) {}

  void set_line(const std::string& line) {
    std::lock_guard<std::mutex> lock{mutex_};
    erase();
    line_ = line;
    draw();
  }

protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    erase();
    inner_->log(msg);
    inner_->flush();
    draw();
  }
  void flush_() override { inner_->flush(); }
  void set_pattern_(const std::string& pattern) override { inner_->set_pattern(pattern); }
  void set_formatter_(std::unique_ptr<spdlog::formatter> f) override {
    inner_->set_formatter(std::move(f));
  }

private:
  void erase() {
    if (!line_.empty())
      write_raw("\r\x1b[K");
  }
  void draw() {
    if (!line_.empty())
      write_raw(line_);
  }
  static void write_raw(const std::string& s) {
    // stderr is unbuffered for the colour sink too: write straight to it.
    auto r = ::write(STDERR_FILENO, s.data(), s.size());
    (void)r; // a closed terminal: nothing to show the line on
  }

  std::shared_ptr<spdlog::sinks::stderr_color_sink_st> inner_;
  std::string line_;
};

std::shared_ptr<status_line_sink> status_sink;

} // namespace

void set_up_logging(const std::string& level, log_format format) {
  chosen_format = format;
  std::shared_ptr<spdlog::logger> logger;
  if (format == log_format::json) {
    logger = spdlog::stderr_logger_mt("turing");
    logger->set_formatter(std::make_unique<json_line_formatter>());
  } else {
    status_sink = std::make_shared<status_line_sink>();
    logger = std::make_shared<spdlog::logger>("turing", status_sink);
    logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  }
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
}

log_format current_log_format() {
  return chosen_format;
}

void show_status_line(const std::string& line) {
  if (status_sink)
    status_sink->set_line(line);
}

} // namespace turing::cli
