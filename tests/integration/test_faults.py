"""Network faults against the real binary (issue #8): upstreams that reset in the middle of a body,
stall or answer slowly, clients that stall or vanish, names that do not resolve, and upstream TLS
that does not verify (expired, not yet valid, another name, wrong key usage, not TLS at all), with
plain-HTTP `upgrade_tls` and with interception.

Each test checks the refusal of SPEC section 5 where there is one (status, JSON code, request id,
audit line), that sidekey is still serving afterwards (a fresh request through the proxy is
injected and answered, /healthz is 200), that no secret's plaintext reached the client, the log,
the metrics or a file, and that nothing was silently completed or replayed (a cut-short response
is never presented as complete, a failed upload is not retried, an upstream connection that saw
an error is not reused).

Already covered elsewhere, not repeated here: a clean close (FIN) mid response body and malformed
responses (test_proxy_smuggling.UpstreamErrorTest), an upstream that never answers within
request_timeout, connection refused, an unresolvable name in absolute form, an upstream that
closes without answering (test_proxy_refusals.UpstreamFailureTest), untrusted and self-signed
upstream certificates and a certificate for another name through interception
(test_intercept, test_proxy_refusals.UpstreamTlsTest, test_policy_cli.UpgradeTlsTest), idle
keep-alive, silent clients and half-sent heads and bodies (test_proxy_limits.IdleTimeoutTest).

Time limits are guards ("closed within 15 s rather than never"), never measurements."""
import datetime
import os
import shutil
import socket
import ssl
import struct
import tempfile
import threading
import time
import unittest

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from harness import wait_for
from upstreams import (BodyReader, Chunks, Download, Hang, RawClient, Reply, Sse, Upstream, audit_records,
                       error_of, fill, metric_value, metrics_text, open_tunnel, proxy_sidekey, tls_over,
                       tls_server_context, wait_audit)

SECRET = "sk-faults-PLAINTEXT-7a1b2c3d4e5f"
TLS_SECRET = "sk-faults-tls-PLAINTEXT-0e9d8c7b"
PLAINTEXTS = [SECRET, TLS_SECRET]

POLICY = """version: 1
default: deny
secrets:
  s:
    hosts: ["http://127.0.0.1:@PORT@", "http://127.0.0.1:@CPORT@", "http://127.0.0.1:@XPORT@",
            "http://gone.invalid"]
routes:
  - prefix: /gone/
    upstream: http://gone.invalid/
rules:
  - name: local
    match: { hosts: ["127.0.0.1:@PORT@", "127.0.0.1:@XPORT@", "gone.invalid"] }
    inject:
      headers: { Authorization: "Bearer {{secrets.s}}" }
  - name: control
    match: { hosts: ["127.0.0.1:@CPORT@"] }
    inject:
      headers: { Authorization: "Bearer {{secrets.s}}" }
  - name: tunnel-to-nowhere
    match: { hosts: ["nowhere.invalid"] }
    action: allow
"""

# How long a guard waits for something that must happen (a close, a refusal) before failing.
GUARD = 15


def rst_close(sock):
    """Closes `sock` with a TCP reset (SO_LINGER 0) instead of a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def read_until_closed(sock, timeout=GUARD):
    """Reads until the peer closes: (closed, bytes received). closed is False when `timeout`
    passed with the connection still open."""
    sock.settimeout(1.0)
    deadline = time.time() + timeout
    got = b""
    while time.time() < deadline:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, ssl.SSLError, OSError):
            return True, got
        if not data:
            return True, got
        got += data
    return False, got


class ResetAfter:
    """An upstream action: writes `data` (a head and part of a body, or nothing), waits a moment
    so it reaches sidekey, then resets the connection (RST, not FIN)."""

    def __init__(self, data=b"", pause=0.3):
        self.data = data if isinstance(data, bytes) else data.encode("latin-1")
        self.pause = pause
        self.done = threading.Event()

    def __call__(self, req, w):
        if self.data:
            w.send(self.data)
        time.sleep(self.pause)
        rst_close(w.sock)
        self.done.set()
        return False


class DelayedReply:
    """Waits `delay` seconds, then answers like `reply`."""

    def __init__(self, delay, reply):
        self.delay, self.reply = delay, reply

    def __call__(self, req, w):
        time.sleep(self.delay)
        return self.reply(req, w)


class StallMidBody:
    """Sends a head declaring `declared` bytes and `sent` of them, then goes silent until
    `release` is set (or the upstream stops); records when sidekey closed the connection."""

    def __init__(self, declared=100000, sent=1000):
        self.declared, self.sent = declared, sent
        self.release = threading.Event()
        self.peer_closed = threading.Event()

    def __call__(self, req, w):
        w.head(200, [("Content-Type", "text/plain"), ("Content-Length", str(self.declared))])
        w.send(b"s" * self.sent)
        w.sock.settimeout(0.2)
        deadline = time.time() + 60
        while time.time() < deadline and not self.release.is_set() and not w.stop_event.is_set():
            try:
                if w.sock.recv(1) == b"":
                    self.peer_closed.set()
                    break
            except socket.timeout:
                continue
            except OSError:
                self.peer_closed.set()
                break
        return False


class UploadResetServer:
    """A raw TCP server: reads a request until `after` bytes have arrived, then resets the
    connection. Records how many bytes and connections it saw."""

    def __init__(self, after):
        self.after = after
        self.received = b""
        self.connections = 0
        self.reset_done = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.settimeout(GUARD)
            try:
                while len(self.received) < self.after:
                    data = conn.recv(65536)
                    if not data:
                        break
                    self.received += data
            except OSError:
                pass
            rst_close(conn)
            self.reset_done.set()

    def stop(self):
        self._stop.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._thread.join(timeout=5)


class SilentServer:
    """Accepts TCP connections and never says anything (a TLS handshake to it never completes);
    with `greeting`, sends those bytes at once instead (a plain-HTTP server where TLS is expected
    answers a ClientHello with something that is not TLS), and records what it received."""

    def __init__(self, greeting=None):
        self.greeting = greeting
        self.received = b""
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if self.greeting is not None:
                try:
                    conn.sendall(self.greeting)
                    conn.settimeout(2)
                    while True:
                        data = conn.recv(65536)
                        if not data:
                            break
                        self.received += data
                except OSError:
                    pass
                conn.close()

    def stop(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for c in self.conns:
            c.close()
        self._thread.join(timeout=5)


class BlackHole:
    """A port whose connection attempts hang: a listener with a backlog of 0 whose one slot is
    taken by a connection nobody accepts, so the kernel drops further SYNs (no RST, no answer)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.fillers = []
        # Take the queue: the first connection completes (it sits in the accept queue); probe
        # until one hangs, which proves the queue is full.
        for _ in range(4):
            c = socket.socket()
            c.settimeout(0.5)
            try:
                c.connect(("127.0.0.1", self.port))
                self.fillers.append(c)
            except OSError:
                c.close()
                self.works = True
                return
        self.works = False

    def stop(self):
        for c in self.fillers:
            c.close()
        self.sock.close()


