#include "proxy/session.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http.hpp>

#include <optional>
#include <unordered_map>
#include <variant>

#include "core/encoding.hpp"
#include "core/io.hpp"
#include "core/json_text.hpp"
#include "core/log.hpp"
#include "core/random.hpp"
#include "policy/rewrite.hpp"
#include "policy/scrubber.hpp"
#include "proxy/audit.hpp"
#include "proxy/framing.hpp"
#include "proxy/head.hpp"
#include "proxy/message_parser.hpp"
#include "proxy/relay.hpp"
#include "proxy/tls_stream.hpp"
#include "proxy/ws_scrubber.hpp"
#include "secrets/secret_name.hpp"
#include "secrets/secret_value.hpp"

namespace sidekey::proxy {
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

class ViewLookup final : public policy::SecretLookup {
 public:
  explicit ViewLookup(std::shared_ptr<const secrets::SecretView> v) : view_(std::move(v)) {}
  const secrets::SecretEntry* find(std::string_view name) const override { return view_->find(name); }
  const secrets::SecretView* view() const override { return view_.get(); }

 private:
  std::shared_ptr<const secrets::SecretView> view_;
};

// ---------------------------------------------------------------------------------------------
// Responses sidekey writes itself.

std::string render_refusal(const policy::Refusal& r, std::string_view request_id, unsigned version, bool keep_alive) {
  std::string body = json::text(r.to_json(request_id)) + "\n";
  std::string head = version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
  head += std::to_string(r.status) + " " + std::string(http::obsolete_reason(static_cast<http::status>(r.status))) + "\r\n";
  head += "Content-Type: application/json\r\nX-Sidekey-Request-Id: " + std::string(request_id) + "\r\n";
  head += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  head += keep_alive ? (version == 10 ? "Connection: keep-alive\r\n" : "") : "Connection: close\r\n";
  return head + "\r\n" + body;
}

// Writes an answer of sidekey's own to the client, with `idle` from now to do it: the client's
// deadline was set when its head was read, and a refusal may come after a long upstream wait.
template <class Stream>
io::Awaitable<bool> send_raw(Stream& s, const std::string& bytes, std::chrono::milliseconds idle) {
  lowest(s).expires_after(idle);
  auto [ec, n] = co_await net::async_write(s, net::buffer(bytes), tuple_awaitable);
  co_return !ec;
}

// ---------------------------------------------------------------------------------------------
// Reading a head whole before parsing it: the parsers (RequestParser, ResponseParser) read it in
// one pass where it lies.

// The largest response body scrubbed whole when it came with its head (sent with its new
// Content-Length rather than re-chunked).
constexpr std::uint64_t kWholeScrubBytes = 16384;

// What an idle client connection holds for its next request head: most heads fit in one read.
constexpr std::size_t kIdleBufferBytes = 2048;

// Reading until `buf` holds a whole head, between the caller's reads (a coroutine of its own
// would cost a frame and a turn through Asio's awaitable machinery per head):
//
//   HeadReader hr(buf, limit);
//   while (hr.need_read()) { auto [ec, n] = co_await s.async_read_some(hr.room(), tuple_awaitable); hr.read(ec, n); }
//
// then ec() (header_limit past `limit` bytes, whole or not) or end(), where the head ends. A
// request head waits on an idle connection (the buffer is kept small there); a response's read
// takes the room the pooled connection's buffer has, and an end of stream is Beast's:
// end_of_stream before the first byte, partial_message after it.
class HeadReader {
 public:
  HeadReader(io::FlatBuffer& buf, std::size_t limit, bool response = false)
      : buf_(buf), limit_(limit), response_(response) {}

  bool need_read() {
    if (ec_) return false;
    for (;;) {
      std::string_view data(static_cast<const char*>(buf_.data().data()), buf_.size());
      // Stray CRLFs between requests are allowed before a request line (RFC 9112 2.2).
      std::size_t skip = 0;
      while (!response_ && skip + 1 < data.size() && data[skip] == '\r' && data[skip + 1] == '\n') skip += 2;
      if (skip == 0) break;
      buf_.consume(skip);
      searched_ = 0;
    }
    std::string_view data(static_cast<const char*>(buf_.data().data()), buf_.size());
    end_ = find_head_end(data, searched_);
    if (end_ != std::string_view::npos) {
      if (end_ > limit_) ec_ = http::error::header_limit;
      return false;
    }
    if (buf_.size() > limit_) {
      ec_ = http::error::header_limit;
      return false;
    }
    searched_ = buf_.size();
    return true;
  }

  net::mutable_buffer room() {
    if (response_) return buf_.prepare(read_room(buf_));
    // An idle keep-alive connection waits here with this buffer: keep it small (a large upload
    // may have grown it), and let a head that does not fit in the first read grow it.
    if (buf_.size() == 0 && buf_.capacity() > kIdleBufferBytes) buf_.shrink_to_fit();
    return buf_.prepare(buf_.size() == 0 ? kIdleBufferBytes : 16384);
  }

  void read(beast::error_code ec, std::size_t n) {
    if (ec == net::error::eof && response_) ec = buf_.size() == 0 ? http::error::end_of_stream : http::error::partial_message;
    if (ec) ec_ = ec;
    else buf_.commit(n);
  }

  const beast::error_code& ec() const { return ec_; }
  std::size_t end() const { return end_; }

