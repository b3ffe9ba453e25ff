"""WebSocket upgrades on an inject rule (SPEC section 5: "WebSocket upgrades on inject rules are
relayed after the handshake"): the upstream gets the upgrade request with the injected
Authorization header, answers 101, and frames then flow both ways untouched. Plain ws:// through
HTTP_PROXY (absolute-form) and wss:// through TLS interception (CONNECT). The client side is raw
sockets; the upstream is a minimal WebSocket echo server (upstreams.WebSocketEcho)."""
import base64
import os
import shutil
import tempfile
import unittest

from upstreams import (RawClient, Reply, TestCA, Upstream, WebSocketEcho, error_of, fill, open_tunnel, proxy_sidekey,
                       tls_over, tls_server_context, wait_audit, ws_accept, ws_frame, ws_read_frame)

SECRET = "ws-token-PLAINTEXT-1a2b3c4d5e"
WSS_SECRET = "wss-token-PLAINTEXT-6f7e8d9c"
WSS_HOST = "ws.openai.test"

POLICY = """version: 1
default: deny
secrets:
  ws:
    hosts: ["http://127.0.0.1:@PORT@"]
  wss:
    hosts: ["ws.openai.test"]
rules:
  - name: ws-plain
    match: { hosts: ["127.0.0.1:@PORT@"] }
    inject:
      headers: { Authorization: "Bearer {{secrets.ws}}" }
  - name: ws-tls
    match: { hosts: ["ws.openai.test"] }
    inject:
      headers: { Authorization: "Bearer {{secrets.wss}}" }
"""


def upgrade_request(target, host, extra=""):
    key = base64.b64encode(os.urandom(16)).decode()
    return key, ("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n" % (target, host, key, extra))


