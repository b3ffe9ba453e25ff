"""HTTPS interception (SPEC sections 5 CONNECT, 6, 13.5) against the real binary: CONNECT to a host
with an inject rule is answered with a leaf minted for that host, each inner request is handled
like a forwarded one (the secret injected, audited by name, never shown to the client), keep-alive
inside the tunnel, and the refusals: SNI or inner Host other than the CONNECT authority, denied
hosts, upstreams whose certificate does not verify. `allow` hosts stay blind tunnels.

Every upstream is a local TLS server with a certificate from a test CA of its own, stood in for
the real name with egress.resolve and trusted through tls.upstream_ca_file."""
import datetime
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from harness import wait_for
from upstreams import (CleanClose, Download, Reply, TestCA, Upstream, audit_records, cert_der, error_of, fill, free_port,
                       metric_value, metrics_text, open_tunnel, proxy_sidekey, self_signed_cert, tls_over,
                       tls_server_context, wait_audit)

SECRET = "sk-intercept-PLAINTEXT-5f0e1d2c3b4a"
IP_SECRET = "ip-literal-PLAINTEXT-99aa88bb"
BAD_SECRET = "untrusted-PLAINTEXT-77cc66dd"
HOST = "api.openai.test"

POLICY = """version: 1
default: deny
secrets:
  openai:
    hosts: ["api.openai.test"]
  iptok:
    hosts: ["127.0.0.1:@PORT@"]
  badtok:
    hosts: ["untrusted.test", "wrongname.test"]
rules:
  - name: openai-body
    match: { hosts: ["api.openai.test"], paths: ["/v1/body/*"] }
    inject:
      headers: { Authorization: "Bearer {{secrets.openai}}" }
    references: [headers, query, body]
  - name: openai
    match: { hosts: ["api.openai.test"] }
    inject:
      headers: { Authorization: "Bearer {{secrets.openai}}" }
  - name: ip-literal
    match: { hosts: ["127.0.0.1:@PORT@"] }
    inject:
      headers: { X-Api-Key: "{{secrets.iptok}}" }
  - name: untrusted
    match: { hosts: ["untrusted.test", "wrongname.test"] }
    inject:
      headers: { Authorization: "Bearer {{secrets.badtok}}" }
  - name: packages
    match: { hosts: ["pkgs.test"] }
    action: allow
  - name: burst-get-only
    match: { hosts: ["burst.test"], methods: [GET] }
    action: allow
  - name: metadata
    match: { hosts: ["metadata.test"] }
    action: deny
  - name: down
    match: { hosts: ["down.test"], methods: [GET] }
    action: allow
"""


def curl_env():
    """The environment for curl: no proxy variables of the machine running the tests."""
    env = dict(os.environ)
    for k in list(env):
        if k.lower() in ("no_proxy", "http_proxy", "https_proxy", "all_proxy"):
            del env[k]
    return env


def run_curl(*args, timeout=60):
    p = subprocess.run(["curl", "-sS"] + list(args), capture_output=True, text=True, timeout=timeout, env=curl_env())
    return p.returncode, p.stdout, p.stderr


def parse_i(out):
    """(status, {lower-case header: value}, body) of curl -i output (CONNECT heads suppressed)."""
    text = out.replace("\r\n", "\n")
    head, _, body = text.partition("\n\n")
    lines = head.split("\n")
    headers = {}
    for line in lines[1:]:
        n, _, v = line.partition(":")
        headers[n.strip().lower()] = v.strip()
    return int(lines[0].split(" ")[1]), headers, body


