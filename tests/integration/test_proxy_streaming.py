"""Bodies stream through sidekey (SPEC section 5): SSE events reach the client one by one while the
upstream is still sending, request bodies go upstream piece by piece, and a large download is
relayed without buffering. No timing assertions: the upstream waits on a threading.Event per
event that the test sets only after the client has read the previous event, so a proxy that
buffers deadlocks (and the read times out) instead of passing."""
import hashlib
import os
import threading
import unittest

import httpx

from upstreams import (BodyReader, Download, RawClient, Sse, Upstream, fill, proxy_sidekey, wait_audit)
from harness import rss_kib, wait_for

SECRET = "sk-stream-PLAINTEXT-5eeeeee5"

POLICY = """version: 1
default: deny
secrets:
  s:
    hosts: ["http://127.0.0.1:@PORT@"]
routes:
  - prefix: /llm/
    upstream: http://127.0.0.1:@PORT@/v1/
rules:
  - name: local
    match: { hosts: ["127.0.0.1:@PORT@"] }
    inject:
      headers: { Authorization: "Bearer {{secrets.s}}" }
"""

# How long a read may block before the test concludes sidekey holds data back (a deadlock guard,
# not a latency measurement: a streaming proxy answers at once, a buffering one never does).
WAIT = 8

EVENTS = ['{"delta":"Hel"}', '{"delta":"lo"}', '{"delta":", "}', '{"delta":"world"}', "[DONE]"]