@unittest.skipUnless(shutil.which("openssl"), "needs the openssl command")
class WebSocketTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sidekey-ws-ca-")
        cls.ca = TestCA(cls.tmp)
        cls.leaf_cert, cls.leaf_key = cls.ca.issue([WSS_HOST], stem="upstream")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.echo = WebSocketEcho()
        self.up = Upstream(lambda req: self.route(req)).start()
        self.addCleanup(self.up.stop)
        self.tls_echo = WebSocketEcho()
        self.tls_up = Upstream(self.tls_echo, ssl_context=tls_server_context(self.leaf_cert, self.leaf_key)).start()
        self.addCleanup(self.tls_up.stop)
        self.sk = proxy_sidekey(fill(POLICY, PORT=self.up.port), secrets={"ws": SECRET, "wss": WSS_SECRET}, config={
            "egress": {"resolve": {WSS_HOST + ":443": "127.0.0.1:%d" % self.tls_up.port}},
            "tls": {"upstream_ca_file": self.ca.cert}})
        self.sk.start()
        self.addCleanup(self.sk.__exit__, None, None, None)
        self.seen = []     # every byte the client received
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()
        self.assertIsNone(self.sk.proc.poll(), "sidekey died during the test:\n" + self.sk.logs()[-3000:])
        self.sk.assert_never_contains(self, [SECRET, WSS_SECRET], self.seen)

    def handshake(self, c, request, key):
        c.send(request)
        status, headers = c.read_head_only()
        self.seen.append(repr(headers))
        h = {n.lower(): v for n, v in headers}
        self.assertEqual(status, 101, headers)
        self.assertEqual(h.get("upgrade", "").lower(), "websocket")
        self.assertIn("upgrade", h.get("connection", "").lower())
        self.assertEqual(h.get("sec-websocket-accept"), ws_accept(key))
        self.assertTrue(h.get("x-sidekey-request-id"))
        return h["x-sidekey-request-id"]

    def echo_round_trips(self, c):
        c.send(ws_frame("hello through sidekey"))
        self.assertEqual(ws_read_frame(c.reader), (1, b"hello through sidekey", False))
        # A frame with a 64-bit length, in one write.
        big = os.urandom(70000)
        c.send(ws_frame(big, opcode=2))
        opcode, payload, masked = ws_read_frame(c.reader)
        self.assertEqual((opcode, masked), (2, False))
        self.assertEqual(payload, big)
        # Several frames in one write come back in order.
        c.send(b"".join(ws_frame("msg-%d" % i) for i in range(5)))
        for i in range(5):
            self.assertEqual(ws_read_frame(c.reader)[1], b"msg-%d" % i)
        c.send(ws_frame(b"\x03\xe8", opcode=8))
        self.assertEqual(ws_read_frame(c.reader)[0], 8)

    def check_upstream_handshake(self, echo, secret, host):
        self.assertEqual(len(echo.handshakes), 1)
        req = echo.handshakes[0]
        self.assertEqual(req.header_all("Authorization"), ["Bearer " + secret])
        self.assertEqual(req.header("Upgrade").lower(), "websocket")
        self.assertIn("upgrade", req.header("Connection").lower())
        self.assertTrue(req.header("Sec-WebSocket-Key"))
        self.assertEqual(req.header("Sec-WebSocket-Version"), "13")
        self.assertEqual(req.header("Host"), host)
        self.assertEqual(echo.unmasked_from_client, 0, "client frames reach the upstream masked, as sent")

    def test_ws_through_http_proxy(self):
        c = RawClient(self.sk.proxy_addr)
        self.clients.append(c)
        host = "127.0.0.1:%d" % self.up.port
        key, req = upgrade_request("http://%s/socket?v=1" % host, host, "Authorization: Bearer agent-junk\r\n")
        rid = self.handshake(c, req, key)
        self.echo_round_trips(c)
        self.check_upstream_handshake(self.echo, SECRET, host)
        self.assertEqual(self.echo.handshakes[0].target, "/socket?v=1")
        self.assertTrue(c.is_closed(10), "the upstream's close reaches the client")
        c.close()   # the tunnel (and its audit line) ends once both sides have closed
        rec = wait_audit(self.sk, rid)
        self.assertEqual(rec["status"], 101)
        self.assertEqual(rec["secrets"], ["ws"])
        self.assertEqual(rec["rule"], "ws-plain")
        self.assertGreater(rec["bytes_in"], 70000)
        self.assertGreater(rec["bytes_out"], 70000)

    def test_wss_through_interception(self):
        c, status, resp = open_tunnel(self.sk.proxy_addr, WSS_HOST + ":443")
        self.clients.append(c)
        self.assertEqual(status, 200, resp)
        t = tls_over(c, os.path.join(self.sk.data_dir, "ca.pem"), server_hostname=WSS_HOST)
        self.clients.append(t)
        key, req = upgrade_request("/v1/realtime?model=x", WSS_HOST)
        rid = self.handshake(t, req, key)
        self.echo_round_trips(t)
        self.check_upstream_handshake(self.tls_echo, WSS_SECRET, WSS_HOST)
        self.assertTrue(t.is_closed(10), "the upstream's close reaches the client")
        t.close()
        rec = wait_audit(self.sk, rid)
        self.assertEqual(rec["status"], 101)
        self.assertEqual(rec["secrets"], ["wss"])
        self.assertEqual(rec["scheme"], "https")
        self.assertEqual(rec["host"], WSS_HOST)

    def route(self, req):
        if req.path == "/refuse":
            return Reply(401, b"upgrade refused")
        if req.path == "/unasked":
            def switch(req, w):  # a 101 to a request that asked for no upgrade
                w.head(101, [("Upgrade", "websocket"), ("Connection", "Upgrade")])
                w.send(b"not http any more")
                return True
            return switch
        return self.echo

    def test_switch_the_request_did_not_ask_for_is_refused(self):
        c = RawClient(self.sk.proxy_addr)
        self.clients.append(c)
        host = "127.0.0.1:%d" % self.up.port
        c.send("GET http://%s/unasked HTTP/1.1\r\nHost: %s\r\n\r\n" % (host, host))
        r = c.read_response()
        self.seen.append(r.raw.decode("latin-1"))
        err = error_of(self, r, 502, "upstream_connect_failed")
        self.assertIn("switched protocols", err["message"])
        self.assertNotIn(b"not http any more", r.raw)
        # The upstream connection is not reused: the next request opens a new one.
        before = self.up.connections
        c.send("GET http://%s/refuse HTTP/1.1\r\nHost: %s\r\n\r\n" % (host, host))
        self.assertEqual(c.read_response().status, 401)
        self.assertEqual(self.up.connections, before + 1)

    def test_refused_upgrade_keeps_the_connection_usable(self):
        # An upstream that answers the upgrade with an ordinary response: the client gets it, and
        # the connection stays HTTP/1.1 for the next request (here a successful upgrade).
        c = RawClient(self.sk.proxy_addr)
        self.clients.append(c)
        host = "127.0.0.1:%d" % self.up.port
        key, req = upgrade_request("http://%s/refuse" % host, host)
        c.send(req)
        r = c.read_response()
        self.seen.append(r.raw.decode("latin-1"))
        self.assertEqual((r.status, r.body), (401, b"upgrade refused"))
        self.assertTrue(r.header("X-Sidekey-Request-Id"))
        key, req = upgrade_request("http://%s/socket" % host, host)
        self.handshake(c, req, key)
        c.send(ws_frame("after a refusal"))
        self.assertEqual(ws_read_frame(c.reader)[1], b"after a refusal")
        self.check_upstream_handshake(self.echo, SECRET, host)

    def test_upgrade_to_a_denied_host_is_refused(self):
        c = RawClient(self.sk.proxy_addr)
        self.clients.append(c)
        key, req = upgrade_request("http://203.0.113.7/socket", "203.0.113.7")
        c.send(req)
        r = c.read_response()
        self.seen.append(r.raw.decode("latin-1"))
        error_of(self, r, 403, "policy_denied")
        self.assertEqual(self.echo.handshakes, [])


if __name__ == "__main__":
    unittest.main()
