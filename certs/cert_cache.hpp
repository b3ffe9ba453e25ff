#pragma once
// The per-host cache of minted TLS server contexts, shared by all worker threads.
//
// A bounded LRU keyed by host. A lookup takes the map mutex only to find or insert an entry;
// minting (key generation and signing) runs outside it, so different hosts mint in parallel,
// and concurrent first requests for one host mint once (the others wait on that mint's
// shared_future). An entry is re-minted once less than a third of its lifetime remains; until
// it actually expires, other threads keep getting the old one while one thread re-mints.
// Counts sidekey_cert_mints_total and sidekey_cert_cache_hits_total.
#include <boost/asio/ssl/context.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "certs/ca.hpp"
#include "certs/leaf.hpp"

namespace sidekey::certs {

class CertCache {
 public:
  struct Options {
    std::size_t capacity = 1024;                             // hosts kept (at least 1)
    std::chrono::milliseconds leaf_ttl{std::chrono::hours(24)};  // tls.leaf_ttl
    bool require_sni_match = true;                           // see make_server_context
    // Time source (tests move it forward); default std::chrono::system_clock::now.
    std::function<std::chrono::system_clock::time_point()> clock;
    // Test hook: runs on the minting thread, outside the lock, before each mint.
    std::function<void(const std::string& host)> before_mint;
  };

  // What a lookup yields; immutable and shared.
  struct Entry {
    std::shared_ptr<boost::asio::ssl::context> context;  // ready for ssl_stream(…, *context)
    X509Ptr certificate;                                  // the leaf it serves
    CertHost host;
    std::chrono::system_clock::time_point minted_at, not_after, refresh_at;
  };

  explicit CertCache(CertificateAuthority::Ptr ca, Options options);
  explicit CertCache(CertificateAuthority::Ptr ca) : CertCache(std::move(ca), Options{}) {}
  CertCache(const CertCache&) = delete;
  CertCache& operator=(const CertCache&) = delete;

  // The server context for `host` (a DNS name or an IP literal, "[v6]" accepted; no port).
  // Throws std::invalid_argument for a host that cannot be a certificate subject and CertError
  // when minting fails.
  std::shared_ptr<boost::asio::ssl::context> context_for(std::string_view host);
  // The same, with the certificate and its times.
  std::shared_ptr<const Entry> lookup(std::string_view host);

  const CertificateAuthority& ca() const { return *ca_; }
  std::size_t size() const;
  std::size_t capacity() const { return capacity_; }
  // Counts of this cache (the process-wide metrics count all caches).
  std::uint64_t mints() const { return mints_.load(std::memory_order_relaxed); }
  std::uint64_t hits() const { return hits_.load(std::memory_order_relaxed); }

 private:
  using EntryPtr = std::shared_ptr<const Entry>;
  struct Slot {
    EntryPtr current;                                   // last minted, possibly due for refresh
    std::optional<std::shared_future<EntryPtr>> pending;  // a mint in progress
    std::uint64_t pending_id = 0;
    std::list<std::string>::iterator lru;
  };

  EntryPtr mint(const CertHost& host, std::chrono::system_clock::time_point now);
  void count_hit();

  CertificateAuthority::Ptr ca_;
  Options options_;
  std::size_t capacity_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Slot> slots_;
  std::list<std::string> lru_;  // front = most recently used
  std::uint64_t next_id_ = 0;
  std::atomic<std::uint64_t> mints_{0}, hits_{0};
};

}  // namespace sidekey::certs