@unittest.skipUnless(shutil.which("openssl") and shutil.which("curl"), "needs the openssl and curl commands")
class InterceptTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sidekey-intercept-ca-")
        cls.ca = TestCA(cls.tmp)
        # One leaf for every name the good upstream stands in for.
        cls.leaf_cert, cls.leaf_key = cls.ca.issue([HOST, "pkgs.test", "burst.test", "127.0.0.1"], stem="upstream")
        # An upstream nobody trusts: self-signed, for untrusted.test.
        bad_dir = os.path.join(cls.tmp, "bad")
        os.mkdir(bad_dir)
        cls.bad_cert, cls.bad_key = self_signed_cert(bad_dir, "untrusted.test")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.snis = []
        ctx = tls_server_context(self.leaf_cert, self.leaf_key)
        ctx.sni_callback = lambda sslobj, name, c: self.snis.append(name)
        self.up = Upstream(Reply(200, b"upstream-says-ok"), ssl_context=ctx).start()
        self.addCleanup(self.up.stop)
        self.bad_up = Upstream(Reply(200, b"should-never-answer"),
                               ssl_context=tls_server_context(self.bad_cert, self.bad_key)).start()
        self.addCleanup(self.bad_up.stop)
        good = "127.0.0.1:%d" % self.up.port
        config = {
            "egress": {"resolve": {HOST + ":443": good, "pkgs.test:443": good, "burst.test:443": good,
                                   "wrongname.test:443": good, "down.test:443": "127.0.0.1:%d" % free_port(),
                                   "untrusted.test:443": "127.0.0.1:%d" % self.bad_up.port}},
            "tls": {"upstream_ca_file": self.ca.cert, "leaf_ttl": "6h"},
        }
        self.sk = proxy_sidekey(fill(POLICY, PORT=self.up.port),
                                secrets={"openai": SECRET, "iptok": IP_SECRET, "badtok": BAD_SECRET}, config=config)
        self.sk.start()
        self.addCleanup(self.sk.__exit__, None, None, None)
        self.sk_ca = os.path.join(self.sk.data_dir, "ca.pem")
        self.client_texts = []
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()
        if not getattr(self, "stopped", False):
            self.assertIsNone(self.sk.proc.poll(), "sidekey died during the test:\n" + self.sk.logs()[-3000:])
        # Invariant 1 for what this test saw: no client response, log line or file holds a value.
        self.sk.assert_never_contains(self, [SECRET, IP_SECRET, BAD_SECRET], self.client_texts)

    # -- helpers ------------------------------------------------------------------------------
    def tunnel(self, authority):
        c, status, resp = open_tunnel(self.sk.proxy_addr, authority)
        self.clients.append(c)
        if resp is not None:
            self.client_texts.append(resp.raw.decode("latin-1"))
        return c, status, resp

    def tls_tunnel(self, authority, sni=HOST, cafile=None):
        c, status, resp = self.tunnel(authority)
        self.assertEqual(status, 200, resp)
        t = tls_over(c, cafile or self.sk_ca, server_hostname=sni)
        self.clients.append(t)
        return t

    def exchange(self, t, request):
        t.send(request)
        r = t.read_response()
        self.client_texts.append(r.raw.decode("latin-1"))
        return r

    def curl(self, *args):
        rc, out, err = run_curl("--suppress-connect-headers", "-x", self.sk.proxy_url, *args)
        self.client_texts += [out, err]
        return rc, out, err

    def metric(self, name):
        return metric_value(metrics_text(self.sk), name) or 0.0

    # -- injection through interception ---------------------------------------------------------
    def test_curl_gets_the_secret_injected_and_never_sees_it(self):
        rc, out, err = self.curl("-i", "--cacert", self.sk_ca, "https://%s/v1/models?limit=2" % HOST,
                                 "-H", "Authorization: Bearer agent-junk")
        self.assertEqual(rc, 0, err)
        status, headers, body = parse_i(out)
        self.assertEqual(status, 200, out)
        self.assertEqual(body, "upstream-says-ok")
        self.assertNotIn(SECRET, out)

        self.assertEqual(len(self.up.requests), 1)
        req = self.up.requests[0]
        self.assertEqual(req.header_all("Authorization"), ["Bearer " + SECRET])
        self.assertEqual(req.header("Host"), HOST)
        self.assertEqual(req.target, "/v1/models?limit=2")
        self.assertIn(HOST, self.snis, "sidekey sends the CONNECT host as SNI upstream")

        rid = headers.get("x-sidekey-request-id")
        self.assertTrue(rid, out)
        rec = wait_audit(self.sk, rid)
        self.assertEqual(rec["secrets"], ["openai"])
        self.assertEqual(rec["rule"], "openai")
        self.assertEqual(rec["decision"], "inject")
        self.assertIn("header:Authorization", rec["injected"])
        self.assertEqual(rec["scheme"], "https")
        self.assertEqual(rec["host"], HOST)
        self.assertEqual(rec["port"], 443)
        self.assertEqual(rec["path"], "/v1/models")
        self.assertEqual(rec["status"], 200)
        self.assertNotIn(SECRET, json.dumps(rec))

    def test_post_body_goes_through_unchanged(self):
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * 70000}]})
        rc, out, err = self.curl("-i", "--cacert", self.sk_ca, "https://%s/v1/chat/completions" % HOST,
                                 "-H", "Content-Type: application/json", "--data-binary", body)
        self.assertEqual(rc, 0, err)
        self.assertEqual(parse_i(out)[0], 200, out)
        req = self.up.requests[0]
        self.assertEqual(req.method, "POST")
        self.assertEqual(req.body, body.encode())
        self.assertEqual(req.header("Authorization"), "Bearer " + SECRET)

    def test_large_bodies_both_ways(self):
        # Thousands of TLS records each way, through both of sidekey's TLS connections (the
        # client's, terminated with the minted leaf, and the upstream's), read and written in
        # pieces that do not line up with the records.
        data = os.urandom(8 << 20)
        up_path = os.path.join(self.sk.data_dir, "upload.bin")
        with open(up_path, "wb") as f:
            f.write(data)
        rc, out, err = self.curl("-o", "/dev/null", "-w", "%{http_code}", "--cacert", self.sk_ca,
                                 "https://%s/v1/files" % HOST, "-H", "Content-Type: application/octet-stream",
                                 "--data-binary", "@" + up_path)
        self.assertEqual((rc, out), (0, "200"), err)
        got = self.up.requests[-1].body
        self.assertEqual(len(got), len(data))
        self.assertEqual(hashlib.sha256(got).hexdigest(), hashlib.sha256(data).hexdigest())
        total = 24 << 20
        expected = hashlib.sha256(Download.expected(total)).hexdigest()
        for chunked in (False, True):
            with self.subTest(chunked=chunked):
                self.up.next(Download(total, piece=50000, chunked=chunked))
                down_path = os.path.join(self.sk.data_dir, "download.bin")
                rc, out, err = self.curl("-o", down_path, "-w", "%{http_code}", "--cacert", self.sk_ca,
                                         "https://%s/v1/big" % HOST)
                self.assertEqual((rc, out), (0, "200"), err)
                with open(down_path, "rb") as f:
                    self.assertEqual(hashlib.sha256(f.read()).hexdigest(), expected)

    def test_body_references_are_substituted_inside_the_tunnel(self):
        # A rule with references: [.., body] (SPEC section 3): a JSON or form body's reference is
        # replaced by the value; one that cannot be resolved refuses the request. Never the
        # literal reference upstream.
        for ctype, body, expected in (
                ("application/json", '{"key":"{{secrets.openai}}","n":1}', '{"key":"%s","n":1}' % SECRET),
                ("application/x-www-form-urlencoded", "a=1&key={{secrets.openai}}", "a=1&key=" + SECRET)):
            rc, out, err = self.curl("-i", "--cacert", self.sk_ca, "https://%s/v1/body/x" % HOST,
                                     "-H", "Content-Type: " + ctype, "--data-binary", body)
            self.assertEqual(rc, 0, err)
            self.assertEqual(parse_i(out)[0], 200, out)
            req = self.up.requests[-1]
            self.assertNotIn(b"{{", req.body, "a literal reference went upstream: %r" % req.body)
            self.assertEqual(req.body.decode(), expected)
        n = len(self.up.requests)
        rc, out, err = self.curl("-i", "--cacert", self.sk_ca, "https://%s/v1/body/x" % HOST,
                                 "-H", "Content-Type: application/json", "--data-binary", '{"k":"{{secrets.nope}}"}')
        status, headers, body = parse_i(out)
        self.assertEqual(status, 403, out)
        self.assertEqual(json.loads(body)["error"]["code"], "unknown_secret")
        # The body streams, so the upstream may have seen the head and the bytes before the
        # reference; it must never see the reference, nor a complete request.
        self.assertTrue(wait_for(lambda: self.up.closed_connections >= 1 or len(self.up.requests) == n, timeout=10))
        for req in self.up.requests[n:]:
            self.assertNotIn(b"{{", req.raw, "the literal reference went upstream")
            self.assertIsNotNone(req.error, "the upstream got a complete request: %r" % req.raw)

    def test_keep_alive_inside_the_tunnel(self):
        t = self.tls_tunnel(HOST + ":443")
        for i in range(4):
            r = self.exchange(t, "GET /v1/n/%d HTTP/1.1\r\nHost: %s\r\n\r\n" % (i, HOST))
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body, b"upstream-says-ok")
            self.assertTrue(r.header("X-Sidekey-Request-Id"))
        got = self.up.requests
        self.assertEqual([q.path for q in got], ["/v1/n/%d" % i for i in range(4)])
        self.assertTrue(all(q.header("Authorization") == "Bearer " + SECRET for q in got))
        self.assertEqual(len({q.conn_id for q in got}), 1, "one upstream connection, reused: %r" % got)
        self.assertEqual(self.up.connections, 1)

    def test_curl_several_urls_use_one_connect(self):
        urls = ["https://%s/v1/a/%d" % (HOST, i) for i in range(3)]
        rc, out, err = self.curl("-v", "--cacert", self.sk_ca, *urls)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, "upstream-says-ok" * 3)
        self.assertEqual(len(re.findall(r"^> CONNECT ", err, re.M)), 1, err)
        self.assertEqual(len(self.up.requests), 3)
        self.assertEqual(self.up.connections, 1)

    def test_graceful_stop_does_not_wait_for_an_idle_intercepted_connection(self):
        # SIGTERM lets in-flight requests finish; an intercepted keep-alive connection between
        # two requests has none, so it is closed like an idle plain keep-alive connection rather
        # than holding the shutdown until its 30 s deadline.
        t = self.tls_tunnel(HOST + ":443")
        r = self.exchange(t, "GET /v1/models HTTP/1.1\r\nHost: %s\r\n\r\n" % HOST)
        self.assertEqual(r.status, 200)
        wait_audit(self.sk, r.header("X-Sidekey-Request-Id"))
        time.sleep(0.5)   # the connection is now idle, waiting for the next request
        self.stopped = True
        started = time.monotonic()
        try:
            code = self.sk.stop(timeout=15)
        except AssertionError:
            self.fail("sidekey did not stop within 15 s with one idle intercepted connection open")
        self.assertEqual(code, 0)
        self.assertLess(time.monotonic() - started, 15)
        self.assertTrue(t.is_closed(5))

    # -- refusals -----------------------------------------------------------------------------
    def test_sni_other_than_the_connect_host_is_refused(self):
        c, status, _ = self.tunnel(HOST + ":443")
        self.assertEqual(status, 200)
        connect_id = dict((n.lower(), v) for n, v in c.connect_headers)["x-sidekey-request-id"]
        with self.assertRaises((ssl.SSLError, ConnectionError)):
            tls_over(c, verify=False, server_hostname="evil.test")
        self.assertTrue(self.up.seen_nothing())
        # The refused handshake is audited against the CONNECT host.
        def refused():
            return [a for a in audit_records(self.sk) if a.get("method") == "CONNECT" and a.get("host") == HOST]
        self.assertTrue(wait_for(refused, timeout=10), self.sk.logs()[-2000:])
        self.assertNotEqual(refused()[-1]["status"], 200)
        self.assertEqual(refused()[-1]["error"], "client_tls_failed")
        self.assertEqual(refused()[-1]["decision"], "deny")
        # The record is the CONNECT's own, carried past the 200 to the handshake.
        self.assertEqual(refused()[-1]["request_id"], connect_id)

    def test_missing_sni_for_a_named_host_is_refused(self):
        c, status, _ = self.tunnel(HOST + ":443")
        self.assertEqual(status, 200)
        with self.assertRaises((ssl.SSLError, ConnectionError)):
            tls_over(c, verify=False, server_hostname=None)
        self.assertTrue(self.up.seen_nothing())

    def test_inner_host_other_than_the_connect_authority_is_421(self):
        for bad in ("Host: other.test", "Host: %s:8443" % HOST):
            t = self.tls_tunnel(HOST + ":443")
            r = self.exchange(t, "GET /v1/models HTTP/1.1\r\n%s\r\n\r\n" % bad)
            err = error_of(self, r, 421, "misdirected_request")
            rec = wait_audit(self.sk, err["request_id"])
            self.assertEqual(rec["status"], 421)
        # An absolute-form target naming another host is misdirected too.
        t = self.tls_tunnel(HOST + ":443")
        r = self.exchange(t, "GET https://other.test/v1/models HTTP/1.1\r\nHost: %s\r\n\r\n" % HOST)
        error_of(self, r, 421, "misdirected_request")
        self.assertTrue(self.up.seen_nothing(), "nothing goes upstream for a misdirected request")

    def test_connect_to_denied_hosts_is_403(self):
        for authority, rule in (("evil.test:443", None), ("metadata.test:443", "metadata")):
            c, status, resp = self.tunnel(authority)
            self.assertEqual(status, 403)
            err = error_of(self, resp, 403, "policy_denied")
            rec = wait_audit(self.sk, err["request_id"])
            self.assertEqual(rec["decision"], "deny")
            self.assertEqual(rec["host"], authority.split(":")[0])
            if rule:
                self.assertEqual(err.get("rule"), rule)
                self.assertEqual(rec["rule"], rule)
        self.assertTrue(self.up.seen_nothing())

    def test_reference_in_an_intercepted_allow_request_fails_closed(self):
        # burst.test: GET is allowed, the rest denied, so CONNECT is intercepted; an allow rule
        # does not substitute references, so one in a header refuses the request.
        t = self.tls_tunnel("burst.test:443", sni="burst.test")
        r = self.exchange(t, "GET /x HTTP/1.1\r\nHost: burst.test\r\nX-Key: {{secrets.openai}}\r\n\r\n")
        self.assertEqual(r.status, 403, r)
        self.assertIn(r.json()["error"]["code"], ("reference_not_allowed", "secret_not_bound"))
        r = self.exchange(t, "GET /ok HTTP/1.1\r\nHost: burst.test\r\n\r\n")
        self.assertEqual(r.status, 200, r)
        r = self.exchange(t, "POST /no HTTP/1.1\r\nHost: burst.test\r\nContent-Length: 0\r\n\r\n")
        error_of(self, r, 403, "policy_denied")
        self.assertEqual([q.path for q in self.up.requests], ["/ok"])
        self.assertFalse(self.up.requests[0].has_header("Authorization"))

    def test_upstream_with_an_untrusted_certificate_is_502(self):
        rc, out, err = self.curl("-i", "--cacert", self.sk_ca, "https://untrusted.test/v1/models")
        self.assertEqual(rc, 0, err)
        status, headers, body = parse_i(out)
        self.assertEqual(status, 502, out)
        self.assertEqual(json.loads(body)["error"]["code"], "upstream_tls_failed")
        self.assertEqual(json.loads(body)["error"]["request_id"], headers.get("x-sidekey-request-id"))
        self.assertEqual(self.bad_up.requests, [], "the secret never went to an unverified upstream")
        # The upstream's thread notes its failed handshake on its own time, possibly after curl
        # already has the 502.
        deadline = time.monotonic() + 10
        while self.bad_up.tls_failures < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertGreaterEqual(self.bad_up.tls_failures, 1)

    def test_upstream_certificate_for_another_name_is_502(self):
        # The good upstream's certificate is valid (test CA) but does not name wrongname.test.
        rc, out, err = self.curl("-i", "--cacert", self.sk_ca, "https://wrongname.test/v1/models")
        self.assertEqual(rc, 0, err)
        status, _, body = parse_i(out)
        self.assertEqual(status, 502, out)
        self.assertEqual(json.loads(body)["error"]["code"], "upstream_tls_failed")
        self.assertEqual(self.up.requests, [])

    def test_client_hello_sent_together_with_the_connect(self):
        # An eager client writes its ClientHello right behind the CONNECT head, in one segment.
        ctx = ssl.create_default_context(cafile=self.sk_ca)
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(inc, out, server_hostname=HOST)
        with self.assertRaises(ssl.SSLWantReadError):
            tls.do_handshake()
        hello = out.read()
        host, port = self.sk.proxy_addr.rsplit(":", 1)
        s = socket.create_connection((host, int(port)), timeout=15)
        self.addCleanup(s.close)
        s.sendall(b"CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n" % (HOST.encode(), HOST.encode()) + hello)
        buf = b""
        while b"\r\n\r\n" not in buf:
            piece = s.recv(65536)
            self.assertTrue(piece, "closed before the CONNECT answer")
            buf += piece
        head, _, rest = buf.partition(b"\r\n\r\n")
        self.assertIn(b" 200 ", head.split(b"\r\n")[0])
        inc.write(rest)

        def pump():
            data = out.read()
            if data:
                s.sendall(data)
            piece = s.recv(65536)
            if not piece:
                return False
            inc.write(piece)
            return True

        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.assertTrue(pump(), "closed during the handshake")
        tls.write(b"GET /eager HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % HOST.encode())
        s.sendall(out.read())
        got = b""
        while True:
            try:
                piece = tls.read(65536)
                if not piece:
                    break
                got += piece
            except ssl.SSLWantReadError:
                if not pump():
                    break
            except ssl.SSLZeroReturnError:
                break
        self.client_texts.append(got.decode("latin-1"))
        self.assertTrue(got.startswith(b"HTTP/1.1 200 "), got)
        self.assertIn(b"upstream-says-ok", got.partition(b"\r\n\r\n")[2], got)   # chunked or not
        self.assertEqual(self.up.requests[0].path, "/eager")
        self.assertEqual(self.up.requests[0].header("Authorization"), "Bearer " + SECRET)

    def test_each_request_in_a_tunnel_is_decided_by_the_current_policy(self):
        t = self.tls_tunnel(HOST + ":443")
        self.assertEqual(self.exchange(t, "GET /v1/one HTTP/1.1\r\nHost: %s\r\n\r\n" % HOST).status, 200)
        reloads = metric_value(metrics_text(self.sk), "sidekey_policy_reloads_total", result="ok") or 0
        inject = '    inject:\n      headers: { Authorization: "Bearer {{secrets.openai}}" }\n  - name: ip-literal'
        policy = fill(POLICY, PORT=self.up.port)
        self.assertIn(inject, policy)
        self.sk.write_policy(policy.replace(inject, "    action: deny\n  - name: ip-literal", 1))
        self.sk.proc.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: (metric_value(metrics_text(self.sk), "sidekey_policy_reloads_total",
                                                       result="ok") or 0) > reloads, timeout=10))
        r = self.exchange(t, "GET /v1/two HTTP/1.1\r\nHost: %s\r\n\r\n" % HOST)
        err = error_of(self, r, 403, "policy_denied")
        self.assertEqual(err.get("rule"), "openai")
        self.assertEqual([q.path for q in self.up.requests], ["/v1/one"])

    def test_inject_host_on_another_port_gets_no_secret(self):
        # The binding "api.openai.test" means port 443: a CONNECT to :8443 is intercepted (the
        # rule matches every port) but the secret may not go there.
        t = self.tls_tunnel(HOST + ":8443")
        r = self.exchange(t, "GET /v1/models HTTP/1.1\r\nHost: %s:8443\r\n\r\n" % HOST)
        err = error_of(self, r, 403, "secret_not_bound")
        self.assertEqual(err.get("secret"), "openai")
        self.assertTrue(self.up.seen_nothing())

    def test_upstream_down_inside_the_tunnel_is_502(self):
        t = self.tls_tunnel("down.test:443", sni="down.test")
        r = self.exchange(t, "GET /x HTTP/1.1\r\nHost: down.test\r\n\r\n")
        error_of(self, r, 502, "upstream_connect_failed")

    def test_ambiguous_framing_inside_the_tunnel_is_400(self):
        t = self.tls_tunnel(HOST + ":443")
        r = self.exchange(t, "POST /v1/x HTTP/1.1\r\nHost: %s\r\nContent-Length: 5\r\n"
                             "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" % HOST)
        error_of(self, r, 400, "bad_request")
        self.assertTrue(self.up.seen_nothing())

    # -- blind tunnels --------------------------------------------------------------------------
    def test_allow_host_is_a_blind_tunnel(self):
        t = self.tls_tunnel("pkgs.test:443", sni="pkgs.test", cafile=self.ca.cert)
        self.assertEqual(t.sock.getpeercert(binary_form=True), cert_der(self.leaf_cert),
                         "the client sees the upstream's own certificate, not a minted one")
        r = self.exchange(t, "GET /simple/ HTTP/1.1\r\nHost: pkgs.test\r\nAuthorization: Bearer mine\r\n\r\n")
        self.assertEqual(r.status, 200, r)
        self.assertIsNone(r.header("X-Sidekey-Request-Id"), "a blind tunnel does not touch the inner response")
        req = self.up.requests[0]
        self.assertEqual(req.header("Authorization"), "Bearer mine")
        self.assertIn("pkgs.test", self.snis)
        # curl trusting only the test CA gets through as well.
        rc, out, err = self.curl("--cacert", self.ca.cert, "https://pkgs.test/simple/")
        self.assertEqual((rc, out), (0, "upstream-says-ok"), err)

    # -- the minted leaf ------------------------------------------------------------------------
    def test_minted_leaf_names_the_host_and_is_issued_by_the_sidekey_ca(self):
        t = self.tls_tunnel(HOST + ":443")
        leaf = x509.load_der_x509_certificate(t.sock.getpeercert(binary_form=True))
        with open(self.sk_ca, "rb") as f:
            ca = x509.load_pem_x509_certificate(f.read())
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(san.get_values_for_type(x509.DNSName), [HOST])
        self.assertEqual(san.get_values_for_type(x509.IPAddress), [])
        self.assertEqual(leaf.issuer, ca.subject)
        ca.public_key().verify(leaf.signature, leaf.tbs_certificate_bytes, ec.ECDSA(leaf.signature_hash_algorithm))
        self.assertIsInstance(leaf.public_key(), ec.EllipticCurvePublicKey)
        self.assertEqual(leaf.public_key().curve.name, "secp256r1")
        self.assertNotEqual(leaf.public_key().public_numbers(), ca.public_key().public_numbers())
        bc = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
        self.assertFalse(bc.ca)
        # tls.leaf_ttl is 6h in this configuration.
        now = datetime.datetime.utcnow()
        left = (leaf.not_valid_after - now).total_seconds()
        self.assertTrue(5 * 3600 < left <= 6 * 3600 + 600, "leaf valid for %ss more" % left)
        self.assertLessEqual(leaf.not_valid_before, now + datetime.timedelta(minutes=5))
        r = self.exchange(t, "GET /v1/models HTTP/1.1\r\nHost: %s\r\n\r\n" % HOST)
        self.assertEqual(r.status, 200)

    def test_leaf_is_served_with_the_ca_in_the_chain(self):
        p = subprocess.run(["openssl", "s_client", "-proxy", self.sk.proxy_addr, "-connect", HOST + ":443",
                            "-servername", HOST, "-showcerts", "-CAfile", self.sk_ca, "-verify_return_error",
                            "-verify_hostname", HOST],
                           input="", capture_output=True, text=True, timeout=30, env=curl_env())
        self.assertIn("Verify return code: 0 (ok)", p.stdout, p.stdout + p.stderr)
        self.assertEqual(p.stdout.count("-----BEGIN CERTIFICATE-----"), 2, p.stdout)
        with open(self.sk_ca) as f:
            ca_pem = f.read().strip()
        self.assertIn(ca_pem, p.stdout.replace("\r\n", "\n"))

    def test_ip_literal_connect_works_without_sni(self):
        authority = "127.0.0.1:%d" % self.up.port
        # Python sends no SNI for an IP address; the hostname check still runs against the IP SAN.
        t = self.tls_tunnel(authority, sni="127.0.0.1")
        leaf = x509.load_der_x509_certificate(t.sock.getpeercert(binary_form=True))
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual([str(a) for a in san.get_values_for_type(x509.IPAddress)], ["127.0.0.1"])
        self.assertEqual(san.get_values_for_type(x509.DNSName), [])
        r = self.exchange(t, "GET /ip HTTP/1.1\r\nHost: %s\r\n\r\n" % authority)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.up.requests[0].header("X-Api-Key"), IP_SECRET)
        self.assertEqual(set(self.snis), {None}, "sidekey dials an IP literal without SNI (RFC 6066)")
        # curl does the same (no SNI for IP literals).
        rc, out, err = self.curl("--cacert", self.sk_ca, "https://%s/ip2" % authority)
        self.assertEqual((rc, out), (0, "upstream-says-ok"), err)
        self.assertEqual(self.up.requests[1].header("X-Api-Key"), IP_SECRET)

    def test_leaf_is_cached(self):
        mints0 = self.metric("sidekey_cert_mints_total")
        t = self.tls_tunnel(HOST + ":443")
        self.assertEqual(self.exchange(t, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % HOST).status, 200)
        first = t.sock.getpeercert(binary_form=True)
        mints1 = self.metric("sidekey_cert_mints_total")
        hits1 = self.metric("sidekey_cert_cache_hits_total")
        self.assertEqual(mints1 - mints0, 1, "the first connection mints")
        t2 = self.tls_tunnel(HOST + ":443")
        self.assertEqual(self.exchange(t2, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % HOST).status, 200)
        self.assertEqual(t2.sock.getpeercert(binary_form=True), first, "the same leaf is served again")
        self.assertEqual(self.metric("sidekey_cert_mints_total"), mints1)
        self.assertGreater(self.metric("sidekey_cert_cache_hits_total"), hits1)

    def test_concurrent_first_connections_mint_once(self):
        mints0 = self.metric("sidekey_cert_mints_total")
        n = 8
        barrier = threading.Barrier(n)
        ders, errors = [], []

        def one():
            try:
                c, status, _ = open_tunnel(self.sk.proxy_addr, "burst.test:443")
                barrier.wait(timeout=10)
                t = tls_over(c, self.sk_ca, server_hostname="burst.test")
                ders.append(t.sock.getpeercert(binary_form=True))
                t.close()
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=one) for _ in range(n)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
        self.assertEqual(errors, [])
        self.assertEqual(len(ders), n)
        self.assertEqual(len(set(ders)), 1, "one leaf for one host")
        self.assertEqual(self.metric("sidekey_cert_mints_total") - mints0, 1)

    # -- the CA on disk -------------------------------------------------------------------------
    def test_ca_export_is_the_ca_in_the_data_dir(self):
        exported = self.sk.run_cli("ca", "export").stdout
        with open(self.sk_ca) as f:
            self.assertEqual(exported, f.read())
        t = self.tls_tunnel(HOST + ":443")   # the CA that signs the leaves is that one
        self.assertTrue(t.sock.getpeercert())
        bundle = os.path.join(self.sk.data_dir, "trust-bundle.pem")
        with open(bundle) as f:
            text = f.read()
        self.assertIn(exported.strip(), text)
        self.assertGreater(text.count("-----BEGIN CERTIFICATE-----"), 10, "system roots + the sidekey CA")


