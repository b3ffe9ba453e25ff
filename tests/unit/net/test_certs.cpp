// The interception CA, leaf minting, the per-host context cache and the trust bundle.
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/test/unit_test.hpp>

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <latch>
#include <set>
#include <thread>
#include <vector>

#include "certs/ca.hpp"
#include "certs/cert_cache.hpp"
#include "certs/leaf.hpp"
#include "certs/trust_bundle.hpp"
#include "config/config.hpp"
#include "core/files.hpp"
#include "core/io.hpp"
#include "core/metrics.hpp"

namespace fs = std::filesystem;
using namespace sidekey;
using namespace sidekey::certs;
using namespace std::chrono_literals;
using std::chrono::system_clock;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "sidekey-certs-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

unsigned file_mode(const fs::path& p) {
  struct stat st {};
  BOOST_REQUIRE_EQUAL(::stat(p.c_str(), &st), 0);
  return st.st_mode & 07777;
}

void write_text(const fs::path& p, const std::string& text, unsigned mode = 0600) { write_file_atomic(p, text, mode); }

bool extension_critical(X509* cert, int nid) {
  int idx = X509_get_ext_by_NID(cert, nid, -1);
  BOOST_REQUIRE_MESSAGE(idx >= 0, "extension " << OBJ_nid2sn(nid) << " missing");
  return X509_EXTENSION_get_critical(X509_get_ext(cert, idx)) == 1;
}

std::string curve_of(EVP_PKEY* key) {
  char name[64] = {0};
  size_t len = 0;
  if (EVP_PKEY_get_group_name(key, name, sizeof name, &len) != 1) return "";
  return name;
}

// X509_verify_cert of `leaf` against a store holding only `ca`, as a TLS server certificate.
// `host` is checked as a DNS name or, when `ip` is set, as an IP address.
int verify_leaf(const CertificateAuthority& ca, X509* leaf, const std::string& host = "", bool ip = false) {
  X509_STORE* store = X509_STORE_new();
  X509_STORE_add_cert(store, ca.certificate());
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  X509_STORE_CTX_init(ctx, store, leaf, nullptr);
  X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx);
  if (!host.empty()) {
    if (ip)
      X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
    else
      X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0);
  }
  int ok = X509_verify_cert(ctx);
  int err = ok == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  ERR_clear_error();
  return err;
}

struct San {
  std::vector<std::string> dns;
  std::vector<std::string> ip;  // raw bytes
};

San sans_of(X509* cert) {
  San out;
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  BOOST_REQUIRE(names);
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    GENERAL_NAME* gn = sk_GENERAL_NAME_value(names, i);
    if (gn->type == GEN_DNS)
      out.dns.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(gn->d.dNSName)),
                           ASN1_STRING_length(gn->d.dNSName));
    else if (gn->type == GEN_IPADD)
      out.ip.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(gn->d.iPAddress)),
                          ASN1_STRING_length(gn->d.iPAddress));
  }
  GENERAL_NAMES_free(names);
  return out;
}

std::string common_name(X509* cert) {
  char buf[256] = {0};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf, sizeof buf);
  return buf;
}

std::string pubkey_der(X509* cert) {
  unsigned char* der = nullptr;
  int n = i2d_PUBKEY(X509_get0_pubkey(cert), &der);
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(n));
  OPENSSL_free(der);
  return out;
}

std::string serial_hex(X509* cert) {
  BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr);
  char* hex = BN_bn2hex(bn);
  std::string out(hex);
  OPENSSL_free(hex);
  BN_free(bn);
  return out;
}

std::uint64_t metric(const char* name) { return metrics::registry().counter(name).value.load(); }

// A manually advanced clock for the cache.
struct FakeClock {
  std::shared_ptr<std::atomic<std::int64_t>> offset_s = std::make_shared<std::atomic<std::int64_t>>(0);
  system_clock::time_point base = std::chrono::time_point_cast<std::chrono::seconds>(system_clock::now());
  std::function<system_clock::time_point()> fn() const {
    return [o = offset_s, b = base] { return b + std::chrono::seconds(o->load()); };
  }
  void advance(std::chrono::seconds s) { offset_s->fetch_add(s.count()); }
};

// An in-memory TLS handshake between a client that trusts `ca` and a server using `server_ctx`.
struct HandshakeResult {
  bool ok = false;
  std::string alpn;
  long verify = -1;
  int chain_length = 0;
};

HandshakeResult handshake(SSL_CTX* server_ctx, X509* anchor, const char* sni, const std::string& host, bool host_is_ip,
                          const std::vector<std::string>& alpn) {
  SSL_CTX* cctx = SSL_CTX_new(TLS_client_method());
  X509_STORE_add_cert(SSL_CTX_get_cert_store(cctx), anchor);
  SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, nullptr);  // inspect the result instead of aborting
  SSL* client = SSL_new(cctx);
  SSL* server = SSL_new(server_ctx);
  if (sni) SSL_set_tlsext_host_name(client, sni);
  if (host_is_ip)
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(client), host.c_str());
  else
    SSL_set1_host(client, host.c_str());
  if (!alpn.empty()) {
    std::string wire;
    for (const auto& p : alpn) wire += static_cast<char>(p.size()) + p;
    SSL_set_alpn_protos(client, reinterpret_cast<const unsigned char*>(wire.data()), static_cast<unsigned>(wire.size()));
  }
  BIO *cbio = nullptr, *sbio = nullptr;
  BIO_new_bio_pair(&cbio, 0, &sbio, 0);
  SSL_set_bio(client, cbio, cbio);
  SSL_set_bio(server, sbio, sbio);
  SSL_set_connect_state(client);
  SSL_set_accept_state(server);
  HandshakeResult r;
  bool cdone = false, sdone = false;
  for (int i = 0; i < 50 && !(cdone && sdone); ++i) {
    if (!cdone) {
      int rc = SSL_do_handshake(client);
      if (rc == 1) cdone = true;
      else if (int e = SSL_get_error(client, rc); e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) break;
    }
    if (!sdone) {
      int rc = SSL_do_handshake(server);
      if (rc == 1) sdone = true;
      else if (int e = SSL_get_error(server, rc); e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) break;
    }
  }
  r.ok = cdone && sdone;
  if (r.ok) {
    const unsigned char* sel = nullptr;
    unsigned len = 0;
    SSL_get0_alpn_selected(client, &sel, &len);
    r.alpn.assign(reinterpret_cast<const char*>(sel), len);
    r.verify = SSL_get_verify_result(client);
    if (auto* chain = SSL_get_peer_cert_chain(client)) r.chain_length = sk_X509_num(chain);
  }
  SSL_free(client);
  SSL_free(server);
  SSL_CTX_free(cctx);
  ERR_clear_error();
  return r;
}

