#include "secrets/store_codec.hpp"

#include <openssl/evp.h>

#include <cstdint>
#include <limits>
#include <memory>

#include "core/random.hpp"
#include "secrets/secret_name.hpp"

namespace sidekey::secrets {
namespace {

constexpr std::string_view kMagic = "SIDEKEY-STORE";
constexpr unsigned char kVersion = 1;
constexpr std::size_t kHeaderBytes = kMagic.size() + 1;
constexpr std::size_t kNonceBytes = 12;
constexpr std::size_t kTagBytes = 16;
constexpr std::size_t kKeyBytes = 32;
// id, scope, name, value, created, updated (6 strings) + the host count.
constexpr std::size_t kMinRecordBytes = 6 * 4 + 4;

// ---- plaintext encoding -------------------------------------------------------------------

std::size_t str_bytes(std::string_view s) { return 4 + s.size(); }

std::size_t record_bytes(const StoredSecret& r) {
  const SecretMeta& m = r.meta;
  std::size_t n = str_bytes(m.id) + str_bytes(m.scope) + str_bytes(m.name) + str_bytes(r.value->reveal()) + 4 +
                  str_bytes(m.created_at) + str_bytes(m.updated_at);
  for (const auto& h : m.allowed_hosts) n += str_bytes(h);
  return n;
}

void put_u32(std::string& out, std::size_t v) {
  if (v > std::numeric_limits<std::uint32_t>::max()) throw StoreError("secrets store: field too large to encode");
  out += static_cast<char>((v >> 24) & 0xff);
  out += static_cast<char>((v >> 16) & 0xff);
  out += static_cast<char>((v >> 8) & 0xff);
  out += static_cast<char>(v & 0xff);
}

void put_str(std::string& out, std::string_view s) {
  put_u32(out, s.size());
  out.append(s);
}

// Bounds-checked cursor over untrusted bytes: every read checks what is left first.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}

  std::uint32_t u32() {
    need(4, "integer");
    auto b = [&](std::size_t i) { return static_cast<std::uint32_t>(static_cast<unsigned char>(in_[pos_ + i])); };
    std::uint32_t v = b(0) << 24 | b(1) << 16 | b(2) << 8 | b(3);
    pos_ += 4;
    return v;
  }

  // A view into the input, so values can go straight into a SecretValue without a copy.
  std::string_view str(const char* what) {
    std::uint32_t n = u32();
    need(n, what);
    std::string_view s = in_.substr(pos_, n);
    pos_ += n;
    return s;
  }

  std::size_t left() const { return in_.size() - pos_; }

 private:
  void need(std::size_t n, const char* what) const {
    if (n > left()) throw StoreError(std::string("malformed store content: truncated ") + what);
  }
  std::string_view in_;
  std::size_t pos_ = 0;
};

void check_record(const SecretMeta& m, const SecretValue& v) {
  if (m.id.empty()) throw StoreError("malformed store content: record without id");
  if (!valid_secret_name(m.name)) throw StoreError("malformed store content: invalid secret name");
  if (!m.scope.empty() && !valid_task_id(m.scope)) throw StoreError("malformed store content: invalid task id");
  if (v.empty()) throw StoreError("malformed store content: empty value for " + m.name);
}

StoredSecret read_record(Reader& r) {
  StoredSecret s;
  s.meta.id = std::string(r.str("id"));
  s.meta.scope = std::string(r.str("scope"));
  s.meta.name = std::string(r.str("name"));
  auto value = std::make_shared<const SecretValue>(r.str("value"));
  std::uint32_t hosts = r.u32();
  if (hosts > r.left() / 4) throw StoreError("malformed store content: host count exceeds the data");
  s.meta.allowed_hosts.reserve(hosts);
  for (std::uint32_t i = 0; i < hosts; ++i) s.meta.allowed_hosts.emplace_back(r.str("host"));
  s.meta.created_at = std::string(r.str("created_at"));
  s.meta.updated_at = std::string(r.str("updated_at"));
  check_record(s.meta, *value);
  s.value = std::move(value);
  return s;
}

// ---- encryption ---------------------------------------------------------------------------

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using Ctx = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

const unsigned char* bytes(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }
unsigned char* bytes(std::string& s) { return reinterpret_cast<unsigned char*>(s.data()); }

std::string header() {
  std::string h(kMagic);
  h += static_cast<char>(kVersion);
  return h;
}

void check_key(const SecretValue& key) {
  if (key.size() != kKeyBytes) throw StoreError("secrets store key must be 32 bytes");
}

int as_int(std::size_t n) {
  if (n > static_cast<std::size_t>(std::numeric_limits<int>::max())) throw StoreError("secrets store: too large");
  return static_cast<int>(n);
}

Ctx new_ctx() {
  Ctx ctx(EVP_CIPHER_CTX_new());
  if (!ctx) throw StoreError("secrets store: cannot allocate cipher context");
  return ctx;
}

// Classifies a file that cannot be decrypted yet, so the operator gets a precise reason.
void check_envelope(std::string_view file) {
  if (file.size() < kMagic.size()) {
    if (!file.empty() && kMagic.substr(0, file.size()) == file) throw StoreError("truncated file");
    if (file.empty()) throw StoreError("truncated file (empty)");
    throw StoreError("not a sidekey store (bad magic)");
  }
  if (file.substr(0, kMagic.size()) != kMagic) throw StoreError("not a sidekey store (bad magic)");
  if (file.size() == kMagic.size()) throw StoreError("truncated file");
  auto version = static_cast<unsigned char>(file[kMagic.size()]);
  if (version != kVersion) throw StoreError("unsupported version " + std::to_string(version));
  if (file.size() < kHeaderBytes + kNonceBytes + kTagBytes) throw StoreError("truncated file");
}

}  // namespace

