"""Every refusal of SPEC section 5 triggered by a real request through the real binary: status, the
JSON error body, the request id, and that nothing reached the upstream; plus security invariants
2, 3, 4, 6 and 9 of section 13."""
import json
import shutil
import signal
import socket
import tempfile
import unittest

import requests

from harness import wait_for
from upstreams import (Hang, RawClient, Reply, Upstream, error_of, fill, free_port, metric_value, metrics_text,
                       proxy_sidekey, self_signed_cert, tls_server_context, wait_audit)

BOUND = "sk-bound-PLAINTEXT-1f2e3d4c"
ELSEWHERE = "sk-elsewhere-PLAINTEXT-99aa88"
TLS_ONLY = "sk-tlsonly-PLAINTEXT-5b5b5b"
UNBOUND = "sk-unbound-PLAINTEXT-c0c0c0"
API_VALUE = "sk-api-PLAINTEXT-424242abc"
PLAINTEXTS = [BOUND, ELSEWHERE, TLS_ONLY, UNBOUND, API_VALUE]

POLICY = """version: 1
default: deny
secrets:
  bound_here:
    hosts: ["http://127.0.0.1:@PORT@"]
  bound_elsewhere:
    hosts: ["http://api.elsewhere.test:@PORT@"]
  tls_only:
    hosts: ["127.0.0.1:@PORT@"]
rules:
  - name: blocked-path
    match: { hosts: ["127.0.0.1:@PORT@"], paths: ["/admin/*"] }
    action: deny
  - name: open
    match: { hosts: ["127.0.0.1:@PORT@"], paths: ["/open/*"] }
    action: allow
  - name: strict
    match: { hosts: ["127.0.0.1:@PORT@"], paths: ["/strict/*"] }
    require_reference: true
  - name: tls-only-inject
    match: { hosts: ["127.0.0.1:@PORT@"], paths: ["/tlsonly/*"] }
    inject:
      headers: { X-Key: "{{secrets.tls_only}}" }
  - name: body-refs
    match: { hosts: ["127.0.0.1:@PORT@"], paths: ["/body/*"] }
    references: [headers, query, body]
  - name: local
    match: { hosts: ["127.0.0.1:@PORT@"] }
    references: [headers, query]
"""


class Base(unittest.TestCase):
    policy = POLICY
    config = None
    allow_private = True

    def setUp(self):
        self.up = Upstream(Reply(200, b"fine")).start()
        self.addCleanup(self.up.stop)
        self.sk = proxy_sidekey(fill(self.policy, PORT=self.up.port),
                                secrets={"bound_here": BOUND, "bound_elsewhere": ELSEWHERE, "tls_only": TLS_ONLY,
                                         "unbound": UNBOUND},
                                config=self.config, allow_private=self.allow_private)
        self.sk.start()
        self.addCleanup(self.sk.__exit__, None, None, None)
        self.seen = []
        self.proxies = {"http": self.sk.proxy_url}

    def tearDown(self):
        self.assertIsNone(self.sk.proc.poll(), "sidekey died during the test:\n" + self.sk.logs()[-2000:])
        if self.sk.proc and self.sk.proc.poll() is None:
            self.seen.append(metrics_text(self.sk))
        self.sk.assert_never_contains(self, PLAINTEXTS, self.seen)

    def get(self, url, **kw):
        kw.setdefault("timeout", 20)
        kw.setdefault("proxies", self.proxies)
        r = requests.get(url, **kw)
        self.seen += [r.text, json.dumps(dict(r.headers))]
        return r

    def raw(self, head):
        with RawClient(self.sk.proxy_addr) as c:
            c.send(head)
            r = c.read_response()
        self.seen.append(r.raw.decode("latin-1"))
        return r

    def refused(self, r, status, code, **fields):
        """Asserts the refusal, its audit line, and that the upstream saw nothing."""
        err = error_of(self, r, status, code)
        for k, v in fields.items():
            self.assertEqual(err.get(k), v, err)
        rid = err["request_id"]
        rec = wait_audit(self.sk, rid)
        self.assertEqual(rec["status"], status)
        self.assertEqual(rec["error"], code)
        self.assertTrue(self.up.seen_nothing(),
                        "the upstream got %d connections / %d bytes for a refused request" %
                        (self.up.connections, self.up.received_bytes))
        return err