class StreamingTest(unittest.TestCase):
    def setUp(self):
        self.up = Upstream(record_stream=False).start()
        self.addCleanup(self.up.stop)
        self.sk = proxy_sidekey(fill(POLICY, PORT=self.up.port), secrets={"s": SECRET})
        self.sk.start()
        self.addCleanup(self.sk.__exit__, None, None, None)

    def tearDown(self):
        self.assertIsNone(self.sk.proc.poll(), "sidekey died during the test:\n" + self.sk.logs()[-2000:])
        self.sk.assert_never_contains(self, [SECRET])

    def follow_sse(self, request, chunked=True):
        """Sends `request`, then reads each event while the upstream holds the next one back."""
        gates = [threading.Event() for _ in EVENTS]
        sse = Sse(EVENTS, gates=gates, chunked=chunked)
        self.up.next(sse)
        try:
            with RawClient(self.sk.proxy_addr, timeout=WAIT) as c:
                c.send(request)
                gates[0].set()
                try:
                    status, headers = c.read_head_only()
                except OSError as e:
                    self.fail("the response head did not reach the client while the upstream waited after "
                              "event 0 (sent so far: %s): %r" % (sse.sent, e))
                self.assertEqual(status, 200)
                self.assertIn(("text/event-stream"), dict((n.lower(), v) for n, v in headers).get("content-type", ""))
                body = BodyReader(c, headers)
                for i, ev in enumerate(EVENTS):
                    try:
                        got = body.read_until(b"\n\n")
                    except OSError as e:   # socket.timeout: the proxy holds the event back
                        self.fail("event %d did not reach the client while the upstream waited "
                                  "(sent so far: %s): %r" % (i, sse.sent, e))
                    self.assertEqual(got, ("data: %s\n\n" % ev).encode())
                    # The upstream has not been allowed to send event i+1 yet.
                    self.assertEqual(sse.sent, list(range(i + 1)))
                    if i + 1 < len(gates):
                        gates[i + 1].set()
                self.assertEqual(body.read_all(), b"")
                rid = dict((n.lower(), v) for n, v in headers)["x-sidekey-request-id"]
        finally:
            for g in gates:
                g.set()
        return rid

    def test_sse_events_arrive_one_by_one_absolute_form(self):
        rid = self.follow_sse("POST %s/v1/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                              "Accept: text/event-stream\r\nContent-Length: 2\r\n\r\n{}" % self.up.url)
        self.assertEqual(self.up.requests[0].header("Authorization"), "Bearer " + SECRET)
        rec = wait_audit(self.sk, rid)
        self.assertEqual(rec["status"], 200)

    def test_sse_events_arrive_one_by_one_through_a_route(self):
        self.follow_sse("POST /llm/chat HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        self.assertEqual(self.up.requests[0].path, "/v1/chat")

    def test_sse_close_delimited_upstream(self):
        # An upstream that ends the stream by closing (no length, not chunked).
        self.follow_sse("GET %s/v1/events HTTP/1.1\r\nHost: x\r\n\r\n" % self.up.url, chunked=False)

    def test_sse_with_httpx(self):
        gates = [threading.Event() for _ in EVENTS]
        sse = Sse(EVENTS, gates=gates)
        self.up.next(sse)
        gates[0].set()
        got = []
        try:
            with httpx.Client(proxies={"http://": self.sk.proxy_url}, timeout=WAIT) as client:
                try:
                    with client.stream("GET", self.up.url + "/v1/events") as r:
                        self.assertEqual(r.status_code, 200)
                        for line in r.iter_lines():
                            line = line.strip()  # Debian's httpx keeps the line ending
                            if not line:
                                continue
                            got.append(line)
                            self.assertEqual(len(sse.sent), len(got), got)
                            if len(got) < len(gates):
                                gates[len(got)].set()
                except httpx.ReadTimeout as e:
                    self.fail("sidekey held the stream back after %d events (upstream sent %s): %r"
                              % (len(got), sse.sent, e))
        finally:
            for g in gates:
                g.set()
        self.assertEqual(got, ["data: " + e for e in EVENTS])

    def test_request_body_pieces_go_upstream_before_the_next_is_sent(self):
        self.up.record_stream = True
        with RawClient(self.sk.proxy_addr, timeout=15) as c:
            c.send("POST %s/v1/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" % self.up.url)
            for i in range(4):
                piece = b"piece-%d-of-the-upload;" % i
                c.send(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.assertTrue(self.up.wait_for_stream(piece, timeout=WAIT),
                                "piece %d was held back by sidekey" % i)
            c.send(b"0\r\n\r\n")
            r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertEqual(self.up.requests[0].body, b"".join(b"piece-%d-of-the-upload;" % i for i in range(4)))

    def test_large_download_streams(self):
        total = 50 << 20
        gate = threading.Event()
        first = 20 << 20
        dl = Download(total, gate_at=first, gate=gate)
        self.up.next(dl)
        before = rss_kib(self.sk.proc.pid)
        peak = before
        h = hashlib.sha256()
        try:
            with RawClient(self.sk.proxy_addr, timeout=20) as c:
                c.send("GET %s/v1/big HTTP/1.1\r\nHost: x\r\n\r\n" % self.up.url)
                status, headers = c.read_head_only()
                self.assertEqual(status, 200)
                fields = dict((n.lower(), v) for n, v in headers)
                # The length is kept, or (scrubbing on an inject rule) the body is re-chunked.
                self.assertTrue(fields.get("content-length") == str(total) or
                                fields.get("transfer-encoding", "").lower() == "chunked", fields)
                body = BodyReader(c, headers)
                got = 0
                # While the upstream is held at the gate, the client can read (nearly) all it sent:
                # a proxy that buffers the whole body would deliver nothing yet.
                while got < first - (1 << 20):
                    try:
                        piece = body.read_some()
                    except OSError as e:
                        self.fail("only %d of the %d bytes sent so far reached the client: %r" % (got, first, e))
                    self.assertTrue(piece, "the body ended early")
                    h.update(piece)
                    got += len(piece)
                # The upstream reaches the gate once its last bytes before it are on their way (in
                # the buffers between it and the client): waited for, as its thread may not have
                # run since.
                self.assertTrue(dl.waiting.wait(WAIT), "the upstream never reached the gate")
                peak = max(peak, rss_kib(self.sk.proc.pid))
                gate.set()
                while True:
                    piece = body.read_some()
                    if not piece:
                        break
                    h.update(piece)
                    got += len(piece)
                    if got % (8 << 20) < len(piece):
                        peak = max(peak, rss_kib(self.sk.proc.pid))
        finally:
            gate.set()
        self.assertEqual(got, total)
        self.assertEqual(h.hexdigest(), hashlib.sha256(Download.expected(total)).hexdigest())
        # AddressSanitizer keeps freed memory in quarantine (hundreds of MB by default), so RSS
        # says nothing about buffering in a sanitized build: the bound holds for normal builds.
        if not os.environ.get("ASAN_OPTIONS"):
            self.assertLess(peak - before, 24 << 10,
                            "sidekey's RSS grew by %d KiB while relaying 50 MiB" % (peak - before))

    def test_large_download_with_httpx(self):
        total = 16 << 20
        self.up.next(Download(total, chunked=True))
        h = hashlib.sha256()
        n = 0
        with httpx.Client(proxies={"http://": self.sk.proxy_url}, timeout=30) as client:
            with client.stream("GET", self.up.url + "/v1/big-chunked") as r:
                self.assertEqual(r.status_code, 200)
                for piece in r.iter_raw():
                    h.update(piece)
                    n += len(piece)
        self.assertEqual(n, total)
        self.assertEqual(h.hexdigest(), hashlib.sha256(Download.expected(total)).hexdigest())

    def test_slow_client_does_not_lose_data(self):
        # The client reads nothing for a while: backpressure, not loss.
        total = 8 << 20
        self.up.next(Download(total))
        with RawClient(self.sk.proxy_addr, timeout=20) as c:
            c.send("GET %s/v1/slow-reader HTTP/1.1\r\nHost: x\r\n\r\n" % self.up.url)
            self.assertTrue(wait_for(lambda: self.up.closed_connections >= 0 and self.up.connections == 1))
            status, headers = c.read_head_only()
            body = BodyReader(c, headers).read_all()
        self.assertEqual(status, 200)
        self.assertEqual(len(body), total)
        self.assertEqual(body, Download.expected(total))


if __name__ == "__main__":
    unittest.main()