 private:
  io::FlatBuffer& buf_;
  const std::size_t limit_;
  const bool response_;
  std::size_t searched_ = 0;
  std::size_t end_ = std::string_view::npos;
  beast::error_code ec_;
};

// ---------------------------------------------------------------------------------------------

// Building a scrub set costs tens of microseconds; the same rule and secrets give the same set,
// so each worker keeps recent sets. The key is what determines the written bytes without
// holding them: each replacement (the written value with references in place of secrets) and
// the identity of each secret value used; the entry holds those values, so an address cannot be
// reused by a rotated secret while the entry lives.
class ScrubSetCache {
 public:
  // `secrets`: the names the plan used (the audit record holds them once the plan is made).
  // `current`: the secret view in use now. A request that began before the secrets changed (its
  // lookup is over an older view) gets its set but leaves nothing here: the workers forgot what
  // they kept of the old values when the view changed (forget_secret_values_on_this_thread).
  std::shared_ptr<const policy::ScrubSet> get(const std::vector<std::string>& secrets, const policy::RewritePlan& plan,
                                              const policy::SecretLookup& lookup, const secrets::SecretView* current) {
    key_.clear();
    for (const auto& name : secrets) {
      const auto* entry = lookup.find(name);
      if (!entry || !entry->value) return policy::ScrubSet::build(plan.written());  // not cacheable
      key_ += name;
      key_ += '\0';
      auto identity = reinterpret_cast<std::uintptr_t>(entry->value.get());
      key_.append(reinterpret_cast<const char*>(&identity), sizeof identity);
    }
    for (const auto& w : plan.written()) {
      key_ += w.replacement;
      key_ += '\0';
      // Where a value went changes its bytes (percent-encoded in a query) and then its length.
      const std::size_t size = w.bytes.size();
      key_.append(reinterpret_cast<const char*>(&size), sizeof size);
    }
    if (auto it = entries_.find(key_); it != entries_.end()) return it->second.set;
    if (lookup.view() == nullptr || lookup.view() != current) return policy::ScrubSet::build(plan.written());
    std::vector<std::shared_ptr<const secrets::SecretValue>> values;
    for (const auto& name : secrets) values.push_back(lookup.find(name)->value);
    std::string key = key_;
    auto set = policy::ScrubSet::build(plan.written());
    // Bounded in entries and in bytes (simple: sets are cheap to rebuild). The key holds what the
    // agent wrote around its references, so the agent chooses how many distinct sets there are.
    const std::size_t cost = set->memory_bytes() + key.size();
    if (cost > kMaxBytes / 4) return set;
    if (entries_.size() >= kCapacity || bytes_ + cost > kMaxBytes) {
      entries_.clear();
      bytes_ = 0;
    }
    entries_.emplace(std::move(key), Entry{set, std::move(values)});
    bytes_ += cost;
    return set;
  }

  void forget() {
    entries_.clear();
    bytes_ = 0;
  }

 private:
  static constexpr std::size_t kCapacity = 256;
  static constexpr std::size_t kMaxBytes = 4 << 20;  // per worker
  struct Entry {
    std::shared_ptr<const policy::ScrubSet> set;
    std::vector<std::shared_ptr<const secrets::SecretValue>> values;
  };
  std::unordered_map<std::string, Entry> entries_;
  std::size_t bytes_ = 0;
  std::string key_;  // reused: a lookup allocates nothing
};

ScrubSetCache& scrub_sets_for_this_thread() {
  thread_local ScrubSetCache cache;
  return cache;
}

policy::InjectionMemo& injection_memo_for_this_thread() {
  thread_local policy::InjectionMemo memo;
  return memo;
}

}  // namespace

void forget_secret_values_on_this_thread() {
  injection_memo_for_this_thread().forget();
  scrub_sets_for_this_thread().forget();
}

namespace {

struct RequestState {
  AuditRecord audit;
  unsigned version = 11;
  bool client_keep_alive = false;
};

// What a CONNECT hands over once its 200 is sent (Session::handover()): the tunnel is served after
// the session's run() returns, once the outer request's coroutine frames (serve_one's parser and
// relay state, ~12 KB) are gone, instead of keeping them for the life of the tunnel.
struct Interception {
  std::shared_ptr<net::ssl::context> tls;  // the leaf for dest.host
  policy::Destination dest;
  RequestState st;  // the CONNECT's audit record: emitted when the handshake fails
};
struct BlindTunnel {
  std::unique_ptr<UpstreamConnection> upstream;  // plain TCP to the vetted address
  RequestState st;                               // the CONNECT's audit record, emitted at the end
};
// On the heap: every connection's frame would otherwise carry it (~0.5 KB, twice).
using Handover = std::unique_ptr<std::variant<Interception, BlindTunnel>>;

// The answer to a CONNECT that sidekey serves (a blind tunnel or an interception).
std::string connect_established(const RequestState& st) {
  return std::string(st.version == 10 ? "HTTP/1.0" : "HTTP/1.1") +
         " 200 Connection Established\r\nX-Sidekey-Request-Id: " + st.audit.request_id + "\r\n\r\n";
}

std::string path_only(std::string_view target) { return std::string(target.substr(0, target.find('?'))); }

template <class Client>
class Session {
 public:
  Session(Client& client, io::FlatBuffer& buf, ProxyContext& ctx, std::string client_addr,
          std::optional<policy::Destination> intercepted)
      : client_(client), buf_(buf), ctx_(ctx), client_addr_(std::move(client_addr)), intercepted_(std::move(intercepted)) {}

  // Serves requests until the connection closes; returns when the client connection is done.
  io::Awaitable<void> run() {
    for (;;) {
      // The wait for the next head happens here, not in serve_one(): an idle keep-alive
      // connection then holds only this small frame, not serve_one()'s (parsers, relay state).
      lowest(client_).expires_after(ctx_.idle_timeout);
      HeadReader hr(buf_, ctx_.max_header_bytes);
      while (hr.need_read()) {
        auto [ec, n] = co_await client_.async_read_some(hr.room(), tuple_awaitable);
        hr.read(ec, n);
      }
      // (GCC 12 miscompiles co_await inside a negated condition: keep it a statement.)
      bool keep = co_await serve_one(hr.ec(), hr.end());
      if (!keep) co_return;
      if (ctx_.tracker.draining.load(std::memory_order_relaxed)) co_return;
    }
  }

 private:
  // Answers with a refusal; the connection stays open only when the request was fully read.
  io::Awaitable<bool> refuse(RequestState& st, const policy::Refusal& r, bool body_consumed) {
    bool keep = st.client_keep_alive && body_consumed;
    st.audit.status = r.status;
    st.audit.error = r.code;
    if (st.audit.rule.empty()) st.audit.rule = r.rule;
    if (st.audit.decision.empty()) st.audit.decision = "deny";
    bool ok = co_await send_raw(client_, render_refusal(r, st.audit.request_id, st.version, keep), ctx_.idle_timeout);
    st.audit.emit();
    co_return ok && keep;
  }

  io::Awaitable<bool> serve_one(beast::error_code head_error, std::size_t head_end);
  // Resolves once, vets, dials the vetted address (connect_upstream: TLS where the destination says).
  io::Awaitable<std::variant<std::unique_ptr<UpstreamConnection>, policy::Refusal>> dial(const policy::Destination& d);
  io::Awaitable<bool> serve_connect(RequestState& st, RequestParser& p);
  io::Awaitable<bool> intercept(RequestState& st, const policy::Destination& dest);