class RefusalTest(Base):
    # -- policy_denied ------------------------------------------------------------------------
    def test_policy_denied_by_a_deny_rule(self):
        r = self.get(self.up.url + "/admin/users", headers={"X-Key": "{{secrets.bound_here}}"})
        err = self.refused(r, 403, "policy_denied", rule="blocked-path", host="127.0.0.1")
        self.assertIn("blocked-path", err["message"])
        rec = wait_audit(self.sk, err["request_id"])
        self.assertEqual(rec["decision"], "deny")
        self.assertEqual(rec["rule"], "blocked-path")

    def test_policy_denied_by_default(self):
        r = self.get("http://198.51.100.20:%d/anything" % self.up.port)
        err = self.refused(r, 403, "policy_denied", host="198.51.100.20")
        self.assertNotIn("rule", err)
        self.assertIn("default", err["message"])

    def test_policy_denied_for_another_port_of_the_same_host(self):
        r = self.get("http://127.0.0.1:%d/x" % free_port())
        self.refused(r, 403, "policy_denied")

    # -- secret_not_bound ---------------------------------------------------------------------
    def test_secret_not_bound_in_a_header(self):
        r = self.get(self.up.url + "/v1/x", headers={"Authorization": "Bearer {{secrets.bound_elsewhere}}"})
        self.refused(r, 403, "secret_not_bound", secret="bound_elsewhere", rule="local", host="127.0.0.1")

    def test_secret_not_bound_in_a_query_string(self):
        r = self.raw("GET %s/v1/x?key={{secrets.bound_elsewhere}} HTTP/1.1\r\nHost: x\r\n\r\n" % self.up.url)
        self.refused(r, 403, "secret_not_bound", secret="bound_elsewhere")

    def test_secret_not_bound_percent_encoded_in_a_query_string(self):
        for q in ("%7B%7Bsecrets.bound_elsewhere%7D%7D", "%7b%7bsecrets.bound_elsewhere%7d%7d",
                  "%7B%7B%20secrets.bound_elsewhere%20%7D%7D", "pre%7B%7Bsecrets.bound_elsewhere%7D%7Dpost"):
            r = self.raw("GET %s/v1/x?a=1&key=%s HTTP/1.1\r\nHost: x\r\n\r\n" % (self.up.url, q))
            self.refused(r, 403, "secret_not_bound", secret="bound_elsewhere")

    def test_secret_not_bound_through_requests_url_encoding(self):
        # requests percent-encodes the braces itself.
        r = self.get(self.up.url + "/v1/x", params={"key": "{{secrets.bound_elsewhere}}"})
        self.refused(r, 403, "secret_not_bound", secret="bound_elsewhere")

    def test_secret_bound_to_no_host(self):
        r = self.get(self.up.url + "/v1/x", headers={"X-Key": "{{secrets.unbound}}"})
        self.refused(r, 403, "secret_not_bound", secret="unbound")

    # -- unknown_secret -----------------------------------------------------------------------
    def test_unknown_secret(self):
        r = self.get(self.up.url + "/v1/x", headers={"X-Key": "{{secrets.no_such_secret}}"})
        self.refused(r, 403, "unknown_secret", secret="no_such_secret")

    def test_unknown_secret_in_the_query(self):
        r = self.raw("GET %s/v1/x?k=%%7B%%7Bsecrets.ghost%%7D%%7D HTTP/1.1\r\nHost: x\r\n\r\n" % self.up.url)
        self.refused(r, 403, "unknown_secret", secret="ghost")

    # -- reference_not_allowed ----------------------------------------------------------------
    def test_reference_in_a_header_on_an_allow_rule(self):
        r = self.get(self.up.url + "/open/x", headers={"X-Key": "{{secrets.bound_here}}"})
        self.refused(r, 403, "reference_not_allowed", rule="open", secret="bound_here")

    def test_reference_in_the_query_on_an_allow_rule(self):
        r = self.raw("GET %s/open/x?k={{secrets.bound_here}} HTTP/1.1\r\nHost: x\r\n\r\n" % self.up.url)
        self.refused(r, 403, "reference_not_allowed", rule="open")

    def test_reference_in_the_path(self):
        r = self.raw("GET %s/v1/%%7B%%7Bsecrets.bound_here%%7D%%7D HTTP/1.1\r\nHost: x\r\n\r\n" % self.up.url)
        self.refused(r, 403, "reference_not_allowed")

    def test_allow_rule_without_references_is_forwarded_untouched(self):
        # The control for the refusals above: same rule, no reference → forwarded.
        r = self.get(self.up.url + "/open/x", headers={"X-Plain": "v"})
        self.assertEqual(r.status_code, 200)
        self.assertEqual(self.up.requests[0].header("X-Plain"), "v")

    # -- reference_required -------------------------------------------------------------------
    def test_reference_required(self):
        r = self.get(self.up.url + "/strict/x", headers={"X-Key": "no reference here"})
        self.refused(r, 403, "reference_required", rule="strict")

    def test_reference_required_satisfied(self):
        r = self.get(self.up.url + "/strict/x", headers={"X-Key": "{{secrets.bound_here}}"})
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(self.up.requests[0].header("X-Key"), BOUND)

    # -- bad_request ----------------------------------------------------------------------------
    def test_bad_request_for_malformed_requests(self):
        cases = [
            "GARBAGE\r\n\r\n",
            "GET http://user:pw@127.0.0.1:%d/ HTTP/1.1\r\nHost: x\r\n\r\n" % self.up.port,   # userinfo
            "GET http://127.0.0.1:%d:99/ HTTP/1.1\r\nHost: x\r\n\r\n" % self.up.port,
            "GET http:///nohost HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET ftp://127.0.0.1:%d/ HTTP/1.1\r\nHost: x\r\n\r\n" % self.up.port,
            "GET * HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET %s/x HTTP/9.9\r\nHost: x\r\n\r\n" % self.up.url,
        ]
        for head in cases:
            with self.subTest(head=head.split("\r\n")[0]):
                r = self.raw(head)
                self.refused(r, 400, "bad_request")

    def test_bad_request_for_a_malformed_reference(self):
        for value in ("{{secrets.}}", "{{secrets.bad name}}", "{{secrets.x"):
            with self.subTest(value=value):
                r = self.get(self.up.url + "/v1/x", headers={"X-Key": value})
                self.refused(r, 400, "bad_request")

    def test_refusal_messages_with_bytes_that_are_not_utf8(self):
        # The message quotes what the agent sent (a coding, a query key); bytes that are not UTF-8
        # become U+FFFD in the JSON instead of ending the connection without an answer or an
        # audit line.
        cases = [
            b"POST %s/body/j HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Encoding: gz\xffip\r\nContent-Length: 2\r\n\r\n{}" % self.up.url.encode(),
            b"GET %s/v1/x?%%ff={{secrets.b%%20d}} HTTP/1.1\r\nHost: x\r\n\r\n" % self.up.url.encode(),
        ]
        for head in cases:
            with self.subTest(head=head.split(b"\r\n")[0]):
                r = self.raw(head)
                err = self.refused(r, 400, "bad_request")
                self.assertIn("\ufffd", err["message"])

    def test_connection_field_cannot_hide_a_body_from_substitution(self):
        # "Connection: Content-Length" strips the field (hop-by-hop) but the body still follows:
        # its reference is substituted, as without the token, never sent on literally.
        body = b'{"a":"{{secrets.bound_here}}"}'
        for connection in ("close, Content-Length", "Content-Type, Content-Length"):
            with self.subTest(connection=connection):
                r = self.raw(b"POST %s/body/j HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Connection: %s\r\nContent-Length: %d\r\n\r\n%s"
                             % (self.up.url.encode(), connection.encode(), len(body), body))
                self.assertEqual(r.status, 200, r.raw)
                got = self.up.requests[-1].body
                self.assertEqual(got, b'{"a":"%s"}' % BOUND.encode())
                self.assertNotIn(b"{{secrets", got)

    # -- invariant 4: references that cannot be resolved fail closed ---------------------------
    def test_no_partial_substitution(self):
        # One reference resolves, the other does not: nothing is sent, not even the good half.
        r = self.get(self.up.url + "/v1/x", headers={"X-A": "{{secrets.bound_here}}", "X-B": "{{secrets.ghost}}"})
        self.refused(r, 403, "unknown_secret", secret="ghost")
        r = self.raw("GET %s/v1/x?a={{secrets.bound_here}}&b={{secrets.bound_elsewhere}} HTTP/1.1\r\nHost: x\r\n\r\n"
                     % self.up.url)
        self.refused(r, 403, "secret_not_bound", secret="bound_elsewhere")

    def test_refused_connection_stays_usable_or_closes_cleanly(self):
        # A refusal of a bodiless request keeps the connection; the next request works.
        with RawClient(self.sk.proxy_addr) as c:
            c.send("GET %s/v1/x HTTP/1.1\r\nHost: x\r\nX-K: {{secrets.ghost}}\r\n\r\n" % self.up.url)
            r1 = c.read_response()
            self.assertEqual(r1.status, 403)
            c.send("GET %s/v1/y HTTP/1.1\r\nHost: x\r\nX-K: {{secrets.bound_here}}\r\n\r\n" % self.up.url)
            r2 = c.read_response()
            self.assertEqual(r2.status, 200)
            self.seen += [r1.raw.decode("latin-1"), r2.raw.decode("latin-1")]
        self.assertEqual([q.path for q in self.up.requests], ["/v1/y"])

    # -- invariant 2: plaintext only to the binding, over TLS unless http:// ----------------------
    def test_tls_only_binding_refuses_plain_http(self):
        r = self.get(self.up.url + "/tlsonly/x")
        err = self.refused(r, 403, "secret_not_bound", secret="tls_only", rule="tls-only-inject")
        self.assertIn("TLS", err["message"])

    def test_reference_to_a_secret_of_another_host_over_a_route(self):
        # (the route's upstream is the destination; see RouteBindingTest for the route itself)
        r = self.get(self.up.url + "/v1/x", headers={"Authorization": "{{secrets.bound_elsewhere}}"})
        self.refused(r, 403, "secret_not_bound")


