// A small Prometheus metrics registry: counters, gauges and histograms as
// relaxed atomics (no lock per observation), and their text exposition.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace turing::metrics {

/// Only goes up. inc() is one relaxed fetch_add: cheap enough for a hot path.
class counter {
public:
  void inc(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

private:
  std::atomic<uint64_t> value_{0};
};

/// A value that goes up and down (a depth, a count in flight).
class gauge {
public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  void add(double d);
  double value() const { return value_.load(std::memory_order_relaxed); }

private:
  std::atomic<double> value_{0};
};

/// Observations counted in fixed buckets (upper bounds, ascending). Buckets
/// are kept per bucket and made cumulative only when written out.
class histogram {
public:
  explicit histogram(std::shared_ptr<const std::vector<double>> bounds);
  void observe(double v);

  struct snapshot {
    std::vector<uint64_t> cumulative; ///< one per bound, then +Inf
    double sum = 0;
    uint64_t count = 0;
  };
  snapshot read() const;
  const std::vector<double>& bounds() const { return *bounds_; }

private:
  std::shared_ptr<const std::vector<double>> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_; ///< bounds + 1 (the last is +Inf)
  std::atomic<double> sum_{0};
};

/// Latency buckets in seconds: 1 ms to 10 min.
std::vector<double> latency_buckets();

/// One metric name with its label names; a child per set of label values.
/// with() takes a lock and may allocate: call it once and keep the reference
/// (children live as long as the registry).
template <class Metric> class family {
public:
  family(std::string name, std::string help, std::vector<std::string> label_names,
         std::shared_ptr<const std::vector<double>> bounds = nullptr)
      : name_(std::move(name)), help_(std::move(help)), label_names_(std::move(label_names)),
        bounds_(std::move(bounds)) {}

  Metric& with(const std::vector<std::string>& label_values);

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  const std::vector<std::string>& label_names() const { return label_names_; }
  /// Calls f(label_values, metric) for each child, in label order.
  template <class F> void each(F f) const {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [labels, metric] : children_)
      f(labels, *metric);
  }

private:
  std::string name_;
  std::string help_;
  std::vector<std::string> label_names_;
  std::shared_ptr<const std::vector<double>> bounds_;
  mutable std::mutex mutex_;
  std::map<std::vector<std::string>, std::unique_ptr<Metric>> children_;
};

/// Families by name, written out in the order they were made.
class registry {
public:
  family<counter>& make_counter(const std::string& name, const std::string& help,
                                std::vector<std::string> labels = {});
  family<gauge>& make_gauge(const std::string& name, const std::string& help,
                            std::vector<std::string> labels = {});
  family<histogram>& make_histogram(const std::string& name, const std::string& help,
                                    std::vector<std::string> labels,
                                    std::vector<double> bounds = latency_buckets());

  /// The text exposition format 0.0.4 (Content-Type text/plain; version=0.0.4).
  std::string exposition() const;

private:
  struct entry {
    enum class kind { counter, gauge, histogram } type;
    std::unique_ptr<family<counter>> counters;
    std::unique_ptr<family<gauge>> gauges;
    std::unique_ptr<family<histogram>> histograms;
  };
  mutable std::mutex mutex_;
  std::vector<entry> families_;
};

/// Exposition helpers, public for the tests: a label value with \, " and
/// newline escaped; HELP text with \ and newline escaped; a sample value
/// (integers without a fraction, +Inf, -Inf, NaN).
std::string escape_label_value(const std::string& v);
std::string escape_help(const std::string& v);
std::string format_value(double v);

} // namespace turing::metrics