 public:
  // Set when a CONNECT's 200 was sent: run() has returned, and the caller serves the tunnel.
  Handover& handover() { return handover_; }

 private:
  Handover handover_;

  Client& client_;
  io::FlatBuffer& buf_;
  ProxyContext& ctx_;
  std::string client_addr_;
  std::optional<policy::Destination> intercepted_;
};

template <class Client>
io::Awaitable<bool> Session<Client>::serve_one(beast::error_code rec, std::size_t head_end) {
  // Injected values, echoes and TLS records of them pass through this thread's vector registers.
  secrets::ClearRegistersOnExit clear_registers;
  RequestState st;
  st.audit.client = client_addr_;
  if (rec) {
    if (rec == http::error::header_limit) {
      st.audit.request_id = request_id();
      co_await refuse(st, policy::Refusal::make(policy::code::bad_request, "request head larger than limits.max_header_bytes"), false);
    }
    co_return false;  // EOF, timeout or reset between requests: just close
  }
  st.audit.request_id = request_id();
  RequestParser p;
  if (p.put_head(std::string_view(static_cast<const char*>(buf_.data().data()), head_end))) {
    // (The client's version, for the answer, when its request line got that far.)
    st.version = p.version == 10 ? 10 : 11;
    co_return co_await refuse(st, policy::Refusal::make(policy::code::bad_request, p.problem()), false);
  }
  buf_.consume(head_end);
  st.version = p.version;
  st.client_keep_alive = p.keep_alive();
  st.audit.method = p.method_string;

  if (p.method == http::verb::connect) {
    // Not counted as in flight: a tunnel lives as long as the client wants, and the requests
    // inside an intercepted one are counted on their own.
    if (intercepted_)
      co_return co_await refuse(st, policy::Refusal::make(policy::code::bad_request, "CONNECT inside an intercepted connection"), false);
    co_return co_await serve_connect(st, p);
  }
  InflightGuard inflight(ctx_.tracker);

  // Where is this going?
  const std::string_view target = p.target;
  policy::Destination dest;
  std::string origin_target;
  auto policy = ctx_.policy.current();
  if (intercepted_) {
    dest = *intercepted_;
    origin_target = target;
    st.audit.scheme = dest.scheme;
    st.audit.host = dest.host;
    st.audit.port = dest.port;
    const policy::Header* host = policy::find_header(p.fields, "host");
    auto hp = policy::split_host_port(host ? std::string_view(host->value) : std::string_view{});
    if (target.empty() || target[0] != '/') {
      if (auto url = policy::parse_absolute_url(target); url && url->destination.host == dest.host &&
                                                          url->destination.port == dest.port) {
        origin_target = url->target;
      } else {
        co_return co_await refuse(st, policy::Refusal::make(policy::code::misdirected_request,
                                                            "request target does not match the CONNECT authority " + dest.authority())
                                          .with_host(dest.host), p.is_done());
      }
    } else if (!hp || hp->host != dest.host || (hp->port != 0 ? hp->port : 443) != dest.port) {
      co_return co_await refuse(st, policy::Refusal::make(policy::code::misdirected_request,
                                                          "Host does not match the CONNECT authority " + dest.authority())
                                        .with_host(dest.host), p.is_done());
    }
  } else if (iequals(target.substr(0, 7), "http://") || iequals(target.substr(0, 8), "https://")) {
    auto url = policy::parse_absolute_url(target);
    if (!url) co_return co_await refuse(st, policy::Refusal::make(policy::code::bad_request, "malformed absolute URL"), p.is_done());
    dest = url->destination;
    origin_target = url->target;
  } else if (!target.empty() && target[0] == '/') {
    const policy::Route* route = policy->route_for(target);
    if (!route)
      co_return co_await refuse(st, policy::Refusal::make(policy::code::bad_request,
                                                          "no route for this path; use the proxy with an absolute URL or a route prefix"),
                                p.is_done());
    dest = route->destination;
    origin_target = route->map_target(target);
  } else {
    co_return co_await refuse(st, policy::Refusal::make(policy::code::bad_request, "unsupported request target"), p.is_done());
  }
  st.audit.scheme = dest.scheme;
  st.audit.host = dest.host;
  st.audit.port = dest.port;
  st.audit.path = path_only(origin_target);

  // Decide and rewrite (pure).
  auto decision = policy->decide(dest, p.method_string, origin_target);
  st.audit.rule = std::string(decision.rule_name());
  st.audit.decision = std::string(policy::to_string(decision.action));
  // Expect is answered by sidekey (below): looked up before the fields go to the policy.
  const policy::Header* expect = policy::find_header(p.fields, "expect");
  std::string expect_value = expect ? expect->value : std::string();
  policy::RequestHead head{p.method_string, std::move(origin_target), std::move(p.fields)};
  auto secret_view = ctx_.secrets.current();
  auto& memo = injection_memo_for_this_thread();
  memo.use(policy, secret_view);
  ViewLookup lookup(std::move(secret_view));
  policy::RewritePlan plan;
  auto refusal = policy::rewrite_into(plan, *policy, decision, std::move(head), lookup, &memo);
  secrets::clear_vector_registers();  // the values were rendered through them: cleared before any wait
  if (refusal) co_return co_await refuse(st, *refusal, p.is_done());
  st.audit.secrets = std::move(plan.secrets);  // (the names the plan used: the scrub set's key below)
  st.audit.injected = std::move(plan.injected);
  const policy::Destination& upstream_dest = decision.destination;

  // The first body piece is read before dialing, so that bad framing (a malformed first chunk)
  // is refused before anything goes upstream. Not with Expect: 100-continue, where the client
  // waits for our interim answer before sending.
  bool expect_continue = false;
  if (!expect_value.empty()) {
    if (!iequals(expect_value, "100-continue"))
      co_return co_await refuse(st, policy::Refusal::make(policy::code::bad_request, "unsupported Expect"), false);
    expect_continue = true;
  }
  // Leased only for a body, and not in this coroutine's frame (see RelayBuffer).
  std::optional<RelayBuffer> first_buf;
  std::optional<std::string_view> first_piece;
  if (!p.is_done()) buf_.reserve(16384);  // body reads take what the buffer offers (at least 512 bytes)
  if (!p.is_done() && !expect_continue) {
    first_buf.emplace();
    p.body.data = first_buf->data();
    p.body.size = RelayBuffer::kSize;
    lowest(client_).expires_after(ctx_.idle_timeout);
    // Read until the first element is whole (http::async_read_some's loop): a chunk's size line
    // is judged before anything goes upstream, however many reads it takes.
    beast::error_code fec = parse_buffered(p, buf_);
    while (fec == http::error::need_more) {
      if (buf_.size() >= kPendingFramingLimit) {
        fec = http::error::header_limit;
        break;
      }
      auto [rec, rn] = co_await client_.async_read_some(buf_.prepare(read_room(buf_)), tuple_awaitable);
      fec = parse_read(p, buf_, rec, rn);
    }
    if (fec == http::error::need_buffer) fec = {};
    if (fec && is_parse_error(fec))
      co_return co_await refuse(st, policy::Refusal::make(policy::code::bad_request, "malformed request body: " + fec.message()), false);
    if (fec) co_return false;  // the client went away
    first_piece = std::string_view(first_buf->data(), RelayBuffer::kSize - p.body.size);
  }

  bool had_body = !p.is_done() || (first_piece && !first_piece->empty());
  bool upgrade = policy::is_upgrade_request(plan.headers);
  // A request that may go again on a fresh connection when a reused one turns out to have been
  // closed by the upstream before it answered (the keep-alive race): no body, a safe method.
  const bool replayable = replayable_request(p.method, had_body, upgrade);

  // A pooled connection to this destination (vetted when it was dialed), else: resolve once,
  // vet, dial the vetted address. A pooled connection is asked whether it is still open unless
  // the request can be replayed (then a plain one quiet since its last answer is taken as it is).
  // The pool's "now" is the request's start, microseconds ago, unless the first body piece was
  // waited for.
  const auto pool_now = first_piece ? std::chrono::steady_clock::now() : st.audit.started;
  std::unique_ptr<UpstreamConnection> conn = take_pooled(upstream_dest, /*ask=*/!replayable, Dialer::egress, pool_now);
  if (!conn) {
    auto dialed = co_await dial(upstream_dest);
    if (auto* r = std::get_if<policy::Refusal>(&dialed)) co_return co_await refuse(st, *r, p.is_done());
    conn = std::move(std::get<std::unique_ptr<UpstreamConnection>>(dialed));
  }

  // The upstream head: the plan's fields (wiped with the plan), our framing.
  bool chunked_in = p.chunked();
  auto length_in = p.content_length();
  policy::Headers& fields = plan.headers;
  // Framing is ours to set (below); sidekey answers 100-continue itself, once the request may
  // go. A compressed echo would carry the plaintext past the scrubber: the identity coding is
  // asked for, and no permessage-deflate.
  if (plan.scrub) {
    policy::remove_headers(fields, {"Content-Length", "Transfer-Encoding", "Expect", "Accept-Encoding",
                                    "Sec-WebSocket-Extensions"});
    fields.push_back({"Accept-Encoding", "identity"});
  } else {
    policy::remove_headers(fields, {"Content-Length", "Transfer-Encoding", "Expect"});
  }
  Framing up_framing;
  std::optional<policy::BodySubstituter> substituter;
  if (plan.body && had_body) {
    substituter.emplace(*plan.body, policy::body_resolver(*policy, decision, lookup));
    up_framing.chunked = true;  // the length changes with substitution
  } else if (chunked_in) {
    up_framing.chunked = true;
  } else if (length_in) {
    up_framing.length = *length_in;
  }
  if (expect_continue && had_body) {
    // A named string, not a conditional temporary inside co_await (GCC 12 destroys those twice).
    std::string interim = st.version == 10 ? "HTTP/1.0 100 Continue\r\n\r\n" : "HTTP/1.1 100 Continue\r\n\r\n";
    bool sent_continue = co_await send_raw(client_, interim, ctx_.idle_timeout);
    if (!sent_continue) {
      conn->close();
      co_return false;
    }
  }
  // Rendered only now, with nothing left between it and the relay, which wipes it once written:
  // it holds the injected values. Without an upgrade, hop-by-hop stripping left no Connection
  // field: HTTP/1.1 keeps alive.
  OutHead up_head = render_request_head(plan.method, plan.target, fields, up_framing);

  auto upstream_started = std::chrono::steady_clock::now();
  auto substitute = [&](std::string_view piece, bool last, std::string& out) -> std::optional<policy::Refusal> {
    if (auto r = substituter->feed(piece, out)) return r;
    if (last) return substituter->finish(out);
    return std::nullopt;
  };
  Passthrough pass;
  RelayResult sent;
  if (!substituter && !first_piece && p.is_done()) {
    // A request that is its head (no body): written here, at once where the socket takes it, not
    // through a relay (a coroutine frame and a body buffer for nothing).
    const net::const_buffer bytes = net::buffer(up_head.bytes);
    beast::error_code wec;
    const std::size_t wrote = std::visit([&](auto& up) { return write_now(up, bytes, wec); }, conn->stream);
    secrets::clear_vector_registers();  // the head was rendered through them: cleared before any wait
    if (!wec && wrote < bytes.size()) {
      auto [aec, an] = co_await io::async_visit<void(beast::error_code, std::size_t)>(
          conn->stream, [&](auto& up, auto handler) { write_rest(up, bytes, wrote, ctx_.idle_timeout, std::move(handler)); });
      secrets::clear_vector_registers();
      wec = aec;
    }
    secrets::wipe(up_head.bytes);  // it holds the injected values
    if (wec) {
      sent.status = RelayStatus::write_failed;
      sent.ec = wec;
    }
  } else {
    sent = co_await std::visit(
        [&](auto& up) {
          return substituter ? relay_body(client_, buf_, p, up, std::move(up_head), substitute, ctx_.idle_timeout,
                                          st.audit.bytes_in, false, first_piece)
                             : relay_body(client_, buf_, p, up, std::move(up_head), pass, ctx_.idle_timeout,
                                          st.audit.bytes_in, true, first_piece);
        },
        conn->stream);
  }
  if (substituter) {
    for (const auto& s : substituter->secrets_used())
      if (std::find(st.audit.secrets.begin(), st.audit.secrets.end(), s) == st.audit.secrets.end()) st.audit.secrets.push_back(s);
    if (substituter->found_reference()) st.audit.injected.push_back("body");
  }
  // Everything written upstream is now known: the plan's values and any body substitutions.
  policy::Scrubber scrubber;
  bool body_substituted = substituter && !substituter->values_used().empty();
  if (plan.scrub && plan.wrote_any() && !body_substituted) {
    // (No body secret was added to the audit's names: they are the plan's.) The memo that helped
    // make the plan keeps the set for the next plans.
    auto set = plan.scrub_set();
    if (!set) {
      set = scrub_sets_for_this_thread().get(st.audit.secrets, plan, lookup, ctx_.secrets.current().get());
      plan.keep_scrub_set(set);
    }
    scrubber = policy::Scrubber(std::move(set));
  } else if (plan.scrub) {
    std::vector<std::string> body_refs;
    std::vector<policy::ScrubPattern> patterns;
    for (const auto& w : plan.written()) patterns.push_back({w.bytes.reveal(), w.replacement});
    if (substituter) {
      const auto& names = substituter->secrets_used();
      const auto& values = substituter->values_used();
      body_refs.reserve(values.size());
      for (std::size_t i = 0; i < values.size() && i < names.size(); ++i) {
        body_refs.push_back(secrets::reference_for(names[i]));
        patterns.push_back({values[i]->reveal(), body_refs.back()});
      }
    }
    if (!patterns.empty()) scrubber = policy::Scrubber(policy::ScrubSet::build(patterns));
  }
  // The replay: the reused connection is closed, a fresh one dialed, the head written again.
  bool replayed = false;
  auto can_replay = [&] { return replayable && conn->reused && !replayed; };
  auto replay = [&]() -> io::Awaitable<std::optional<policy::Refusal>> {
    replayed = true;
    conn->close();
    auto dialed = co_await dial(upstream_dest);
    if (auto* r = std::get_if<policy::Refusal>(&dialed)) co_return std::move(*r);
    conn = std::move(std::get<std::unique_ptr<UpstreamConnection>>(dialed));
    RelayResult again = co_await std::visit(
        [&](auto& up) {
          return relay_body(client_, buf_, p, up, render_request_head(plan.method, plan.target, fields, up_framing), pass,
                            ctx_.idle_timeout, st.audit.bytes_in, true);
        },
        conn->stream);
    if (again.status == RelayStatus::ok) co_return std::nullopt;
    conn->close();
    co_return policy::Refusal::make(policy::code::upstream_connect_failed, "writing to the upstream failed: " + again.ec.message())
        .with_host(upstream_dest.host);
  };
  if (sent.status == RelayStatus::write_failed && conn->closed_before_answer(sent.ec) && can_replay()) {
    std::optional<policy::Refusal> failed = co_await replay();
    if (failed) co_return co_await refuse(st, *failed, true);
    sent.status = RelayStatus::ok;
  }
  if (sent.status != RelayStatus::ok) {
    conn->close();  // never reuse a connection after an error (invariant 10)
    if (sent.status == RelayStatus::refused) co_return co_await refuse(st, *sent.refusal, false);
    if (sent.status == RelayStatus::read_failed && is_parse_error(sent.ec))
      co_return co_await refuse(st, policy::Refusal::make(policy::code::bad_request, "malformed request body: " + sent.ec.message()), false);
    if (sent.status == RelayStatus::read_failed) {
      st.audit.status = 0;
      st.audit.error = "client_aborted";
      st.audit.emit();
      co_return false;
    }
    co_return co_await refuse(st, policy::Refusal::make(policy::code::upstream_connect_failed,
                                                        "writing to the upstream failed: " + sent.ec.message())
                                      .with_host(upstream_dest.host), false);
  }

  // The response.
  std::optional<ResponseParser> rp_slot;
  auto fresh_parser = [&]() -> ResponseParser& {
    auto& r = rp_slot.emplace();
    if (p.method == http::verb::head) r.skip(true);
    return r;
  };
  fresh_parser();
  bool interim = false;    // an interim (1xx) answer came
  bool head_echo = false;  // the final head holds a form of what was written (scrubbing rules)
  for (;;) {
    auto& rp = *rp_slot;
    conn->tcp().expires_after(ctx_.request_timeout);
    HeadReader hr(conn->buffer, ctx_.max_header_bytes, /*response=*/true);
    while (hr.need_read()) {
      auto [read_ec, n] = co_await io::async_visit<void(beast::error_code, std::size_t)>(
          conn->stream, [room = hr.room()](auto& up, auto handler) { up.async_read_some(room, std::move(handler)); });
      hr.read(read_ec, n);
    }
    beast::error_code ec = hr.ec();
    const std::size_t head_end = hr.end();
    if (!ec) {
      const std::string_view raw(static_cast<const char*>(conn->buffer.data().data()), head_end);
      ec = rp.put_head(raw);
      if (!ec) {
        // Searched in the bytes as they came, every field (those dropped below too) before
        // anything is rewritten: most heads hold nothing to scrub, and then these bytes need no
        // wiping. The parser's fields are views of them: consumed, they stay where they are
        // until the buffer is read into again, after the head is rendered.
        head_echo = !scrubber.empty() && scrubber.finds_any(raw, rp.fields);
        conn->buffer.consume(head_end);
      }
    }
    // The reused connection was closed before a byte of the answer, or its first answer is a
    // 408: the upstream closing the idle connection with a courtesy answer that crossed our
    // request (RFC 9110 15.5.9 lets the client repeat it; a bodyless request can have timed out
    // nowhere else).
    const bool crossed_408 = !ec && rp.status == 408;
    if (!interim && can_replay() && (crossed_408 || conn->closed_before_answer(ec))) {
      if (crossed_408 && !scrubber.empty()) wipe_buffer(conn->buffer);
      std::optional<policy::Refusal> failed = co_await replay();
      if (failed) co_return co_await refuse(st, *failed, true);
      fresh_parser();
      continue;
    }
    if (ec) {
      if (!scrubber.empty()) wipe_buffer(conn->buffer);  // a partial head may echo what was written
      conn->close();
      if (ec == beast::error::timeout)
        co_return co_await refuse(st, policy::Refusal::make(policy::code::upstream_timeout, "the upstream did not answer in time")
                                          .with_host(upstream_dest.host), true);
      co_return co_await refuse(st, policy::Refusal::make(policy::code::upstream_connect_failed,
                                                          "reading the upstream response failed: " + ec.message())
                                        .with_host(upstream_dest.host), true);
    }
    if (rp.status >= 100 && rp.status < 200 && rp.status != 101) {
      fresh_parser();  // an interim response: read the next head with a fresh parser (its bytes are
                       // wiped with the buffer at the end: `interim` makes the exchange unclean)
      interim = true;
      continue;
    }
    break;
  }
  auto& rp = *rp_slot;
  st.audit.upstream_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - upstream_started).count();
  st.audit.status = rp.status;
  // The response's fields and reason phrase: views of the upstream's head in the connection's
  // buffer (no copy), used up to the rendering below.
  policy::FieldViews& res_headers = rp.fields;
  std::string_view reason = rp.reason;
  // Refusing the response: on a scrubbed rule its head and what was read with it may echo what
  // was written, and are wiped (the relay path wipes them once sent).
  auto drop_response = [&] {
    if (!scrubber.empty()) wipe_buffer(conn->buffer);
    conn->close();
  };
  if (rp.status == 101 && !upgrade) {
    // Not asked for: what follows on this connection is no longer HTTP the client expects.
    drop_response();
    co_return co_await refuse(st, policy::Refusal::make(policy::code::upstream_connect_failed,
                                                        "the upstream switched protocols, which the request did not ask for")
                                      .with_host(upstream_dest.host), true);
  }
  bool switching = rp.status == 101 && upgrade;
  // The framing fields last (the others keep their order): searched with the others below, then
  // dropped (framing is ours). (A transfer coding other than chunked was refused by the parser.)
  std::size_t forwarded = 0;
  for (std::size_t i = 0; i < res_headers.size(); ++i) {
    const auto& name = res_headers[i].name;
    if (iequals(name, "transfer-encoding") || iequals(name, "content-length")) continue;
    if (i != forwarded) std::swap(res_headers[forwarded], res_headers[i]);
    ++forwarded;
  }
  bool scrubbing = !scrubber.empty();
  res_headers.resize(forwarded);
  policy::strip_hop_by_hop(res_headers, switching);
  if (scrubbing) {
    // Every Content-Encoding field must be identity: the message names no value, which could
    // carry an echo of the plaintext.
    for (const auto& h : res_headers)
      if (iequals(h.name, "Content-Encoding") && !iequals(h.value, "identity")) {
        drop_response();
        co_return co_await refuse(st, policy::Refusal::make(policy::code::upstream_connect_failed,
                                                            "the upstream answered with a Content-Encoding other than "
                                                            "identity although identity was asked for; sidekey cannot "
                                                            "scrub a compressed body")
                                          .with_host(upstream_dest.host), true);
      }
  }
  // Scrubbed values (a head that echoed what was written): the views point here instead. Only
  // scrubbed text; the plaintext stays in the buffer, wiped once the exchange ends.
  std::vector<std::string> scrubbed_values;
  if (head_echo) {
    // A field name cannot carry the reference ('{' is not a token character): a field whose
    // name holds a form of what was written is dropped.
    std::erase_if(res_headers, [&](const policy::FieldView& h) { return scrubber.drops_name(h.name); });
    scrubbed_values.reserve(res_headers.size() + 1);  // never moves: views of its strings are taken
    std::string clean;
    auto scrub_view = [&](std::string_view& v) {
      if (scrubber.scrub_into(v, clean) == 0) return;
      v = scrubbed_values.emplace_back(std::move(clean));
      clean = {};
    };
    for (auto& h : res_headers) scrub_view(h.value);
    scrub_view(reason);
  }
  bool chunked_out = rp.chunked();
  auto length_out = rp.content_length();
  bool header_only = header_only_response(p.method, rp.status);
  // Scrubbing changes the length. A body that is here whole (it came with its head, as most small
  // answers do) is scrubbed before the head is rendered and goes with its new length; any other
  // is re-chunked (or close-delimited for HTTP/1.0). Only scrubbed text is held: the raw bytes
  // stay in the connection's buffer, wiped below if they held a form of what was written.
  std::string whole;
  std::optional<std::uint64_t> whole_raw;
  if (scrubbing && length_out && !header_only) {
    if (!switching && *length_out <= kWholeScrubBytes && *length_out <= conn->buffer.size()) {
      whole_raw = *length_out;
      whole.reserve(*length_out);
      scrubber.feed(std::string_view(static_cast<const char*>(conn->buffer.data().data()), *length_out), whole);
      scrubber.finish(whole);
      conn->buffer.consume(*length_out);
      rp.take_whole_body();
      length_out = whole.size();
    } else {
      length_out.reset();
      chunked_out = true;
    }
  }
  bool eof_delimited = rp.need_eof() && !chunked_out && !length_out;
  res_headers.push_back({"X-Sidekey-Request-Id", st.audit.request_id});
  bool keep = st.client_keep_alive && !switching && !ctx_.tracker.draining.load(std::memory_order_relaxed);
  Framing down_framing;
  if (st.version == 10 && !length_out && !header_only) {
    keep = false;  // an HTTP/1.0 client knows no chunked coding: the body ends when we close
  } else if (chunked_out) {
    down_framing.chunked = true;
  } else if (length_out) {
    down_framing.length = *length_out;
  } else if (eof_delimited && !header_only) {
    down_framing.chunked = true;  // re-framed, so the client connection can stay open
  }
  // After a switch the stripped fields still say "Connection: upgrade"; otherwise the field is
  // only needed where the version's default is not what we do.
  std::string_view connection;
  if (!switching) connection = st.version == 10 ? (keep ? "keep-alive" : "") : (keep ? "" : "close");
  OutHead down_head = render_response_head(st.version, rp.status, reason, res_headers, down_framing, connection);
  rp.clear_head();  // the buffer is read into next: the views would dangle
  reason = {};