std::string encode_records(const StoreSnapshot& records) {
  std::size_t total = 4;
  for (const auto& r : records) total += record_bytes(r);
  // Reserve the exact size so no reallocation leaves an unwiped copy of plaintext behind.
  std::string out;
  out.reserve(total);
  try {
    put_u32(out, records.size());
    for (const auto& r : records) {
      const SecretMeta& m = r.meta;
      put_str(out, m.id);
      put_str(out, m.scope);
      put_str(out, m.name);
      put_str(out, r.value->reveal());
      put_u32(out, m.allowed_hosts.size());
      for (const auto& h : m.allowed_hosts) put_str(out, h);
      put_str(out, m.created_at);
      put_str(out, m.updated_at);
    }
  } catch (...) {
    wipe(out);
    throw;
  }
  return out;
}

StoreSnapshot decode_records(std::string_view plain) {
  Reader r(plain);
  std::uint32_t count = r.u32();
  // A forged count must not make us reserve gigabytes.
  if (count > r.left() / kMinRecordBytes) throw StoreError("malformed store content: record count exceeds the data");
  StoreSnapshot out;
  out.reserve(count);
  for (std::uint32_t i = 0; i < count; ++i) out.push_back(read_record(r));
  if (r.left() != 0) throw StoreError("malformed store content: trailing bytes");
  return out;
}

std::string seal(const SecretValue& key, std::string_view plain) {
  check_key(key);
  const std::string aad = header();
  const std::string nonce = random_bytes(kNonceBytes);
  std::string out = aad + nonce;
  std::size_t ct_at = out.size();
  out.resize(ct_at + plain.size() + kTagBytes);

  Ctx ctx = new_ctx();
  int len = 0, fin = 0;
  bool ok = EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, as_int(kNonceBytes), nullptr) == 1 &&
            EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, bytes(key.reveal()), bytes(nonce)) == 1 &&
            EVP_EncryptUpdate(ctx.get(), nullptr, &len, bytes(aad), as_int(aad.size())) == 1 &&
            EVP_EncryptUpdate(ctx.get(), bytes(out) + ct_at, &len, bytes(plain), as_int(plain.size())) == 1 &&
            EVP_EncryptFinal_ex(ctx.get(), bytes(out) + ct_at + len, &fin) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, as_int(kTagBytes),
                                bytes(out) + ct_at + plain.size()) == 1;
  if (!ok || static_cast<std::size_t>(len + fin) != plain.size()) throw StoreError("secrets store: encryption failed");
  return out;
}

std::string unseal(const SecretValue& key, std::string_view file) {
  check_key(key);
  check_envelope(file);
  std::string_view aad = file.substr(0, kHeaderBytes);
  std::string_view nonce = file.substr(kHeaderBytes, kNonceBytes);
  std::string_view ct = file.substr(kHeaderBytes + kNonceBytes, file.size() - kHeaderBytes - kNonceBytes - kTagBytes);
  std::string tag(file.substr(file.size() - kTagBytes));

  std::string plain(ct.size(), '\0');
  Ctx ctx = new_ctx();
  int len = 0, fin = 0;
  bool ok = EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, as_int(kNonceBytes), nullptr) == 1 &&
            EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, bytes(key.reveal()), bytes(nonce)) == 1 &&
            EVP_DecryptUpdate(ctx.get(), nullptr, &len, bytes(aad), as_int(aad.size())) == 1 &&
            EVP_DecryptUpdate(ctx.get(), bytes(plain), &len, bytes(ct), as_int(ct.size())) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, as_int(kTagBytes), bytes(tag)) == 1;
  // Only the final step checks the tag; until it passes, `plain` is unauthenticated and is wiped.
  ok = ok && EVP_DecryptFinal_ex(ctx.get(), bytes(plain) + len, &fin) == 1;
  if (!ok || static_cast<std::size_t>(len + fin) != ct.size()) {
    wipe(plain);
    throw StoreError("wrong key or tampered file (authentication failed)");
  }
  return plain;
}

}  // namespace sidekey::secrets
