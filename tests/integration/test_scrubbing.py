"""Response scrubbing (SPEC sections 7 and 13.1) against the real binary: on an inject rule, an
upstream that echoes what sidekey wrote into the request (each secret's plaintext, each composed
value such as the whole Authorization value) never gets it back to the client — not in a header,
not in the body, not JSON-escaped, percent-encoded or base64-encoded (whole or inside a longer
blob), not split across chunks or reads, not in a server-sent-event stream or WebSocket frame,
not in a refusal's message, not through a compressed body — while the upstream did receive it. Every case runs over plain HTTP (absolute-form, as with HTTP_PROXY) and inside a
TLS interception (CONNECT + TLS to sidekey's minted leaf, the upstream serving TLS with a test CA
of its own, stood in for the real name with egress.resolve).

The client-side check searches the raw bytes of the whole response (head, chunk framing,
trailers, body) for the plaintexts and for every encoded form of them this file produces. The
`/noscrub/` paths hit a rule with `scrub: false` and show that the same echo does carry the
plaintext there: the scrubber, nothing else, removes it."""
import base64
import gzip
import json
import os
import re
import shutil
import tempfile
import threading
import unittest
import urllib.parse

from harness import wait_for
from upstreams import (BodyReader, Chunks, CleanClose, RawClient, Reply, Sse, TestCA, Upstream, audit_records, fill,
                       metric_value, metrics_text, open_tunnel, proxy_sidekey, tls_over, tls_server_context,
                       wait_audit, ws_accept, ws_frame, ws_read_frame, _Closed)

SECRET = "sk-SCRUB-PLAINTEXT-7f3a9c2e41d0"
# A secret full of what JSON and URLs escape: quote, slash, backslash, non-ASCII (2- and 3-byte
# UTF-8), a space, and the characters Go's encoder escapes.
WEIRD = 'w\u00e9"ird/\\\u03a9\u20ac-PLAINTEXT <>&\'+ 4c9e'
REF_S = "{{secrets.s}}"
REF_W = "{{secrets.weird}}"
AUTH = "Bearer " + SECRET
CRED = "alice:" + SECRET            # a composed value, as in a Basic credential
HOST = "api.scrub.test"

POLICY = """version: 1
default: deny
secrets:
  s:
    hosts: ["http://127.0.0.1:@PORT@", "api.scrub.test"]
  weird:
    hosts: ["http://127.0.0.1:@PORT@", "api.scrub.test"]
rules:
  - name: noscrub
    match: { hosts: ["127.0.0.1:@PORT@", "api.scrub.test"], paths: ["/noscrub/*"] }
    inject:
      headers: { Authorization: "Bearer {{secrets.s}}", X-Weird: "{{secrets.weird}}", X-Basic-Cred: "alice:{{secrets.s}}" }
    scrub: false
  - name: query
    match: { hosts: ["127.0.0.1:@PORT@", "api.scrub.test"], paths: ["/query/*"] }
    inject:
      headers: { Authorization: "Bearer {{secrets.s}}" }
      query: { key: "{{secrets.weird}}" }
  - name: body
    match: { hosts: ["127.0.0.1:@PORT@", "api.scrub.test"], paths: ["/body/*"] }
    inject:
      headers: { Authorization: "Bearer {{secrets.s}}" }
    references: [headers, query, body]
  - name: scrub
    match: { hosts: ["127.0.0.1:@PORT@", "api.scrub.test"] }
    inject:
      headers: { Authorization: "Bearer {{secrets.s}}", X-Weird: "{{secrets.weird}}", X-Basic-Cred: "alice:{{secrets.s}}" }
"""

# How long a read may block before a test concludes sidekey holds data back (a deadlock guard).
WAIT = 8


# ------------------------------------------------------------------------------------------------
# Encodings: what an echo may turn a plaintext into


def b64(data, url=False, pad=True):
    data = data.encode() if isinstance(data, str) else data
    out = (base64.urlsafe_b64encode if url else base64.b64encode)(data).decode()
    return out if pad else out.rstrip("=")


def unb64(text, url=False):
    text = text + "=" * (-len(text) % 4)
    return (base64.urlsafe_b64decode if url else base64.b64decode)(text)


def b64_cores(plaintext):
    """For each alignment of `plaintext` inside a longer blob (offset mod 3) and both alphabets,
    the base64 characters whose 6 bits all come from the plaintext: what a blob holding it
    always contains."""
    p = plaintext.encode() if isinstance(plaintext, str) else plaintext
    out = []
    for k in range(3):
        for url in (False, True):
            enc = b64(b"\0" * k + p + b"\0\0\0", url=url)
            first = -(-8 * k // 6)
            last = (8 * (k + len(p))) // 6    # exclusive
            out.append(enc[first:last])
    return out


def lower_hex(text):
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), text)


def json_inner(s, ascii=True):
    return json.dumps(s, ensure_ascii=ascii)[1:-1]