  auto scrub = [&](std::string_view piece, bool last, std::string& out) -> std::optional<policy::Refusal> {
    scrubber.feed(piece, out);
    if (last) scrubber.finish(out);
    return std::nullopt;
  };
  std::uint64_t relayed = 0;
  RelayResult got;
  // A body that is here whole (scrubbed above, or as it came when nothing is scrubbed) goes with
  // its head in one write, without the relay's coroutine.
  std::optional<std::string_view> here_whole;
  if (whole_raw) {
    here_whole = whole;
  } else if (!scrubbing && length_out && !chunked_out && !header_only && !switching &&
             *length_out <= conn->buffer.size()) {
    here_whole = std::string_view(static_cast<const char*>(conn->buffer.data().data()), *length_out);
  }
  if (here_whole) {
    const std::array<net::const_buffer, 2> pieces{net::buffer(down_head.bytes), net::buffer(*here_whole)};
    const std::span<const net::const_buffer> all(pieces);
    beast::error_code wec;
    std::size_t wrote = write_now(client_, all, wec);
    if (scrubbing) secrets::clear_vector_registers();
    if (!wec && wrote < net::buffer_size(all)) {
      auto [aec, an] = co_await write_rest(client_, all, wrote, ctx_.idle_timeout, tuple_awaitable);
      if (scrubbing) secrets::clear_vector_registers();
      wec = aec;
    }
    relayed = here_whole->size();
    if (!whole_raw) {
      conn->buffer.consume(here_whole->size());
      rp.take_whole_body();
    }
    secrets::wipe(down_head.bytes);  // as the relay does with every head it sends
    if (wec) {
      got.status = RelayStatus::write_failed;
      got.ec = wec;
    }
  } else {
    got = co_await std::visit(
        [&](auto& up) {
          return relay_body(up, conn->buffer, rp, client_, std::move(down_head), scrub, ctx_.idle_timeout, relayed,
                            !scrubbing, std::nullopt, header_only);
        },
        conn->stream);
  }
  st.audit.bytes_out += whole_raw ? *whole_raw : relayed;  // the upstream's body bytes
  st.audit.scrubbed = scrubber.replaced();
  bool reusable = got.status == RelayStatus::ok && rp.keep_alive() && !rp.need_eof() && conn->buffer.size() == 0;
  // The buffer held the response before scrubbing (after a switch it holds the first frames).
  // It is left as it is only when all of it went through the scrubber, which found nothing: not
  // so for interim heads read before this one, nor for chunk extensions and trailers, which the
  // scrubber never sees (nor the client: the body is re-chunked; MessageParser keeps no trailer
  // field).
  const bool all_clean = got.status == RelayStatus::ok && conn->buffer.size() == 0 && !head_echo &&
                         scrubber.replaced() == 0 && !interim && !rp.chunked();
  // (After a switch the frames path below wipes them; unless the 101 could not be sent.)
  if (scrubbing && !all_clean && (!switching || got.status != RelayStatus::ok)) {
    wipe_buffer(conn->buffer);
  }
  if (got.status != RelayStatus::ok) {
    conn->close();
    st.audit.error = got.status == RelayStatus::read_failed ? "upstream_aborted" : "client_aborted";
    st.audit.emit();
    co_return false;  // the response is half sent: only closing tells the client
  }

