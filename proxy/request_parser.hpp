#pragma once
// A client's request, read without Beast's parser for its head: the request line and the field
// lines in one pass over the raw bytes (BodyReader's head syntax), the framing judged in the same
// pass, the body read as BodyReader reads it. The fields are the policy's own (policy::Headers):
// the rewrite takes them over and the upstream head is rendered from them.
//
// Every malformed or ambiguous head is refused with a reason for the client (problem()): a bare
// LF, a CR, NUL or other control byte inside a line, obs-fold, whitespace between a field name
// and its colon, a Content-Length that is not one decimal number or that repeats, Transfer-
// Encoding with Content-Length, twice, in an HTTP/1.0 request or other than exactly "chunked"
// (SPEC section 13, invariant 10). Never looser than what the proxy ran before it (Beast's
// parser behind the same checks), which tests/fuzz/fuzz_request_parser.cpp holds it to. Pure code.
#include <boost/beast/http/verb.hpp>

#include <string>
#include <string_view>

#include "policy/headers.hpp"
#include "proxy/body_reader.hpp"

namespace sidekey::proxy {

class RequestParser : public BodyReader {
 public:
  RequestParser();
  ~RequestParser();

  // The head, once put_head() succeeded.
  policy::Headers fields;  // as received, in order; framing fields included
  boost::beast::http::verb method = boost::beast::http::verb::unknown;
  std::string method_string;  // as sent
  std::string target;         // as sent

  // Parses `raw`, a whole head through its blank line (as find_head_end() delimits it). On an
  // error (Beast's codes), problem() says what was wrong, for the client.
  error_code put_head(std::string_view raw);
  // "malformed request: …" or "ambiguous framing: …"; empty before an error.
  const std::string& problem() const { return problem_; }

 private:
  std::string problem_;
};

}  // namespace sidekey::proxy
