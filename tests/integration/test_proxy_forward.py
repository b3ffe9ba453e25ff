"""The egress proxy forwarding absolute-form HTTP (HTTP_PROXY) and reverse routes, against the real
binary with a recording upstream: injection, audit, request ids, hop-by-hop headers, keep-alive,
uploads, chunked bodies, HTTP/1.0, Expect: 100-continue, HEAD, 204/304 (SPEC section 5)."""
import collections
import concurrent.futures
import hashlib
import json
import os
import subprocess
import shutil
import tempfile
import time
import unittest

import requests

from upstreams import (Echo, Raw, RawClient, Reply, Upstream, audit_records, curl, curl_i, fill, proxy_sidekey,
                       wait_audit)
from harness import wait_for

SECRET = "sk-fwd-PLAINTEXT-7d41c0ffee93"
AGENT_SECRET = "tok-agent-PLAINTEXT-0a1b2c"

POLICY = """version: 1
default: deny
secrets:
  fwd:
    hosts: ["http://127.0.0.1:@PORT@"]
  agent_tok:
    hosts: ["http://127.0.0.1:@PORT@"]
routes:
  - prefix: /svc/
    upstream: http://127.0.0.1:@PORT@/base/
rules:
  - name: local-inject
    match: { hosts: ["127.0.0.1:@PORT@"] }
    inject:
      headers: { Authorization: "Bearer {{secrets.fwd}}" }
"""

HOP_BY_HOP = ["connection", "keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate", "te",
              "trailer", "upgrade"]


class NameLookupTest(unittest.TestCase):
    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("strace"), "needs root and strace (sidekey is not dumpable)")
    def test_a_pooled_connection_is_reused_without_resolving_the_name_again(self):
        # The name is resolved and vetted when a connection is dialed; a pooled connection to the
        # same destination is reused without a lookup. glibc's getaddrinfo reads /etc/hosts on every
        # call, so the lookups show as opens of /etc/hosts.
        up = Upstream(Reply(200, b"ok")).start()
        self.addCleanup(up.stop)
        sk = proxy_sidekey("version: 1\ndefault: allow\n", config={"workers": 1},
                           allow_private=False)
        sk.config["egress"] = {"allow_private": ["127.0.0.0/8", "::1/128"]}
        with sk:
            trace = os.path.join(sk.dir, "strace.txt")
            tracer = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=openat", "-o", trace, "-p", str(sk.proc.pid)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                time.sleep(1.5)  # attached to every thread
                with requests.Session() as s:
                    for i in range(10):
                        r = s.get("http://localhost:%d/n/%d" % (up.port, i), proxies={"http": sk.proxy_url}, timeout=15)
                        self.assertEqual(r.status_code, 200, r.text)
            finally:
                tracer.terminate()
                tracer.wait(timeout=15)
            with open(trace) as f:
                lookups = sum(1 for line in f if "/etc/hosts" in line)
        self.assertEqual(len(up.requests), 10)
        self.assertEqual(lookups, 1, "one lookup when the connection was dialed, none for the pooled reuses")


