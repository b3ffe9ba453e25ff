#include "proxy/head.hpp"

#include <boost/beast/http/status.hpp>

#include <charconv>
#include <cstring>

#include "core/copy_short.hpp"

namespace sidekey::proxy {
namespace {
// Writes a head into a string sized ahead for all of it: a field is then four copies, not four
// appends that each check the room left.
class HeadWriter {
 public:
  HeadWriter(std::string& out, std::size_t bound) : out_(out) {
    out_.resize(bound);  // one allocation: no regrowth leaves copies behind
    p_ = out_.data();
  }
  void put(std::string_view s) {
    copy_short(p_, s.data(), s.size());  // (nothing read for an empty view, whose data() may be null)
    p_ += s.size();
  }
  void number(std::uint64_t v) { p_ = std::to_chars(p_, p_ + kNumberBytes, v).ptr; }
  template <class Fields>
  void fields(const Fields& fields, const Framing& framing) {
    for (const auto& f : fields) {
      put(f.name);
      put(": ");
      put(f.value);
      put("\r\n");
    }
    if (framing.chunked) {
      put("Transfer-Encoding: chunked\r\n");
    } else if (framing.length) {
      put("Content-Length: ");
      number(*framing.length);
      put("\r\n");
    }
  }
  void finish() { out_.resize(static_cast<std::size_t>(p_ - out_.data())); }

  static constexpr std::size_t kNumberBytes = 20;  // the digits of any 64-bit number
  // Room for the fields and the framing line.
  template <class Fields>
  static std::size_t bound(const Fields& fields) {
    std::size_t n = sizeof "Transfer-Encoding: chunked\r\n" + sizeof "Content-Length: \r\n" + kNumberBytes;
    for (const auto& f : fields) n += f.name.size() + f.value.size() + 4;
    return n;
  }

 private:
  std::string& out_;
  char* p_;
};

// Either kind of fields: the proxy's response views, the API gateway's fields.
template <class Fields>
OutHead render_response(unsigned version, int status, std::string_view reason, const Fields& fields,
                        const Framing& framing, std::string_view connection) {
  OutHead head{{}, framing.chunked};
  if (reason.empty()) reason = boost::beast::http::obsolete_reason(static_cast<boost::beast::http::status>(status));
  HeadWriter w(head.bytes, sizeof "HTTP/1.1 " + HeadWriter::kNumberBytes + 1 + reason.size() + 2 + HeadWriter::bound(fields) +
                               sizeof "Connection: \r\n" + connection.size() + 2);
  w.put(version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ");
  w.number(static_cast<std::uint64_t>(static_cast<unsigned>(status)));
  w.put(" ");
  w.put(reason);
  w.put("\r\n");
  w.fields(fields, framing);
  if (!connection.empty()) {
    w.put("Connection: ");
    w.put(connection);
    w.put("\r\n");
  }
  w.put("\r\n");
  w.finish();
  return head;
}

}  // namespace

OutHead render_request_head(std::string_view method, std::string_view target, const policy::Headers& fields,
                            const Framing& framing) {
  OutHead head{{}, framing.chunked};
  HeadWriter w(head.bytes, method.size() + 1 + target.size() + sizeof " HTTP/1.1\r\n" + HeadWriter::bound(fields) + 2);
  w.put(method);
  w.put(" ");
  w.put(target);
  w.put(" HTTP/1.1\r\n");
  w.fields(fields, framing);
  w.put("\r\n");
  w.finish();
  return head;
}

OutHead render_response_head(unsigned version, int status, std::string_view reason, const policy::Headers& fields,
                             const Framing& framing, std::string_view connection) {
  return render_response(version, status, reason, fields, framing, connection);
}

OutHead render_response_head(unsigned version, int status, std::string_view reason, const policy::FieldViews& fields,
                             const Framing& framing, std::string_view connection) {
  return render_response(version, status, reason, fields, framing, connection);
}

}  // namespace sidekey::proxy
