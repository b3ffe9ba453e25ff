#pragma once
// The interception CA (SPEC section 6): loaded from tls.ca_cert/tls.ca_key, or from
// data_dir/ca.pem + data_dir/ca-key.pem, generated there on first start (EC P-256, self-signed,
// 10 years, CA:TRUE pathlen:0). Immutable once loaded and safe to share between threads; the
// private key stays in an EVP_PKEY and is never logged or printed.
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "certs/openssl_util.hpp"

namespace sidekey::config {
struct Config;
}

namespace sidekey::certs {

inline constexpr const char* kCaCertFile = "ca.pem";      // mode 0644
inline constexpr const char* kCaKeyFile = "ca-key.pem";   // mode 0600
inline constexpr const char* kCaLockFile = "ca.lock";     // flock(2) held while generating

class CertificateAuthority {
 public:
  using Ptr = std::shared_ptr<const CertificateAuthority>;

  // tls.ca_cert/tls.ca_key when configured, else load_or_create(cfg.data_dir).
  static Ptr load(const config::Config& cfg);
  // data_dir/ca.pem + data_dir/ca-key.pem; when both are missing, generates a new CA and writes
  // them (key first, 0600; then the certificate, 0644; each atomically) under an exclusive
  // flock on data_dir/ca.lock, so concurrent first starts (threads or processes) end up with
  // one CA. A key without a certificate (a crash between the two writes) gets a new
  // certificate; a certificate without its key is an error.
  static Ptr load_or_create(const std::filesystem::path& data_dir);
  // An operator's CA: a PEM certificate (optionally followed by the certificates above it,
  // which are served in the chain and included in certificate_pem()) and an unencrypted PEM
  // private key. Throws CertError for an unreadable file, a non-CA or expired certificate, an
  // encrypted key, or a key that does not belong to the certificate.
  static Ptr load_files(const std::filesystem::path& cert_file, const std::filesystem::path& key_file);
  // The same checks on PEM text (`origin` names it in errors).
  static Ptr from_pem(std::string_view cert_pem, std::string_view key_pem, const std::string& origin = "memory");
  // A new CA held only in memory (tests, benchmarks).
  static Ptr generate();
  // PEM text of a newly generated CA: {certificate, private key}. The caller wipes the key text.
  static std::pair<std::string, std::string> generate_pem();

  X509* certificate() const { return cert_.get(); }
  EVP_PKEY* private_key() const { return key_.get(); }
  // Certificates after the first in the configured file (empty for a generated CA).
  const std::vector<X509Ptr>& chain() const { return chain_; }
  // The CA certificate (and its chain) as PEM: what clients must trust.
  const std::string& certificate_pem() const { return pem_; }
  // SHA-256 of the CA certificate, "AB:CD:…".
  const std::string& fingerprint_sha256() const { return fingerprint_; }
  std::string subject() const;
  std::chrono::system_clock::time_point not_after() const { return not_after_; }
  // Where it was loaded from (empty for an in-memory CA).
  const std::filesystem::path& cert_path() const { return cert_path_; }
  const std::filesystem::path& key_path() const { return key_path_; }
  // True when this load generated the CA (first start).
  bool created() const { return created_; }

  struct Private;  // construction tag
  CertificateAuthority(Private, X509Ptr cert, PkeyPtr key, std::vector<X509Ptr> chain);

 private:
  static std::shared_ptr<CertificateAuthority> build(std::string_view cert_pem, std::string_view key_pem,
                                                     const std::string& cert_origin, const std::string& key_origin);
  X509Ptr cert_;
  PkeyPtr key_;
  std::vector<X509Ptr> chain_;
  std::string pem_, fingerprint_;
  std::chrono::system_clock::time_point not_after_;
  std::filesystem::path cert_path_, key_path_;
  bool created_ = false;
};

// The CA certificate PEM a client must trust (load(cfg), creating the CA when missing).
std::string ca_certificate_pem(const config::Config& cfg);

}  // namespace sidekey::certs
