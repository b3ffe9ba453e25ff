#include "core/metrics.hpp"

#include <cstdio>
#include <sstream>
#include <unordered_map>

namespace sidekey::metrics {

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), buckets_(bounds_.size() + 1) {}

void Histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_micros_.fetch_add(static_cast<std::uint64_t>(v * 1e6), std::memory_order_relaxed);
}

std::string render_labels(const Labels& labels) {
  if (labels.empty()) return {};
  std::string out = "{";
  for (size_t i = 0; i < labels.size(); ++i) {
    if (i) out += ',';
    out += labels[i].first;
    out += "=\"";
    for (char c : labels[i].second) {
      if (c == '\\' || c == '"') out += '\\';
      if (c == '\n') {
        out += "\\n";
        continue;
      }
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

void Registry::describe(const std::string& name, const std::string& type, const std::string& help) {
  std::lock_guard lock(mu_);
  auto& f = families_[name];
  f.type = type;
  f.help = help;
}

Registry::Family& Registry::family(const std::string& name, const char* type) {
  auto& f = families_[name];
  if (f.type.empty()) f.type = type;
  return f;
}

Counter& Registry::counter(const std::string& name, const Labels& labels) {
  // Per-thread cache: after the first use of a series on a thread, no lock is taken.
  thread_local std::unordered_map<std::string, Counter*> cache;
  std::string key = name + render_labels(labels);
  if (auto it = cache.find(key); it != cache.end()) return *it->second;
  std::lock_guard lock(mu_);
  Counter& c = family(name, "counter").counters[render_labels(labels)];
  cache.emplace(std::move(key), &c);
  return c;
}

Gauge& Registry::gauge(const std::string& name, const Labels& labels) {
  std::lock_guard lock(mu_);
  return family(name, "gauge").gauges[render_labels(labels)];
}

Histogram& Registry::histogram(const std::string& name, const std::vector<double>& bounds) {
  std::lock_guard lock(mu_);
  auto& f = family(name, "histogram");
  if (f.histograms.empty()) f.histograms.emplace_back(bounds);
  return f.histograms.front();
}

std::string Registry::render() const {
  std::lock_guard lock(mu_);
  std::ostringstream out;
  char num[64];
  for (const auto& [name, f] : families_) {
    if (!f.help.empty()) out << "# HELP " << name << ' ' << f.help << '\n';
    out << "# TYPE " << name << ' ' << f.type << '\n';
    for (const auto& [labels, c] : f.counters) out << name << labels << ' ' << c.value.load() << '\n';
    for (const auto& [labels, g] : f.gauges) out << name << labels << ' ' << g.value.load() << '\n';
    for (const auto& h : f.histograms) {
      std::uint64_t cumulative = 0;
      for (size_t i = 0; i <= h.bounds_.size(); ++i) {
        cumulative += h.buckets_[i].load();
        if (i < h.bounds_.size()) std::snprintf(num, sizeof num, "%g", h.bounds_[i]);
        out << name << "_bucket{le=\"" << (i < h.bounds_.size() ? num : "+Inf") << "\"} " << cumulative << '\n';
      }
      std::snprintf(num, sizeof num, "%.6f", h.sum_micros_.load() / 1e6);
      out << name << "_sum " << num << '\n' << name << "_count " << h.count_.load() << '\n';
    }
  }
  return out.str();
}

Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace sidekey::metrics
