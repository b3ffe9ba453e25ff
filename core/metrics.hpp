#pragma once
// Prometheus metrics. Increments are relaxed atomics; a labelled series is created under a
// mutex once and then cached per thread, so the request path takes no lock after warm-up.
// Label values are names (rules, secrets, codes), never values.
#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace sidekey::metrics {

struct Counter {
  std::atomic<std::uint64_t> value{0};
  void inc(std::uint64_t n = 1) { value.fetch_add(n, std::memory_order_relaxed); }
};

struct Gauge {
  std::atomic<std::int64_t> value{0};
  void add(std::int64_t n) { value.fetch_add(n, std::memory_order_relaxed); }
  void set(std::int64_t n) { value.store(n, std::memory_order_relaxed); }
};

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  friend class Registry;
  std::vector<double> bounds_;
  std::deque<std::atomic<std::uint64_t>> buckets_;  // one per bound, plus +Inf
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::uint64_t> sum_micros_{0};
};

using Labels = std::vector<std::pair<std::string, std::string>>;

class Registry {
 public:
  // Declares a family (HELP/TYPE lines are printed even before any sample).
  void describe(const std::string& name, const std::string& type, const std::string& help);
  Counter& counter(const std::string& name, const Labels& labels = {});
  Gauge& gauge(const std::string& name, const Labels& labels = {});
  Histogram& histogram(const std::string& name, const std::vector<double>& bounds);
  std::string render() const;  // Prometheus text exposition format 0.0.4

 private:
  struct Family {
    std::string type, help;
    std::map<std::string, Counter> counters;  // key = rendered label set
    std::map<std::string, Gauge> gauges;
    std::deque<Histogram> histograms;
  };
  Family& family(const std::string& name, const char* type);
  mutable std::mutex mu_;
  std::map<std::string, Family> families_;
};

Registry& registry();  // the process-wide registry
std::string render_labels(const Labels& labels);

}  // namespace sidekey::metrics
