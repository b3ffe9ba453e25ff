#pragma once
// data_dir/trust-bundle.pem (SPEC section 6): the system roots followed by the sidekey CA, for
// the SSL_CERT_FILE / REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE variables `sidekey exec` and
// `sidekey env` set, which replace the system roots rather than add to them.
#include <filesystem>
#include <string>

#include "certs/ca.hpp"

namespace sidekey::certs {

inline constexpr const char* kTrustBundleFile = "trust-bundle.pem";

// The system roots as PEM: /etc/ssl/certs/ca-certificates.crt, else OpenSSL's default cert file
// (X509_get_default_cert_file()); empty when neither can be read.
std::string system_roots_pem();

// system roots + the CA's certificate_pem(), written atomically (mode 0644) to
// data_dir/trust-bundle.pem; returns that path. The CA is not appended twice when the system
// roots already hold it. Throws std::runtime_error when the file cannot be written.
std::filesystem::path write_trust_bundle(const CertificateAuthority& ca, const std::filesystem::path& data_dir);

// The bundle's text, as write_trust_bundle writes it.
std::string trust_bundle_pem(const CertificateAuthority& ca);

}  // namespace sidekey::certs