class RouteAndPinTest(Base):
    """Invariant 2 through reverse routes and pinned names: the destination is the route upstream
    or the name, never the address it happens to be dialed at."""

    policy = """version: 1
default: deny
secrets:
  bound_here:
    hosts: ["http://127.0.0.1:@PORT@"]
  bound_elsewhere:
    hosts: ["http://api.elsewhere.test:@PORT@"]
routes:
  - prefix: /elsewhere/
    upstream: http://api.elsewhere.test:@PORT@/
  - prefix: /here/
    upstream: http://127.0.0.1:@PORT@/
rules:
  - name: elsewhere
    match: { hosts: ["api.elsewhere.test:@PORT@"] }
    references: [headers, query]
  - name: body-refs
    match: { hosts: ["127.0.0.1:@PORT@"], paths: ["/body/*"] }
    references: [headers, query, body]
  - name: local
    match: { hosts: ["127.0.0.1:@PORT@"] }
    references: [headers, query]
"""

    def setUp(self):
        # The pin names the upstream's port: start the upstream first.
        self.up = Upstream(Reply(200, b"fine")).start()
        self.addCleanup(self.up.stop)
        policy = fill(self.policy, PORT=self.up.port)
        self.sk = proxy_sidekey(policy, secrets={"bound_here": BOUND, "bound_elsewhere": ELSEWHERE},
                                config={"egress": {"allow_private": ["127.0.0.0/8"],
                                                   "resolve": {"api.elsewhere.test:%d" % self.up.port: self.up.addr}}})
        self.sk.start()
        self.addCleanup(self.sk.__exit__, None, None, None)
        self.seen = []
        self.proxies = {"http": self.sk.proxy_url}

    def test_route_to_the_bound_host_injects(self):
        r = requests.get(self.sk.proxy_url + "/elsewhere/v1/x", headers={"X-K": "{{secrets.bound_elsewhere}}"},
                         timeout=20)
        self.seen.append(r.text)
        self.assertEqual(r.status_code, 200, r.text)
        req = self.up.requests[0]
        self.assertEqual(req.header("X-K"), ELSEWHERE)
        self.assertEqual(req.header("Host"), "api.elsewhere.test:%d" % self.up.port)
        self.assertEqual(req.target, "/v1/x")

    def test_route_to_another_host_refuses(self):
        r = requests.get(self.sk.proxy_url + "/here/v1/x", headers={"X-K": "{{secrets.bound_elsewhere}}"},
                         timeout=20)
        self.seen.append(r.text)
        self.refused(r, 403, "secret_not_bound", secret="bound_elsewhere", host="127.0.0.1")

    def test_pinned_address_is_not_the_binding(self):
        # Same server, reached by its address rather than the bound name: refused.
        r = self.get(self.up.url + "/v1/x", headers={"X-K": "{{secrets.bound_elsewhere}}"})
        self.refused(r, 403, "secret_not_bound")

    def test_absolute_form_to_the_pinned_name_injects(self):
        r = self.get("http://api.elsewhere.test:%d/v1/x" % self.up.port, headers={"X-K": "{{secrets.bound_elsewhere}}"})
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(self.up.requests[0].header("X-K"), ELSEWHERE)


