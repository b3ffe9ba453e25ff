#include "certs/leaf.hpp"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>

namespace sidekey::certs {
using std::chrono::system_clock;

namespace {

constexpr auto kBackdate = std::chrono::hours(1);  // clock skew between sidekey and its clients
constexpr size_t kMaxCn = 64;                      // ub-common-name (RFC 5280)

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool valid_dns_name(std::string_view n) {
  if (n.empty() || n.size() > 253) return false;
  size_t label = 0;
  for (size_t i = 0; i < n.size(); ++i) {
    char c = n[i];
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok || ++label > 63) return false;
  }
  return label > 0;
}

// What the SNI callback checks: kept in the SSL_CTX's ex_data so it lives exactly as long as
// the SSL_CTX (sessions hold their own reference on it).
struct SniExpectation {
  CertHost host;
};

void free_sni(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) { delete static_cast<SniExpectation*>(ptr); }

int sni_index() {
  static int idx = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, free_sni);
  return idx;
}

int check_sni(SSL* ssl, int* alert, void*) {
  auto* want = static_cast<SniExpectation*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), sni_index()));
  if (!want) return SSL_TLSEXT_ERR_OK;
  const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (!sni || !*sni) {
    if (want->host.is_ip) return SSL_TLSEXT_ERR_OK;
  } else if (auto got = CertHost::parse(sni); got && got->name == want->host.name) {
    return SSL_TLSEXT_ERR_OK;
  }
  *alert = SSL_AD_UNRECOGNIZED_NAME;
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned int inlen,
                void*) {
  static const unsigned char kHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  unsigned char* selected = nullptr;
  unsigned char selected_len = 0;
  if (SSL_select_next_proto(&selected, &selected_len, kHttp11, sizeof kHttp11, in, inlen) == OPENSSL_NPN_NEGOTIATED) {
    *out = selected;
    *outlen = selected_len;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;  // go on without ALPN; the client then speaks HTTP/1.1 or gives up
}

void add_san(X509* cert, const CertHost& host) {
  GENERAL_NAMES* names = sk_GENERAL_NAME_new_null();
  GENERAL_NAME* gn = GENERAL_NAME_new();
  if (!names || !gn) {
    sk_GENERAL_NAME_free(names);
    GENERAL_NAME_free(gn);
    throw_openssl("out of memory");
  }
  bool ok;
  if (host.is_ip) {
    ASN1_OCTET_STRING* ip = ASN1_OCTET_STRING_new();
    ok = ip && ASN1_OCTET_STRING_set(ip, reinterpret_cast<const unsigned char*>(host.ip_bytes.data()),
                                     static_cast<int>(host.ip_bytes.size())) == 1;
    if (ip) GENERAL_NAME_set0_value(gn, GEN_IPADD, ip);
  } else {
    ASN1_IA5STRING* dns = ASN1_IA5STRING_new();
    ok = dns && ASN1_STRING_set(dns, host.name.data(), static_cast<int>(host.name.size())) == 1;
    if (dns) GENERAL_NAME_set0_value(gn, GEN_DNS, dns);
  }
  if (!ok || sk_GENERAL_NAME_push(names, gn) == 0) {
    GENERAL_NAME_free(gn);
    GENERAL_NAMES_free(names);
    throw_openssl("cannot build subjectAltName");
  }
  ok = X509_add1_ext_i2d(cert, NID_subject_alt_name, names, 0, X509V3_ADD_DEFAULT) == 1;
  GENERAL_NAMES_free(names);
  if (!ok) throw_openssl("cannot add subjectAltName");
}

}  // namespace

std::optional<CertHost> CertHost::parse(std::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
    if (host.find(':') == std::string_view::npos) return std::nullopt;  // brackets are for IPv6 only
  }
  if (host.empty() || host.size() > 254) return std::nullopt;
  std::string text(host);
  CertHost out;
  unsigned char buf[16];
  if (text.find(':') != std::string::npos) {
    if (inet_pton(AF_INET6, text.c_str(), buf) != 1) return std::nullopt;
    char canon[INET6_ADDRSTRLEN];
    if (!inet_ntop(AF_INET6, buf, canon, sizeof canon)) return std::nullopt;
    out.name = canon;
    out.is_ip = true;
    out.ip_bytes.assign(reinterpret_cast<const char*>(buf), 16);
    return out;
  }
  if (inet_pton(AF_INET, text.c_str(), buf) == 1) {
    char canon[INET_ADDRSTRLEN];
    if (!inet_ntop(AF_INET, buf, canon, sizeof canon)) return std::nullopt;
    out.name = canon;
    out.is_ip = true;
    out.ip_bytes.assign(reinterpret_cast<const char*>(buf), 4);
    return out;
  }
  if (text.back() == '.') text.pop_back();
  std::transform(text.begin(), text.end(), text.begin(), lower);
  if (!valid_dns_name(text)) return std::nullopt;
  out.name = std::move(text);
  return out;
}

