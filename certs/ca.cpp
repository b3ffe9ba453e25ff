#include "certs/ca.hpp"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <utility>

#include "config/config.hpp"
#include "core/encoding.hpp"
#include "core/files.hpp"
#include "core/log.hpp"
#include "core/random.hpp"

namespace sidekey::certs {
namespace fs = std::filesystem;
using std::chrono::system_clock;

struct CertificateAuthority::Private {};

namespace {

constexpr int kCaYears = 10;
constexpr auto kBackdate = std::chrono::hours(1);      // clock skew

// Wipes a string that held private-key text when it goes out of scope.
struct Wipe {
  std::string& s;
  ~Wipe() {
    if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
  }
};

// flock(2) on data_dir/ca.lock, released on close.
class DirLock {
 public:
  explicit DirLock(const fs::path& path) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd_ < 0) throw CertError("cannot open lock file " + path.string() + ": " + std::strerror(errno));
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd_);
      throw CertError("cannot lock " + path.string() + ": " + std::strerror(err));
    }
  }
  ~DirLock() { ::close(fd_); }
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

 private:
  int fd_ = -1;
};

int no_passphrase(char*, int, int, void*) { return -1; }  // never prompt on the terminal

std::vector<X509Ptr> parse_certificates(std::string_view pem, const std::string& origin) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) throw_openssl("out of memory");
  std::vector<X509Ptr> out;
  for (;;) {
    X509* x = PEM_read_bio_X509(bio.get(), nullptr, no_passphrase, nullptr);
    if (!x) break;
    out.emplace_back(x);
  }
  unsigned long err = ERR_peek_last_error();
  bool clean_end = ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE;
  if (out.empty()) {
    if (clean_end) ERR_clear_error();
    throw CertError("CA certificate " + origin + ": no PEM certificate found" +
                    (clean_end ? std::string() : " (" + openssl_error() + ")"));
  }
  if (!clean_end && err != 0) throw_openssl("CA certificate " + origin + ": malformed PEM");
  ERR_clear_error();
  return out;
}

PkeyPtr parse_key(std::string_view pem, const std::string& origin) {
  if (pem.find("ENCRYPTED") != std::string_view::npos)
    throw CertError("CA key " + origin + " is encrypted; sidekey needs an unencrypted PEM key (keep the file mode 0600)");
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) throw_openssl("out of memory");
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr));
  if (!key) throw_openssl("CA key " + origin + ": no PEM private key found");
  ERR_clear_error();
  return key;
}

std::string key_to_pem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1)
    throw_openssl("cannot encode the CA key");
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  std::string out(data, static_cast<size_t>(n));
  OPENSSL_cleanse(data, static_cast<size_t>(n));
  return out;
}

// The same UTC date and time `years` calendar years later (29 February becomes 1 March).
system_clock::time_point years_after(system_clock::time_point tp, int years) {
  std::time_t t = system_clock::to_time_t(tp);
  std::tm tm{};
  gmtime_r(&t, &tm);
  tm.tm_year += years;
  return system_clock::from_time_t(timegm(&tm));
}

