#include "certs/cert_cache.hpp"

#include <stdexcept>

#include "core/log.hpp"
#include "core/metrics.hpp"

namespace sidekey::certs {
using std::chrono::system_clock;

CertCache::CertCache(CertificateAuthority::Ptr ca, Options options)
    : ca_(std::move(ca)), options_(std::move(options)), capacity_(std::max<std::size_t>(1, options_.capacity)) {
  if (!ca_) throw std::invalid_argument("CertCache needs a CA");
  if (!options_.clock) options_.clock = [] { return system_clock::now(); };
  if (options_.leaf_ttl <= std::chrono::milliseconds(0)) throw std::invalid_argument("leaf_ttl must be positive");
}

std::size_t CertCache::size() const {
  std::lock_guard lock(mu_);
  return slots_.size();
}

void CertCache::count_hit() {
  hits_.fetch_add(1, std::memory_order_relaxed);
  metrics::registry().counter("sidekey_cert_cache_hits_total").inc();
}

CertCache::EntryPtr CertCache::mint(const CertHost& host, system_clock::time_point now) {
  if (options_.before_mint) options_.before_mint(host.name);
  Leaf leaf = mint_leaf(*ca_, host, options_.leaf_ttl, now);
  auto entry = std::make_shared<Entry>();
  entry->context = make_server_context(*ca_, leaf, options_.require_sni_match);
  entry->certificate = std::move(leaf.cert);
  entry->host = host;
  entry->minted_at = leaf.minted_at;
  entry->not_after = leaf.not_after;
  entry->refresh_at = leaf.not_after - (leaf.not_after - leaf.minted_at) / 3;
  mints_.fetch_add(1, std::memory_order_relaxed);
  metrics::registry().counter("sidekey_cert_mints_total").inc();
  return entry;
}

std::shared_ptr<boost::asio::ssl::context> CertCache::context_for(std::string_view host) {
  return lookup(host)->context;
}

std::shared_ptr<const CertCache::Entry> CertCache::lookup(std::string_view host_text) {
  auto host = CertHost::parse(host_text);
  if (!host) throw std::invalid_argument("cannot mint a certificate for host '" + std::string(host_text) + "'");
  const auto now = options_.clock();

  std::unique_lock lock(mu_);
  auto it = slots_.find(host->name);
  if (it == slots_.end()) {
    lru_.push_front(host->name);
    it = slots_.emplace(host->name, Slot{}).first;
    it->second.lru = lru_.begin();
    while (slots_.size() > capacity_) {
      // A mint in progress for an evicted host still completes for the threads waiting on it;
      // it just is not kept.
      slots_.erase(lru_.back());
      lru_.pop_back();
    }
  } else {
    lru_.splice(lru_.begin(), lru_, it->second.lru);
  }
  Slot& slot = it->second;
  if (slot.current && now < slot.current->refresh_at) {
    EntryPtr e = slot.current;
    lock.unlock();
    count_hit();
    return e;
  }
  if (slot.pending) {
    if (slot.current && now < slot.current->not_after) {  // being re-minted; the old one still serves
      EntryPtr e = slot.current;
      lock.unlock();
      count_hit();
      return e;
    }
    auto waiting = *slot.pending;
    lock.unlock();
    count_hit();
    return waiting.get();  // the minter's result, or its exception
  }

  // This thread mints; others for the same host wait on (or, when still valid, skip) it.
  std::promise<EntryPtr> promise;
  slot.pending = promise.get_future().share();
  const std::uint64_t id = slot.pending_id = ++next_id_;
  EntryPtr stale = slot.current;
  lock.unlock();

  auto finish = [&](const EntryPtr& fresh) {
    std::lock_guard relock(mu_);
    auto again = slots_.find(host->name);
    if (again == slots_.end() || again->second.pending_id != id) return;  // evicted meanwhile
    again->second.pending.reset();
    if (fresh) again->second.current = fresh;
  };
  EntryPtr fresh;
  try {
    fresh = mint(*host, now);
  } catch (...) {
    promise.set_exception(std::current_exception());
    finish(nullptr);
    if (stale && now < stale->not_after) {
      // A failed re-mint: the old leaf still serves; the caller sees no error, so log it here.
      std::string why = "unknown error";
      try {
        throw;
      } catch (const std::exception& e) {
        why = e.what();
      } catch (...) {
      }
      log::warn("cert_remint_failed", {{"host", host->name}, {"error", why}});
      return stale;
    }
    throw;
  }
  promise.set_value(fresh);
  finish(fresh);
  return fresh;
}

}  // namespace sidekey::certs