@unittest.skipUnless(shutil.which("openssl") and shutil.which("curl"), "needs the openssl and curl commands")
class UpstreamSessionTest(unittest.TestCase):
    """Upstream TLS sessions are resumed per destination (SPEC section 5, "Upstream TLS"): when an
    upstream closes each connection (cleanly, close_notify first), the next dial resumes."""

    def test_sessions_are_resumed(self):
        tmp = tempfile.mkdtemp(prefix="sidekey-intercept-resume-")
        self.addCleanup(shutil.rmtree, tmp, True)
        ca = TestCA(tmp)
        cert, key = ca.issue(["tls13.test", "tls12.test"], stem="upstream")
        ups = {}
        for name, version in (("tls13.test", ssl.TLSVersion.TLSv1_3), ("tls12.test", ssl.TLSVersion.TLSv1_2)):
            ctx = tls_server_context(cert, key)
            ctx.maximum_version = version
            ups[name] = Upstream(CleanClose(), ssl_context=ctx).start()
            self.addCleanup(ups[name].stop)
        policy = """version: 1
default: deny
rules:
  - name: get-only
    match: { hosts: ["tls13.test", "tls12.test"], methods: [GET] }
    action: allow
"""
        sk = proxy_sidekey(policy, config={
            "egress": {"resolve": {n + ":443": "127.0.0.1:%d" % u.port for n, u in ups.items()}},
            "tls": {"upstream_ca_file": ca.cert}, "workers": 1})
        sk.start()
        self.addCleanup(sk.__exit__, None, None, None)
        for name, up in ups.items():
            with self.subTest(name):
                for i in range(3):
                    rc, out, err = run_curl("-x", sk.proxy_url, "--cacert", os.path.join(sk.data_dir, "ca.pem"),
                                            "https://%s/r%d" % (name, i))
                    self.assertEqual((rc, out), (0, "ok"), err)
                self.assertTrue(wait_for(lambda: len(up.tls_resumed) == 3, timeout=10), up.tls_resumed)
                self.assertEqual(up.tls_resumed[0], False)
                self.assertTrue(any(up.tls_resumed[1:]), "no upstream session was resumed: %r" % up.tls_resumed)


if __name__ == "__main__":
    unittest.main()