  if (switching) {
    // Protocol switched (WebSocket): relay both ways until either side closes. On a scrubbed
    // rule the upstream's frames go through the frame scrubber.
    std::uint64_t up_bytes = 0, down_bytes = 0;
    if (scrubbing) {
      WsFrameScrubber frames(scrubber.set());
      auto scrub_frames = [&](std::string_view piece, std::string& out) { return frames.feed(piece, out); };
      // Bytes that arrived with the 101 head are the first frames.
      std::string early;
      bool ok;
      {
        WipeFreedBlocks wipe_freed;  // as pump_through() runs the scrubber
        ok = frames.feed(std::string_view(static_cast<const char*>(conn->buffer.data().data()), conn->buffer.size()),
                         early);
      }
      wipe_buffer(conn->buffer);  // the 101 head and the frames as they came
      if (ok && !early.empty()) {
        auto [eec, en] = co_await net::async_write(client_, net::buffer(early), tuple_awaitable);
        secrets::wipe(early);
        down_bytes += en;
        ok = !eec;
      }
      if (ok)
        co_await std::visit(
            [&](auto& up) -> io::Awaitable<void> {
              co_await (pump(client_, up, ctx_.idle_timeout, up_bytes) &&
                        pump_through(up, client_, ctx_.idle_timeout, down_bytes, scrub_frames));
            },
            conn->stream);
      st.audit.scrubbed += frames.replaced();
    } else {
      if (conn->buffer.size()) {
        auto [eec, en] = co_await net::async_write(client_, conn->buffer.data(), tuple_awaitable);
        down_bytes += en;
        conn->buffer.consume(conn->buffer.size());
      }
      co_await std::visit([&](auto& up) { return tunnel(client_, up, ctx_.idle_timeout, up_bytes, down_bytes); },
                          conn->stream);
    }
    st.audit.bytes_in += up_bytes;
    st.audit.bytes_out += down_bytes;
    conn->close();
    st.audit.emit();
    co_return false;
  }