class ForwardTest(unittest.TestCase):
    """One upstream and one sidekey per test: connection counts and audit lines stay the test's own."""

    upstream_action = None

    def setUp(self):
        self.up = Upstream(self.upstream_action or Reply(200, b"upstream-says-ok")).start()
        self.addCleanup(self.up.stop)
        self.sk = proxy_sidekey(fill(POLICY, PORT=self.up.port), secrets={"fwd": SECRET, "agent_tok": AGENT_SECRET})
        self.sk.start()
        self.addCleanup(self.sk.__exit__, None, None, None)
        self.client_texts = []   # everything the client received, checked for plaintext at the end
        self.proxies = {"http": self.sk.proxy_url}

    def tearDown(self):
        self.assertIsNone(self.sk.proc.poll(), "sidekey died during the test:\n" + self.sk.logs()[-2000:])
        # Invariant 1 for what this test saw: no client response, log line or file holds a value.
        # (Skipped by tests whose upstream echoes the request back: scrubbing comes later.)
        if getattr(self, "check_leaks", True):
            self.sk.assert_never_contains(self, [SECRET, AGENT_SECRET], self.client_texts)

    def keep(self, r):
        self.client_texts.append(r.text if hasattr(r, "text") else str(r))
        if hasattr(r, "headers"):
            self.client_texts.append(json.dumps(dict(r.headers)))
        return r

    def get(self, path, **kw):
        kw.setdefault("timeout", 15)
        return self.keep(requests.get(self.up.url + path, proxies=self.proxies, **kw))

    # -- injection, audit, request id ---------------------------------------------------------
    def test_curl_absolute_form_injects_the_secret(self):
        rc, out, err = curl("-i", "-x", self.sk.proxy_url, self.up.url + "/v1/models?limit=5&q=zq-query-value",
                            "-H", "Authorization: Bearer agent-supplied-junk")
        self.assertEqual(rc, 0, err)
        self.client_texts.append(out)
        self.assertIn(" 200 ", out.splitlines()[0])
        self.assertIn("upstream-says-ok", out)
        got = self.up.requests
        self.assertEqual(len(got), 1)
        req = got[0]
        self.assertEqual(req.method, "GET")
        self.assertEqual(req.target, "/v1/models?limit=5&q=zq-query-value", "origin-form upstream, query kept")
        self.assertEqual(req.header_all("Authorization"), ["Bearer " + SECRET],
                         "the template replaces the agent's header; exactly one Authorization")
        self.assertEqual(req.header("Host"), "127.0.0.1:%d" % self.up.port)

        rid = next(line.split(":", 1)[1].strip() for line in out.splitlines()
                   if line.lower().startswith("x-sidekey-request-id:"))
        rec = wait_audit(self.sk, rid)
        self.assertEqual(rec["rule"], "local-inject")
        self.assertEqual(rec["decision"], "inject")
        self.assertEqual(rec["secrets"], ["fwd"])
        self.assertIn("header:Authorization", rec["injected"])
        self.assertEqual(rec["status"], 200)
        self.assertEqual(rec["method"], "GET")
        self.assertEqual(rec["scheme"], "http")
        self.assertEqual(rec["host"], "127.0.0.1")
        self.assertEqual(rec["port"], self.up.port)
        self.assertEqual(rec["path"], "/v1/models", "query values are dropped from the audit path")
        for key in ("ts", "client", "bytes_in", "bytes_out", "duration_ms", "upstream_ms", "scrubbed", "error"):
            self.assertIn(key, rec)
        self.assertNotIn("zq-query-value", json.dumps(rec))
        self.assertNotIn(SECRET, json.dumps(rec))

    def test_requests_agent_references_in_header_and_query(self):
        r = self.get("/v1/search?key={{secrets.agent_tok}}&plain=1",
                     headers={"X-Api-Key": "prefix-{{ secrets.agent_tok }}-suffix"})
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.text, "upstream-says-ok")
        req = self.up.requests[0]
        self.assertEqual(req.header("X-Api-Key"), "prefix-%s-suffix" % AGENT_SECRET)
        self.assertEqual(req.query["key"], [AGENT_SECRET])
        self.assertEqual(req.query["plain"], ["1"])
        self.assertEqual(req.header("Authorization"), "Bearer " + SECRET)
        self.assertNotIn(b"{{", req.raw, "no literal reference goes upstream")
        rec = wait_audit(self.sk, r.headers["X-Sidekey-Request-Id"])
        self.assertEqual(sorted(rec["secrets"]), ["agent_tok", "fwd"])
        self.assertIn("header:X-Api-Key", rec["injected"])
        self.assertIn("query:key", rec["injected"])
        self.assertEqual(rec["path"], "/v1/search")

    def test_request_id_on_every_response_and_in_the_audit_line(self):
        ok = self.get("/a")
        denied = self.keep(requests.get("http://203.0.113.9/x", proxies=self.proxies, timeout=15))
        bad = self.keep(requests.get(self.up.url + "/b?k={{secrets.nope}}", proxies=self.proxies, timeout=15))
        route_miss = self.keep(requests.get(self.sk.proxy_url + "/not-a-route/", timeout=15))
        ids = []
        for r, status in ((ok, 200), (denied, 403), (bad, 403), (route_miss, 400)):
            self.assertEqual(r.status_code, status, r.text)
            rid = r.headers.get("X-Sidekey-Request-Id")
            self.assertTrue(rid, "X-Sidekey-Request-Id missing on a %d" % status)
            ids.append(rid)
            rec = wait_audit(self.sk, rid)
            self.assertEqual(rec["status"], status)
            if status != 200:
                self.assertEqual(r.json()["error"]["request_id"], rid)
                self.assertEqual(rec["error"], r.json()["error"]["code"])
        self.assertEqual(len(set(ids)), len(ids), "request ids are unique")

    def test_many_requests_one_audit_line_each(self):
        with requests.Session() as s:
            ids = []
            for i in range(10):
                r = self.keep(s.get(self.up.url + "/n/%d" % i, proxies=self.proxies, timeout=15))
                self.assertEqual(r.status_code, 200)
                ids.append(r.headers["X-Sidekey-Request-Id"])
        for rid in ids:
            wait_audit(self.sk, rid)
        self.assertEqual(len([a for a in audit_records(self.sk) if a["request_id"] in ids]), 10)

    def test_concurrent_requests_leave_whole_audit_lines_none_lost(self):
        # A worker writes the lines of requests that finish in one turn of its event loop together:
        # under concurrency every line must still be whole, and each request's line there once.
        def run(n):
            out = []
            with requests.Session() as s:
                for i in range(25):
                    r = s.get(self.up.url + "/c/%d/%d" % (n, i), proxies=self.proxies, timeout=15)
                    out.append((r.status_code, r.headers.get("X-Sidekey-Request-Id")))
            return out
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = [x for part in pool.map(run, range(8)) for x in part]
        self.assertEqual([status for status, _ in results], [200] * 200)
        ids = [rid for _, rid in results]
        for rid in ids:
            wait_audit(self.sk, rid)
        lines = [l for l in self.sk.logs().splitlines() if '"event":"audit"' in l]
        records = [json.loads(l) for l in lines]  # a torn or merged line does not parse
        counts = collections.Counter(r["request_id"] for r in records)
        for rid in ids:
            self.assertEqual(counts[rid], 1, "audit lines for %s" % rid)

    # -- hop-by-hop headers (invariant 11) and Host ----------------------------------------------
    def test_hop_by_hop_headers_never_reach_the_upstream(self):
        with RawClient(self.sk.proxy_addr) as c:
            c.send("GET %s/hop HTTP/1.1\r\n"
                   "Host: attacker.example\r\n"
                   "Connection: keep-alive, X-Listed-Hop\r\n"
                   "Connection: X-Second-Listed\r\n"
                   "X-Listed-Hop: must-not-pass\r\n"
                   "X-Second-Listed: must-not-pass\r\n"
                   "Keep-Alive: timeout=5, max=100\r\n"
                   "Proxy-Connection: keep-alive\r\n"
                   "Proxy-Authorization: Basic cHJveHk6c2VjcmV0\r\n"
                   "Proxy-Authenticate: Basic realm=x\r\n"
                   "TE: trailers, deflate\r\n"
                   "Trailer: X-Checksum\r\n"
                   "Upgrade: h2c\r\n"
                   "X-End-To-End: kept\r\n"
                   "\r\n" % self.up.url)
            r = c.read_response()
        self.client_texts.append(r.raw.decode("latin-1"))
        self.assertEqual(r.status, 200, r.body)
        req = self.up.requests[0]
        names = req.header_names()
        for h in HOP_BY_HOP + ["x-listed-hop", "x-second-listed"]:
            self.assertNotIn(h, names, "%s reached the upstream: %r" % (h, req.headers))
        self.assertNotIn(b"cHJveHk6c2VjcmV0", req.raw, "Proxy-Authorization credentials reached the upstream")
        self.assertEqual(req.header("X-End-To-End"), "kept")
        self.assertEqual(req.header_all("Host"), ["127.0.0.1:%d" % self.up.port],
                         "Host comes from the absolute URI, not from the client's Host header")

    def test_hop_by_hop_headers_of_the_response_stop_at_sidekey(self):
        self.up.next(Reply(200, b"resp", headers=[
            ("Connection", "X-Resp-Hop"), ("X-Resp-Hop", "no"), ("Keep-Alive", "timeout=99"),
            ("Proxy-Authenticate", "Basic realm=upstream"), ("Trailer", "X-Sum"), ("Upgrade", "h2c"),
            ("X-Resp-Kept", "yes")]))
        with RawClient(self.sk.proxy_addr) as c:
            c.send("GET %s/resp HTTP/1.1\r\nHost: x\r\n\r\n" % self.up.url)
            r = c.read_response()
        self.assertEqual(r.status, 200)
        names = [n.lower() for n, _ in r.headers]
        for h in ("x-resp-hop", "keep-alive", "proxy-authenticate", "trailer", "upgrade"):
            self.assertNotIn(h, names, "%s from the upstream reached the client: %r" % (h, r.headers))
        self.assertEqual(r.header("X-Resp-Kept"), "yes")
        self.assertEqual(r.body, b"resp")

    # -- keep-alive on both sides ---------------------------------------------------------------
    def test_keep_alive_on_both_sides(self):
        with RawClient(self.sk.proxy_addr) as c:
            for i in range(6):
                c.send("GET %s/ka/%d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % (self.up.url, i))
                r = c.read_response()
                self.assertEqual(r.status, 200, r.body)
                self.assertEqual(r.body, b"upstream-says-ok")
                self.assertNotEqual((r.header("Connection") or "").lower(), "close")
        self.assertEqual([q.path for q in self.up.requests], ["/ka/%d" % i for i in range(6)])
        self.assertEqual(self.up.connections, 1,
                         "six requests on one client connection used %d upstream connections" % self.up.connections)
        self.assertEqual({q.conn_id for q in self.up.requests}, {1})

    def test_keep_alive_with_requests_session(self):
        with requests.Session() as s:
            for i in range(5):
                r = self.keep(s.get(self.up.url + "/s/%d" % i, proxies=self.proxies, timeout=15))
                self.assertEqual(r.status_code, 200)
        self.assertEqual(len(self.up.requests), 5)
        self.assertEqual(self.up.connections, 1)

    def test_pipelined_requests_are_answered_in_order(self):
        with RawClient(self.sk.proxy_addr) as c:
            c.send("".join("GET %s/p/%d HTTP/1.1\r\nHost: x\r\n\r\n" % (self.up.url, i) for i in range(3)))
            for i in range(3):
                r = c.read_response()
                self.assertEqual(r.status, 200)
        self.assertEqual([q.path for q in self.up.requests], ["/p/0", "/p/1", "/p/2"])

    def test_connection_close_from_the_client_closes_after_the_response(self):
        with RawClient(self.sk.proxy_addr) as c:
            c.send("GET %s/close HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % self.up.url)
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertEqual((r.header("Connection") or "").lower(), "close")
            self.assertTrue(c.is_closed(), "sidekey kept the connection open after Connection: close")

    # -- request bodies -----------------------------------------------------------------------
    def test_large_post_body_with_content_length(self):
        body = os.urandom(1 << 20) * 12   # 12 MiB
        r = self.keep(requests.post(self.up.url + "/upload", data=body, proxies=self.proxies, timeout=60))
        self.assertEqual(r.status_code, 200)
        req = self.up.requests[0]
        self.assertEqual(req.header("Content-Length"), str(len(body)))
        self.assertFalse(req.chunked)
        self.assertEqual(len(req.body), len(body))
        self.assertEqual(hashlib.sha256(req.body).digest(), hashlib.sha256(body).digest())
        rec = wait_audit(self.sk, r.headers["X-Sidekey-Request-Id"])
        self.assertEqual(rec["bytes_in"], len(body))

    def test_upload_is_streamed_before_the_body_is_complete(self):
        # Half the body, then wait: the upstream must see that half while the client still holds
        # the rest (a proxy that buffers whole bodies never forwards it). No timing involved.
        half = 4 << 20
        with RawClient(self.sk.proxy_addr, timeout=30) as c:
            c.send("POST %s/stream-up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (self.up.url, 2 * half))
            c.send(b"a" * half)
            # (A relay buffer's worth may still sit in sidekey; that is not whole-body buffering.
            # test_proxy_streaming checks that small pieces are not held back.)
            self.assertTrue(wait_for(lambda: self.up.received_bytes >= half - (64 << 10), timeout=20),
                            "the upstream got %d of the first %d body bytes" % (self.up.received_bytes, half))
            self.assertEqual(self.up.requests, [], "the request cannot be complete yet")
            c.send(b"b" * half)
            r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertEqual(self.up.requests[0].body, b"a" * half + b"b" * half)

    def test_chunked_request_body_from_requests(self):
        pieces = [os.urandom(n) for n in (1, 100, 65536, 3, 1 << 20)]
        r = self.keep(requests.post(self.up.url + "/chunked-up", data=iter(pieces), proxies=self.proxies, timeout=60))
        self.assertEqual(r.status_code, 200)
        req = self.up.requests[0]
        self.assertTrue(req.chunked, "a chunked upload goes upstream chunked (length unknown)")
        self.assertFalse(req.has_header("Content-Length"))
        self.assertEqual(req.body, b"".join(pieces))

    def test_chunked_request_body_with_extensions_and_trailers(self):
        raw = (b"POST " + self.up.url.encode() + b"/raw-chunked HTTP/1.1\r\nHost: x\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n"
               b"5;ext=1\r\nhello\r\n"
               b"1\r\n \r\n"
               b"A\r\n0123456789\r\n"
               b"0\r\nX-Trailer: t\r\n\r\n")
        with RawClient(self.sk.proxy_addr) as c:
            c.send(raw)
            r = c.read_response()
            self.assertEqual(r.status, 200, r.body)
            # The connection is still good for the next request.
            c.send("GET %s/after HTTP/1.1\r\nHost: x\r\n\r\n" % self.up.url)
            self.assertEqual(c.read_response().status, 200)
        self.assertEqual(self.up.requests[0].body, b"hello 0123456789")
        self.assertEqual(self.up.requests[1].path, "/after")

    def test_curl_expect_100_continue(self):
        body = os.urandom(3 << 20)
        with tempfile.NamedTemporaryFile() as f:
            f.write(body)
            f.flush()
            rc, out, err = curl("-v", "-x", self.sk.proxy_url, "--data-binary", "@" + f.name,
                                "-H", "Expect: 100-continue", "-H", "Content-Type: application/octet-stream",
                                "-o", "/dev/null", "-w", "%{http_code}", self.up.url + "/expect")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, "200")
        self.assertIn("HTTP/1.1 100 Continue", err, "sidekey did not answer Expect: 100-continue")
        req = self.up.requests[0]
        self.assertEqual(len(req.body), len(body))
        self.assertEqual(hashlib.sha256(req.body).digest(), hashlib.sha256(body).digest())

    def test_expect_100_continue_raw(self):
        # The client sends no body until it has the interim 100: a proxy that waits for the body
        # first would deadlock here (the read below would time out).
        with RawClient(self.sk.proxy_addr, timeout=20) as c:
            c.send("POST %s/expect-raw HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n"
                   "Expect: 100-continue\r\n\r\n" % self.up.url)
            status, _ = c.read_head_only()
            self.assertEqual(status, 100)
            c.send(b"hello world")
            r = c.read_response()
            self.assertEqual(r.status, 200)
        self.assertEqual(self.up.requests[0].body, b"hello world")

    def test_expect_100_continue_on_a_denied_request_gets_the_refusal_not_100(self):
        with RawClient(self.sk.proxy_addr, timeout=20) as c:
            c.send("POST http://203.0.113.7/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                   "Expect: 100-continue\r\n\r\n")
            r = c.read_response(skip_interim=False)
        self.assertEqual(r.status, 403)
        self.assertEqual(r.json()["error"]["code"], "policy_denied")

    # -- response framing ---------------------------------------------------------------------
    def test_chunked_response(self):
        body = b"".join(b"line %d\n" % i for i in range(5000))
        self.up.handler = Reply(200, body, chunked=True, chunk_size=777)
        r = self.get("/chunked-down")
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.content, body)
        with RawClient(self.sk.proxy_addr) as c:
            c.send("GET %s/chunked-down HTTP/1.1\r\nHost: x\r\n\r\n" % self.up.url)
            raw = c.read_response()
            self.assertEqual((raw.header("Transfer-Encoding") or "").lower(), "chunked")
            self.assertEqual(raw.body, body)
            c.send("GET %s/again HTTP/1.1\r\nHost: x\r\n\r\n" % self.up.url)
            self.assertEqual(c.read_response().body, body)

    def test_close_delimited_response_to_http11_client(self):
        self.up.handler = Reply(200, b"until-close" * 1000, no_length=True)
        with RawClient(self.sk.proxy_addr) as c:
            c.send("GET %s/eof HTTP/1.1\r\nHost: x\r\n\r\n" % self.up.url)
            r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"until-close" * 1000)

    def test_http10_client(self):
        with RawClient(self.sk.proxy_addr) as c:
            c.send("GET %s/ten HTTP/1.0\r\n\r\n" % self.up.url)
            r = c.read_response()
            self.assertTrue(r.version.startswith("HTTP/1."), r.version)
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, b"upstream-says-ok")
            self.assertTrue(c.is_closed(), "an HTTP/1.0 request without keep-alive ends the connection")
        req = self.up.requests[0]
        self.assertEqual(req.header("Authorization"), "Bearer " + SECRET)
        self.assertEqual(req.header("Host"), "127.0.0.1:%d" % self.up.port)
        self.assertEqual(req.version, "HTTP/1.1", "sidekey speaks HTTP/1.1 upstream")

    def test_http10_client_with_keep_alive(self):
        # On an inject rule the response is scrubbed, which can change its length: a 1.0 client
        # (no chunked coding) then gets the body delimited by the close. With a length, the
        # connection stays open for the next request.
        for i in range(2):
            with RawClient(self.sk.proxy_addr) as c:
                c.send("GET %s/ten-ka/%d HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" % (self.up.url, i))
                r = c.read_response()
                self.assertEqual(r.status, 200)
                self.assertEqual(r.body, b"upstream-says-ok")
                self.assertIsNone(r.header("Transfer-Encoding"))
                if r.header("Content-Length") is None:
                    self.assertTrue(c.is_closed(), "a body without length must end with the close")
                else:
                    self.assertEqual(r.header("Content-Length"), str(len(b"upstream-says-ok")))
        self.assertEqual(len(self.up.requests), 2)

    def test_http10_client_never_gets_chunked_encoding(self):
        # HTTP/1.0 has no chunked coding: a chunked upstream response must reach a 1.0 client
        # de-chunked (delimited by closing the connection, or with a length).
        body = b"0123456789abcdef" * 500
        self.up.handler = Reply(200, body, chunked=True, chunk_size=1000)
        with RawClient(self.sk.proxy_addr) as c:
            c.send("GET %s/ten-chunked HTTP/1.0\r\n\r\n" % self.up.url)
            r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertNotEqual((r.header("Transfer-Encoding") or "").lower(), "chunked",
                            "Transfer-Encoding: chunked sent to an HTTP/1.0 client")
        self.assertEqual(r.body, body)

    def test_head_request(self):
        self.up.handler = Reply(200, b"x" * 1234)
        r = self.keep(requests.head(self.up.url + "/head", proxies=self.proxies, timeout=15))
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.headers.get("Content-Length"), "1234")
        self.assertEqual(r.content, b"")
        self.assertEqual(self.up.requests[0].method, "HEAD")
        # On one connection: HEAD then GET; the GET's body must not be mistaken for the HEAD's.
        with RawClient(self.sk.proxy_addr) as c:
            c.send("HEAD %s/h1 HTTP/1.1\r\nHost: x\r\n\r\n" % self.up.url)
            h = c.read_response(head_request=True)
            self.assertEqual(h.status, 200)
            self.assertEqual(h.header("Content-Length"), "1234")
            c.send("GET %s/h2 HTTP/1.1\r\nHost: x\r\n\r\n" % self.up.url)
            g = c.read_response()
            self.assertEqual(g.status, 200)
            self.assertEqual(g.body, b"x" * 1234)

    def test_head_with_chunked_upstream_headers(self):
        # The upstream answers HEAD with Transfer-Encoding: chunked and (rightly) no body: the
        # client must get no body either, not even the final "0" chunk.
        self.up.handler = Reply(200, b"y" * 50, chunked=True)
        with RawClient(self.sk.proxy_addr) as c:
            c.send("HEAD %s/hc HTTP/1.1\r\nHost: x\r\n\r\n" % self.up.url)
            h = c.read_response(head_request=True)
            self.assertEqual(h.status, 200)
            c.send("GET %s/after-head HTTP/1.1\r\nHost: x\r\n\r\n" % self.up.url)
            c.reader.read_until(b"\r\n\r\n")
            stray = bytes(c.reader.msg)
            c.reader.buf = stray + c.reader.buf
            c.reader.msg = bytearray()
            self.assertTrue(stray.startswith(b"HTTP/1.1 200"),
                            "bytes after the HEAD response, before the next response: %r" % stray[:100])
            g = c.read_response()
            self.assertEqual(g.status, 200)
            self.assertEqual(g.body, b"y" * 50)

    def test_204_and_304_responses(self):
        self.up.next(Reply(204), Reply(304, headers=[("ETag", '"v1"')]), Reply(200, b"third"))
        with RawClient(self.sk.proxy_addr) as c:
            c.send("DELETE %s/item HTTP/1.1\r\nHost: x\r\n\r\n" % self.up.url)
            r1 = c.read_response()
            self.assertEqual(r1.status, 204)
            self.assertEqual(r1.body, b"")
            self.assertIsNone(r1.header("Transfer-Encoding"), "a 204 has no body framing")
            c.send("GET %s/item HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"v1\"\r\n\r\n" % self.up.url)
            r2 = c.read_response()
            self.assertEqual(r2.status, 304)
            self.assertEqual(r2.header("ETag"), '"v1"')
            self.assertIsNone(r2.header("Transfer-Encoding"), "a 304 has no body framing")
            c.send("GET %s/third HTTP/1.1\r\nHost: x\r\n\r\n" % self.up.url)
            r3 = c.read_response()
            self.assertEqual(r3.status, 200)
            self.assertEqual(r3.body, b"third")
        self.assertEqual(self.up.connections, 1)

    def test_error_status_from_upstream_is_relayed(self):
        self.up.handler = Reply(503, b'{"upstream":"busy"}', content_type="application/json")
        r = self.get("/busy")
        self.assertEqual(r.status_code, 503)
        self.assertEqual(r.json(), {"upstream": "busy"})
        rec = wait_audit(self.sk, r.headers["X-Sidekey-Request-Id"])
        self.assertEqual(rec["status"], 503)

    def test_interim_response_from_the_upstream_is_not_mistaken_for_the_final_one(self):
        self.up.next(Raw(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                         b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal", keep=True))
        with RawClient(self.sk.proxy_addr) as c:
            c.send("GET %s/hints HTTP/1.1\r\nHost: x\r\n\r\n" % self.up.url)
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, b"final")
            c.send("GET %s/next HTTP/1.1\r\nHost: x\r\n\r\n" % self.up.url)
            self.assertEqual(c.read_response().body, b"upstream-says-ok")

    def test_absolute_form_variants(self):
        # No path: "/" upstream. Scheme and host are case-insensitive (RFC 3986 3.1, 3.2.2).
        for target, upstream_target in (("http://127.0.0.1:%d" % self.up.port, "/"),
                                        ("http://127.0.0.1:%d?q=1" % self.up.port, "/?q=1"),
                                        ("HTTP://127.0.0.1:%d/upper" % self.up.port, "/upper"),
                                        ("Http://127.0.0.1:%d/mixed" % self.up.port, "/mixed")):
            with self.subTest(target=target):
                with RawClient(self.sk.proxy_addr) as c:
                    c.send("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target)
                    r = c.read_response()
                self.assertEqual(r.status, 200, r.body)
                self.assertEqual(self.up.last().target, upstream_target)
                self.assertEqual(self.up.last().header("Authorization"), "Bearer " + SECRET)

    # -- reverse routes -----------------------------------------------------------------------
    def test_reverse_route_with_requests(self):
        r = self.keep(requests.post(self.sk.proxy_url + "/svc/v1/items?x=1", json={"a": 1}, timeout=15))
        self.assertEqual(r.status_code, 200, r.text)
        req = self.up.requests[0]
        self.assertEqual(req.method, "POST")
        self.assertEqual(req.target, "/base/v1/items?x=1", "the route prefix is replaced by the upstream path")
        self.assertEqual(req.header("Authorization"), "Bearer " + SECRET)
        self.assertEqual(req.header("Host"), "127.0.0.1:%d" % self.up.port)
        self.assertEqual(json.loads(req.body), {"a": 1})
        rec = wait_audit(self.sk, r.headers["X-Sidekey-Request-Id"])
        self.assertEqual(rec["rule"], "local-inject")
        self.assertEqual(rec["host"], "127.0.0.1")
        self.assertEqual(rec["path"], "/base/v1/items")

    def test_reverse_route_with_curl(self):
        status, headers, body = curl_i(self.sk.proxy_url + "/svc/models")
        self.client_texts.append(body)
        self.assertEqual(status, 200)
        self.assertIn("x-sidekey-request-id", headers)
        self.assertEqual(self.up.requests[0].target, "/base/models")

    def test_origin_form_without_route_is_refused(self):
        r = self.keep(requests.get(self.sk.proxy_url + "/svcx/models", timeout=15))
        self.assertEqual(r.status_code, 400)
        self.assertEqual(r.json()["error"]["code"], "bad_request")
        self.assertTrue(self.up.seen_nothing())


class ConnectTunnelTest(unittest.TestCase):
    """CONNECT to an allow rule is a blind tunnel; deny and default deny refuse (interception of
    inject rules is a later feature and not tested here)."""

    POLICY = """version: 1
default: deny
rules:
  - name: tunnel-ok
    match: { hosts: ["127.0.0.1:@PORT@"] }
    action: allow
  - name: tunnel-no
    match: { hosts: ["blocked.example.test"] }
    action: deny
"""

    def setUp(self):
        self.up = Upstream(Reply(200, b"through-the-tunnel")).start()
        self.addCleanup(self.up.stop)
        self.sk = proxy_sidekey(fill(self.POLICY, PORT=self.up.port), secrets={"fwd": SECRET})
        self.sk.start()
        self.addCleanup(self.sk.__exit__, None, None, None)

    def test_allow_rule_tunnels_blindly(self):
        with RawClient(self.sk.proxy_addr) as c:
            c.send("CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Basic eDp5\r\n\r\n"
                   % (self.up.addr, self.up.addr))
            status, headers = c.read_head_only()
            self.assertEqual(status, 200)
            rid = dict((n.lower(), v) for n, v in headers).get("x-sidekey-request-id")
            self.assertTrue(rid)
            # Bytes inside the tunnel are the client's own: no injection, no rewriting.
            inner = "GET /inside HTTP/1.1\r\nHost: inner.example\r\nX-Ref: {{secrets.fwd}}\r\n\r\n"
            c.send(inner)
            r = c.read_response()
            self.assertEqual(r.body, b"through-the-tunnel")
        req = self.up.requests[0]
        self.assertEqual(req.target, "/inside")
        self.assertEqual(req.header("Host"), "inner.example")
        self.assertEqual(req.header("X-Ref"), "{{secrets.fwd}}")
        self.assertFalse(req.has_header("Authorization"))
        self.assertNotIn(b"eDp5", req.raw, "Proxy-Authorization of the CONNECT went into the tunnel")
        rec = wait_audit(self.sk, rid)
        self.assertEqual(rec["decision"], "tunnel")
        self.assertEqual(rec["rule"], "tunnel-ok")
        self.assertEqual(rec["port"], self.up.port)
        # Written when the tunnel closed, with what went through it each way.
        self.assertEqual(rec["bytes_in"], len(inner))
        self.assertEqual(rec["bytes_out"], len(r.raw))

    def test_bytes_sent_with_the_connect_head_go_through_first(self):
        # An eager client writes its first tunnel bytes in the same segment as the CONNECT.
        inner = "GET /eager HTTP/1.1\r\nHost: inner.example\r\n\r\n"
        with RawClient(self.sk.proxy_addr) as c:
            c.send("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n%s" % (self.up.addr, self.up.addr, inner))
            status, headers = c.read_head_only()
            self.assertEqual(status, 200)
            rid = dict((n.lower(), v) for n, v in headers).get("x-sidekey-request-id")
            r = c.read_response()
            self.assertEqual(r.body, b"through-the-tunnel")
        self.assertEqual(self.up.requests[0].target, "/eager")
        rec = wait_audit(self.sk, rid)
        self.assertEqual(rec["bytes_in"], len(inner))

    def test_connect_denied(self):
        for authority, rule in (("blocked.example.test:443", "tunnel-no"), ("unlisted.example.test:443", None)):
            with self.subTest(authority=authority):
                with RawClient(self.sk.proxy_addr) as c:
                    c.send("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (authority, authority))
                    r = c.read_response()
                self.assertEqual(r.status, 403)
                err = r.json()["error"]
                self.assertEqual(err["code"], "policy_denied")
                self.assertEqual(err.get("rule"), rule)
                self.assertEqual(r.header("X-Sidekey-Request-Id"), err["request_id"])
        self.assertTrue(self.up.seen_nothing())

    def test_connect_without_port_is_a_bad_request(self):
        with RawClient(self.sk.proxy_addr) as c:
            c.send("CONNECT 127.0.0.1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            r = c.read_response()
        self.assertEqual(r.status, 400)
        self.assertEqual(r.json()["error"]["code"], "bad_request")

    def test_connect_to_a_blocked_address(self):
        # Without allow_private the tunnel's destination is vetted like any other.
        sk = proxy_sidekey(fill(self.POLICY, PORT=self.up.port), allow_private=False).start()
        self.addCleanup(sk.__exit__, None, None, None)
        with RawClient(sk.proxy_addr) as c:
            c.send("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (self.up.addr, self.up.addr))
            r = c.read_response()
        self.assertEqual(r.status, 403)
        self.assertEqual(r.json()["error"]["code"], "egress_blocked")
        self.assertTrue(self.up.seen_nothing())


class EchoingUpstreamTest(unittest.TestCase):
    """The upstream echoes the request (headers too): what it got is visible to the client, so no
    leak checks here (response scrubbing is a later feature)."""

    def test_echo_through_requests_and_curl(self):
        with Upstream(Echo()) as up, proxy_sidekey(fill(POLICY, PORT=up.port), secrets={"fwd": SECRET}) as sk:
            r = requests.put(up.url + "/echo?z=9", data=b"payload", proxies={"http": sk.proxy_url}, timeout=15)
            self.assertEqual(r.status_code, 200)
            echoed = r.json()
            self.assertEqual(echoed["method"], "PUT")
            self.assertEqual(echoed["target"], "/echo?z=9")
            self.assertEqual(echoed["body"], "payload")
            rc, out, err = curl("-x", sk.proxy_url, "-X", "PATCH", "--data", "k=v", up.url + "/echo2")
            self.assertEqual(rc, 0, err)
            self.assertEqual(json.loads(out)["method"], "PATCH")
            self.assertEqual(json.loads(out)["body"], "k=v")
            self.assertNotIn(SECRET, sk.logs())


if __name__ == "__main__":
    unittest.main()