class UpstreamTlsTest(unittest.TestCase):
    """Invariant 2: without http:// in the binding, plaintext goes only over *verified* TLS."""

    POLICY = """version: 1
default: deny
secrets:
  tls_only:
    hosts: ["127.0.0.1:@PORT@"]
rules:
  - name: tls-inject
    match: { hosts: ["127.0.0.1:@PORT@"] }
    inject:
      headers: { Authorization: "Bearer {{secrets.tls_only}}" }
"""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="sidekey-tls-")
        cls.cert, cls.key = self_signed_cert(cls.dir, "127.0.0.1")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def run_case(self, trusted):
        with Upstream(Reply(200, b"tls-fine"), ssl_context=tls_server_context(self.cert, self.key)) as up:
            config = {"tls": {"upstream_ca_file": self.cert}} if trusted else None
            with proxy_sidekey(fill(self.POLICY, PORT=up.port), secrets={"tls_only": TLS_ONLY}, config=config) as sk:
                # Absolute-form https:// through the forward proxy: sidekey makes the TLS leg.
                with RawClient(sk.proxy_addr) as c:
                    c.send("GET https://127.0.0.1:%d/v1/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % up.port)
                    r = c.read_response()
                sk.assert_never_contains(self, [TLS_ONLY], [r.raw.decode("latin-1")])
                return up, r

    def test_unverified_certificate_gets_nothing(self):
        up, r = self.run_case(trusted=False)
        self.assertEqual(r.status, 502, r.body)
        self.assertEqual(r.json()["error"]["code"], "upstream_tls_failed")
        self.assertEqual(up.requests, [], "a request was written over unverified TLS")
        self.assertGreaterEqual(up.tls_failures, 1)

    def test_verified_certificate_gets_the_secret(self):
        up, r = self.run_case(trusted=True)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.body, b"tls-fine")
        self.assertEqual(up.requests[0].header("Authorization"), "Bearer " + TLS_ONLY)