  // One reading of the clock for the pooled connection's idle deadline and the request's duration.
  const auto done = std::chrono::steady_clock::now();
  if (reusable) UpstreamPool::for_this_thread().put(std::move(conn), ctx_.idle_timeout, done);
  else conn->close();
  st.audit.emit(done);
  co_return keep;
}

template <class Client>
io::Awaitable<std::variant<std::unique_ptr<UpstreamConnection>, policy::Refusal>> Session<Client>::dial(
    const policy::Destination& d) {
  auto vetted = co_await ctx_.guard.vet(d);
  if (auto* r = std::get_if<policy::Refusal>(&vetted)) co_return std::move(*r);
  auto connected = co_await connect_upstream(d, std::get<VettedAddresses>(vetted), ctx_.upstream_tls, ctx_.connect_timeout);
  if (auto* r = std::get_if<policy::Refusal>(&connected)) co_return std::move(*r);
  if (double secs = std::get<ConnectResult>(connected).connect_seconds; secs > 0) observe_upstream_connect(secs);
  co_return std::move(std::get<ConnectResult>(connected).connection);
}

template <class Client>
io::Awaitable<bool> Session<Client>::serve_connect(RequestState& st, RequestParser& p) {
  std::string_view target = p.target;
  st.audit.scheme = "https";
  auto dest = policy::parse_connect_authority(target);
  if (!dest) co_return co_await refuse(st, policy::Refusal::make(policy::code::bad_request, "CONNECT needs host:port"), false);
  st.audit.host = dest->host;
  st.audit.port = dest->port;
  auto policy = ctx_.policy.current();
  auto decision = policy->decide_connect(*dest);
  st.audit.rule = std::string(decision.rule_name());
  using Kind = policy::ConnectDecision::Kind;
  if (decision.kind == Kind::deny) {
    st.audit.decision = "deny";
    co_return co_await refuse(st, policy::Refusal::make(policy::code::policy_denied, "CONNECT to " + dest->authority() + " is not allowed by the policy")
                                      .with_rule(st.audit.rule).with_host(dest->host), false);
  }
  if (decision.kind == Kind::intercept) {
    if constexpr (std::is_same_v<Client, io::TcpStream>) {
      co_return co_await intercept(st, *dest);
    } else {
      co_return false;  // unreachable: CONNECT inside TLS is refused earlier
    }
  }
  st.audit.decision = "tunnel";
  // A blind tunnel: plain TCP to the vetted address, whatever the client speaks inside.
  policy::Destination raw = *dest;
  raw.tls = false;
  auto dialed = co_await dial(raw);
  if (auto* r = std::get_if<policy::Refusal>(&dialed)) co_return co_await refuse(st, *r, false);
  auto conn = std::move(std::get<std::unique_ptr<UpstreamConnection>>(dialed));
  st.audit.status = 200;
  bool sent_ok = co_await send_raw(client_, connect_established(st), ctx_.idle_timeout);
  if (!sent_ok) co_return false;
  if constexpr (std::is_same_v<Client, io::TcpStream>)
    handover_ = std::make_unique<Handover::element_type>(BlindTunnel{std::move(conn), std::move(st)});
  co_return false;
}

