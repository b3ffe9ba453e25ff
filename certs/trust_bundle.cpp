#include "certs/trust_bundle.hpp"

#include <openssl/x509.h>

#include "core/files.hpp"
#include "core/log.hpp"

namespace sidekey::certs {
namespace fs = std::filesystem;

std::string system_roots_pem() {
  const char* candidates[] = {"/etc/ssl/certs/ca-certificates.crt", X509_get_default_cert_file()};
  for (const char* path : candidates) {
    if (!path || !*path) continue;
    try {
      if (auto text = read_file_if_exists(path); text && !text->empty()) return std::move(*text);
    } catch (const std::exception&) {
      // unreadable: try the next one
    }
  }
  return {};
}

std::string trust_bundle_pem(const CertificateAuthority& ca) {
  std::string out = system_roots_pem();
  if (out.empty())
    log::warn("trust_bundle_without_system_roots",
              {{"message", "no system CA bundle found; the trust bundle holds only the sidekey CA"}});
  const std::string& own = ca.certificate_pem();
  if (out.find(own) != std::string::npos) return out;
  if (!out.empty() && out.back() != '\n') out += '\n';
  out += "# sidekey interception CA: " + ca.subject() + "\n";
  out += own;
  return out;
}

fs::path write_trust_bundle(const CertificateAuthority& ca, const fs::path& data_dir) {
  ensure_dir(data_dir, 0700);
  fs::path path = data_dir / kTrustBundleFile;
  write_file_atomic(path, trust_bundle_pem(ca), 0644);
  return path;
}

}  // namespace sidekey::certs