// A CA certificate for `key`, signed by `issuer`/`issuer_key` (self-signed when null).
X509Ptr make_ca_cert(EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key, const char* cn, const char* basic_constraints) {
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), X509_VERSION_3);
  set_random_serial(cert.get());
  set_time(X509_getm_notBefore(cert.get()), system_clock::now() - 1h);
  set_time(X509_getm_notAfter(cert.get()), system_clock::now() + 24h * 365);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(cert.get()), "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
  X509* signer = issuer ? issuer : cert.get();
  X509_set_issuer_name(cert.get(), X509_get_subject_name(signer));
  X509_set_pubkey(cert.get(), key);
  add_extension(cert.get(), signer, NID_basic_constraints, basic_constraints);
  add_extension(cert.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  add_extension(cert.get(), signer, NID_subject_key_identifier, "hash");
  add_extension(cert.get(), signer, NID_authority_key_identifier, "keyid:always");
  BOOST_REQUIRE(X509_sign(cert.get(), issuer_key ? issuer_key : key, EVP_sha256()) > 0);
  return cert;
}

CertificateAuthority::Ptr shared_ca() {
  static auto ca = CertificateAuthority::generate();
  return ca;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(certs)

// ---------------------------------------------------------------------------------------- CA

BOOST_AUTO_TEST_CASE(generated_ca_properties) {
  TempDir dir;
  fs::path data = dir.path / "data";
  auto ca = CertificateAuthority::load_or_create(data);
  BOOST_TEST(ca->created());
  BOOST_TEST(ca->cert_path() == data / "ca.pem");
  BOOST_TEST(ca->key_path() == data / "ca-key.pem");
  BOOST_TEST(file_mode(data / "ca-key.pem") == 0600u);
  BOOST_TEST(file_mode(data / "ca.pem") == 0644u);
  BOOST_TEST(file_mode(data) == 0700u);

  X509* cert = ca->certificate();
  BOOST_TEST(X509_get_version(cert) == X509_VERSION_3);
  BOOST_TEST(EVP_PKEY_get_id(ca->private_key()) == EVP_PKEY_EC);
  BOOST_TEST(curve_of(ca->private_key()) == "prime256v1");
  BOOST_TEST(curve_of(X509_get0_pubkey(cert)) == "prime256v1");
  BOOST_TEST(X509_get_signature_nid(cert) == NID_ecdsa_with_SHA256);

  auto* bc = static_cast<BASIC_CONSTRAINTS*>(X509_get_ext_d2i(cert, NID_basic_constraints, nullptr, nullptr));
  BOOST_REQUIRE(bc);
  BOOST_TEST(bc->ca != 0);
  BOOST_REQUIRE(bc->pathlen);
  BOOST_TEST(ASN1_INTEGER_get(bc->pathlen) == 0);
  BASIC_CONSTRAINTS_free(bc);
  BOOST_TEST(extension_critical(cert, NID_basic_constraints));
  BOOST_TEST(extension_critical(cert, NID_key_usage));
  BOOST_TEST(X509_get_key_usage(cert) == static_cast<uint32_t>(KU_KEY_CERT_SIGN | KU_CRL_SIGN));
  BOOST_TEST(X509_get0_subject_key_id(cert) != nullptr);
  BOOST_TEST(X509_check_ca(cert) == 1);
  BOOST_TEST(X509_verify(cert, X509_get0_pubkey(cert)) == 1);  // self-signed

  std::string cn = common_name(cert);
  BOOST_TEST(cn.rfind("sidekey interception CA ", 0) == 0);
  BOOST_TEST(cn.size() > std::string("sidekey interception CA ").size());
  char org[64] = {0};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_organizationName, org, sizeof org);
  BOOST_TEST(std::string(org) == "sidekey");

  auto now = system_clock::now();
  auto years = std::chrono::duration_cast<std::chrono::hours>(ca->not_after() - now).count() / 24.0 / 365.25;
  BOOST_TEST(years > 9.99);
  BOOST_TEST(years < 10.01);
  BOOST_TEST((to_time_point(X509_get0_notBefore(cert)) <= now));

  // The files hold exactly what was loaded; the key file holds no certificate and vice versa.
  BOOST_TEST(read_file(data / "ca.pem") == ca->certificate_pem());
  std::string key_text = read_file(data / "ca-key.pem");
  BOOST_TEST(key_text.find("BEGIN PRIVATE KEY") != std::string::npos);
  BOOST_TEST(ca->certificate_pem().find("PRIVATE") == std::string::npos);
  BOOST_TEST(ca->fingerprint_sha256().size() == 32u * 3 - 1);
}

BOOST_AUTO_TEST_CASE(second_load_returns_the_same_ca) {
  TempDir dir;
  auto first = CertificateAuthority::load_or_create(dir.path);
  auto second = CertificateAuthority::load_or_create(dir.path);
  BOOST_TEST(first->created());
  BOOST_TEST(!second->created());
  BOOST_TEST(first->fingerprint_sha256() == second->fingerprint_sha256());
  BOOST_TEST(EVP_PKEY_eq(first->private_key(), second->private_key()) == 1);
  // Through the configuration, as serve and `sidekey ca` use it.
  config::Config cfg;
  cfg.data_dir = dir.path;
  BOOST_TEST(CertificateAuthority::load(cfg)->fingerprint_sha256() == first->fingerprint_sha256());
  BOOST_TEST(ca_certificate_pem(cfg) == first->certificate_pem());
}

