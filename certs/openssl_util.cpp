#include "certs/openssl_util.hpp"

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "core/random.hpp"

#include <cstdio>
#include <ctime>

namespace sidekey::certs {

std::string openssl_error() {
  unsigned long code = ERR_get_error();
  std::string out;
  if (code == 0) {
    out = "unknown error";
  } else {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    out = buf;
  }
  ERR_clear_error();
  return out;
}

void throw_openssl(const std::string& what) { throw CertError(what + ": " + openssl_error()); }

X509Ptr share(X509* x) {
  if (x) X509_up_ref(x);
  return X509Ptr(x);
}

PkeyPtr share(EVP_PKEY* k) {
  if (k) EVP_PKEY_up_ref(k);
  return PkeyPtr(k);
}

std::string to_pem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) throw_openssl("cannot encode certificate");
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

std::string sha256_fingerprint(X509* cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (X509_digest(cert, EVP_sha256(), md, &n) != 1) throw_openssl("cannot digest certificate");
  std::string out;
  char hex[4];
  for (unsigned i = 0; i < n; ++i) {
    std::snprintf(hex, sizeof hex, "%02X", md[i]);
    if (i) out += ':';
    out += hex;
  }
  return out;
}

void set_random_serial(X509* cert) {
  std::string bytes = random_bytes(16);
  bytes[0] = static_cast<char>((static_cast<unsigned char>(bytes[0]) & 0x7f) | 0x40);
  BIGNUM* bn = BN_bin2bn(reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()), nullptr);
  if (!bn) throw_openssl("cannot make a serial number");
  ASN1_INTEGER* serial = BN_to_ASN1_INTEGER(bn, nullptr);
  BN_free(bn);
  if (!serial) throw_openssl("cannot make a serial number");
  int ok = X509_set_serialNumber(cert, serial);
  ASN1_INTEGER_free(serial);
  if (ok != 1) throw_openssl("cannot set the serial number");
}

void add_extension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (!ext) throw_openssl(std::string("cannot build extension ") + OBJ_nid2sn(nid));
  int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  if (ok != 1) throw_openssl(std::string("cannot add extension ") + OBJ_nid2sn(nid));
}

const EVP_MD* signing_digest(EVP_PKEY* key) {
  int id = EVP_PKEY_get_id(key);
  if (id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448) return nullptr;
  return EVP_sha256();
}

PkeyPtr new_p256_key() {
  PkeyPtr key(EVP_EC_gen("P-256"));
  if (!key) throw_openssl("cannot generate an EC P-256 key");
  return key;
}

std::chrono::system_clock::time_point to_time_point(const ASN1_TIME* t) {
  std::tm tm{};
  if (!t || ASN1_TIME_to_tm(t, &tm) != 1) throw CertError("malformed certificate time");
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

void set_time(ASN1_TIME* t, std::chrono::system_clock::time_point tp) {
  // ASN1_TIME_set picks UTCTime before 2050 and GeneralizedTime after, as RFC 5280 requires.
  if (!ASN1_TIME_set(t, std::chrono::system_clock::to_time_t(tp))) throw_openssl("cannot set certificate time");
}

}  // namespace sidekey::certs