def leak_forms():
    """{description: bytes} of every form of a plaintext this file's upstreams emit."""
    forms = {}
    for name, p in (("SECRET", SECRET), ("WEIRD", WEIRD), ("AUTH", AUTH), ("CRED", CRED)):
        forms[name + " raw"] = p.encode()
        forms[name + " json ascii"] = json_inner(p).encode()
        forms[name + " json utf8"] = json_inner(p, ascii=False).encode()
        forms[name + " quote"] = urllib.parse.quote(p, safe="").encode()
        forms[name + " quote /"] = urllib.parse.quote(p).encode()
        forms[name + " quote_plus"] = urllib.parse.quote_plus(p).encode()
        forms[name + " quote lower"] = lower_hex(urllib.parse.quote(p, safe="")).encode()
        for i, core in enumerate(b64_cores(p)):
            forms["%s base64 core %d" % (name, i)] = core.encode()
    return forms


LEAK_FORMS = leak_forms()


# ------------------------------------------------------------------------------------------------
# The upstream: echoes what it received, re-encoded in the ways the tests ask for


def hdr(req, name):
    """A received header value as text (the upstream parses heads as latin-1; values are UTF-8)."""
    v = req.header(name)
    return None if v is None else v.encode("latin-1").decode("utf-8", "replace")


def received(req):
    """The plaintexts the upstream received: (secret, weird, auth, cred)."""
    auth = hdr(req, "Authorization") or ""
    secret = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
    return secret, hdr(req, "X-Weird") or "", auth, hdr(req, "X-Basic-Cred") or ""


PREFIXES = [b"", b"\x01", b"\x01\x02", b"prefix-of-some-length-" + bytes(range(7))]
TAIL = b"-tail\x00\xfe\xff-end"


def body_for(kind, req):
    """(content_type, body bytes) of an echo of kind `kind` of the request `req`."""
    secret, weird, auth, cred = received(req)
    if kind == "echo":
        doc = {"method": req.method, "target": req.target,
               "headers": [[n, v.encode("latin-1").decode("utf-8", "replace")] for n, v in req.headers],
               "body": req.body.decode("utf-8", "replace")}
        return "application/json", json.dumps(doc).encode()
    if kind == "json":
        return "application/json", json.dumps({"auth": auth, "secret": secret, "weird": weird, "cred": cred}).encode()
    if kind == "json-utf8":
        return "application/json", json.dumps({"auth": auth, "secret": secret, "weird": weird, "cred": cred},
                                              ensure_ascii=False).encode()
    if kind == "percent":
        q = urllib.parse.quote
        url = ("https://cb.example/cb?token=" + q(secret, safe="") + "&auth=" + q(auth, safe="") +
               "&w=" + q(weird, safe="") + "&wp=" + urllib.parse.quote_plus(weird) +
               "&wl=" + lower_hex(q(weird, safe="")))
        path_url = "https://cb.example/" + q(weird)      # quote's default keeps '/'
        text = "redirect: %s\npath: %s\njson: %s\n" % (url, path_url, json.dumps({"url": url}))
        return "text/plain", text.encode()
    if kind == "base64":
        doc = {"secret": b64(secret), "secret_nopad": b64(secret, pad=False), "auth": b64(auth),
               "weird_url": b64(weird, url=True), "weird_url_nopad": b64(weird, url=True, pad=False),
               "basic": "Basic " + b64(cred)}
        for k, prefix in enumerate(PREFIXES):
            doc["blob%d" % k] = b64(prefix + secret.encode() + TAIL)
            doc["blob_url%d" % k] = b64(prefix + weird.encode() + TAIL, url=True)
        return "application/json", json.dumps(doc).encode()
    if kind == "ok":
        return "text/plain", b"ok"
    raise ValueError(kind)