BOOST_AUTO_TEST_CASE(distinct_data_dirs_get_distinct_cas) {
  TempDir a, b;
  auto ca_a = CertificateAuthority::load_or_create(a.path);
  auto ca_b = CertificateAuthority::load_or_create(b.path);
  BOOST_TEST(ca_a->fingerprint_sha256() != ca_b->fingerprint_sha256());
  BOOST_TEST(ca_a->subject() != ca_b->subject());  // the random id in the CN
}

BOOST_AUTO_TEST_CASE(concurrent_first_starts_make_one_ca) {
  TempDir dir;
  fs::path data = dir.path / "data";
  // Threads (each lock is its own open file description, so flock excludes them too) …
  constexpr int kThreads = 8;
  std::vector<std::string> prints(kThreads);
  std::latch go(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i)
    threads.emplace_back([&, i] {
      go.arrive_and_wait();
      prints[i] = CertificateAuthority::load_or_create(data)->fingerprint_sha256();
    });
  for (auto& t : threads) t.join();
  for (const auto& p : prints) BOOST_TEST(p == prints[0]);

  // … and processes.
  fs::path data2 = dir.path / "data2";
  std::vector<pid_t> children;
  for (int i = 0; i < 4; ++i) {
    pid_t pid = ::fork();
    BOOST_REQUIRE(pid >= 0);
    if (pid == 0) {
      int rc = 0;
      try {
        auto ca = CertificateAuthority::load_or_create(data2);
        std::ofstream(dir.path / ("print-" + std::to_string(i))) << ca->fingerprint_sha256();
      } catch (...) {
        rc = 1;
      }
      ::_exit(rc);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    BOOST_TEST((WIFEXITED(status) && WEXITSTATUS(status) == 0));
  }
  auto expected = CertificateAuthority::load_or_create(data2)->fingerprint_sha256();
  for (int i = 0; i < 4; ++i) BOOST_TEST(read_file(dir.path / ("print-" + std::to_string(i))) == expected);
}

BOOST_AUTO_TEST_CASE(configured_ca_is_loaded) {
  TempDir dir;
  auto [cert_pem, key_pem] = CertificateAuthority::generate_pem();
  write_text(dir.path / "my-ca.crt", cert_pem, 0644);
  write_text(dir.path / "my-ca.key", key_pem);
  config::Config cfg;
  cfg.data_dir = dir.path / "data";
  cfg.tls_ca_cert = dir.path / "my-ca.crt";
  cfg.tls_ca_key = dir.path / "my-ca.key";
  auto ca = CertificateAuthority::load(cfg);
  BOOST_TEST(!ca->created());
  BOOST_TEST(ca->certificate_pem() == cert_pem);
  BOOST_TEST(ca->cert_path() == cfg.tls_ca_cert);
  BOOST_TEST(!fs::exists(cfg.data_dir / "ca.pem"));  // nothing generated
  BOOST_TEST(!fs::exists(cfg.data_dir / "ca-key.pem"));
  // Leaves minted by it verify against it.
  Leaf leaf = mint_leaf(*ca, *CertHost::parse("api.example.com"), 24h);
  BOOST_TEST(verify_leaf(*ca, leaf.cert.get(), "api.example.com") == X509_V_OK);

  cfg.tls_ca_key.clear();
  BOOST_CHECK_THROW(CertificateAuthority::load(cfg), CertError);
}

BOOST_AUTO_TEST_CASE(configured_ca_with_chain_and_rsa_key) {
  // An operator's intermediate CA (RSA) whose file also carries the root.
  TempDir dir;
  PkeyPtr root_key = new_p256_key();
  X509Ptr root = make_ca_cert(root_key.get(), nullptr, nullptr, "ops root", "critical,CA:TRUE");
  PkeyPtr rsa(EVP_RSA_gen(2048));
  X509Ptr inter = make_ca_cert(rsa.get(), root.get(), root_key.get(), "ops intermediate", "critical,CA:TRUE,pathlen:0");
  BioPtr kb(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(kb.get(), rsa.get(), nullptr, nullptr, 0, nullptr, nullptr);
  char* kd = nullptr;
  long kn = BIO_get_mem_data(kb.get(), &kd);
  write_text(dir.path / "inter.key", std::string(kd, static_cast<size_t>(kn)));
  write_text(dir.path / "inter.crt", to_pem(inter.get()) + to_pem(root.get()), 0644);

  auto ca = CertificateAuthority::load_files(dir.path / "inter.crt", dir.path / "inter.key");
  BOOST_TEST(ca->chain().size() == 1u);
  BOOST_TEST(ca->certificate_pem() == to_pem(inter.get()) + to_pem(root.get()));
  Leaf leaf = mint_leaf(*ca, *CertHost::parse("example.org"), 1h);
  BOOST_TEST(X509_get_signature_nid(leaf.cert.get()) == NID_sha256WithRSAEncryption);
  // Served chain: leaf + intermediate + root; a client trusting only the root verifies it.
  auto ctx = make_server_context(*ca, leaf);
  auto r = handshake(ctx->native_handle(), root.get(), "example.org", "example.org", false, {"http/1.1"});
  BOOST_TEST(r.ok);
  BOOST_TEST(r.verify == X509_V_OK);
  BOOST_TEST(r.chain_length == 3);
}

BOOST_AUTO_TEST_CASE(bad_ca_files_are_clear_errors) {
  TempDir dir;
  auto [cert_a, key_a] = CertificateAuthority::generate_pem();
  auto [cert_b, key_b] = CertificateAuthority::generate_pem();
  write_text(dir.path / "a.crt", cert_a, 0644);
  write_text(dir.path / "b.key", key_b);
  auto message = [](auto&& fn) -> std::string {
    try {
      fn();
    } catch (const CertError& e) {
      return e.what();
    }
    return "(no error)";
  };
  // Mismatch.
  std::string m = message([&] { CertificateAuthority::load_files(dir.path / "a.crt", dir.path / "b.key"); });
  BOOST_TEST_MESSAGE(m);
  BOOST_TEST(m.find("do not match") != std::string::npos);
  BOOST_TEST(m.find("a.crt") != std::string::npos);
  BOOST_TEST(m.find("PRIVATE") == std::string::npos);
  BOOST_TEST(m.find(key_b.substr(30, 20)) == std::string::npos);  // no key bytes in errors
  // Missing / unreadable.
  m = message([&] { CertificateAuthority::load_files(dir.path / "missing.crt", dir.path / "b.key"); });
  BOOST_TEST(m.find("missing.crt") != std::string::npos);
  if (::geteuid() != 0) {
    write_text(dir.path / "locked.key", key_a, 0000);
    m = message([&] { CertificateAuthority::load_files(dir.path / "a.crt", dir.path / "locked.key"); });
    BOOST_TEST(m.find("locked.key") != std::string::npos);
    BOOST_TEST(m.find("Permission denied") != std::string::npos);
  }
  // Not PEM; swapped files.
  write_text(dir.path / "junk.crt", "hello\n", 0644);
  m = message([&] { CertificateAuthority::load_files(dir.path / "junk.crt", dir.path / "b.key"); });
  BOOST_TEST(m.find("no PEM certificate") != std::string::npos);
  m = message([&] { CertificateAuthority::load_files(dir.path / "b.key", dir.path / "a.crt"); });
  BOOST_TEST(m.find("no PEM certificate") != std::string::npos);
  // A leaf is not a CA.
  auto ca = CertificateAuthority::generate();
  Leaf leaf = mint_leaf(*ca, *CertHost::parse("x.example"), 1h);
  BioPtr kb(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(kb.get(), leaf.key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  char* kd = nullptr;
  long kn = BIO_get_mem_data(kb.get(), &kd);
  m = message([&] { CertificateAuthority::from_pem(to_pem(leaf.cert.get()), std::string(kd, static_cast<size_t>(kn))); });
  BOOST_TEST(m.find("not a CA certificate") != std::string::npos);
  // An encrypted key is refused (never a passphrase prompt).
  BioPtr eb(BIO_new(BIO_s_mem()));
  PkeyPtr ka;
  {
    BioPtr in(BIO_new_mem_buf(key_a.data(), static_cast<int>(key_a.size())));
    ka.reset(PEM_read_bio_PrivateKey(in.get(), nullptr, nullptr, nullptr));
  }
  PEM_write_bio_PKCS8PrivateKey(eb.get(), ka.get(), EVP_aes_256_cbc(), nullptr, 0, nullptr, const_cast<char*>("pw"));
  char* ed = nullptr;
  long en = BIO_get_mem_data(eb.get(), &ed);
  m = message([&] { CertificateAuthority::from_pem(cert_a, std::string(ed, static_cast<size_t>(en))); });
  BOOST_TEST(m.find("encrypted") != std::string::npos);
  // A data_dir certificate without its key.
  fs::path data = dir.path / "data";
  fs::create_directories(data);
  write_text(data / "ca.pem", cert_a, 0644);
  m = message([&] { CertificateAuthority::load_or_create(data); });
  BOOST_TEST(m.find("ca-key.pem is missing") != std::string::npos);
  // A data_dir whose files do not match.
  write_text(data / "ca-key.pem", key_b);
  m = message([&] { CertificateAuthority::load_or_create(data); });
  BOOST_TEST(m.find("do not match") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(key_without_certificate_gets_a_new_certificate) {
  TempDir dir;
  auto [cert_pem, key_pem] = CertificateAuthority::generate_pem();
  write_text(dir.path / "ca-key.pem", key_pem);
  auto ca = CertificateAuthority::load_or_create(dir.path);
  BOOST_TEST(ca->created());
  BOOST_TEST(fs::exists(dir.path / "ca.pem"));
  BOOST_TEST(read_file(dir.path / "ca-key.pem") == key_pem);  // kept
  BOOST_TEST(CertificateAuthority::load_or_create(dir.path)->fingerprint_sha256() == ca->fingerprint_sha256());
}

// -------------------------------------------------------------------------------------- leaves

BOOST_AUTO_TEST_CASE(host_parsing) {
  auto p = [](std::string_view h) { return CertHost::parse(h); };
  BOOST_TEST(p("API.Example.COM.")->name == "api.example.com");
  BOOST_TEST(!p("api.example.com")->is_ip);
  BOOST_TEST(p("127.0.0.1")->is_ip);
  BOOST_TEST(p("127.0.0.1")->ip_bytes.size() == 4u);
  BOOST_TEST(p("[2001:DB8:0:0::1]")->name == "2001:db8::1");
  BOOST_TEST(p("2001:db8::1")->ip_bytes.size() == 16u);
  BOOST_TEST(p("localhost")->name == "localhost");
  BOOST_TEST(p("under_score.example")->name == "under_score.example");
  for (const char* bad : {"", ".", "a..b", "*.example.com", "a b", "host:443", "[1.2.3.4]", "fe80::1%eth0",
                          "exa\xc3\xa9mple.com", "a,DNS:evil.com", "a/b"}) {
    BOOST_TEST(!p(bad).has_value(), "accepted '" << bad << "'");
  }
  BOOST_TEST(!p(std::string(64, 'a') + ".com").has_value());       // label > 63
  BOOST_TEST(p(std::string(63, 'a') + ".com").has_value());
  BOOST_TEST(!p(std::string(250, 'a') + ".com").has_value());      // name > 253
}

BOOST_AUTO_TEST_CASE(dns_leaf_verifies_against_the_ca) {
  auto ca = shared_ca();
  auto now = system_clock::now();
  Leaf leaf = mint_leaf(*ca, *CertHost::parse("api.example.com"), 24h, now);
  X509* cert = leaf.cert.get();
  BOOST_TEST(verify_leaf(*ca, cert, "api.example.com") == X509_V_OK);
  BOOST_TEST(verify_leaf(*ca, cert, "other.example.com") == X509_V_ERR_HOSTNAME_MISMATCH);
  BOOST_TEST(verify_leaf(*CertificateAuthority::generate(), cert) != X509_V_OK);  // another CA
  BOOST_TEST(X509_check_host(cert, "api.example.com", 0, 0, nullptr) == 1);
  BOOST_TEST(X509_check_host(cert, "API.EXAMPLE.COM", 0, 0, nullptr) == 1);
  BOOST_TEST(X509_check_host(cert, "evil.com", 0, 0, nullptr) == 0);
  BOOST_TEST(X509_check_host(cert, "x.api.example.com", 0, 0, nullptr) == 0);

  San san = sans_of(cert);
  BOOST_TEST(san.dns == std::vector<std::string>{"api.example.com"});
  BOOST_TEST(san.ip.empty());
  BOOST_TEST(common_name(cert) == "api.example.com");
  BOOST_TEST(X509_get_version(cert) == X509_VERSION_3);
  BOOST_TEST(X509_get_signature_nid(cert) == NID_ecdsa_with_SHA256);
  BOOST_TEST(curve_of(leaf.key.get()) == "prime256v1");
  BOOST_TEST(X509_check_ca(cert) == 0);
  BOOST_TEST((X509_get_extended_key_usage(cert) & XKU_SSL_SERVER) != 0u);
  BOOST_TEST(X509_get_extended_key_usage(cert) == static_cast<uint32_t>(XKU_SSL_SERVER));
  BOOST_TEST(X509_get_key_usage(cert) == static_cast<uint32_t>(KU_DIGITAL_SIGNATURE));
  auto* bc = static_cast<BASIC_CONSTRAINTS*>(X509_get_ext_d2i(cert, NID_basic_constraints, nullptr, nullptr));
  BOOST_REQUIRE(bc);
  BOOST_TEST(bc->ca == 0);
  BASIC_CONSTRAINTS_free(bc);
  // Authority key identifier = the CA's subject key identifier.
  const ASN1_OCTET_STRING* aki = X509_get0_authority_key_id(cert);
  BOOST_REQUIRE(aki);
  BOOST_TEST(ASN1_OCTET_STRING_cmp(aki, X509_get0_subject_key_id(ca->certificate())) == 0);
  BOOST_TEST(X509_NAME_cmp(X509_get_issuer_name(cert), X509_get_subject_name(ca->certificate())) == 0);
  // Serial: 16 bytes, positive.
  const ASN1_INTEGER* serial = X509_get0_serialNumber(cert);
  BOOST_TEST(ASN1_STRING_length(serial) == 16);
  BOOST_TEST(ASN1_STRING_type(serial) == V_ASN1_INTEGER);  // not V_ASN1_NEG_INTEGER
}

BOOST_AUTO_TEST_CASE(ip_leaves_carry_ip_sans) {
  auto ca = shared_ca();
  struct Case {
    const char* host;
    const char* ip;
    size_t len;
  };
  for (Case c : {Case{"127.0.0.1", "127.0.0.1", 4}, Case{"::1", "::1", 16}, Case{"[2001:db8::42]", "2001:db8::42", 16},
                 Case{"2001:DB8:0::42", "2001:db8::42", 16}}) {
    BOOST_TEST_CONTEXT(c.host) {
      Leaf leaf = mint_leaf(*ca, *CertHost::parse(c.host), 24h);
      X509* cert = leaf.cert.get();
      San san = sans_of(cert);
      BOOST_TEST(san.dns.empty());
      BOOST_REQUIRE_EQUAL(san.ip.size(), 1u);
      BOOST_TEST(san.ip[0].size() == c.len);
      BOOST_TEST(X509_check_ip_asc(cert, c.ip, 0) == 1);
      BOOST_TEST(X509_check_ip_asc(cert, "10.9.9.9", 0) == 0);
      BOOST_TEST(X509_check_host(cert, "10.9.9.9", 0, 0, nullptr) != 1);
      BOOST_TEST(verify_leaf(*ca, cert, c.ip, true) == X509_V_OK);
      BOOST_TEST(common_name(cert) == c.ip);
    }
  }
}

BOOST_AUTO_TEST_CASE(validity_follows_leaf_ttl_and_the_ca) {
  auto ca = shared_ca();
  auto now = std::chrono::time_point_cast<std::chrono::seconds>(system_clock::now());
  Leaf leaf = mint_leaf(*ca, *CertHost::parse("ttl.example"), 6h, now);
  BOOST_TEST((to_time_point(X509_get0_notBefore(leaf.cert.get())) == now - 1h));
  BOOST_TEST((to_time_point(X509_get0_notAfter(leaf.cert.get())) == now + 6h));
  BOOST_TEST((leaf.not_after == now + 6h));
  // Never beyond the CA.
  Leaf capped = mint_leaf(*ca, *CertHost::parse("ttl.example"), std::chrono::hours(24 * 365 * 20), now);
  BOOST_TEST((to_time_point(X509_get0_notAfter(capped.cert.get())) == ca->not_after()));
  BOOST_TEST(verify_leaf(*ca, capped.cert.get(), "ttl.example") == X509_V_OK);
  // A CA past its end cannot mint.
  BOOST_CHECK_THROW(mint_leaf(*ca, *CertHost::parse("ttl.example"), 1h, ca->not_after() + 1s), CertError);
}

BOOST_AUTO_TEST_CASE(long_host_names_are_truncated_in_the_cn_only) {
  auto ca = shared_ca();
  std::string host = std::string(60, 'a') + "." + std::string(60, 'b') + ".example.com";
  Leaf leaf = mint_leaf(*ca, *CertHost::parse(host), 1h);
  BOOST_TEST(common_name(leaf.cert.get()) == host.substr(0, 64));
  BOOST_TEST(sans_of(leaf.cert.get()).dns == std::vector<std::string>{host});
  BOOST_TEST(verify_leaf(*ca, leaf.cert.get(), host) == X509_V_OK);
}

BOOST_AUTO_TEST_CASE(fresh_key_and_serial_per_mint) {
  auto ca = shared_ca();
  Leaf a = mint_leaf(*ca, *CertHost::parse("a.example"), 1h);
  Leaf b = mint_leaf(*ca, *CertHost::parse("b.example"), 1h);
  Leaf a2 = mint_leaf(*ca, *CertHost::parse("a.example"), 1h);
  std::set<std::string> keys{pubkey_der(a.cert.get()), pubkey_der(b.cert.get()), pubkey_der(a2.cert.get()),
                             pubkey_der(ca->certificate())};
  BOOST_TEST(keys.size() == 4u);
  std::set<std::string> serials{serial_hex(a.cert.get()), serial_hex(b.cert.get()), serial_hex(a2.cert.get())};
  BOOST_TEST(serials.size() == 3u);
}

// -------------------------------------------------------------------------------- TLS context

BOOST_AUTO_TEST_CASE(server_context_handshakes) {
  auto ca = shared_ca();
  Leaf dns = mint_leaf(*ca, *CertHost::parse("api.example.com"), 1h);
  auto ctx = make_server_context(*ca, dns);
  SSL_CTX* h = ctx->native_handle();
  BOOST_TEST(SSL_CTX_get_min_proto_version(h) == TLS1_2_VERSION);

  auto r = handshake(h, ca->certificate(), "api.example.com", "api.example.com", false, {"h2", "http/1.1"});
  BOOST_TEST(r.ok);
  BOOST_TEST(r.alpn == "http/1.1");
  BOOST_TEST(r.verify == X509_V_OK);
  BOOST_TEST(r.chain_length == 2);  // leaf + CA
  // SNI is case-insensitive; a trailing dot is ignored.
  BOOST_TEST(handshake(h, ca->certificate(), "API.example.com.", "api.example.com", false, {"http/1.1"}).ok);
  // A client without ALPN, or offering only h2, still gets a handshake, without ALPN.
  r = handshake(h, ca->certificate(), "api.example.com", "api.example.com", false, {});
  BOOST_TEST(r.ok);
  BOOST_TEST(r.alpn.empty());
  r = handshake(h, ca->certificate(), "api.example.com", "api.example.com", false, {"h2"});
  BOOST_TEST(r.ok);
  BOOST_TEST(r.alpn.empty());
  // SNI must name the host; a DNS host needs SNI.
  BOOST_TEST(!handshake(h, ca->certificate(), "evil.example.com", "api.example.com", false, {"http/1.1"}).ok);
  BOOST_TEST(!handshake(h, ca->certificate(), nullptr, "api.example.com", false, {"http/1.1"}).ok);
  // IP hosts: no SNI (RFC 6066).
  Leaf ip = mint_leaf(*ca, *CertHost::parse("::1"), 1h);
  auto ip_ctx = make_server_context(*ca, ip);
  r = handshake(ip_ctx->native_handle(), ca->certificate(), nullptr, "::1", true, {"http/1.1"});
  BOOST_TEST(r.ok);
  BOOST_TEST(r.verify == X509_V_OK);
  BOOST_TEST(!handshake(ip_ctx->native_handle(), ca->certificate(), "api.example.com", "::1", true, {}).ok);
  // The check can be switched off.
  auto lax = make_server_context(*ca, dns, false);
  BOOST_TEST(handshake(lax->native_handle(), ca->certificate(), nullptr, "api.example.com", false, {}).ok);
}

BOOST_AUTO_TEST_CASE(asio_ssl_stream_over_tcp) {
  // What the proxy does: ssl_stream<tcp_stream>(std::move(tcp), *ctx) after the CONNECT.
  namespace net = boost::asio;
  namespace beast = boost::beast;
  using tcp = net::ip::tcp;
  CertCache cache(shared_ca());
  auto server_ctx = cache.context_for("localhost");
  net::ssl::context client_ctx(net::ssl::context::tls_client);
  X509_STORE_add_cert(SSL_CTX_get_cert_store(client_ctx.native_handle()), shared_ca()->certificate());
  client_ctx.set_verify_mode(net::ssl::verify_peer);
  net::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  sidekey::io::Socket accepted(io);
  beast::error_code server_ec{net::error::would_block}, client_ec{net::error::would_block};
  std::string server_alpn;
  std::unique_ptr<beast::ssl_stream<sidekey::io::TcpStream>> server;
  acceptor.async_accept(accepted, [&](beast::error_code ec) {
    BOOST_REQUIRE(!ec);
    server = std::make_unique<beast::ssl_stream<sidekey::io::TcpStream>>(sidekey::io::TcpStream(std::move(accepted)), *server_ctx);
    server->async_handshake(net::ssl::stream_base::server, [&](beast::error_code e) {
      server_ec = e;
      const unsigned char* sel = nullptr;
      unsigned len = 0;
      SSL_get0_alpn_selected(server->native_handle(), &sel, &len);
      server_alpn.assign(reinterpret_cast<const char*>(sel), len);
    });
  });
  beast::ssl_stream<sidekey::io::TcpStream> client(io, client_ctx);
  SSL_set_tlsext_host_name(client.native_handle(), "localhost");
  client.set_verify_callback(net::ssl::host_name_verification("localhost"));
  static const unsigned char alpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  SSL_set_alpn_protos(client.native_handle(), alpn, sizeof alpn);
  beast::get_lowest_layer(client).async_connect(acceptor.local_endpoint(), [&](beast::error_code ec) {
    BOOST_REQUIRE(!ec);
    client.async_handshake(net::ssl::stream_base::client, [&](beast::error_code e) { client_ec = e; });
  });
  io.run_for(10s);
  BOOST_TEST(!server_ec, server_ec.message());
  BOOST_TEST(!client_ec, client_ec.message());
  BOOST_TEST(server_alpn == "http/1.1");
}

// ---------------------------------------------------------------------------------------- cache

BOOST_AUTO_TEST_CASE(cache_hit_returns_the_same_context) {
  CertCache cache(shared_ca());
  auto mints0 = metric("sidekey_cert_mints_total");
  auto hits0 = metric("sidekey_cert_cache_hits_total");
  auto a = cache.context_for("api.example.com");
  auto b = cache.context_for("api.example.com");
  auto c = cache.context_for("API.Example.com.");
  BOOST_TEST(a.get() == b.get());
  BOOST_TEST(a.get() == c.get());
  BOOST_TEST(cache.mints() == 1u);
  BOOST_TEST(cache.hits() == 2u);
  BOOST_TEST(metric("sidekey_cert_mints_total") - mints0 == 1u);
  BOOST_TEST(metric("sidekey_cert_cache_hits_total") - hits0 == 2u);
  BOOST_TEST(cache.context_for("[::1]").get() == cache.context_for("::1").get());
  BOOST_TEST(cache.context_for("other.example.com").get() != a.get());
  BOOST_TEST(cache.size() == 3u);
  auto entry = cache.lookup("api.example.com");
  BOOST_TEST(entry->context.get() == a.get());
  BOOST_TEST(X509_check_host(entry->certificate.get(), "api.example.com", 0, 0, nullptr) == 1);
  BOOST_CHECK_THROW(cache.context_for("bad host"), std::invalid_argument);
  BOOST_CHECK_THROW(cache.context_for(""), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(lru_eviction_at_capacity) {
  CertCache::Options o;
  o.capacity = 3;
  CertCache cache(shared_ca(), o);
  auto a = cache.context_for("a.example");
  auto b = cache.context_for("b.example");
  auto c = cache.context_for("c.example");
  BOOST_TEST(cache.context_for("a.example").get() == a.get());  // a is now the most recent
  auto d = cache.context_for("d.example");                       // evicts b, the least recent
  BOOST_TEST(cache.size() == 3u);
  BOOST_TEST(cache.mints() == 4u);
  BOOST_TEST(cache.context_for("a.example").get() == a.get());
  BOOST_TEST(cache.context_for("c.example").get() == c.get());
  BOOST_TEST(cache.context_for("d.example").get() == d.get());
  BOOST_TEST(cache.mints() == 4u);
  auto b2 = cache.context_for("b.example");  // re-minted; evicts a (least recent now)
  BOOST_TEST(b2.get() != b.get());
  BOOST_TEST(cache.mints() == 5u);
  BOOST_TEST(cache.size() == 3u);
  BOOST_TEST(cache.context_for("a.example").get() != a.get());
  BOOST_TEST(cache.mints() == 6u);
  // An evicted context stays usable by whoever holds it.
  auto r = handshake(b->native_handle(), shared_ca()->certificate(), "b.example", "b.example", false, {"http/1.1"});
  BOOST_TEST(r.ok);
}

BOOST_AUTO_TEST_CASE(remint_when_a_third_of_the_lifetime_remains) {
  FakeClock clock;
  CertCache::Options o;
  o.leaf_ttl = 3h;
  o.clock = clock.fn();
  CertCache cache(shared_ca(), o);
  auto first = cache.lookup("renew.example");
  BOOST_TEST((first->not_after == clock.base + 3h));
  BOOST_TEST((first->refresh_at == clock.base + 2h));
  clock.advance(1h + 59min);
  BOOST_TEST(cache.lookup("renew.example").get() == first.get());
  BOOST_TEST(cache.mints() == 1u);
  clock.advance(2min);  // 2h01m: less than a third (1h) left
  auto second = cache.lookup("renew.example");
  BOOST_TEST(second.get() != first.get());
  BOOST_TEST(cache.mints() == 2u);
  BOOST_TEST((second->not_after == clock.base + 2h + 1min + 3h));
  BOOST_TEST(cache.lookup("renew.example").get() == second.get());
  // Long past expiry: minted again.
  clock.advance(24h);
  auto third = cache.lookup("renew.example");
  BOOST_TEST(third.get() != second.get());
  BOOST_TEST(cache.mints() == 3u);
}

BOOST_AUTO_TEST_CASE(remint_with_a_short_ttl_in_real_time) {
  CertCache::Options o;
  o.leaf_ttl = 1500ms;  // the notAfter has whole seconds: 1 s of lifetime, refresh after ~0.67 s
  CertCache cache(shared_ca(), o);
  auto first = cache.context_for("short.example");
  std::this_thread::sleep_for(1100ms);
  auto second = cache.context_for("short.example");
  BOOST_TEST(second.get() != first.get());
  BOOST_TEST(cache.mints() == 2u);
}

BOOST_AUTO_TEST_CASE(while_one_thread_re_mints_others_get_the_still_valid_context) {
  FakeClock clock;
  CertCache::Options o;
  o.leaf_ttl = 3h;
  o.clock = clock.fn();
  CertCache* self = nullptr;
  std::shared_ptr<const CertCache::Entry> seen_during_remint;
  std::atomic<int> calls{0};
  o.before_mint = [&](const std::string&) {
    if (calls++ != 1) return;
    // Inside the re-mint: another thread's lookup must not wait for it.
    auto f = std::async(std::launch::async, [&] { return self->lookup("busy.example"); });
    if (f.wait_for(10s) == std::future_status::ready) seen_during_remint = f.get();
  };
  CertCache cache(shared_ca(), o);
  self = &cache;
  auto first = cache.lookup("busy.example");
  clock.advance(2h + 30min);
  auto second = cache.lookup("busy.example");
  BOOST_REQUIRE(seen_during_remint);
  BOOST_TEST(seen_during_remint.get() == first.get());
  BOOST_TEST(second.get() != first.get());
  BOOST_TEST(cache.lookup("busy.example").get() == second.get());
  BOOST_TEST(cache.mints() == 2u);
}

BOOST_AUTO_TEST_CASE(concurrent_first_requests_mint_once) {
  CertCache::Options o;
  o.before_mint = [](const std::string&) { std::this_thread::sleep_for(200ms); };  // widen the race
  CertCache cache(shared_ca(), o);
  auto mints0 = metric("sidekey_cert_mints_total");
  constexpr int kThreads = 8;
  std::latch go(kThreads);
  std::vector<std::shared_ptr<boost::asio::ssl::context>> got(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i)
    threads.emplace_back([&, i] {
      go.arrive_and_wait();
      got[i] = cache.context_for("once.example");
    });
  for (auto& t : threads) t.join();
  for (const auto& g : got) BOOST_TEST(g.get() == got[0].get());
  BOOST_TEST(cache.mints() == 1u);
  BOOST_TEST(cache.hits() == static_cast<std::uint64_t>(kThreads - 1));
  BOOST_TEST(metric("sidekey_cert_mints_total") - mints0 == 1u);
}

BOOST_AUTO_TEST_CASE(different_hosts_do_not_block_each_other) {
  std::promise<void> slow_entered, release_slow;
  auto release = release_slow.get_future().share();
  CertCache::Options o;
  o.before_mint = [&](const std::string& host) {
    if (host != "slow.example") return;
    slow_entered.set_value();
    release.wait_for(30s);  // bounded: a regression fails below instead of hanging
  };
  CertCache cache(shared_ca(), o);
  auto slow = std::async(std::launch::async, [&] { return cache.context_for("slow.example"); });
  BOOST_REQUIRE(slow_entered.get_future().wait_for(10s) == std::future_status::ready);
  // slow.example is minting (and stuck); other hosts mint and hit meanwhile.
  auto fast = std::async(std::launch::async, [&] {
    auto a = cache.context_for("fast.example");
    auto b = cache.context_for("fast.example");
    auto c = cache.context_for("fast2.example");
    return a.get() == b.get() && c != nullptr;
  });
  bool fast_done = fast.wait_for(10s) == std::future_status::ready;
  BOOST_TEST(fast_done, "a mint of another host waited for slow.example");
  release_slow.set_value();
  BOOST_TEST(slow.get() != nullptr);
  if (fast_done) BOOST_TEST(fast.get());
  BOOST_TEST(cache.mints() == 3u);
}

BOOST_AUTO_TEST_CASE(failed_mint_is_not_cached) {
  std::atomic<int> fail{1};
  CertCache::Options o;
  o.before_mint = [&](const std::string&) {
    if (fail.exchange(0)) throw CertError("injected failure");
  };
  CertCache cache(shared_ca(), o);
  BOOST_CHECK_THROW(cache.context_for("flaky.example"), CertError);
  BOOST_TEST(cache.context_for("flaky.example") != nullptr);
  BOOST_TEST(cache.mints() == 1u);
}

BOOST_AUTO_TEST_CASE(failed_re_mint_keeps_serving_the_valid_leaf) {
  FakeClock clock;
  std::atomic<bool> fail{false};
  CertCache::Options o;
  o.leaf_ttl = 3h;
  o.clock = clock.fn();
  o.before_mint = [&](const std::string&) {
    if (fail) throw CertError("injected failure");
  };
  CertCache cache(shared_ca(), o);
  auto first = cache.lookup("keep.example");
  fail = true;
  clock.advance(2h + 30min);  // due for refresh, still valid
  BOOST_TEST(cache.lookup("keep.example").get() == first.get());
  clock.advance(1h);  // expired: the failure reaches the caller
  BOOST_CHECK_THROW(cache.lookup("keep.example"), CertError);
  fail = false;
  BOOST_TEST(cache.lookup("keep.example").get() != first.get());
  BOOST_TEST(cache.mints() == 2u);
}

// --------------------------------------------------------------------------------- trust bundle

BOOST_AUTO_TEST_CASE(trust_bundle_is_system_roots_plus_the_ca) {
  TempDir dir;
  auto ca = CertificateAuthority::load_or_create(dir.path);
  fs::path path = write_trust_bundle(*ca, dir.path);
  BOOST_TEST(path == dir.path / "trust-bundle.pem");
  BOOST_TEST(file_mode(path) == 0644u);
  std::string text = read_file(path);
  std::string roots = system_roots_pem();
  BOOST_TEST(text.rfind(roots, 0) == 0);  // starts with the system roots
  BOOST_TEST(text.size() >= ca->certificate_pem().size());
  BOOST_TEST(text.compare(text.size() - ca->certificate_pem().size(), std::string::npos, ca->certificate_pem()) == 0);
  if (fs::exists("/etc/ssl/certs/ca-certificates.crt"))
    BOOST_TEST(roots == read_file("/etc/ssl/certs/ca-certificates.crt"));
  // Usable as a CA file: a leaf of the CA verifies through it.
  X509_STORE* store = X509_STORE_new();
  BOOST_REQUIRE(X509_STORE_load_file(store, path.c_str()) == 1);
  Leaf leaf = mint_leaf(*ca, *CertHost::parse("bundle.example"), 1h);
  X509_STORE_CTX* sctx = X509_STORE_CTX_new();
  X509_STORE_CTX_init(sctx, store, leaf.cert.get(), nullptr);
  BOOST_TEST(X509_verify_cert(sctx) == 1);
  X509_STORE_CTX_free(sctx);
  X509_STORE_free(store);
  // Rewriting gives the same content; the CA is not appended twice.
  write_trust_bundle(*ca, dir.path);
  BOOST_TEST(read_file(path) == text);
  BOOST_TEST(trust_bundle_pem(*ca) == text);
}

BOOST_AUTO_TEST_SUITE_END()
