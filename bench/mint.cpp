// sidekey-bench-mint — leaf mint time for bench/run: what a CONNECT to a host sidekey has not
// intercepted before costs, measured on sidekey's own code (certs/).
//
//   mint_leaf            a fresh EC P-256 key, the certificate, one CA signature
//   CertCache miss       what the proxy does per new host: mint_leaf + the TLS server context
//                        (CertCache::context_for on a host it has not seen)
//
// Each is timed in wall time (what a client waits; on a shared machine its p99 is mostly other
// processes' time slices) and in this thread's CPU time (the work itself).
//
// Usage: sidekey-bench-mint [COUNT] (default 2000, after 50 discarded). One JSON line on stdout.
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "certs/ca.hpp"
#include "certs/cert_cache.hpp"
#include "certs/leaf.hpp"

using namespace sidekey::certs;
using Clock = std::chrono::steady_clock;

namespace {

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, std::size_t(p * double(v.size())))];
}

double thread_cpu_ms() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) * 1e3 + double(ts.tv_nsec) / 1e6;
}

struct Times {
  std::vector<double> wall_ms, cpu_ms;
};

template <class F>
Times timed(int count, F&& f) {
  Times t;
  for (int i = -50; i < count; ++i) {
    double c0 = thread_cpu_ms();
    auto t0 = Clock::now();
    f(i + 50);
    auto t1 = Clock::now();
    double c1 = thread_cpu_ms();
    if (i < 0) continue;
    t.wall_ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    t.cpu_ms.push_back(c1 - c0);
  }
  return t;
}

void print(const char* name, const Times& t, const char* sep) {
  std::printf("\"%s_p50_ms\":%.4f,\"%s_p99_ms\":%.4f,\"%s_cpu_p50_ms\":%.4f,\"%s_cpu_p99_ms\":%.4f%s", name,
              percentile(t.wall_ms, 0.50), name, percentile(t.wall_ms, 0.99), name, percentile(t.cpu_ms, 0.50), name,
              percentile(t.cpu_ms, 0.99), sep);
}

std::string host(const char* kind, int i) { return "h" + std::to_string(i) + "." + kind + ".bench.test"; }

}  // namespace

int main(int argc, char** argv) {
  int count = argc > 1 ? std::atoi(argv[1]) : 2000;
  if (count < 1) return 2;
  auto ca = CertificateAuthority::generate();

  auto mint = timed(count, [&](int i) {
    Leaf leaf = mint_leaf(*ca, *CertHost::parse(host("mint", i)), std::chrono::hours(24));
    if (!leaf.cert) std::abort();
  });

  CertCache::Options opts;
  opts.capacity = std::size_t(count) + 100;  // every lookup a miss, nothing evicted
  CertCache cache(ca, opts);
  auto miss = timed(count, [&](int i) {
    if (!cache.context_for(host("cache", i))) std::abort();
  });

  std::printf("{\"count\":%d,", count);
  print("mint", mint, ",");
  print("miss", miss, "}\n");
  return 0;
}