class FaultBase(unittest.TestCase):
    """A recording upstream (`up`, the one that misbehaves), a well-behaved control upstream, a
    spare port (XPORT) for servers of a test's own, and sidekey with short limits."""

    limits = {"request_timeout": "3s", "idle_timeout": "2s", "connect_timeout": "2s"}

    def setUp(self):
        self.up = Upstream(Reply(200, b"fine")).start()
        self.addCleanup(self.up.stop)
        self.control = Upstream(Reply(200, b"control-ok")).start()
        self.addCleanup(self.control.stop)
        self.extra = None
        self.extra_port = self.reserve_extra_port()
        self.sk = proxy_sidekey(fill(POLICY, PORT=self.up.port, CPORT=self.control.port, XPORT=self.extra_port),
                                secrets={"s": SECRET}, config={"limits": dict(self.limits)})
        self.sk.start()
        self.addCleanup(self.sk.__exit__, None, None, None)
        self.seen = []

    def reserve_extra_port(self):
        """A test that needs a server of its own on XPORT (reset during upload, black hole,
        silence) defines make_extra_<test name>(), called here, before the policy names the port."""
        maker = getattr(self, "make_extra_" + self._testMethodName, None)
        if maker is None:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            s.close()
            return port
        self.extra = maker()
        self.addCleanup(self.extra.stop)
        return self.extra.port

    def tearDown(self):
        self.assert_still_serving()
        self.seen.append(metrics_text(self.sk))
        self.sk.assert_never_contains(self, PLAINTEXTS, self.seen)

    def assert_still_serving(self):
        """No crash: the process runs, /healthz answers and a fresh request is injected and served."""
        self.assertIsNone(self.sk.proc.poll(), "sidekey died during the test:\n" + self.sk.logs()[-3000:])
        self.assertEqual(requests.get(self.sk.admin_url + "/healthz", timeout=10).status_code, 200)
        before = len(self.control.requests)
        r = requests.get(self.control.url + "/control", proxies={"http": self.sk.proxy_url}, timeout=20)
        self.seen.append(r.text)
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.text, "control-ok")
        self.assertEqual(len(self.control.requests), before + 1)
        self.assertEqual(self.control.last().header("Authorization"), "Bearer " + SECRET)

    def raw(self, c, request):
        c.send(request)
        r = c.read_response()
        self.seen.append(r.raw.decode("latin-1"))
        return r

    def audit_for_path(self, path, timeout=GUARD):
        """The audit line of the (one) request with this path."""
        found = []

        def look():
            found[:] = [a for a in audit_records(self.sk) if a.get("path") == path]
            return bool(found)

        self.assertTrue(wait_for(look, timeout=timeout), "no audit line for %s:\n%s" % (path, self.sk.logs()[-3000:]))
        self.assertEqual(len(found), 1, found)
        return found[0]

    def active_connections(self):
        return metric_value(metrics_text(self.sk), "sidekey_active_connections") or 0


# ------------------------------------------------------------------------------------------------
# Upstream resets (RST) in the middle of a body