# -- egress_blocked and invariant 6 -----------------------------------------------------------------

class EgressBlockedTest(Base):
    """No egress.allow_private: loopback and every other blocked range stay blocked, however the
    address is spelled."""

    allow_private = False
    policy = "version: 1\ndefault: allow\n"

    def blocked(self, url, codes=("egress_blocked",)):
        r = self.raw("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % url)
        self.assertEqual(r.status, 400 if r.json()["error"]["code"] == "bad_request" else 403, r.body)
        self.assertIn(r.json()["error"]["code"], codes, "%s: %s" % (url, r.body))
        self.refused(r, r.status, r.json()["error"]["code"])

    def test_ipv4_mapped_ipv6_loopback(self):
        self.blocked("http://[::ffff:127.0.0.1]:%d/" % self.up.port)

    def test_loopback_literal(self):
        self.blocked("http://127.0.0.1:%d/" % self.up.port)

    def test_name_resolving_to_loopback(self):
        self.blocked("http://localhost:%d/" % self.up.port)

    def test_cloud_metadata_address(self):
        self.blocked("http://169.254.169.254/latest/meta-data/")

    def test_other_blocked_ranges(self):
        for url in ("http://0.0.0.0:%d/" % self.up.port,            # reaches local listeners on Linux
                    "http://[::]:%d/" % self.up.port,
                    "http://[::1]:%d/" % self.up.port,
                    "http://[64:ff9b::7f00:1]:%d/" % self.up.port,   # NAT64 embedding of 127.0.0.1
                    "http://[2002:7f00:1::1]:%d/" % self.up.port,    # 6to4 embedding of 127.0.0.1
                    "http://[::ffff:a9fe:a9fe]/",                    # mapped 169.254.169.254
                    "http://10.1.2.3/", "http://172.16.0.1/", "http://192.168.1.1/",
                    "http://100.64.0.1/", "http://[fd00::1]/", "http://[fe80::1]/", "http://224.0.0.1/"):
            with self.subTest(url=url):
                self.blocked(url)

    def test_numeric_host_spellings_never_reach_loopback(self):
        # Names a resolver would read as IPv4 (127.1, 2130706433, 0x7f000001, 0177.0.0.1) are
        # refused as malformed or blocked: never dialed.
        for host in ("127.1", "2130706433", "0x7f000001", "0x7f.0.0.1", "0177.0.0.1", "127.0.0.1.",
                     "127.0.0.%31", "%31%32%37.0.0.1", "LOCALHOST", "localhost."):
            with self.subTest(host=host):
                self.blocked("http://%s:%d/" % (host, self.up.port), codes=("egress_blocked", "bad_request"))

    def test_blocked_in_a_reverse_route_too(self):
        self.sk.write_policy(fill("""version: 1
default: allow
routes:
  - prefix: /loop/
    upstream: http://localhost:@PORT@/
""", PORT=self.up.port))
        self.sk.proc.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: metric_value(metrics_text(self.sk), "sidekey_policy_reloads_total",
                                                      result="ok") == 1))
        r = requests.get(self.sk.proxy_url + "/loop/x", timeout=20)
        self.refused(r, 403, "egress_blocked", host="localhost")