def lab(req):
    """The handler of both upstreams: /[noscrub/|query/|body/]r/KIND[?framing=length|whole|close|chunk1][&pad=1]."""
    path = req.path
    for p in ("/noscrub", "/query", "/body"):
        if path.startswith(p + "/"):
            path = path[len(p):]
    q = urllib.parse.parse_qs(req.target.split("?", 1)[1] if "?" in req.target else "")
    framing = q.get("framing", ["length"])[0]
    if path == "/r/raw-body":
        return Reply(200, req.body, content_type=req.header("Content-Type") or "text/plain")
    if path == "/r/headers":
        secret, weird, auth, cred = received(req)
        headers = [("X-Echo-Auth", auth), ("X-Echo-Secret", secret),
                   # the UTF-8 bytes as received, written back as they are
                   ("X-Echo-Weird", req.header("X-Weird") or ""),
                   ("Set-Cookie", "session=%s; Path=/; HttpOnly" % secret),
                   ("Set-Cookie", "basic=%s; Path=/" % b64(cred)),
                   ("X-Echo-Basic", "Basic " + b64(cred)),
                   ("Location", "https://cb.example/cb?token=%s&w=%s" % (urllib.parse.quote(secret, safe=""),
                                                                          urllib.parse.quote(weird, safe="")))]
        return Reply(200, b"ok", headers=headers)
    if path == "/r/status-line":
        # The secret in the reason phrase, and in a field name (where no reference can stand).
        secret, weird, auth, cred = received(req)
        return Reply(401, b"no", reason="Bad token " + auth,
                     headers=[("X-" + secret, "1"), ("X-" + b64(secret).rstrip("="), "2"), ("X-Kept", "3"),
                              # field names are case-insensitive: re-cased echoes too
                              ("X-" + secret.lower(), "4"), ("X-Up-" + secret.upper(), "5")])
    if path == "/r/gzip":
        ctype, body = body_for("json", req)
        return Reply(200, gzip.compress(body), headers=[("Content-Encoding", "gzip")], content_type=ctype)
    if path == "/r/coding-echo":
        # An unknown Content-Encoding that reflects the Authorization value.
        return Reply(200, b"hi", headers=[("Content-Encoding", "x-" + (req.header("Authorization") or ""))])
    if path == "/r/gzip-identity":
        ctype, body = body_for("json", req)
        return Reply(200, body, headers=[("Content-Encoding", "identity")], content_type=ctype)
    if path == "/r/gzip-twice":
        # Two Content-Encoding fields: "identity" first, then "gzip" (the body is gzip).
        ctype, body = body_for("json", req)
        return Reply(200, gzip.compress(body), headers=[("Content-Encoding", "identity"), ("Content-Encoding", "gzip")],
                     content_type=ctype)
    if path == "/r/gzip-transfer":
        # A compressed transfer-coding: "Transfer-Encoding: gzip, chunked".
        ctype, body = body_for("json", req)
        z = gzip.compress(body)

        def act(req, w):
            w.head(200, [("Content-Type", ctype), ("Transfer-Encoding", "gzip, chunked")])
            w.chunk(z)
            w.end_chunks()
            return True
        return act
    kind = path[len("/r/"):]
    ctype, body = body_for(kind, req)
    if framing == "close":
        # Over TLS, close_notify before the close: a bare TCP close would be a truncation.
        return CleanClose(Reply(200, body, content_type=ctype, no_length=True))
    if framing == "chunk1":
        return Chunks([body[i:i + 1] for i in range(len(body))], content_type=ctype)
    if "pad" in q:  # past what sidekey scrubs whole before the head: always re-chunked
        body = body[:-1] + b', "pad": "' + b"p" * 20000 + b'"}'
    # whole: head and body in one write (they reach sidekey together, and it scrubs the body
    # before the head goes out).
    return Reply(200, body, content_type=ctype, one_write=framing == "whole")


# ------------------------------------------------------------------------------------------------
# One sidekey for the whole file, in front of a plain and a TLS upstream


class Env:
    pass


ENV = Env()


def setUpModule():
    ENV.tmp = tempfile.mkdtemp(prefix="sidekey-scrub-ca-")
    ca = TestCA(ENV.tmp)
    cert, key = ca.issue([HOST], stem="upstream")
    ENV.plain = Upstream(lab).start()
    ENV.tls = Upstream(lab, ssl_context=tls_server_context(cert, key)).start()
    ENV.sk = proxy_sidekey(fill(POLICY, PORT=ENV.plain.port), secrets={"s": SECRET, "weird": WEIRD},
                           config={"egress": {"resolve": {HOST + ":443": ENV.tls.addr}},
                                   "tls": {"upstream_ca_file": ca.cert}})
    ENV.sk.start()
    ENV.sk_ca = os.path.join(ENV.sk.data_dir, "ca.pem")


def tearDownModule():
    ENV.sk.__exit__(None, None, None)
    ENV.plain.stop()
    ENV.tls.stop()
    shutil.rmtree(ENV.tmp, ignore_errors=True)


class Transport:
    """How a test reaches the upstream through sidekey."""
    up = None

    def connect(self):
        raise NotImplementedError

    def target(self, path):
        raise NotImplementedError

    host = None


class PlainHTTP(Transport):
    """Absolute-form over plain HTTP, as a client with HTTP_PROXY does."""

    def __init__(self):
        self.up = ENV.plain
        self.host = ENV.plain.addr

    def connect(self):
        return RawClient(ENV.sk.proxy_addr, timeout=WAIT)

    def target(self, path):
        return self.up.url + path


class Intercepted(Transport):
    """CONNECT host:443, TLS to sidekey's leaf (trusting data_dir/ca.pem), origin-form inside."""

    def __init__(self):
        self.up = ENV.tls
        self.host = HOST

    def connect(self):
        c, status, resp = open_tunnel(ENV.sk.proxy_addr, HOST + ":443", timeout=WAIT)
        if status != 200:
            c.close()
            raise AssertionError("CONNECT refused: %r" % resp)
        return tls_over(c, ENV.sk_ca, server_hostname=HOST, timeout=WAIT)

    def target(self, path):
        return path


# ------------------------------------------------------------------------------------------------
# The cases, run over each transport


