// A small Prometheus metrics registry and its text exposition.
#include "metrics/registry.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace turing::metrics {

void gauge::add(double d) {
  auto old = value_.load(std::memory_order_relaxed);
  while (!value_.compare_exchange_weak(old, old + d, std::memory_order_relaxed))
    ;
}

histogram::histogram(std::shared_ptr<const std::vector<double>> bounds)
    : bounds_(std::move(bounds)), buckets_(new std::atomic<uint64_t>[bounds_->size() + 1]) {
  for (size_t i = 0; i <= bounds_->size(); ++i)
    buckets_[i].store(0, std::memory_order_relaxed);
}

void histogram::observe(double v) {
  // le is inclusive: the first bound >= v.
  auto i =
      static_cast<size_t>(std::lower_bound(bounds_->begin(), bounds_->end(), v) - bounds_->begin());
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  auto old = sum_.load(std::memory_order_relaxed);
  while (!sum_.compare_exchange_weak(old, old + v, std::memory_order_relaxed))
    ;
}

histogram::snapshot histogram::read() const {
  snapshot s;
  uint64_t total = 0;
  for (size_t i = 0; i <= bounds_->size(); ++i) {
    total += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative.push_back(total);
  }
  // The count is the +Inf bucket, so that the two always agree in one scrape.
  s.count = total;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::vector<double> latency_buckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
          1,     2.5,    5,     10,   30,    60,   120, 300,  600};
}

template <class Metric> Metric& family<Metric>::with(const std::vector<std::string>& values) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto& slot = children_[values];
  if (!slot) {
    if constexpr (std::is_same_v<Metric, histogram>)
      slot = std::make_unique<histogram>(bounds_);
    else
      slot = std::make_unique<Metric>();
  }
  return *slot;
}

template class family<counter>;
template class family<gauge>;
template class family<histogram>;

family<counter>& registry::make_counter(const std::string& name, const std::string& help,
                                        std::vector<std::string> labels) {
  std::lock_guard<std::mutex> lock(mutex_);
  entry e{entry::kind::counter, nullptr, nullptr, nullptr};
  e.counters = std::make_unique<family<counter>>(name, help, std::move(labels));
  families_.push_back(std::move(e));
  return *families_.back().counters;
}

family<gauge>& registry::make_gauge(const std::string& name, const std::string& help,
                                    std::vector<std::string> labels) {
  std::lock_guard<std::mutex> lock(mutex_);
  entry e{entry::kind::gauge, nullptr, nullptr, nullptr};
  e.gauges = std::make_unique<family<gauge>>(name, help, std::move(labels));
  families_.push_back(std::move(e));
  return *families_.back().gauges;
}

family<histogram>& registry::make_histogram(const std::string& name, const std::string& help,
                                            std::vector<std::string> labels,
                                            std::vector<double> bounds) {
  std::sort(bounds.begin(), bounds.end());
  bounds.erase(std::unique(bounds.begin(), bounds.end()), bounds.end());
  std::lock_guard<std::mutex> lock(mutex_);
  entry e{entry::kind::histogram, nullptr, nullptr, nullptr};
  e.histograms = std::make_unique<family<histogram>>(
      name, help, std::move(labels), std::make_shared<const std::vector<double>>(bounds));
  families_.push_back(std::move(e));
  return *families_.back().histograms;
}

std::string escape_label_value(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string escape_help(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string format_value(double v) {
  if (std::isnan(v))
    return "NaN";
  if (std::isinf(v))
    return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  // Shortest text that reads back as the same double; integers have no ".0".
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

namespace {

/// {a="x",b="y"} plus an extra label (le) when given; "" without any label.
std::string label_text(const std::vector<std::string>& names,
                       const std::vector<std::string>& values, const std::string& extra_name = {},
                       const std::string& extra_value = {}) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < values.size(); ++i)
    out += (out.empty() ? "" : ",") + names[i] + "=\"" + escape_label_value(values[i]) + "\"";
  if (!extra_name.empty())
    out += (out.empty() ? "" : ",") + extra_name + "=\"" + extra_value + "\"";
  return out.empty() ? out : "{" + out + "}";
}

template <class Metric>
void write_header(std::string& out, const family<Metric>& f, const char* type) {
  out += "# HELP " + f.name() + " " + escape_help(f.help()) + "\n";
  out += "# TYPE " + f.name() + " " + type + "\n";
}

} // namespace

std::string registry::exposition() const {
  std::string out;
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& e : families_) {
    switch (e.type) {
    case entry::kind::counter:
      write_header(out, *e.counters, "counter");
      e.counters->each([&](const auto& labels, const counter& c) {
        out += e.counters->name() + label_text(e.counters->label_names(), labels) + " " +
               std::to_string(c.value()) + "\n";
      });
      break;
    case entry::kind::gauge:
      write_header(out, *e.gauges, "gauge");
      e.gauges->each([&](const auto& labels, const gauge& g) {
        out += e.gauges->name() + label_text(e.gauges->label_names(), labels) + " " +
               format_value(g.value()) + "\n";
      });
      break;
    case entry::kind::histogram: {
      const auto& f = *e.histograms;
      write_header(out, f, "histogram");
      f.each([&](const auto& labels, const histogram& h) {
        auto s = h.read();
        for (size_t i = 0; i < s.cumulative.size(); ++i) {
          auto le = i < h.bounds().size() ? format_value(h.bounds()[i]) : std::string{"+Inf"};
          out += f.name() + "_bucket" + label_text(f.label_names(), labels, "le", le) + " " +
                 std::to_string(s.cumulative[i]) + "\n";
        }
        out += f.name() + "_sum" + label_text(f.label_names(), labels) + " " + format_value(s.sum) +
               "\n";
        out += f.name() + "_count" + label_text(f.label_names(), labels) + " " +
               std::to_string(s.count) + "\n";
      });
      break;
    }
    }
  }
  return out;
}

} // namespace turing::metrics