class UpstreamResetTest(FaultBase):
    def check_cut_response(self, action, path):
        self.up.next(action)
        with RawClient(self.sk.proxy_addr, timeout=GUARD) as c:
            c.send("GET %s%s HTTP/1.1\r\nHost: x\r\n\r\n" % (self.up.url, path))
            closed, got = read_until_closed(c.sock)
        self.seen.append(got.decode("latin-1"))
        self.assertTrue(closed, "sidekey kept the client connection after the upstream reset mid-body")
        # Whatever arrived must not look like a complete response: the client would take a
        # truncated body for the whole one.
        if got.startswith(b"HTTP/1.1 200"):
            head, _, body = got.partition(b"\r\n\r\n")
            if b"transfer-encoding: chunked" in head.lower():
                self.assertFalse(body.endswith(b"0\r\n\r\n"), "a reset body was completed with a last chunk")
            else:
                cl = [int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")]
                self.assertTrue(cl and len(body) < cl[0], "a reset body was delivered as complete: %r" % head)
        elif got:
            # Nothing relayed yet: then the refusal, not a made-up success.
            self.assertTrue(got.startswith(b"HTTP/1.1 502"), got[:300])
        rec = self.audit_for_path(path)
        self.assertIn(rec["error"], ("upstream_aborted", "upstream_connect_failed"), rec)
        # The broken upstream connection is never reused: the next request dials anew.
        conns = self.up.connections
        r = requests.get(self.up.url + "/after", proxies={"http": self.sk.proxy_url}, timeout=20)
        self.seen.append(r.text)
        self.assertEqual((r.status_code, r.text), (200, "fine"))
        self.assertEqual(self.up.connections, conns + 1)

    def test_reset_mid_response_body_with_content_length(self):
        body = b"a" * 3000
        self.check_cut_response(ResetAfter(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                           b"Content-Length: 100000\r\n\r\n" + body), "/cut-length")

    def test_reset_mid_response_body_chunked(self):
        self.check_cut_response(ResetAfter(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                           b"Transfer-Encoding: chunked\r\n\r\n400\r\n" + b"c" * 1024 + b"\r\n"
                                           b"400\r\n" + b"d" * 100), "/cut-chunked")

    def check_reset_before_the_body(self, action, path):
        """A reset before the response head is complete is a 502; the request was read whole, so
        the client connection is kept and serves the next request, on a new upstream connection."""
        self.up.next(action)
        with RawClient(self.sk.proxy_addr, timeout=GUARD) as c:
            r = self.raw(c, "GET %s%s HTTP/1.1\r\nHost: x\r\n\r\n" % (self.up.url, path))
            err = error_of(self, r, 502, "upstream_connect_failed")
            self.assertEqual(err.get("host"), "127.0.0.1")
            self.assertEqual(wait_audit(self.sk, err["request_id"])["error"], "upstream_connect_failed")
            r2 = self.raw(c, "GET %s/next HTTP/1.1\r\nHost: x\r\n\r\n" % self.up.url)
            self.assertEqual((r2.status, r2.body), (200, b"fine"))
        self.assertEqual([q.path for q in self.up.requests], [path, "/next"], "a request was replayed")
        self.assertNotEqual(self.up.requests[0].conn_id, self.up.requests[1].conn_id)
        self.assertEqual(self.up.requests[1].header("Authorization"), "Bearer " + SECRET)

    def test_reset_before_the_response(self):
        self.check_reset_before_the_body(ResetAfter(b""), "/reset-early")

    def test_reset_in_the_middle_of_the_response_head(self):
        self.check_reset_before_the_body(ResetAfter(b"HTTP/1.1 200 OK\r\nContent-Type: te"), "/cut-head")

    # -- a reset while the request body is still going up -----------------------------------------
    def make_extra_test_reset_during_the_upload(self):
        return UploadResetServer(after=200 << 10)

    def test_reset_during_the_upload(self):
        srv = self.extra
        total = 8 << 20
        piece = b"u" * 65536
        url = "http://127.0.0.1:%d/upload" % srv.port
        c = RawClient(self.sk.proxy_addr, timeout=GUARD)
        self.addCleanup(c.close)
        c.send("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
               "Content-Length: %d\r\n\r\n" % (url, total))
        sent = 0
        send_error = None
        # Keep sending until sidekey has given up on the upload (its write upstream fails, so it
        # stops reading ours and our send blocks or fails), or the body is complete. Stopping
        # early would not do: loopback buffers can take megabytes, so every write upstream may
        # have succeeded before the reset, and an upload that stops mid-body is then the
        # client's stall (client_aborted after the idle timeout), not the upstream's reset.
        c.sock.settimeout(2)
        try:
            while sent < total:
                c.sock.sendall(piece)
                sent += len(piece)
        except (socket.timeout, OSError) as e:
            send_error = e
        self.assertTrue(srv.reset_done.wait(GUARD), "the upload never reached the upstream")
        # The client learns the request failed: a 502 refusal, or (if its unread upload made the
        # close a reset) a closed connection. Never a 200, never a hang.
        closed, got = read_until_closed(c.sock)
        self.seen.append(got.decode("latin-1"))
        self.assertTrue(closed, "sidekey left the client hanging after the upstream reset (sent %d bytes, %r)"
                        % (sent, send_error))
        if got:
            self.assertTrue(got.startswith(b"HTTP/1.1 502"), got[:300])
            self.assertIn(b'"upstream_connect_failed"', got)
        rec = self.audit_for_path("/upload")
        self.assertEqual(rec["status"], 502, rec)
        self.assertEqual(rec["error"], "upstream_connect_failed")
        self.assertEqual(srv.connections, 1, "the upload was retried on a new connection")
        self.assertIn(b"Authorization: Bearer " + SECRET.encode(), srv.received)


# ------------------------------------------------------------------------------------------------
# Pooled upstream connections: what happens to an idle one is noticed before it is reused


class PooledConnectionTest(FaultBase):
    """What arrives on an idle pooled connection is noticed: EOF or bytes nobody asked for
    arriving while it is idle raise an edge the event loop records, the connection is asked
    before it is reused and dropped, and the next request dials anew."""

    def first_exchange(self, c, action):
        self.up.next(action)
        r = self.raw(c, "GET %s/first HTTP/1.1\r\nHost: x\r\n\r\n" % self.up.url)
        self.assertEqual((r.status, r.body), (200, b"first"))

    def second_is_fresh(self, c):
        r = self.raw(c, "GET %s/second HTTP/1.1\r\nHost: x\r\n\r\n" % self.up.url)
        self.assertEqual((r.status, r.body), (200, b"fine"), r.raw[:300])
        first = [q for q in self.up.requests if q.path == "/first"][0]
        second = [q for q in self.up.requests if q.path == "/second"][0]
        self.assertNotEqual(second.conn_id, first.conn_id, "the spoiled pooled connection was reused")
        self.assertIsNone(self.audit_for_path("/second")["error"])

    def test_upstream_closes_an_idle_pooled_connection(self):
        def answer_then_close(req, w):
            Reply(200, b"first")(req, w)  # a keep-alive answer, then the upstream closes anyway
            return False

        with RawClient(self.sk.proxy_addr, timeout=GUARD) as c:
            self.first_exchange(c, answer_then_close)
            self.assertTrue(wait_for(lambda: self.up.closed_connections >= 1, timeout=GUARD))
            time.sleep(0.3)  # the FIN reaches sidekey's idle connection (loopback)
            self.second_is_fresh(c)

    def test_upstream_closes_right_after_answering(self):
        # The next request follows the answer at once: the upstream's FIN and the request reach
        # sidekey in the same turn of its event loop, or the FIN only after the request went
        # out on the closed connection. A server may also first send "408 Request Timeout"
        # (RFC 9110 15.5.9), which can cross the next request. Either way a GET is sent again,
        # once, on a fresh connection, and the 408 is never taken for its answer.
        def then_close(req, w):
            return False

        def then_408(req, w):
            w.send(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            return False

        for name, after in (("close", then_close), ("408", then_408)):
            def answer(req, w, after=after):
                Reply(200, b"answer " + req.path.encode())(req, w)
                return after(req, w)

            with self.subTest(after=name), RawClient(self.sk.proxy_addr, timeout=GUARD) as c:
                for i in range(25):
                    self.up.next(answer)
                    path = "/quick/%s/%d" % (name, i)
                    r = self.raw(c, "GET %s%s HTTP/1.1\r\nHost: x\r\n\r\n" % (self.up.url, path))
                    self.assertEqual((r.status, r.body), (200, b"answer " + path.encode()), r.raw[:300])

    def test_a_post_is_never_sent_twice(self):
        # A request with a body is not replayed: the pooled connection is asked whether it is
        # still open before it is used, and where the upstream's close comes after that (the
        # keep-alive race every proxy has), the answer is a 502, never a second copy upstream.
        def answer_then_close(req, w):
            Reply(200, b"answer " + req.path.encode())(req, w)
            return False

        c = RawClient(self.sk.proxy_addr, timeout=GUARD)
        try:
            for i in range(20):
                self.up.next(answer_then_close)
                path = "/quick/POST/%d" % i
                r = self.raw(c, "POST %s%s HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\npayload" % (self.up.url, path))
                if r.status == 502:
                    error_of(self, r, 502, "upstream_connect_failed")
                    if (r.header("Connection") or "").lower() == "close":
                        c.close()
                        c = RawClient(self.sk.proxy_addr, timeout=GUARD)
                else:
                    self.assertEqual((r.status, r.body), (200, b"answer " + path.encode()), r.raw[:300])
        finally:
            c.close()
        paths = [q.path for q in self.up.requests if q.path.startswith("/quick/POST/")]
        self.assertEqual(len(paths), len(set(paths)), "a POST went upstream twice: %r" % paths)

    def test_pipelined_requests_after_the_upstream_closed(self):
        def answer_then_close(req, w):
            Reply(200, b"answer " + req.path.encode())(req, w)
            return False

        with RawClient(self.sk.proxy_addr, timeout=GUARD) as c:
            for i in range(10):
                self.up.next(answer_then_close, answer_then_close)
                c.send("GET %s/pipe/%d/a HTTP/1.1\r\nHost: x\r\n\r\nGET %s/pipe/%d/b HTTP/1.1\r\nHost: x\r\n\r\n" % (
                    self.up.url, i, self.up.url, i))
                for part in ("a", "b"):
                    r = c.read_response()
                    self.seen.append(r.raw.decode("latin-1"))
                    self.assertEqual((r.status, r.body), (200, ("answer /pipe/%d/%s" % (i, part)).encode()), r.raw[:300])

    def test_bytes_nobody_asked_for_on_an_idle_pooled_connection(self):
        sent = threading.Event()

        def answer_then_stray(req, w):
            Reply(200, b"first")(req, w)
            time.sleep(0.2)
            w.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray")
            sent.set()
            return True

        with RawClient(self.sk.proxy_addr, timeout=GUARD) as c:
            self.first_exchange(c, answer_then_stray)
            self.assertTrue(sent.wait(GUARD))
            time.sleep(0.3)  # the stray bytes reach sidekey's idle connection (loopback)
            self.second_is_fresh(c)

    def test_many_requests_on_one_pooled_connection(self):
        # Each response is read on the reused connection without a first attempt (the socket
        # was drained); nothing is lost or read twice over many reuses, bodies in one piece or
        # several.
        with RawClient(self.sk.proxy_addr, timeout=GUARD) as c:
            for i in range(40):
                body = ("answer %d " % i).encode() * (1 + i % 7)
                self.up.next(Chunks([body[:3], body[3:]], chunked=bool(i % 2), delay=0.01 if i % 3 == 0 else 0))
                r = self.raw(c, "GET %s/many/%d HTTP/1.1\r\nHost: x\r\n\r\n" % (self.up.url, i))
                self.assertEqual((r.status, r.body), (200, body))
        self.assertEqual(len({q.conn_id for q in self.up.requests if q.path.startswith("/many/")}), 1)

    def test_reused_connection_that_never_answers_times_out(self):
        hang = Hang()
        self.addCleanup(hang.release.set)
        with RawClient(self.sk.proxy_addr, timeout=GUARD) as c:
            self.first_exchange(c, Reply(200, b"first"))
            self.up.next(hang)
            r = self.raw(c, "GET %s/hang HTTP/1.1\r\nHost: x\r\n\r\n" % self.up.url)
            error_of(self, r, 504, "upstream_timeout")
            first = [q for q in self.up.requests if q.path == "/first"][0]
            hung = [q for q in self.up.requests if q.path == "/hang"][0]
            self.assertEqual(hung.conn_id, first.conn_id, "the hung request did not go over the pooled connection")
            self.second_is_fresh(c)


# ------------------------------------------------------------------------------------------------
# Slow and stalled upstreams


class SlowUpstreamTest(FaultBase):
    def test_slow_first_byte_within_request_timeout_is_served(self):
        self.up.next(DelayedReply(1.0, Reply(200, b"late but fine")))
        r = requests.get(self.up.url + "/late", proxies={"http": self.sk.proxy_url}, timeout=20)
        self.seen.append(r.text)
        self.assertEqual((r.status_code, r.text), (200, "late but fine"))

    def test_slow_but_steady_body_outlives_every_timeout(self):
        # 8 pieces, 0.7 s apart: 4.9 s in all, longer than request_timeout (3 s) and than
        # idle_timeout (2 s), yet never silent for idle_timeout. Relayed whole.
        from upstreams import Slow
        body = b"".join(b"piece-%d|" % i for i in range(8))
        self.up.next(Slow(body, pieces=8, delay=0.7))
        r = requests.get(self.up.url + "/steady", proxies={"http": self.sk.proxy_url}, timeout=30)
        self.seen.append(r.text)
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.content, body)

    def test_sse_stream_lives_while_events_keep_coming(self):
        events = ["tick-%d" % i for i in range(7)]
        gates = [threading.Event() for _ in events]
        self.up.next(Sse(events, gates=gates))
        timers = [threading.Timer(0.6 * i, g.set) for i, g in enumerate(gates)]
        for t in timers:
            t.start()
        self.addCleanup(lambda: [g.set() for g in gates])
        with RawClient(self.sk.proxy_addr, timeout=GUARD) as c:
            c.send("GET %s/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n" % self.up.url)
            status, headers = c.read_head_only()
            self.assertEqual(status, 200)
            got = BodyReader(c, headers).read_all()
        self.seen.append(got.decode("latin-1"))
        self.assertEqual(got, b"".join(b"data: %s\n\n" % e.encode() for e in events))

    def test_upstream_stalling_mid_body_is_cut_after_idle_timeout(self):
        stall = StallMidBody(declared=100000, sent=1000)
        self.up.next(stall)
        self.addCleanup(stall.release.set)
        with RawClient(self.sk.proxy_addr, timeout=GUARD) as c:
            c.send("GET %s/stall HTTP/1.1\r\nHost: x\r\n\r\n" % self.up.url)
            status, headers = c.read_head_only()
            self.assertEqual(status, 200)
            closed, got = read_until_closed(c.sock)
        self.seen.append(got.decode("latin-1"))
        self.assertTrue(closed, "a stalled upstream body held the client connection open")
        self.assertFalse(got.endswith(b"0\r\n\r\n"), "the stalled body was completed")
        self.assertTrue(stall.peer_closed.wait(GUARD), "sidekey kept the stalled upstream connection")
        rec = self.audit_for_path("/stall")
        self.assertEqual(rec["status"], 200)
        self.assertEqual(rec["error"], "upstream_aborted")

    def test_upstream_timeout_keeps_the_client_connection_usable(self):
        # (the 504 itself: test_proxy_refusals.UpstreamFailureTest.test_upstream_timeout)
        hang = Hang()
        self.addCleanup(hang.release.set)
        self.up.next(hang)
        with RawClient(self.sk.proxy_addr, timeout=GUARD) as c:
            r = self.raw(c, "GET %s/hang HTTP/1.1\r\nHost: x\r\n\r\n" % self.up.url)
            error_of(self, r, 504, "upstream_timeout")
            r2 = self.raw(c, "GET %s/then HTTP/1.1\r\nHost: x\r\n\r\n" % self.up.url)
            self.assertEqual((r2.status, r2.body), (200, "fine".encode()))
        then = [q for q in self.up.requests if q.path == "/then"][0]
        hung = [q for q in self.up.requests if q.path == "/hang"][0]
        self.assertNotEqual(then.conn_id, hung.conn_id, "the timed-out upstream connection was reused")

    def make_extra_test_connect_timeout_is_504(self):
        hole = BlackHole()
        if not hole.works:
            hole.stop()
            raise unittest.SkipTest("could not make a port whose connects hang")
        return hole

    def test_connect_timeout_is_504(self):
        url = "http://127.0.0.1:%d/hole" % self.extra.port
        r = requests.get(url, proxies={"http": self.sk.proxy_url}, timeout=30)
        self.seen.append(r.text)
        err = error_of(self, r, 504, "upstream_timeout")
        self.assertEqual(wait_audit(self.sk, err["request_id"])["error"], "upstream_timeout")

    def make_extra_test_tls_handshake_timeout_is_504(self):
        return SilentServer()

    def test_tls_handshake_timeout_is_504(self):
        # https:// in absolute form: sidekey makes the TLS leg, and the server never answers
        # the ClientHello.
        with RawClient(self.sk.proxy_addr, timeout=GUARD) as c:
            r = self.raw(c, "GET https://127.0.0.1:%d/silent HTTP/1.1\r\nHost: x\r\n\r\n" % self.extra.port)
        err = error_of(self, r, 504, "upstream_timeout")
        self.assertIn("TLS", err["message"])


# ------------------------------------------------------------------------------------------------
# Stalled and vanishing clients


class StalledClientTest(FaultBase):
    limits = {"request_timeout": "3s", "idle_timeout": "1s", "connect_timeout": "2s"}

    def test_drip_fed_head_is_cut(self):
        # Slowloris: a byte of the head every 0.3 s never leaves the connection idle for
        # idle_timeout, but the head as a whole must arrive within it.
        head = ("GET %s/drip HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n\r\n" % (self.up.url, "p" * 200)).encode()
        with RawClient(self.sk.proxy_addr, timeout=GUARD) as c:
            closed = False
            deadline = time.time() + GUARD
            try:
                for b in head:
                    if time.time() > deadline:
                        break
                    c.sock.sendall(bytes([b]))
                    time.sleep(0.3)
            except OSError:
                closed = True
            if not closed:
                closed, _ = read_until_closed(c.sock, timeout=5)
        self.assertTrue(closed, "a drip-fed head kept the connection open for %d s" % GUARD)
        self.assertTrue(self.up.seen_nothing())

    def test_client_that_stops_reading_is_dropped_and_the_upstream_released(self):
        total = 256 << 20
        dl = Download(total)
        self.up.next(dl)
        base = self.active_connections()
        c = RawClient(self.sk.proxy_addr, timeout=GUARD)
        self.addCleanup(c.close)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.send("GET %s/big HTTP/1.1\r\nHost: x\r\n\r\n" % self.up.url)
        status, _ = c.read_head_only()
        self.assertEqual(status, 200)
        # Never read again: sidekey's writes block, then idle_timeout ends both sides.
        self.assertTrue(wait_for(lambda: self.up.closed_connections >= 1, timeout=GUARD),
                        "the upstream connection stayed open behind a client that stopped reading")
        self.assertLess(dl.sent, total, "the whole body was buffered somewhere")
        rec = self.audit_for_path("/big")
        self.assertEqual(rec["error"], "client_aborted")
        self.assertTrue(wait_for(lambda: self.active_connections() <= base, timeout=GUARD),
                        "sidekey_active_connections did not come back to %s" % base)

    def test_client_reset_mid_response(self):
        total = 64 << 20
        dl = Download(total)
        self.up.next(dl)
        c = RawClient(self.sk.proxy_addr, timeout=GUARD)
        c.send("GET %s/vanish HTTP/1.1\r\nHost: x\r\n\r\n" % self.up.url)
        status, headers = c.read_head_only()
        self.assertEqual(status, 200)
        BodyReader(c, headers).read_some()
        rst_close(c.sock)
        self.assertTrue(wait_for(lambda: self.up.closed_connections >= 1, timeout=GUARD),
                        "the upstream connection stayed open after the client vanished")
        self.assertLess(dl.sent, total)
        self.assertEqual(self.audit_for_path("/vanish")["error"], "client_aborted")

    def test_client_reset_mid_upload_never_completes_the_request_upstream(self):
        self.up.record_stream = True
        c = RawClient(self.sk.proxy_addr, timeout=GUARD)
        c.send("POST %s/half HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" % self.up.url)
        c.send(b"h" * 300000)
        self.assertTrue(self.up.wait_for_stream(b"h" * 1000, timeout=GUARD), "the upload never started upstream")
        rst_close(c.sock)
        self.assertTrue(wait_for(lambda: self.up.requests and self.up.requests[0].error, timeout=GUARD),
                        "the upstream connection was not closed after the client vanished")
        self.assertEqual(len(self.up.requests), 1)
        self.assertLess(len(self.up.requests[0].body), 1000000)
        self.assertEqual(self.audit_for_path("/half")["error"], "client_aborted")


# ------------------------------------------------------------------------------------------------
# Names that do not resolve (the absolute-form case: test_proxy_refusals)


class DnsFailureTest(FaultBase):
    def test_reverse_route_to_an_unresolvable_name(self):
        r = requests.get(self.sk.proxy_url + "/gone/v1/x", timeout=30)
        self.seen.append(r.text)
        err = error_of(self, r, 502, "upstream_connect_failed")
        self.assertEqual(err.get("host"), "gone.invalid")
        rec = wait_audit(self.sk, err["request_id"])
        self.assertEqual((rec["status"], rec["error"], rec["host"]), (502, "upstream_connect_failed", "gone.invalid"))

    def test_blind_tunnel_to_an_unresolvable_name(self):
        c, status, resp = open_tunnel(self.sk.proxy_addr, "nowhere.invalid:443", timeout=30)
        self.addCleanup(c.close)
        self.seen.append(resp.raw.decode("latin-1") if resp else "")
        self.assertEqual(status, 502, resp)
        err = error_of(self, resp, 502, "upstream_connect_failed")
        self.assertEqual(wait_audit(self.sk, err["request_id"])["host"], "nowhere.invalid")

    def test_unresolvable_name_keeps_the_client_connection(self):
        with RawClient(self.sk.proxy_addr, timeout=30) as c:
            r = self.raw(c, "GET http://gone.invalid/a HTTP/1.1\r\nHost: gone.invalid\r\n\r\n")
            error_of(self, r, 502, "upstream_connect_failed")
            r = self.raw(c, "GET %s/b HTTP/1.1\r\nHost: x\r\n\r\n" % self.up.url)
            self.assertEqual((r.status, r.body), (200, b"fine"))


# ------------------------------------------------------------------------------------------------
# Upstream TLS that does not verify, through upgrade_tls and through interception


TLS_POLICY = """version: 1
default: deny
secrets:
  t:
    hosts: ["good.test", "expired.test", "future.test", "wrongname.test", "clientonly.test", "plain.test",
            "reset.test", "gone.invalid"]
rules:
  - name: tls-upstreams
    match: { hosts: ["good.test", "expired.test", "future.test", "wrongname.test", "clientonly.test",
                     "plain.test", "reset.test", "gone.invalid"] }
    upgrade_tls: true
    inject:
      headers: { Authorization: "Bearer {{secrets.t}}" }
"""


class CertFactory:
    """A CA of its own and leaves with chosen flaws, made with the cryptography package."""

    def __init__(self, folder):
        self.folder = folder
        now = datetime.datetime.now(datetime.timezone.utc)
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sidekey faults test CA")])
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(days=30))
                     .not_valid_after(now + datetime.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                     .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                                  key_encipherment=False, data_encipherment=False,
                                                  key_agreement=False, key_cert_sign=True, crl_sign=True,
                                                  encipher_only=False, decipher_only=False), critical=True)
                     .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
                     .sign(self.key, hashes.SHA256()))
        self.cert_path = os.path.join(folder, "faults-ca.pem")
        with open(self.cert_path, "wb") as f:
            f.write(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, stem, names, not_before=None, not_after=None, eku=(ExtendedKeyUsageOID.SERVER_AUTH,)):
        now = datetime.datetime.now(datetime.timezone.utc)
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
                   .issuer_name(self.cert.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(not_before or now - datetime.timedelta(days=1))
                   .not_valid_after(not_after or now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                                  critical=False))
        cert = builder.sign(self.key, hashes.SHA256())
        cert_path, key_path = os.path.join(self.folder, stem + ".crt"), os.path.join(self.folder, stem + ".key")
        with open(cert_path, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(key_path, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        return cert_path, key_path


class UpstreamTlsFaultTest(unittest.TestCase):
    """Every flawed upstream gets a 502 upstream_tls_failed and not one byte of a request (so not
    the secret); a good upstream behind the same sidekey keeps working throughout."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sidekey-faults-tls-")
        ca = CertFactory(cls.tmp)
        now = datetime.datetime.now(datetime.timezone.utc)
        day = datetime.timedelta(days=1)
        cls.leaves = {
            "good": ca.issue("good", ["good.test", "reset.test"]),
            "expired": ca.issue("expired", ["expired.test"], not_before=now - 10 * day, not_after=now - day),
            "future": ca.issue("future", ["future.test"], not_before=now + day, not_after=now + 10 * day),
            "clientonly": ca.issue("clientonly", ["clientonly.test"], eku=(ExtendedKeyUsageOID.CLIENT_AUTH,)),
        }
        cls.ca = ca

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.ups = {}
        for name in ("good", "expired", "future", "clientonly"):
            up = Upstream(Reply(200, b"tls-ok-" + name.encode()), ssl_context=tls_server_context(*self.leaves[name]))
            self.ups[name] = up.start()
            self.addCleanup(up.stop)
        # A plain-HTTP server where TLS is expected; its answer to a ClientHello is not TLS.
        self.plain = SilentServer(greeting=b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                                          b"Connection: close\r\n\r\n")
        self.addCleanup(self.plain.stop)
        resolve = {"good.test:443": self.ups["good"].addr, "expired.test:443": self.ups["expired"].addr,
                   "future.test:443": self.ups["future"].addr, "clientonly.test:443": self.ups["clientonly"].addr,
                   # the good upstream's certificate does not name wrongname.test
                   "wrongname.test:443": self.ups["good"].addr, "plain.test:443": "127.0.0.1:%d" % self.plain.port,
                   "reset.test:443": self.ups["good"].addr}
        self.sk = proxy_sidekey(TLS_POLICY, secrets={"t": TLS_SECRET},
                                config={"egress": {"resolve": resolve},
                                        "tls": {"upstream_ca_file": self.ca.cert_path},
                                        "limits": {"request_timeout": "5s", "idle_timeout": "3s",
                                                   "connect_timeout": "3s"}})
        self.sk.start()
        self.addCleanup(self.sk.__exit__, None, None, None)
        self.sk_ca = os.path.join(self.sk.data_dir, "ca.pem")
        self.seen = []
        self.clients = []
        self.addCleanup(lambda: [c.close() for c in self.clients])

    def tearDown(self):
        self.assertIsNone(self.sk.proc.poll(), "sidekey died during the test:\n" + self.sk.logs()[-3000:])
        self.assertEqual(requests.get(self.sk.admin_url + "/healthz", timeout=10).status_code, 200)
        # The good upstream still works through both paths, with the secret injected.
        self.assertEqual(self.via_upgrade("good.test", "/control").status, 200)
        self.assertEqual(self.via_intercept("good.test", "/control").status, 200)
        self.assertEqual(self.ups["good"].last().header("Authorization"), "Bearer " + TLS_SECRET)
        self.seen.append(metrics_text(self.sk))
        self.sk.assert_never_contains(self, PLAINTEXTS, self.seen)

    def via_upgrade(self, host, path):
        """A plain-HTTP request that upgrade_tls sends upstream over TLS."""
        c = RawClient(self.sk.proxy_addr, timeout=GUARD)
        self.clients.append(c)
        c.send("GET http://%s%s HTTP/1.1\r\nHost: %s\r\n\r\n" % (host, path, host))
        r = c.read_response()
        self.seen.append(r.raw.decode("latin-1"))
        return r

    def via_intercept(self, host, path):
        """CONNECT, TLS with sidekey's minted leaf, then the request inside."""
        c, status, resp = open_tunnel(self.sk.proxy_addr, host + ":443")
        self.clients.append(c)
        self.assertEqual(status, 200, resp)
        t = tls_over(c, self.sk_ca, server_hostname=host)
        self.clients.append(t)
        t.send("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, host))
        r = t.read_response()
        self.seen.append(r.raw.decode("latin-1"))
        return r

    def check_refused(self, host, upstream=None):
        for how, call in (("upgrade_tls", self.via_upgrade), ("interception", self.via_intercept)):
            with self.subTest(via=how):
                r = call(host, "/v1/%s" % how)
                err = error_of(self, r, 502, "upstream_tls_failed")
                self.assertEqual(err.get("host"), host)
                rec = wait_audit(self.sk, err["request_id"])
                self.assertEqual((rec["status"], rec["error"]), (502, "upstream_tls_failed"))
        if upstream is not None:
            self.assertEqual(upstream.requests, [], "a request (and the secret) went to an upstream that failed TLS")

    def test_expired_certificate(self):
        self.check_refused("expired.test", self.ups["expired"])
        # Both handshakes were refused by sidekey (the server thread notices a moment later).
        self.assertTrue(wait_for(lambda: self.ups["expired"].tls_failures >= 2, timeout=GUARD),
                        self.ups["expired"].tls_failures)

    def test_a_record_nobody_asked_for_behind_the_answer(self):
        # The answer and a stray response leave in one TCP segment, as two TLS records: sidekey
        # reads both with the answer's last read, and the second stays in its TLS stream (no edge
        # will report it). The next request must not take that connection and get the stray.
        def answer_then_stray(req, w):
            w.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
            Reply(200, b"first")(req, w)
            w.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray")
            w.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
            return True

        good = self.ups["good"]
        for i in range(3):
            with self.subTest(round=i):
                good.next(answer_then_stray)
                first = self.via_upgrade("good.test", "/first/%d" % i)
                self.assertEqual((first.status, first.body), (200, b"first"))
                second = self.via_upgrade("good.test", "/second/%d" % i)
                self.assertEqual((second.status, second.body), (200, b"tls-ok-good"), second.raw[:300])
                a = [q for q in good.requests if q.path == "/first/%d" % i][0]
                b = [q for q in good.requests if q.path == "/second/%d" % i][0]
                self.assertNotEqual(a.conn_id, b.conn_id, "the connection holding the stray record was reused")

    def test_certificate_not_yet_valid(self):
        self.check_refused("future.test", self.ups["future"])

    def test_certificate_for_another_name_through_upgrade_tls(self):
        # (through interception: test_intercept.test_upstream_certificate_for_another_name_is_502)
        self.check_refused("wrongname.test", self.ups["good"])

    def test_certificate_for_client_authentication_only(self):
        self.check_refused("clientonly.test", self.ups["clientonly"])

    def test_plain_http_where_tls_is_expected(self):
        self.check_refused("plain.test")
        self.assertNotIn(b"Authorization", self.plain.received)
        self.assertNotIn(TLS_SECRET.encode(), self.plain.received)

    def test_unresolvable_name_through_interception_and_upgrade_tls(self):
        for how, call in (("upgrade_tls", self.via_upgrade), ("interception", self.via_intercept)):
            with self.subTest(via=how):
                r = call("gone.invalid", "/v1/x")
                err = error_of(self, r, 502, "upstream_connect_failed")
                self.assertEqual(err.get("host"), "gone.invalid")

    def test_reset_mid_response_inside_interception(self):
        good = self.ups["good"]
        good.next(ResetAfter(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 50000\r\n\r\n"
                             + b"r" * 2000))
        c, status, resp = open_tunnel(self.sk.proxy_addr, "reset.test:443")
        self.clients.append(c)
        self.assertEqual(status, 200)
        t = tls_over(c, self.sk_ca, server_hostname="reset.test")
        self.clients.append(t)
        t.send("GET /cut HTTP/1.1\r\nHost: reset.test\r\n\r\n")
        closed, got = read_until_closed(t.sock)
        self.seen.append(got.decode("latin-1"))
        self.assertTrue(closed, "the tunnel stayed open after the upstream reset mid-body")
        self.assertFalse(got.endswith(b"0\r\n\r\n"), "a reset body was completed")
        self.assertTrue(wait_for(lambda: [a for a in audit_records(self.sk) if a.get("path") == "/cut"], timeout=GUARD))
        recs = [a for a in audit_records(self.sk) if a.get("path") == "/cut"]
        self.assertEqual(recs[0]["error"], "upstream_aborted")

    def test_reused_connection_closed_without_close_notify_is_tried_again(self):
        # A TLS upstream that ends an idle keep-alive connection with a bare TCP close (no
        # close_notify, as many do) just as sidekey reuses it: the read sees a truncated stream
        # before a byte of the answer. A GET goes again, once, on a fresh connection.
        good = self.ups["good"]

        def vanish_on_reuse(req, w):
            if req.index_on_conn > 0:
                return False  # reads the request, answers nothing, closes without close_notify
            Reply(200, b"answer " + req.path.encode())(req, w)
            return True

        self.each_way_twice(good, vanish_on_reuse)

    def test_reused_connection_closed_with_close_notify_is_tried_again(self):
        # The same race with a clean TLS close (close_notify, then FIN: Go, nginx and Python
        # close idle connections this way): a whole record was read, and it said nothing.
        good = self.ups["good"]

        def close_cleanly_on_reuse(req, w):
            if req.index_on_conn > 0:
                try:
                    w.sock.unwrap()
                except (OSError, ValueError):
                    pass
                return False
            Reply(200, b"answer " + req.path.encode())(req, w)
            return True

        self.each_way_twice(good, close_cleanly_on_reuse)

    def each_way_twice(self, good, handler):
        """Two GETs through each path with `handler` answering; the second goes on the reused
        connection, which the handler spoils, and then once on a fresh one."""
        usual = good.handler
        good.handler = handler
        try:
            self.both_paths_twice(good)
        finally:
            good.handler = usual  # tearDown checks the good upstream still answers

    def both_paths_twice(self, good):
        for how, host in (("upgrade_tls", "good.test"), ("interception", "reset.test")):
            with self.subTest(via=how):
                if how == "upgrade_tls":
                    c = RawClient(self.sk.proxy_addr, timeout=GUARD)
                    self.clients.append(c)
                    send = lambda path: c.send("GET http://%s%s HTTP/1.1\r\nHost: %s\r\n\r\n" % (host, path, host))
                    read = c.read_response
                else:
                    c, status, resp = open_tunnel(self.sk.proxy_addr, host + ":443")
                    self.clients.append(c)
                    self.assertEqual(status, 200, resp)
                    t = tls_over(c, self.sk_ca, server_hostname=host)
                    self.clients.append(t)
                    send = lambda path: t.send("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, host))
                    read = t.read_response
                for path in ("/%s/first" % how, "/%s/second" % how):
                    send(path)
                    r = read()
                    self.seen.append(r.raw.decode("latin-1"))
                    self.assertEqual((r.status, r.body), (200, b"answer " + path.encode()), r.raw[:300])
                second = [q for q in good.requests if q.path == "/%s/second" % how]
                self.assertEqual([q.index_on_conn for q in second], [1, 0],
                                 "sent on the reused connection, then once on a fresh one")


    def test_reused_connection_closed_inside_an_answer_record_is_not_tried_again(self):
        # The answer had begun: part of a TLS record arrived (OpenSSL can decrypt none of it yet)
        # before the bare TCP close. Not "closed before a byte of the answer": no second copy of
        # the request goes upstream, the client gets a 502.
        good = self.ups["good"]

        def half_a_record_on_reuse(req, w):
            if req.index_on_conn == 0:
                Reply(200, b"answer " + req.path.encode())(req, w)
                return True
            # An application-data record header announcing 256 bytes, and 40 of them.
            socket.socket.send(w.sock, b"\x17\x03\x03\x01\x00" + b"\x5a" * 40)
            time.sleep(0.2)
            return False

        usual = good.handler
        good.handler = half_a_record_on_reuse
        try:
            c = RawClient(self.sk.proxy_addr, timeout=GUARD)
            self.clients.append(c)
            for path in ("/record/first", "/record/second"):
                c.send("GET http://good.test%s HTTP/1.1\r\nHost: good.test\r\n\r\n" % path)
                r = c.read_response()
                self.seen.append(r.raw.decode("latin-1"))
                if path.endswith("first"):
                    self.assertEqual(r.status, 200, r.raw[:300])
            error_of(self, r, 502, "upstream_connect_failed")
            self.assertEqual(len([q for q in good.requests if q.path == "/record/second"]), 1,
                             "the request went upstream twice")
        finally:
            good.handler = usual

if __name__ == "__main__":
    unittest.main()
