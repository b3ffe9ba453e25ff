#include "proxy/head.hpp"

#include <boost/beast/http/status.hpp>

#include <charconv>

namespace sidekey::proxy {
namespace {
void append_number(std::string& out, std::uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void append_fields(std::string& out, const policy::Headers& fields, const Framing& framing) {
  for (const auto& f : fields) {
    out.append(f.name);
    out.append(": ");
    out.append(f.value);
    out.append("\r\n");
  }
  if (framing.chunked) {
    out.append("Transfer-Encoding: chunked\r\n");
  } else if (framing.length) {
    out.append("Content-Length: ");
    append_number(out, *framing.length);
    out.append("\r\n");
  }
}

std::size_t size_hint(const policy::Headers& fields) {
  std::size_t n = 128;
  for (const auto& f : fields) n += f.name.size() + f.value.size() + 4;
  return n;
}
}  // namespace

OutHead render_request_head(std::string_view method, std::string_view target, const policy::Headers& fields,
                            const Framing& framing) {
  OutHead head{{}, framing.chunked};
  std::string& out = head.bytes;
  out.reserve(size_hint(fields) + target.size());  // one allocation: no regrowth leaves copies behind
  out.append(method);
  out.push_back(' ');
  out.append(target);
  out.append(" HTTP/1.1\r\n");
  append_fields(out, fields, framing);
  out.append("\r\n");
  return head;
}

OutHead render_response_head(unsigned version, int status, std::string_view reason, const policy::Headers& fields,
                             const Framing& framing, std::string_view connection) {
  OutHead head{{}, framing.chunked};
  std::string& out = head.bytes;
  out.reserve(size_hint(fields) + reason.size() + connection.size());
  out.append(version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ");
  append_number(out, static_cast<std::uint64_t>(status));
  out.push_back(' ');
  if (reason.empty()) {
    auto standard = boost::beast::http::obsolete_reason(static_cast<boost::beast::http::status>(status));
    out.append(standard.data(), standard.size());
  } else {
    out.append(reason);
  }
  out.append("\r\n");
  append_fields(out, fields, framing);
  if (!connection.empty()) {
    out.append("Connection: ");
    out.append(connection);
    out.append("\r\n");
  }
  out.append("\r\n");
  return head;
}

}  // namespace sidekey::proxy