class EgressPinTest(unittest.TestCase):
    """Invariant 6: the proxy dials exactly the vetted (here: pinned) address, no second lookup."""

    def test_pinned_name_is_dialed_at_the_pinned_address_only(self):
        with Upstream(Reply(200, b"decoy")) as decoy, Upstream(Reply(200, b"pinned")) as pinned:
            # localhost:DECOY would reach the decoy if the name were resolved again.
            policy = fill("version: 1\ndefault: allow\n")
            with proxy_sidekey(policy, allow_private=False,
                               config={"egress": {"resolve": {"localhost:%d" % decoy.port: pinned.addr}}}) as sk:
                r = requests.get("http://localhost:%d/p" % decoy.port, proxies={"http": sk.proxy_url}, timeout=20)
                self.assertEqual(r.status_code, 200, r.text)
                self.assertEqual(r.text, "pinned")
                self.assertEqual(pinned.requests[0].header("Host"), "localhost:%d" % decoy.port)
                self.assertTrue(decoy.seen_nothing())
                # The pin is for that authority only: another port of the same name is vetted.
                r = requests.get("http://localhost:%d/p" % pinned.port, proxies={"http": sk.proxy_url}, timeout=20)
                self.assertEqual(r.status_code, 403, r.text)
                self.assertEqual(r.json()["error"]["code"], "egress_blocked")
                self.assertEqual(len(pinned.requests), 1)

    def test_every_resolved_address_is_vetted(self):
        # allow_private covers 127.0.0.0/8 only: a name that also resolves to ::1 stays blocked.
        addrs = {a[4][0] for a in socket.getaddrinfo("localhost", 80, proto=socket.IPPROTO_TCP)}
        if not any(":" in a for a in addrs):
            self.skipTest("localhost has no IPv6 address here: %s" % addrs)
        with Upstream() as up, proxy_sidekey("version: 1\ndefault: allow\n") as sk:
            r = requests.get("http://localhost:%d/" % up.port, proxies={"http": sk.proxy_url}, timeout=20)
            self.assertEqual(r.status_code, 403)
            self.assertEqual(r.json()["error"]["code"], "egress_blocked")
            self.assertTrue(up.seen_nothing())


# -- upstream failures ------------------------------------------------------------------------------

class UpstreamFailureTest(unittest.TestCase):
    POLICY = """version: 1
default: deny
secrets:
  bound_here:
    hosts: ["http://127.0.0.1:@PORT@"]
rules:
  - name: local
    match: { hosts: ["127.0.0.1:@PORT@"] }
    inject:
      headers: { Authorization: "Bearer {{secrets.bound_here}}" }
"""

    def test_upstream_connect_failed(self):
        port = free_port()
        with proxy_sidekey(fill(self.POLICY, PORT=port), secrets={"bound_here": BOUND}) as sk:
            r = requests.get("http://127.0.0.1:%d/x" % port, proxies={"http": sk.proxy_url}, timeout=20)
            err = error_of(self, r, 502, "upstream_connect_failed")
            self.assertEqual(err.get("host"), "127.0.0.1")
            rec = wait_audit(sk, err["request_id"])
            self.assertEqual(rec["status"], 502)
            sk.assert_never_contains(self, [BOUND], [r.text])

    def test_upstream_connect_failed_for_an_unresolvable_name(self):
        with proxy_sidekey("version: 1\ndefault: allow\n") as sk:
            r = requests.get("http://no-such-host.invalid/x", proxies={"http": sk.proxy_url}, timeout=30)
            error_of(self, r, 502, "upstream_connect_failed")

    def test_upstream_timeout(self):
        release = __import__("threading").Event()
        with Upstream(Hang(release)) as up:
            with proxy_sidekey(fill(self.POLICY, PORT=up.port), secrets={"bound_here": BOUND},
                               config={"limits": {"request_timeout": "1s"}}) as sk:
                try:
                    r = requests.get(up.url + "/slow", proxies={"http": sk.proxy_url}, timeout=30)
                finally:
                    release.set()
                err = error_of(self, r, 504, "upstream_timeout")
                self.assertEqual(err.get("host"), "127.0.0.1")
                self.assertEqual(len(up.requests), 1, "the request went up, the answer never came")
                rec = wait_audit(sk, err["request_id"])
                self.assertEqual(rec["error"], "upstream_timeout")
                sk.assert_never_contains(self, [BOUND], [r.text])

    def test_upstream_closes_without_answering(self):
        from upstreams import Raw
        with Upstream(Raw(b"")) as up, proxy_sidekey(fill(self.POLICY, PORT=up.port),
                                                    secrets={"bound_here": BOUND}) as sk:
            r = requests.get(up.url + "/x", proxies={"http": sk.proxy_url}, timeout=20)
            error_of(self, r, 502, "upstream_connect_failed")