// A self-signed CA certificate for `key`.
X509Ptr self_sign(EVP_PKEY* key) {
  X509Ptr cert(X509_new());
  if (!cert) throw_openssl("out of memory");
  if (X509_set_version(cert.get(), X509_VERSION_3) != 1) throw_openssl("cannot set version");
  set_random_serial(cert.get());
  auto now = system_clock::now();
  set_time(X509_getm_notBefore(cert.get()), now - kBackdate);
  set_time(X509_getm_notAfter(cert.get()), years_after(now, kCaYears));
  std::string cn = "sidekey interception CA " + hex_encode(random_bytes(4));
  X509_NAME* name = X509_get_subject_name(cert.get());
  if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>("sidekey"), -1, -1, 0) != 1 ||
      X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0) != 1)
    throw_openssl("cannot set the CA name");
  if (X509_set_issuer_name(cert.get(), name) != 1) throw_openssl("cannot set the CA issuer");
  if (X509_set_pubkey(cert.get(), key) != 1) throw_openssl("cannot set the CA public key");
  add_extension(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
  add_extension(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
  add_extension(cert.get(), cert.get(), NID_subject_key_identifier, "hash");
  add_extension(cert.get(), cert.get(), NID_authority_key_identifier, "keyid:always");
  if (X509_sign(cert.get(), key, signing_digest(key)) <= 0) throw_openssl("cannot sign the CA certificate");
  return cert;
}

void warn_if_key_readable(const fs::path& key_file) {
  struct stat st {};
  if (::stat(key_file.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    log::warn("ca_key_permissions", {{"path", key_file.string()}, {"mode", mode},
                                     {"message", "the CA key is readable by other users; chmod 600 it"}});
  }
}

std::string read_cert_file(const fs::path& p) {
  try {
    return read_file(p);
  } catch (const std::exception& e) {
    throw CertError(std::string("CA certificate: ") + e.what());
  }
}

std::string read_key_file(const fs::path& p) {
  try {
    return read_file(p);
  } catch (const std::exception& e) {
    throw CertError(std::string("CA key: ") + e.what());
  }
}

}  // namespace

CertificateAuthority::CertificateAuthority(Private, X509Ptr cert, PkeyPtr key, std::vector<X509Ptr> chain)
    : cert_(std::move(cert)), key_(std::move(key)), chain_(std::move(chain)) {
  pem_ = to_pem(cert_.get());
  for (const auto& c : chain_) pem_ += to_pem(c.get());
  fingerprint_ = sha256_fingerprint(cert_.get());
  not_after_ = to_time_point(X509_get0_notAfter(cert_.get()));
}

std::string CertificateAuthority::subject() const {
  char buf[512];
  X509_NAME_oneline(X509_get_subject_name(cert_.get()), buf, sizeof buf);
  return buf;
}

namespace {
std::string utc_text(system_clock::time_point tp) {
  std::time_t t = system_clock::to_time_t(tp);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}
}  // namespace

std::shared_ptr<CertificateAuthority> CertificateAuthority::build(std::string_view cert_pem, std::string_view key_pem,
                                                                  const std::string& cert_origin,
                                                                  const std::string& key_origin) {
  auto certs = parse_certificates(cert_pem, cert_origin);
  PkeyPtr key = parse_key(key_pem, key_origin);
  const std::string& origin = cert_origin;
  X509Ptr cert = std::move(certs.front());
  certs.erase(certs.begin());
  // X509_check_ca also fills the certificate's extension cache, so later concurrent reads
  // (minting on many threads) only read it.
  if (X509_check_ca(cert.get()) < 1)
    throw CertError("CA certificate " + origin +
                    " is not a CA certificate (needs basicConstraints CA:TRUE and keyUsage keyCertSign)");
  if (EVP_PKEY_eq(X509_get0_pubkey(cert.get()), key.get()) != 1) {
    ERR_clear_error();
    throw CertError("CA certificate " + cert_origin + " and key " + key_origin +
                    " do not match (the key is not the certificate's private key)");
  }
  auto not_after = to_time_point(X509_get0_notAfter(cert.get()));
  if (not_after <= system_clock::now())
    throw CertError("CA certificate " + origin + " expired on " + utc_text(not_after));
  return std::make_shared<CertificateAuthority>(Private{}, std::move(cert), std::move(key), std::move(certs));
}

CertificateAuthority::Ptr CertificateAuthority::from_pem(std::string_view cert_pem, std::string_view key_pem,
                                                         const std::string& origin) {
  return build(cert_pem, key_pem, origin, origin);
}

CertificateAuthority::Ptr CertificateAuthority::load_files(const fs::path& cert_file, const fs::path& key_file) {
  std::string cert_pem = read_cert_file(cert_file);
  std::string key_pem = read_key_file(key_file);
  Wipe wipe{key_pem};
  auto ca = build(cert_pem, key_pem, cert_file.string(), key_file.string());
  warn_if_key_readable(key_file);
  ca->cert_path_ = cert_file;
  ca->key_path_ = key_file;
  return ca;
}

std::pair<std::string, std::string> CertificateAuthority::generate_pem() {
  PkeyPtr key = new_p256_key();
  X509Ptr cert = self_sign(key.get());
  return {to_pem(cert.get()), key_to_pem(key.get())};
}

CertificateAuthority::Ptr CertificateAuthority::generate() {
  PkeyPtr key = new_p256_key();
  X509Ptr cert = self_sign(key.get());
  X509_check_ca(cert.get());
  auto ca = std::make_shared<CertificateAuthority>(Private{}, std::move(cert), std::move(key), std::vector<X509Ptr>{});
  ca->created_ = true;
  return ca;
}

CertificateAuthority::Ptr CertificateAuthority::load_or_create(const fs::path& data_dir) {
  const fs::path cert_file = data_dir / kCaCertFile;
  const fs::path key_file = data_dir / kCaKeyFile;
  std::error_code ec;
  // Fast path: both files are only ever replaced whole (rename), so two that exist are complete.
  if (fs::exists(cert_file, ec) && fs::exists(key_file, ec)) return load_files(cert_file, key_file);

  try {
    ensure_dir(data_dir, 0700);
  } catch (const std::exception& e) {
    throw CertError(e.what());
  }
  DirLock lock(data_dir / kCaLockFile);
  bool have_cert = fs::exists(cert_file, ec);
  bool have_key = fs::exists(key_file, ec);
  if (have_cert && have_key) return load_files(cert_file, key_file);  // another process won the race
  if (have_cert && !have_key)
    throw CertError("CA certificate " + cert_file.string() + " exists but its key " + key_file.string() +
                    " is missing: restore the key, or remove the certificate to create a new CA");

  PkeyPtr key;
  if (have_key) {
    // A crash between writing the key and the certificate: nobody can trust a certificate that
    // was never written, so sign a new one for the key.
    std::string key_pem = read_key_file(key_file);
    Wipe wipe{key_pem};
    key = parse_key(key_pem, key_file.string());
    log::warn("ca_certificate_recreated", {{"path", cert_file.string()}, {"message", "CA key found without its certificate"}});
  } else {
    key = new_p256_key();
    std::string key_pem = key_to_pem(key.get());
    Wipe wipe{key_pem};
    try {
      write_file_atomic(key_file, key_pem, 0600);
    } catch (const std::exception& e) {
      throw CertError(std::string("CA key: ") + e.what());
    }
  }
  X509Ptr cert = self_sign(key.get());
  try {
    write_file_atomic(cert_file, to_pem(cert.get()), 0644);
  } catch (const std::exception& e) {
    throw CertError(std::string("CA certificate: ") + e.what());
  }
  X509_check_ca(cert.get());
  auto ca = std::make_shared<CertificateAuthority>(Private{}, std::move(cert), std::move(key), std::vector<X509Ptr>{});
  ca->cert_path_ = cert_file;
  ca->key_path_ = key_file;
  ca->created_ = true;
  return ca;
}

CertificateAuthority::Ptr CertificateAuthority::load(const config::Config& cfg) {
  if (!cfg.tls_ca_cert.empty() || !cfg.tls_ca_key.empty()) {
    if (cfg.tls_ca_cert.empty() || cfg.tls_ca_key.empty())
      throw CertError("tls.ca_cert and tls.ca_key must be given together");
    return load_files(cfg.tls_ca_cert, cfg.tls_ca_key);
  }
  return load_or_create(cfg.data_dir);
}

std::string ca_certificate_pem(const config::Config& cfg) { return CertificateAuthority::load(cfg)->certificate_pem(); }

}  // namespace sidekey::certs
