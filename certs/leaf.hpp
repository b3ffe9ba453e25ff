#pragma once
// Leaf certificates for intercepted hosts (SPEC section 6) and the TLS server contexts that
// serve them. Minting is pure CPU (an EC P-256 key and one CA signature); CertCache
// (certs/cert_cache.hpp) decides when to mint.
#include <boost/asio/ssl/context.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "certs/ca.hpp"
#include "certs/openssl_util.hpp"

namespace sidekey::certs {

// A host as it goes into a certificate.
struct CertHost {
  std::string name;        // lower-case DNS name without trailing dot, or the canonical IP text
  bool is_ip = false;
  std::string ip_bytes;    // 4 or 16 bytes when is_ip

  // Accepts a DNS name ("API.Example.com", "example.com."), an IPv4 literal, or an IPv6 literal
  // with or without brackets ("::1", "[::1]"). nullopt for anything that cannot be a
  // certificate's subject: empty, wildcards, spaces, ports, zone ids, non-ASCII, labels over 63
  // or names over 253 characters.
  static std::optional<CertHost> parse(std::string_view host);
};

struct Leaf {
  X509Ptr cert;
  PkeyPtr key;
  CertHost host;
  std::chrono::system_clock::time_point minted_at, not_before, not_after;
};

// Mints a leaf for `host`: fresh EC P-256 key, SAN = the host (DNS or IP), CN = the host
// (first 64 characters), 16-byte random serial, notBefore = now - 1h, notAfter = now + ttl
// (never beyond the CA's notAfter), CA:FALSE, keyUsage digitalSignature, extendedKeyUsage
// serverAuth, subject and authority key identifiers, signed by the CA with SHA-256.
// Throws CertError (also when the CA has expired).
Leaf mint_leaf(const CertificateAuthority& ca, const CertHost& host, std::chrono::milliseconds ttl,
               std::chrono::system_clock::time_point now = std::chrono::system_clock::now());

// A TLS server context serving `leaf` with the CA (and its chain) as chain: TLS 1.2+, ALPN
// "http/1.1" selected when the client offers it (no ALPN otherwise), no renegotiation,
// SSL_MODE_RELEASE_BUFFERS.
// With `require_sni_match` the handshake is refused (fatal unrecognized_name alert) unless the
// client's SNI names the leaf's host (case-insensitive, trailing dot ignored); a client that
// sends no SNI is accepted only for IP-literal hosts (RFC 6066 forbids IP addresses in SNI).
std::shared_ptr<boost::asio::ssl::context> make_server_context(const CertificateAuthority& ca, const Leaf& leaf,
                                                               bool require_sni_match = true);

}  // namespace sidekey::certs