# -- invariant 3: a binding grows only through the policy or a request carrying the value -----------

class BindingGrowthTest(unittest.TestCase):
    POLICY = """version: 1
default: deny
rules:
  - name: local
    match: { hosts: ["127.0.0.1:@PORT@", "127.0.0.1:@PORT2@"] }
    references: [headers, query]
"""

    def test_binding_grows_only_with_the_value(self):
        with Upstream(Reply(200, b"one")) as up, Upstream(Reply(200, b"two")) as up2:
            with proxy_sidekey(fill(self.POLICY, PORT=up.port, PORT2=up2.port)) as sk:
                api = sk.api_url + "/ap/v1/agent/secrets"
                seen = []

                def call(url, **kw):
                    r = requests.get(url, proxies={"http": sk.proxy_url}, timeout=20, **kw)
                    seen.append(r.text)
                    return r

                created = requests.post(api, headers=sk.auth(), timeout=10, json={
                    "secret_key": "apikey", "secret_value": API_VALUE, "allowed_hosts": ["http://other.test:1"]})
                self.assertEqual(created.status_code, 200, created.text)
                seen.append(created.text)
                ref = {"X-K": "{{secrets.apikey}}"}
                r = call(up.url + "/a", headers=ref)
                error_of(self, r, 403, "secret_not_bound")

                # Attempts that do not carry the value change nothing.
                for body in ({"secret_key": "apikey", "allowed_hosts": ["http://127.0.0.1:%d" % up.port]},
                             {"secret_key": "apikey", "secret_value": "", "allowed_hosts": [up.addr]}):
                    bad = requests.post(api, headers=sk.auth(), json=body, timeout=10)
                    seen.append(bad.text)
                    self.assertEqual(bad.status_code, 422, bad.text)
                sid = created.json()["secret_id"]
                for method in ("PUT", "PATCH"):
                    bad = requests.request(method, api + "/" + sid, headers=sk.auth(), timeout=10,
                                           json={"allowed_hosts": ["http://127.0.0.1:%d" % up.port]})
                    seen.append(bad.text)
                    self.assertGreaterEqual(bad.status_code, 400)
                r = call(up.url + "/b", headers=ref)
                error_of(self, r, 403, "secret_not_bound")
                self.assertTrue(up.seen_nothing())

                # The request that carries the value grows the binding, by what it names only.
                grown = requests.post(api, headers=sk.auth(), timeout=10, json={
                    "secret_key": "apikey", "secret_value": API_VALUE,
                    "allowed_hosts": ["http://127.0.0.1:%d" % up.port]})
                self.assertEqual(grown.status_code, 200, grown.text)
                seen.append(grown.text)
                self.assertEqual(sorted(grown.json()["allowed_hosts"]),
                                 sorted(["http://other.test:1", "http://127.0.0.1:%d" % up.port]))
                r = call(up.url + "/c", headers=ref)
                self.assertEqual(r.status_code, 200, r.text)
                self.assertEqual(up.requests[0].header("X-K"), API_VALUE)
                r = call(up2.url + "/d", headers=ref)
                error_of(self, r, 403, "secret_not_bound")
                self.assertTrue(up2.seen_nothing())
                sk.assert_never_contains(self, [API_VALUE], seen)

    def test_policy_reload_grows_and_shrinks_the_binding(self):
        with Upstream(Reply(200, b"ok")) as up:
            base = fill(self.POLICY, PORT=up.port, PORT2=free_port())
            with proxy_sidekey(base, secrets={"envsecret": BOUND}) as sk:
                ref = {"X-K": "{{secrets.envsecret}}"}
                r = requests.get(up.url + "/a", headers=ref, proxies={"http": sk.proxy_url}, timeout=20)
                error_of(self, r, 403, "secret_not_bound")
                sk.write_policy(base + fill('secrets:\n  envsecret:\n    hosts: ["http://127.0.0.1:@PORT@"]\n',
                                            PORT=up.port))
                sk.proc.send_signal(signal.SIGHUP)
                self.assertTrue(wait_for(lambda: requests.get(up.url + "/b", headers=ref, timeout=20,
                                                              proxies={"http": sk.proxy_url}).status_code == 200))
                self.assertEqual(up.requests[0].header("X-K"), BOUND)
                sk.write_policy(base)
                sk.proc.send_signal(signal.SIGHUP)
                self.assertTrue(wait_for(lambda: requests.get(up.url + "/c", headers=ref, timeout=20,
                                                              proxies={"http": sk.proxy_url}).status_code == 403))