// A blind tunnel (Session::handover()): bytes both ways until either side closes; `buf` may hold
// bytes the client sent right after the CONNECT head (e.g. an eager ClientHello).
io::Awaitable<void> serve_blind_tunnel(io::TcpStream& client, io::FlatBuffer& buf, ProxyContext& ctx, BlindTunnel& t) {
  auto& up = std::get<UpstreamConnection::Plain>(t.upstream->stream);
  auto& audit = t.st.audit;
  beast::error_code ec;
  if (buf.size()) {
    std::size_t n = 0;
    std::tie(ec, n) = co_await net::async_write(up, buf.data(), tuple_awaitable);
    audit.bytes_in += n;
    buf.consume(buf.size());
  }
  buf.shrink_to_fit();
  if (!ec) co_await tunnel(client, up, ctx.idle_timeout, audit.bytes_in, audit.bytes_out);
  t.upstream->close();
  audit.emit();
}


// CONNECT to a host with inject rules: answer 200, terminate TLS with a leaf minted for the
// CONNECT host (its SNI must name that host), then serve each inner request through the same
// pipeline with the CONNECT authority as the one destination.
template <class Client>
io::Awaitable<bool> Session<Client>::intercept(RequestState& st, const policy::Destination& dest) {
  std::shared_ptr<net::ssl::context> tls_ctx;
  try {
    tls_ctx = ctx_.certs.context_for(dest.host);
  } catch (const std::exception& e) {
    log::error("leaf_mint_failed", {{"host", dest.host}, {"error", e.what()}});
  }
  if (!tls_ctx)
    co_return co_await refuse(st, policy::Refusal::make(policy::code::bad_request, "cannot intercept " + dest.host +
                                                                                      ": no certificate for this host")
                                      .with_host(dest.host), false);
  bool sent_ok = co_await send_raw(client_, connect_established(st), ctx_.idle_timeout);
  if (!sent_ok) co_return false;
  handover_ = std::make_unique<Handover::element_type>(Interception{std::move(tls_ctx), dest, std::move(st)});
  co_return false;
}

