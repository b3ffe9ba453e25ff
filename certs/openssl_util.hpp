#pragma once
// Owning handles for the OpenSSL objects the certs library passes around, and error text.
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace sidekey::certs {

struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct BioFree {
  void operator()(BIO* p) const { BIO_free_all(p); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using BioPtr = std::unique_ptr<BIO, BioFree>;

// Any failure of the certs library (unreadable or mismatched CA files, a failed mint).
struct CertError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The oldest queued OpenSSL error as text (and clears the queue); "unknown error" when empty.
std::string openssl_error();
// Throws CertError("<what>: <openssl error>").
[[noreturn]] void throw_openssl(const std::string& what);

// A new owned reference to `x` (X509_up_ref).
X509Ptr share(X509* x);
PkeyPtr share(EVP_PKEY* k);

// PEM of a certificate ("-----BEGIN CERTIFICATE-----…").
std::string to_pem(X509* cert);
// Uppercase hex SHA-256 of the DER, bytes separated by ':' (as `openssl x509 -fingerprint`).
std::string sha256_fingerprint(X509* cert);

// A random positive 128-bit serial number (16 bytes, top bit clear, second bit set so the
// encoding is always 16 bytes).
void set_random_serial(X509* cert);
// Adds an X.509 v3 extension from its OpenSSL config text ("critical,CA:TRUE"); `issuer` is the
// signing certificate (the certificate itself when self-signed) for key identifiers.
void add_extension(X509* cert, X509* issuer, int nid, const char* value);
// The digest to sign with: SHA-256, or none for keys that hash internally (Ed25519, Ed448).
const EVP_MD* signing_digest(EVP_PKEY* key);
// A new EC P-256 key.
PkeyPtr new_p256_key();

// ASN1_TIME <-> system_clock (second precision).
std::chrono::system_clock::time_point to_time_point(const ASN1_TIME* t);
void set_time(ASN1_TIME* t, std::chrono::system_clock::time_point tp);

}  // namespace sidekey::certs