Leaf mint_leaf(const CertificateAuthority& ca, const CertHost& host, std::chrono::milliseconds ttl,
               system_clock::time_point now) {
  Leaf leaf;
  leaf.host = host;
  leaf.minted_at = now;
  leaf.not_before = std::chrono::time_point_cast<std::chrono::seconds>(now - kBackdate);
  auto not_after = std::min<system_clock::time_point>(now + ttl, ca.not_after());
  leaf.not_after = std::chrono::time_point_cast<std::chrono::seconds>(not_after);
  if (leaf.not_after <= now) throw CertError("the interception CA expired; cannot mint a certificate for " + host.name);

  leaf.key = new_p256_key();
  leaf.cert.reset(X509_new());
  X509* cert = leaf.cert.get();
  if (!cert) throw_openssl("out of memory");
  if (X509_set_version(cert, X509_VERSION_3) != 1) throw_openssl("cannot set version");
  set_random_serial(cert);
  set_time(X509_getm_notBefore(cert), leaf.not_before);
  set_time(X509_getm_notAfter(cert), leaf.not_after);
  std::string cn = host.name.substr(0, kMaxCn);
  X509_NAME* name = X509_get_subject_name(cert);
  if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0) != 1)
    throw_openssl("cannot set the subject of " + host.name);
  if (X509_set_issuer_name(cert, X509_get_subject_name(ca.certificate())) != 1) throw_openssl("cannot set the issuer");
  if (X509_set_pubkey(cert, leaf.key.get()) != 1) throw_openssl("cannot set the public key");
  add_extension(cert, ca.certificate(), NID_basic_constraints, "critical,CA:FALSE");
  add_extension(cert, ca.certificate(), NID_key_usage, "critical,digitalSignature");
  add_extension(cert, ca.certificate(), NID_ext_key_usage, "serverAuth");
  add_extension(cert, ca.certificate(), NID_subject_key_identifier, "hash");
  add_extension(cert, ca.certificate(), NID_authority_key_identifier, "keyid:always");
  add_san(cert, host);
  if (X509_sign(cert, ca.private_key(), signing_digest(ca.private_key())) <= 0)
    throw_openssl("cannot sign the certificate for " + host.name);
  return leaf;
}

std::shared_ptr<boost::asio::ssl::context> make_server_context(const CertificateAuthority& ca, const Leaf& leaf,
                                                               bool require_sni_match) {
  namespace ssl = boost::asio::ssl;
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  SSL_CTX* h = ctx->native_handle();
  SSL_CTX_set_min_proto_version(h, TLS1_2_VERSION);
  SSL_CTX_set_options(h, SSL_OP_CLEANSE_PLAINTEXT | SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                             SSL_OP_ALL);
  SSL_CTX_set_mode(h, SSL_MODE_RELEASE_BUFFERS);
  static const unsigned char kSidCtx[] = "sidekey";
  SSL_CTX_set_session_id_context(h, kSidCtx, sizeof kSidCtx - 1);
  SSL_CTX_sess_set_cache_size(h, 256);
  if (SSL_CTX_use_certificate(h, leaf.cert.get()) != 1) throw_openssl("cannot use the leaf certificate");
  if (SSL_CTX_use_PrivateKey(h, leaf.key.get()) != 1) throw_openssl("cannot use the leaf key");
  if (SSL_CTX_add1_chain_cert(h, ca.certificate()) != 1) throw_openssl("cannot add the CA to the chain");
  for (const auto& c : ca.chain())
    if (SSL_CTX_add1_chain_cert(h, c.get()) != 1) throw_openssl("cannot add the CA chain");
  if (SSL_CTX_check_private_key(h) != 1) throw_openssl("leaf certificate and key do not match");
  SSL_CTX_set_alpn_select_cb(h, select_alpn, nullptr);
  if (require_sni_match) {
    auto* want = new SniExpectation{leaf.host};
    if (SSL_CTX_set_ex_data(h, sni_index(), want) != 1) {
      delete want;
      throw_openssl("cannot attach the SNI check");
    }
    SSL_CTX_set_tlsext_servername_callback(h, check_sni);
  }
  return ctx;
}

}  // namespace sidekey::certs