class ScrubCases:
    transport_class = None

    def setUp(self):
        self.t = self.transport_class()
        self.up = self.t.up

    def tearDown(self):
        self.assertIsNone(ENV.sk.proc.poll(), "sidekey died during the test:\n" + ENV.sk.logs()[-3000:])
        # Invariant 1: no log line, stdout line or file under sidekey's folder holds a value.
        ENV.sk.assert_never_contains(self, [SECRET, WEIRD, b64(SECRET), urllib.parse.quote(WEIRD, safe="")])

    # -- helpers ------------------------------------------------------------------------------
    def request(self, path, method="GET", headers=(), body=b"", version="1.1", head_request=False):
        """One request on a fresh connection; returns the RawResponse (raw = every byte received)."""
        if isinstance(body, str):
            body = body.encode()
        lines = ["%s %s HTTP/%s" % (method, self.t.target(path), version), "Host: " + self.t.host]
        lines += ["%s: %s" % h for h in headers]
        if body or method in ("POST", "PUT"):
            lines.append("Content-Length: %d" % len(body))
        c = self.t.connect()
        try:
            c.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            return c.read_response(head_request=head_request)
        finally:
            c.close()

    def assert_clean(self, raw, skip=()):
        """No plaintext, and no form of one, anywhere in the bytes the client received."""
        for name, form in LEAK_FORMS.items():
            if any(name.startswith(s) for s in skip):
                continue
            self.assertNotIn(form, raw, "the client received %s (%r) in:\n%r" % (name, form, raw[:3000]))

    def assert_upstream_got_secrets(self, req=None, weird=True):
        req = req or self.up.last()
        self.assertEqual(req.header("Authorization"), AUTH)
        if weird:
            self.assertEqual(hdr(req, "X-Weird"), WEIRD)
            self.assertEqual(hdr(req, "X-Basic-Cred"), CRED)

    def audit_of(self, r):
        rid = r.header("X-Sidekey-Request-Id")
        self.assertTrue(rid, r)
        return wait_audit(ENV.sk, rid)

    def scrubbed_total(self):
        return metric_value(metrics_text(ENV.sk), "sidekey_scrubbed_total") or 0.0

    # -- echo of the request ------------------------------------------------------------------
    def test_echo_of_the_injected_headers(self):
        before = self.scrubbed_total()
        r = self.request("/r/echo?pad=1", headers=[("Authorization", "Bearer agent-junk")])
        self.assertEqual(r.status, 200, r)
        self.assert_upstream_got_secrets()
        self.assert_clean(r.raw)
        doc = json.loads(r.body)
        got = {n.lower(): v for n, v in doc["headers"]}
        self.assertEqual(got["authorization"], "Bearer " + REF_S)
        self.assertEqual(got["x-weird"], REF_W)
        self.assertEqual(got["x-basic-cred"], "alice:" + REF_S)
        self.assertEqual(doc["target"], "/r/echo?pad=1", "the rest of the echo is intact")
        # The length changed, and the body is too large to be scrubbed before the head goes out:
        # re-chunked, no stale Content-Length.
        self.assertEqual((r.header("Transfer-Encoding") or "").lower(), "chunked", r.headers)
        self.assertIsNone(r.header("Content-Length"))
        rec = self.audit_of(r)
        self.assertEqual(rec["decision"], "inject")
        self.assertEqual(rec["rule"], "scrub")
        self.assertGreater(rec["scrubbed"], 0, rec)
        # The counter moves right after the audit line is written.
        self.assertTrue(wait_for(lambda: self.scrubbed_total() >= before + rec["scrubbed"], timeout=5),
                        "sidekey_scrubbed_total grows by the audit line's count (%s, was %s)"
                        % (self.scrubbed_total(), before))

    def test_a_body_that_came_with_its_head_keeps_a_content_length(self):
        # Scrubbed whole before the head goes out: the new length, not re-chunked; the same body
        # as when it comes one byte per chunk (scrubbed as it streams).
        streamed = self.request("/r/json?framing=chunk1")
        r = self.request("/r/json?framing=whole")
        self.assertEqual(r.status, 200, r)
        self.assert_clean(r.raw)
        self.assertIsNone(r.header("Transfer-Encoding"))
        self.assertEqual(r.header("Content-Length"), str(len(r.body)))
        self.assertEqual(r.body, streamed.body)
        self.assertEqual(json.loads(r.body)["secret"], REF_S)
        self.assertGreater(self.audit_of(r)["scrubbed"], 0)
        self.assertEqual(self.audit_of(r)["bytes_out"], self.audit_of(streamed)["bytes_out"],
                         "bytes_out counts the upstream's body either way")
        # Nothing follows the body on the connection: the next answer on it parses, and is clean.
        c = self.t.connect()
        try:
            for path in ("/r/json?framing=whole", "/r/ok"):
                c.send("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (self.t.target(path), self.t.host))
                got = c.read_response()
                self.assertEqual(got.status, 200, got.raw)
                self.assert_clean(got.raw)
            self.assertEqual(got.body, b"ok")
        finally:
            c.close()

    def test_echo_close_delimited_and_one_byte_chunks(self):
        # The same echo, framed by closing, and as one chunk per byte (every match split across
        # every feed): the same scrubbed body as when it comes in one piece.
        one = self.request("/r/json")
        self.assertEqual(one.status, 200, one)
        self.assert_clean(one.raw)
        for framing in ("close", "chunk1"):
            r = self.request("/r/json?framing=" + framing)
            self.assertEqual(r.status, 200, (framing, r))
            self.assert_clean(r.raw)
            self.assertEqual(r.body, one.body, framing)
        self.assertEqual(json.loads(one.body)["secret"], REF_S)

    def test_echo_in_response_headers(self):
        r = self.request("/r/headers")
        self.assertEqual(r.status, 200, r)
        self.assert_upstream_got_secrets()
        self.assert_clean(r.raw)
        self.assertEqual(r.header("X-Echo-Auth"), "Bearer " + REF_S)
        self.assertEqual(r.header("X-Echo-Secret"), REF_S)
        self.assertEqual(r.header("X-Echo-Weird").encode("latin-1").decode("utf-8"), REF_W)
        cookies = r.header_all("Set-Cookie")
        self.assertEqual(len(cookies), 2, r.headers)
        self.assertEqual(cookies[0], "session=%s; Path=/; HttpOnly" % REF_S)
        basic = cookies[1][len("basic="):].split(";")[0]
        self.assertEqual(unb64(basic).rstrip(b" "), ("alice:" + REF_S).encode())
        self.assertEqual(unb64(r.header("X-Echo-Basic")[len("Basic "):]).rstrip(b" "), ("alice:" + REF_S).encode())
        loc = urllib.parse.parse_qs(urllib.parse.urlsplit(r.header("Location")).query)
        self.assertEqual(loc["token"], [REF_S])
        self.assertEqual(loc["w"], [REF_W])
        self.assertGreater(self.audit_of(r)["scrubbed"], 0)

    def test_reason_phrase_and_field_names_are_scrubbed(self):
        r = self.request("/r/status-line")
        self.assertEqual(r.status, 401, r)
        self.assert_upstream_got_secrets()
        self.assert_clean(r.raw)
        self.assertEqual(r.reason, "Bad token Bearer " + REF_S)
        # A field name cannot hold a reference: the fields named after the secret are dropped.
        self.assertEqual(r.header("X-Kept"), "3", r.headers)
        self.assertFalse([n for n, _ in r.headers if SECRET.lower() in n.lower()], r.headers)
        self.assertEqual([n for n, _ in r.headers if n.lower().startswith("x-") and n != "X-Sidekey-Request-Id"],
                         ["X-Kept"], r.headers)
        self.assertGreater(self.audit_of(r)["scrubbed"], 0)

    def test_head_response_headers_are_scrubbed(self):
        r = self.request("/r/headers", method="HEAD", head_request=True)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.up.last().method, "HEAD")
        self.assert_clean(r.raw)
        self.assertEqual(r.header("X-Echo-Auth"), "Bearer " + REF_S)

    def test_json_escaped_echo(self):
        for kind in ("json", "json-utf8"):
            r = self.request("/r/" + kind)
            self.assertEqual(r.status, 200, (kind, r))
            self.assert_upstream_got_secrets()
            self.assertIn(json_inner(WEIRD).encode() if kind == "json" else json_inner(WEIRD, False).encode(),
                          body_for(kind, self.up.last())[1], "the upstream did emit the escaped form")
            self.assert_clean(r.raw)
            doc = json.loads(r.body)
            self.assertEqual(doc, {"auth": "Bearer " + REF_S, "secret": REF_S, "weird": REF_W,
                                   "cred": "alice:" + REF_S}, kind)

    def test_percent_encoded_echo(self):
        r = self.request("/r/percent")
        self.assertEqual(r.status, 200, r)
        self.assert_upstream_got_secrets()
        self.assert_clean(r.raw)
        lines = dict(line.split(": ", 1) for line in r.body.decode().splitlines())
        for url in (lines["redirect"], json.loads(lines["json"])["url"]):
            q = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
            self.assertEqual(q["token"], [REF_S], url)
            self.assertEqual(q["auth"], ["Bearer " + REF_S], url)
            self.assertEqual(q["w"], [REF_W], url)
            self.assertEqual(q["wp"], [REF_W], url)   # '+' for space
            self.assertEqual(q["wl"], [REF_W], url)   # lower-case hex
        self.assertEqual(urllib.parse.unquote(urllib.parse.urlsplit(lines["path"]).path[1:]), REF_W)

    def test_base64_echo_whole_and_inside_blobs(self):
        r = self.request("/r/base64")
        self.assertEqual(r.status, 200, r)
        self.assert_upstream_got_secrets()
        self.assert_clean(r.raw)
        doc = json.loads(r.body)
        # Whole values decode to the reference (unpadded forms may carry up to 2 trailing spaces).
        self.assertEqual(unb64(doc["secret"]), REF_S.encode())
        self.assertEqual(unb64(doc["secret_nopad"]).rstrip(b" "), REF_S.encode())
        self.assertEqual(unb64(doc["auth"]), ("Bearer " + REF_S).encode())
        self.assertEqual(unb64(doc["weird_url"], url=True).rstrip(b" "), REF_W.encode())
        self.assertEqual(unb64(doc["weird_url_nopad"], url=True).rstrip(b" "), REF_W.encode())
        self.assertTrue(doc["basic"].startswith("Basic "))
        self.assertEqual(unb64(doc["basic"][6:]).rstrip(b" "), ("alice:" + REF_S).encode())
        # Inside longer blobs at offsets 0, 1, 2 (and 29 ≡ 2): the bytes around stay intact, the
        # reference stands where the secret was, and the blob still decodes.
        for k, prefix in enumerate(PREFIXES):
            for key, url, plain, ref in (("blob%d", False, SECRET, REF_S), ("blob_url%d", True, WEIRD, REF_W)):
                blob = doc[key % k]
                self.assertEqual(len(blob) % 4, 0, (key % k, blob))
                dec = unb64(blob, url=url)
                self.assertNotIn(plain.encode(), dec, key % k)
                self.assertIn(ref.encode(), dec, (key % k, dec))
                self.assertTrue(dec.startswith(prefix), (key % k, dec))
                self.assertTrue(dec.endswith(TAIL), (key % k, dec))

    def test_query_value_injected_and_echoed(self):
        r = self.request("/query/r/echo?a=1")
        self.assertEqual(r.status, 200, r)
        req = self.up.last()
        self.assertEqual(req.query.get("key"), [WEIRD], req.target)
        self.assertEqual(req.header("Authorization"), AUTH)
        self.assert_clean(r.raw)
        target = json.loads(r.body)["target"]
        self.assertEqual(urllib.parse.parse_qs(urllib.parse.urlsplit(target).query)["key"], [REF_W], target)

    def test_body_reference_echoed_raw(self):
        # Values written into the body (references: [body]) are scrubbed too.
        body = json.dumps({"k": REF_S, "w": REF_W, "n": 1})
        r = self.request("/body/r/raw-body", method="POST", headers=[("Content-Type", "application/json")], body=body)
        self.assertEqual(r.status, 200, r)
        self.assertNotIn(b"{{", self.up.last().body,
                         "precondition: the rule substitutes body references, but the upstream got them literally")
        self.assertEqual(json.loads(self.up.last().body), {"k": SECRET, "w": WEIRD, "n": 1})
        self.assert_clean(r.raw)
        self.assertEqual(json.loads(r.body), {"k": REF_S, "w": REF_W, "n": 1})
        form = "a=1&key=" + urllib.parse.quote(REF_W, safe="{}")
        r = self.request("/body/r/raw-body", method="POST",
                         headers=[("Content-Type", "application/x-www-form-urlencoded")], body=form)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(urllib.parse.parse_qs(self.up.last().body.decode())["key"], [WEIRD])
        self.assert_clean(r.raw)
        self.assertEqual(urllib.parse.parse_qs(r.body.decode()), {"a": ["1"], "key": [REF_W]})

    # -- compression ----------------------------------------------------------------------------
    def test_identity_is_asked_for(self):
        r = self.request("/r/ok", headers=[("Accept-Encoding", "gzip, deflate, br")])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.up.last().header_all("Accept-Encoding"), ["identity"])
        r = self.request("/noscrub/r/ok", headers=[("Accept-Encoding", "gzip, deflate, br")])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.up.last().header_all("Accept-Encoding"), ["gzip, deflate, br"],
                         "without scrubbing, the client's Accept-Encoding goes upstream as it is")

    def test_gzip_despite_identity_is_refused(self):
        r = self.request("/r/gzip", headers=[("Accept-Encoding", "gzip")])
        self.assert_upstream_got_secrets()
        self.assertEqual(self.up.last().header("Accept-Encoding"), "identity")
        self.assertEqual(r.status, 502, r)
        err = json.loads(r.body)["error"]
        self.assertEqual(err["code"], "upstream_connect_failed", err)
        self.assertIn("Content-Encoding", err["message"])
        self.assertEqual(err["request_id"], r.header("X-Sidekey-Request-Id"))
        self.assertIsNone(r.header("Content-Encoding"))
        self.assertFalse(r.body.startswith(b"\x1f\x8b"), "no gzip body reaches the client")
        self.assert_clean(r.raw)
        rec = self.audit_of(r)
        self.assertEqual(rec["status"], 502)

    def test_refusal_of_a_coding_never_repeats_the_plaintext(self):
        # The 502 names the upstream's Content-Encoding: a value the upstream controls, which
        # here carries what sidekey wrote into the request.
        r = self.request("/r/coding-echo")
        self.assert_upstream_got_secrets()
        self.assertEqual(r.status, 502, r)
        self.assertEqual(json.loads(r.body)["error"]["code"], "upstream_connect_failed")
        self.assert_clean(r.raw)

    def test_gzip_with_identity_label_is_scrubbed(self):
        r = self.request("/r/gzip-identity")
        self.assertEqual(r.status, 200, r)
        self.assert_clean(r.raw)
        self.assertEqual(json.loads(r.body)["auth"], "Bearer " + REF_S)

    def test_gzip_behind_a_leading_identity_field_is_not_relayed(self):
        # Content-Encoding: identity, then Content-Encoding: gzip: the body is gzip all the same.
        r = self.request("/r/gzip-twice")
        self.assert_upstream_got_secrets()
        self.assert_clean(r.raw)
        if r.body.startswith(b"\x1f\x8b"):
            self.assertNotIn(SECRET.encode(), gzip.decompress(r.body),
                             "a gzip body went past the scrubber to the client (status %d, headers %r)"
                             % (r.status, r.headers))

    def test_gzip_transfer_coding_is_not_relayed(self):
        # Transfer-Encoding: gzip, chunked: a compressed body that Content-Encoding does not show.
        r = self.request("/r/gzip-transfer")
        self.assert_upstream_got_secrets()
        self.assert_clean(r.raw)
        if r.body.startswith(b"\x1f\x8b"):
            self.assertNotIn(SECRET.encode(), gzip.decompress(r.body),
                             "a gzip transfer-coded body went past the scrubber to the client (status %d, "
                             "headers %r)" % (r.status, r.headers))

    # -- split across chunks and reads ----------------------------------------------------------
    def test_secret_split_across_chunks_at_every_offset(self):
        # Records "NNN:<value>|"; each chunk ends inside a value, at offset 1 .. len-1, so every
        # split position of every value is seen. The values: the secret, the whole Authorization
        # value, the JSON-escaped and the percent-encoded weird secret.
        values = [(SECRET, REF_S), (AUTH, "Bearer " + REF_S), (json_inner(WEIRD), json_inner(REF_W)),
                  (urllib.parse.quote(WEIRD, safe=""), urllib.parse.quote(REF_W, safe=""))]

        def pieces(req):
            secret, weird, auth, cred = received(req)
            live = {SECRET: secret, AUTH: auth, json_inner(WEIRD): json_inner(weird),
                    urllib.parse.quote(WEIRD, safe=""): urllib.parse.quote(weird, safe="")}
            out, pending, n = [], b"", 0
            for v, _ in values:
                val = live[v].encode()
                for k in range(1, len(val)):
                    out.append(pending + b"%03d:" % n + val[:k])
                    pending = val[k:] + b"|"
                    n += 1
            out.append(pending + b"end")
            return out

        expected, n = b"", 0
        for v, ref in values:
            for k in range(1, len(v.encode())):
                expected += b"%03d:" % n + ref.encode() + b"|"
                n += 1
        expected += b"end"
        trailers = [("X-Trailer-Auth", AUTH), ("X-Trailer-Secret", SECRET)]
        self.up.next(Chunks(pieces, trailers=trailers))
        r = self.request("/r/split")
        self.assertEqual(r.status, 200, r)
        self.assert_upstream_got_secrets()
        self.assert_clean(r.raw)   # trailers included: they are in r.raw if relayed
        self.assertEqual(r.body, expected)
        self.assertEqual(self.audit_of(r)["scrubbed"], n, "one replacement per value")

    def test_secret_split_across_reads(self):
        # Separate writes with a pause between them, under a Content-Length: a match split across
        # the upstream reads, not only across chunks.
        self.up.next(Chunks(lambda req: [b"x" * 3000 + received(req)[0][:5].encode(),
                                         received(req)[0][5:17].encode(),
                                         received(req)[0][17:].encode() + b"y" * 100],
                            chunked=False, delay=0.05))
        r = self.request("/r/reads")
        self.assertEqual(r.status, 200, r)
        self.assert_clean(r.raw)
        self.assertEqual(r.body, b"x" * 3000 + REF_S.encode() + b"y" * 100)

    # -- server-sent events ---------------------------------------------------------------------
    def test_sse_events_are_scrubbed_one_by_one(self):
        events = ['{"token":"%s","i":0}' % SECRET, '{"auth":"%s","i":1}' % AUTH,
                  '{"weird":%s,"i":2}' % json.dumps(WEIRD), "[DONE]"]
        gates = [threading.Event() for _ in events]
        sse = Sse(events, gates=gates)
        self.up.next(sse)
        raw = b""
        try:
            c = self.t.connect()
            try:
                c.send("POST %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\nContent-Length: 2\r\n\r\n{}"
                       % (self.t.target("/r/sse"), self.t.host))
                gates[0].set()
                status, headers = c.read_head_only()
                self.assertEqual(status, 200)
                raw += repr(headers).encode()
                body = BodyReader(c, headers)
                expected = ['{"token":"%s","i":0}' % REF_S, '{"auth":"Bearer %s","i":1}' % REF_S,
                            '{"weird":"%s","i":2}' % REF_W, "[DONE]"]
                for i, ev in enumerate(expected):
                    try:
                        got = body.read_until(b"\n\n")
                    except OSError as e:
                        self.fail("event %d did not reach the client while the upstream waited (sent so far: %s): %r"
                                  % (i, sse.sent, e))
                    raw += got
                    self.assertEqual(got, ("data: %s\n\n" % ev).encode(), i)
                    self.assertEqual(sse.sent, list(range(i + 1)), "event %d arrived before the next was sent" % i)
                    if i + 1 < len(gates):
                        gates[i + 1].set()
                raw += body.read_all()
            finally:
                c.close()
        finally:
            for g in gates:
                g.set()
        self.assert_upstream_got_secrets()
        self.assert_clean(raw)

    # -- WebSocket ------------------------------------------------------------------------------
    def test_websocket_frames_from_the_upstream_are_scrubbed(self):
        # Invariant 13.1 covers every response: after the 101, the upstream answers the client's
        # first frame with one that repeats the Authorization value it received.
        def act(req, w):
            w.head(101, [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                         ("Sec-WebSocket-Accept", ws_accept(req.header("Sec-WebSocket-Key"))),
                         ("X-Echo-Auth", req.header("Authorization") or "")], reason="Switching Protocols")
            try:
                ws_read_frame(w.reader)
                w.send(ws_frame("you sent " + (req.header("Authorization") or ""), mask=False))
                ws_read_frame(w.reader)   # the client's close
            except (OSError, ValueError, _Closed):
                pass
            return False
        self.up.next(act)
        key = base64.b64encode(os.urandom(16)).decode()
        c = self.t.connect()
        raw = b""
        try:
            c.send("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (self.t.target("/r/ws"), self.t.host, key))
            status, headers = c.read_head_only()
            self.assertEqual(status, 101, headers)
            raw += repr(headers).encode()
            self.assertEqual(dict((n.lower(), v) for n, v in headers).get("x-echo-auth"), "Bearer " + REF_S)
            c.send(ws_frame("hello"))
            opcode, payload, masked = ws_read_frame(c.reader)
            raw += payload
            c.send(ws_frame(b"\x03\xe8", opcode=8))
        finally:
            c.close()
        self.assert_upstream_got_secrets()
        self.assert_clean(raw)

    # -- scrub: false ---------------------------------------------------------------------------
    def test_scrub_false_passes_the_echo_through(self):
        # The same echoes on a `scrub: false` rule come back with the plaintext in every form this
        # file looks for: the scrubber removed it above, and assert_clean would have seen it.
        r = self.request("/noscrub/r/json")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(json.loads(r.body), {"auth": AUTH, "secret": SECRET, "weird": WEIRD, "cred": CRED},
                         "with scrub: false the echo comes back untouched")
        self.assertIsNotNone(r.header("Content-Length"), "nothing to scrub: the length is kept")
        self.assertEqual(self.audit_of(r)["rule"], "noscrub")
        seen = set()
        for kind in ("json", "json-utf8", "percent", "base64", "headers", "gzip"):
            r = self.request("/noscrub/r/" + kind)
            self.assertEqual(r.status, 200, (kind, r))
            rec = self.audit_of(r)
            self.assertEqual((rec["rule"], rec["scrubbed"]), ("noscrub", 0), kind)
            with self.assertRaises(AssertionError, msg="the unscrubbed %s echo must be caught" % kind):
                self.assert_clean(r.raw if kind != "gzip" else gzip.decompress(r.body))
            seen |= {name for name, form in LEAK_FORMS.items() if form in r.raw}
            if kind == "headers":
                self.assertEqual(r.header("X-Echo-Auth"), AUTH)
            if kind == "gzip":
                self.assertEqual(r.header("Content-Encoding"), "gzip", "without scrubbing a gzip body is relayed")
                self.assertIn(SECRET.encode(), gzip.decompress(r.body))
        # The checks above are live: each form the upstream emits is one assert_clean knows.
        for name in ("WEIRD json ascii", "WEIRD json utf8", "WEIRD quote", "WEIRD quote /", "WEIRD quote_plus",
                     "WEIRD quote lower", "SECRET base64 core 0", "SECRET base64 core 2", "SECRET base64 core 4",
                     "WEIRD base64 core 1", "WEIRD base64 core 3", "WEIRD base64 core 5", "AUTH raw", "CRED raw"):
            self.assertIn(name, seen)


class PlainHTTPTest(ScrubCases, unittest.TestCase):
    transport_class = PlainHTTP

    def test_http10_client_gets_a_scrubbed_body_with_its_new_length(self):
        # A small body comes with its head: it is scrubbed whole and keeps a Content-Length (the
        # scrubbed length), so an HTTP/1.0 client that asks for keep-alive keeps its connection.
        # Nothing follows the body: the connection closes at once, or the next answer parses.
        for keep_alive in (False, True):
            ask = "Connection: keep-alive\r\n" if keep_alive else ""
            with RawClient(ENV.sk.proxy_addr, timeout=WAIT) as c:
                c.send("GET %s/r/json?framing=whole HTTP/1.0\r\n%s\r\n" % (self.t.up.url, ask))
                r = c.read_response()
                self.assertEqual(r.status, 200, r)
                self.assertIsNone(r.header("Transfer-Encoding"))
                self.assertEqual(r.header("Content-Length"), str(len(r.body)))
                if keep_alive:
                    c.send("GET %s/r/ok HTTP/1.0\r\n%s\r\n" % (self.t.up.url, ask))
                    nxt = c.read_response()
                    self.assertEqual((nxt.status, nxt.body), (200, b"ok"), nxt.raw)
                    self.assert_clean(nxt.raw)
                else:
                    self.assertTrue(c.is_closed(), "bytes followed the body, or the connection stayed open")
            self.assert_clean(r.raw)
            self.assertEqual(json.loads(r.body)["auth"], "Bearer " + REF_S)
            self.assertGreater(self.audit_of(r)["scrubbed"], 0)

    def test_http10_client_gets_a_large_scrubbed_body_close_delimited(self):
        # Too large to scrub before the head: streamed, so no length; an HTTP/1.0 client knows no
        # chunked coding, and the connection closes even when it asked for keep-alive.
        for ask in ("", "Connection: keep-alive\r\n"):
            with RawClient(ENV.sk.proxy_addr, timeout=WAIT) as c:
                c.send("GET %s/r/json?pad=1 HTTP/1.0\r\n%s\r\n" % (self.t.up.url, ask))
                r = c.read_response()
                self.assertEqual(r.status, 200, r)
                self.assertIsNone(r.header("Transfer-Encoding"))
                self.assertIsNone(r.header("Content-Length"))
                self.assertTrue(c.is_closed())
            self.assert_clean(r.raw)
            self.assertEqual(json.loads(r.body)["auth"], "Bearer " + REF_S)

    def test_audit_lines_never_hold_a_value(self):
        self.request("/r/echo")
        recs = audit_records(ENV.sk)
        self.assertTrue(recs)
        for rec in recs:
            self.assertIn("scrubbed", rec)
        self.assert_clean(ENV.sk.logs().encode())


class InterceptedTest(ScrubCases, unittest.TestCase):
    transport_class = Intercepted


if __name__ == "__main__":
    unittest.main()