// The TLS side of an intercepted CONNECT (Session::handover()): `tcp` and `buf` (which may
// hold the start of the ClientHello) become the TLS stream's and the inner session's.
io::Awaitable<void> serve_intercepted(std::optional<io::TcpStream>& tcp, io::FlatBuffer& buf, ProxyContext& ctx,
                                       const std::string& client_addr, Interception& icpt) {
  TlsStream tls(std::move(*tcp), icpt.tls->native_handle());
  tcp.reset();  // (moved from: an empty handle)
  lowest(tls).expires_after(ctx.connect_timeout);
  auto ec = co_await tls.handshake(TlsStream::Role::server, buf.data());
  buf.consume(buf.size());
  if (ec) {
    auto& audit = icpt.st.audit;
    audit.decision = "deny";
    audit.status = 0;
    audit.error = "client_tls_failed";
    audit.emit();
    log::info("intercept_handshake_failed", {{"host", icpt.dest.host}, {"request_id", audit.request_id}, {"error", ec.message()}});
    co_return;
  }
  const policy::Destination dest = std::move(icpt.dest);
  icpt = Interception{};  // the CONNECT's record is not needed past the handshake
  Session<TlsStream> inner(tls, buf, ctx, client_addr, dest);
  co_await inner.run();
  lowest(tls).expires_after(std::chrono::seconds(2));
  co_await tls.shutdown();
}
}  // namespace

io::Awaitable<void> serve_proxy_connection(io::Socket socket, ProxyContext& ctx) {
  beast::error_code ec;
  auto remote = socket.remote_endpoint(ec);
  std::string client = ec ? "" : remote.address().to_string() + ":" + std::to_string(remote.port());
  std::optional<io::TcpStream> stream(std::in_place, std::move(socket));
  io::FlatBuffer buf;
  Handover handover;
  {
    Session<io::TcpStream> session(*stream, buf, ctx, client, std::nullopt);
    co_await session.run();
    handover = std::move(session.handover());
  }
  if (auto* icpt = handover ? std::get_if<Interception>(handover.get()) : nullptr) {
    co_await serve_intercepted(stream, buf, ctx, client, *icpt);
    co_return;
  }
  if (auto* blind = handover ? std::get_if<BlindTunnel>(handover.get()) : nullptr)
    co_await serve_blind_tunnel(*stream, buf, ctx, *blind);
  stream->socket().shutdown(tcp::socket::shutdown_send, ec);
}

io::Awaitable<void> refuse_overloaded(io::Socket socket) {
  static const std::string kBusy =
      render_refusal(policy::Refusal{"overloaded", 503, "too many open connections", "", "", ""}, "-", 11, false);
  co_await net::async_write(socket, net::buffer(kBusy), tuple_awaitable);
}

}  // namespace sidekey::proxy