# -- invariant 9: a bad policy never replaces a good one ------------------------------------------

GOOD = """version: 1
default: deny
secrets:
  bound_here:
    hosts: ["http://127.0.0.1:@PORT@"]
rules:
  - name: local
    match: { hosts: ["127.0.0.1:@PORT@"] }
    inject:
      headers: { Authorization: "Bearer {{secrets.bound_here}}" }
"""

BAD_SYNTAX = "version: 1\ndefault: deny\nrules:\n  - name: x\n    match: { hosts: [\"a.test\"\n"
BAD_KEY = "version: 1\ndefault: deny\nrules:\n  - name: x\n    match: { hosts: [\"a.test\"] }\n    bogus: 1\n"
BAD_BINDING = """version: 1
default: deny
secrets:
  s: { hosts: ["b.test"] }
rules:
  - name: x
    match: { hosts: ["a.test"] }
    inject: { headers: { A: "{{secrets.s}}" } }
"""


class BadPolicyTest(unittest.TestCase):
    def test_bad_policy_at_start_exits_nonzero_naming_file_line_column(self):
        for text, line_col in ((BAD_KEY, ":6:5:"), (BAD_BINDING, ":8:"), (BAD_SYNTAX, ":")):
            with self.subTest(policy=text.splitlines()[-1]):
                sk = proxy_sidekey(text)
                try:
                    with self.assertRaises(RuntimeError) as cm:
                        sk.start()
                    self.assertNotEqual(sk.proc.returncode, 0)
                    msg = str(cm.exception)
                    self.assertRegex(msg, r"policy\.yaml:\d+:\d+:", msg)
                    self.assertIn("policy.yaml" + line_col, msg)
                finally:
                    sk.__exit__(None, None, None)

    def test_bad_config_at_start_exits_nonzero_naming_file_line_column(self):
        sk = proxy_sidekey(GOOD, config={"limits": {"max_connections": "many"}})
        try:
            with self.assertRaises(RuntimeError) as cm:
                sk.start()
            self.assertNotEqual(sk.proc.returncode, 0)
            self.assertRegex(str(cm.exception), r"sidekey\.yaml:\d+:\d+:")
        finally:
            sk.__exit__(None, None, None)

    def check_bad_reload(self, trigger):
        with Upstream(Reply(200, b"ok")) as up, proxy_sidekey(fill(GOOD, PORT=up.port),
                                                             secrets={"bound_here": BOUND}) as sk:
            errors = lambda: metric_value(metrics_text(sk), "sidekey_policy_reloads_total", result="error") or 0
            self.assertEqual(errors(), 0)
            for n, bad in enumerate((BAD_SYNTAX, BAD_KEY, BAD_BINDING), start=1):
                sk.write_policy(bad)
                if trigger == "sighup":
                    sk.proc.send_signal(signal.SIGHUP)
                self.assertTrue(wait_for(lambda: errors() >= n, timeout=15),
                                "reload error %d not counted: %s" % (n, metrics_text(sk)))
                # The old policy is still in force: injection still works.
                r = requests.get(up.url + "/still", proxies={"http": sk.proxy_url}, timeout=20)
                self.assertEqual(r.status_code, 200, r.text)
                self.assertEqual(up.last().header("Authorization"), "Bearer " + BOUND)
            self.assertIn("policy_reload_failed", sk.logs())
            self.assertRegex(sk.logs(), r"policy\.yaml:\d+:\d+")
            self.assertEqual(requests.get(sk.admin_url + "/readyz", timeout=10).status_code, 200)
            self.assertEqual(sk.proc.poll(), None)
            sk.assert_never_contains(self, [BOUND])

    def test_bad_policy_on_sighup_keeps_the_old_one(self):
        self.check_bad_reload("sighup")

    def test_bad_policy_on_file_change_keeps_the_old_one(self):
        self.check_bad_reload("file")


if __name__ == "__main__":
    unittest.main()
