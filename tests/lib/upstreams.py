"""Recording HTTP/1.1 upstreams and raw-socket helpers for the proxy integration tests.

    with Upstream() as up:                       # echoes every request as JSON
        ... send requests through sidekey to up.url ...
        up.requests[0].header("Authorization"), up.connections, up.received_bytes

An Upstream is a threaded HTTP/1.1 server on 127.0.0.1:0 written on raw sockets, so that it sees
exactly the bytes the proxy wrote (no normalizing server library in between) and can answer in
ways a well-behaved server would not (close mid-body, never answer, malformed responses).

What it answers is an *action*: a callable `action(req, w) -> keep_alive` that writes the response
through `w` (a ConnWriter). Set `up.handler` to an action (or a function `req -> action`) for every
request, or queue one-shot actions with `up.next(action)`. The actions below cover what the tests
need: Echo, Reply, Sse, Download, Slow, CloseMidBody, Hang, Raw.

Every request is recorded (RecordedRequest: method, target, path, headers as received, body,
raw bytes, the connection it came on) before the action runs, so once a client has seen the
response the record is there.
"""
import hashlib
import json
import re
import socket
import subprocess
import threading
import time
import types
import urllib.parse


# ------------------------------------------------------------------------------------------------
# Recorded requests


class RecordedRequest:
    def __init__(self, conn_id, index_on_conn):
        self.conn_id = conn_id              # 1-based number of the accepted connection
        self.index_on_conn = index_on_conn  # 0 for the first request on that connection
        self.method = ""
        self.target = ""
        self.version = ""
        self.headers = []      # [(name, value)] in the order received, names as written
        self.body = b""
        self.raw = b""         # head and body bytes exactly as received (chunk framing included)
        self.chunked = False
        self.expect_continue = False
        self.sent_continue = False
        self.error = None      # why the upstream could not parse it (the proxy sent garbage)

    @property
    def path(self):
        return self.target.split("?", 1)[0]

    @property
    def query(self):
        return urllib.parse.parse_qs(self.target.split("?", 1)[1] if "?" in self.target else "",
                                     keep_blank_values=True)

    def header(self, name, default=None):
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return default

    def header_all(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def has_header(self, name):
        return any(n.lower() == name.lower() for n, _ in self.headers)

    def header_names(self):
        return [n.lower() for n, _ in self.headers]

    def to_json(self):
        return {"method": self.method, "target": self.target, "path": self.path, "version": self.version,
                "headers": [[n, v] for n, v in self.headers], "body": self.body.decode("latin-1"),
                "body_length": len(self.body), "body_sha256": hashlib.sha256(self.body).hexdigest(),
                "chunked": self.chunked, "conn_id": self.conn_id, "index_on_conn": self.index_on_conn}

    def __repr__(self):
        return "<%s %s conn=%d #%d>" % (self.method, self.target, self.conn_id, self.index_on_conn)


class _Closed(Exception):
    pass


class _Reader:
    """Buffered reads from a socket that also keeps every byte of the current message."""

    def __init__(self, sock, on_bytes):
        self.sock = sock
        self.buf = b""
        self.msg = bytearray()
        self.on_bytes = on_bytes

    def _fill(self):
        data = self.sock.recv(262144)
        if not data:
            raise _Closed()
        self.on_bytes(len(data), data)
        self.buf += data

    def read_until(self, sep, limit=1 << 20):
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out, self.buf = self.buf[:i + len(sep)], self.buf[i + len(sep):]
                self.msg += out
                return out
            if len(self.buf) > limit:
                raise ValueError("line too long")
            self._fill()

    def read_exact(self, n, keep=True):
        parts = []
        while n > 0:
            if not self.buf:
                self._fill()
            take = self.buf[:n]
            self.buf = self.buf[n:]
            n -= len(take)
            parts.append(take)
        out = b"".join(parts)
        self.msg += out
        return out

    def take_message(self):
        m, self.msg = bytes(self.msg), bytearray()
        return m


def _parse_head(head):
    text = head.decode("latin-1")
    lines = text.split("\r\n") if "\r\n" in text else text.split("\n")
    request_line = lines[0].split(" ")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        headers.append((name, value.strip(" \t")))
    return request_line, headers


# ------------------------------------------------------------------------------------------------
# Writing responses


class ConnWriter:
    """The connection an action answers on."""

    def __init__(self, sock, stop_event):
        self.sock = sock
        self.stop_event = stop_event   # set when the upstream stops: long waits should give up

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    @staticmethod
    def head_text(status, headers=(), reason=None):
        reason = reason if reason is not None else _REASONS.get(status, "Whatever")
        lines = ["HTTP/1.1 %d %s" % (status, reason)]
        lines += ["%s: %s" % (n, v) for n, v in headers]
        return "\r\n".join(lines) + "\r\n\r\n"

    def head(self, status, headers=(), reason=None):
        self.send(self.head_text(status, headers, reason))

    def chunk(self, data):
        if isinstance(data, str):
            data = data.encode()
        if data:
            self.send(b"%x\r\n" % len(data) + data + b"\r\n")

    def end_chunks(self, trailers=()):
        self.send(b"0\r\n" + b"".join(("%s: %s\r\n" % t).encode() for t in trailers) + b"\r\n")

    def wait(self, event, timeout=30):
        """Waits for a test's go-ahead; False when the upstream is stopping or the wait timed out."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if event.wait(0.05):
                return True
            if self.stop_event.is_set():
                return False
        return False


_REASONS = {100: "Continue", 200: "OK", 201: "Created", 204: "No Content", 304: "Not Modified",
            400: "Bad Request", 404: "Not Found", 500: "Internal Server Error", 503: "Service Unavailable"}


def _no_body(req, status):
    return req.method == "HEAD" or status in (204, 304) or 100 <= status < 200


class Reply:
    """A fixed response. `chunked` sends the body as chunks of `chunk_size`; `no_length` delimits
    the body by closing the connection; `close` adds Connection: close and closes; `one_write`
    sends head and body in one write, so that they reach the proxy together (in its first read of
    the response, at least 4 KB, when they fit)."""

    def __init__(self, status=200, body=b"", headers=(), reason=None, chunked=False, chunk_size=None,
                 close=False, no_length=False, content_type="text/plain", one_write=False):
        self.status, self.body, self.headers, self.reason = status, body, list(headers), reason
        if isinstance(self.body, str):
            self.body = self.body.encode()
        self.chunked, self.chunk_size, self.close, self.no_length = chunked, chunk_size, close, no_length
        self.content_type = content_type
        self.one_write = one_write

    def __call__(self, req, w):
        headers = list(self.headers)
        if self.content_type and self.status not in (204, 304):
            headers.append(("Content-Type", self.content_type))
        skip_body = _no_body(req, self.status)
        if self.chunked and self.status not in (204, 304):
            headers.append(("Transfer-Encoding", "chunked"))
        elif self.no_length:
            pass
        elif self.status not in (204, 304):
            headers.append(("Content-Length", str(len(self.body))))
        close = self.close or self.no_length
        if close:
            headers.append(("Connection", "close"))
        if self.one_write and not self.chunked:
            w.send(w.head_text(self.status, headers, self.reason).encode("latin-1") + (b"" if skip_body else self.body))
            return not close
        w.head(self.status, headers, self.reason)
        if not skip_body:
            if self.chunked:
                size = self.chunk_size or max(1, len(self.body))
                for i in range(0, len(self.body), size):
                    w.chunk(self.body[i:i + size])
                w.end_chunks()
            else:
                w.send(self.body)
        return not close


class Echo:
    """200 with a JSON description of the request (RecordedRequest.to_json). Echoes headers, so
    never use it where a test looks for leaked plaintext in what the client received."""

    def __init__(self, status=200, headers=(), one_write=False, pad=0):
        self.status, self.headers, self.one_write, self.pad = status, list(headers), one_write, pad

    def __call__(self, req, w):
        doc = req.to_json()
        if self.pad:
            doc["pad"] = "p" * self.pad
        return Reply(self.status, json.dumps(doc).encode(), self.headers, content_type="application/json",
                     one_write=self.one_write)(req, w)


class Sse:
    """text/event-stream, chunked. Before event i the action waits for gates[i] (a
    threading.Event the test sets), so a test can prove the stream is relayed event by event."""

    def __init__(self, events, gates=None, chunked=True):
        self.events = events
        self.gates = gates
        self.chunked = chunked
        self.sent = []   # indexes of the events written so far
        self.finished = threading.Event()

    def __call__(self, req, w):
        headers = [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")]
        headers.append(("Transfer-Encoding", "chunked") if self.chunked else ("Connection", "close"))
        w.head(200, headers)
        for i, ev in enumerate(self.events):
            if self.gates and not w.wait(self.gates[i]):
                return False
            data = ev if isinstance(ev, bytes) else ("data: %s\n\n" % ev).encode()
            # Recorded before the write: a client may see the event before this thread runs again.
            self.sent.append(i)
            if self.chunked:
                w.chunk(data)
            else:
                w.send(data)
        if self.chunked:
            w.end_chunks()
        self.finished.set()
        return self.chunked


class Download:
    """`total` bytes of a repeating pattern, streamed in pieces of `piece` bytes, with a
    Content-Length (or chunked). `sent` counts what has been written so far."""

    PATTERN = bytes(range(256)) * 256   # 64 KiB

    def __init__(self, total, piece=65536, chunked=False, gate_at=None, gate=None):
        """gate_at/gate: after `gate_at` bytes, wait for the threading.Event `gate`."""
        self.total, self.piece, self.chunked = total, piece, chunked
        self.gate_at, self.gate = gate_at, gate
        self.sent = 0
        self.waiting = threading.Event()   # set while held at the gate

    @classmethod
    def expected(cls, total):
        reps = total // len(cls.PATTERN) + 1
        return (cls.PATTERN * reps)[:total]

    def __call__(self, req, w):
        headers = [("Content-Type", "application/octet-stream")]
        headers.append(("Transfer-Encoding", "chunked") if self.chunked else ("Content-Length", str(self.total)))
        w.head(200, headers)
        if req.method == "HEAD":
            return True
        offset = 0
        while offset < self.total:
            if self.gate is not None and offset == self.gate_at:
                self.waiting.set()
                if not w.wait(self.gate, timeout=60):
                    return False
                self.waiting.clear()
            n = min(self.piece, self.total - offset)
            if self.gate_at is not None and offset < self.gate_at:
                n = min(n, self.gate_at - offset)
            start = offset % len(self.PATTERN)
            data = (self.PATTERN[start:] + self.PATTERN)[:n]
            if self.chunked:
                w.chunk(data)
            else:
                w.send(data)
            offset += n
            self.sent = offset
        if self.chunked:
            w.end_chunks()
        return True


class Slow:
    """The body in `pieces` parts with `delay` seconds between them (Content-Length framing)."""

    def __init__(self, body, pieces=4, delay=0.2, status=200):
        self.body = body if isinstance(body, bytes) else body.encode()
        self.pieces, self.delay, self.status = pieces, delay, status

    def __call__(self, req, w):
        w.head(self.status, [("Content-Type", "text/plain"), ("Content-Length", str(len(self.body)))])
        size = max(1, -(-len(self.body) // self.pieces))
        for i in range(0, len(self.body), size):
            if i:
                time.sleep(self.delay)
            w.send(self.body[i:i + size])
        return True


class CloseMidBody:
    """Declares `declared` bytes of body, sends `sent` of them, closes."""

    def __init__(self, declared=1000, sent=100):
        self.declared, self.sent = declared, sent

    def __call__(self, req, w):
        w.head(200, [("Content-Type", "text/plain"), ("Content-Length", str(self.declared))])
        w.send(b"x" * self.sent)
        return False


class CleanClose:
    """Answers like `reply` (an action) with Connection: close, then ends TLS cleanly (close_notify
    before the TCP close), so the client may keep the session for resumption."""

    def __init__(self, reply=None):
        self.reply = reply or Reply(200, b"ok", close=True)

    def __call__(self, req, w):
        self.reply(req, w)
        try:
            w.sock.unwrap()
        except (OSError, ValueError, AttributeError):
            pass
        return False


class Hang:
    """Reads the request, never answers; closes when `release` is set or the upstream stops."""

    def __init__(self, release=None):
        self.release = release or threading.Event()

    def __call__(self, req, w):
        w.wait(self.release, timeout=600)
        return False


class Chunks:
    """A response whose body is `pieces` (bytes or a function req -> list of bytes, to answer with
    what the request carried), each piece written on its own: as one chunk each (chunked=True,
    then `trailers` after the last chunk) or back to back under a Content-Length. `delay` seconds
    between writes make each piece arrive in a read of its own."""

    def __init__(self, pieces, status=200, headers=(), content_type="text/plain", chunked=True, delay=0.0,
                 trailers=()):
        self.pieces, self.status, self.headers = pieces, status, list(headers)
        self.content_type, self.chunked, self.delay, self.trailers = content_type, chunked, delay, list(trailers)

    def __call__(self, req, w):
        pieces = self.pieces(req) if callable(self.pieces) else self.pieces
        pieces = [p.encode() if isinstance(p, str) else p for p in pieces]
        headers = list(self.headers)
        if self.content_type:
            headers.append(("Content-Type", self.content_type))
        if self.chunked:
            headers.append(("Transfer-Encoding", "chunked"))
            if self.trailers:
                headers.append(("Trailer", ", ".join(n for n, _ in self.trailers)))
        else:
            headers.append(("Content-Length", str(sum(len(p) for p in pieces))))
        w.head(self.status, headers)
        for i, p in enumerate(pieces):
            if i and self.delay:
                time.sleep(self.delay)
            if self.chunked:
                w.chunk(p)
            else:
                w.send(p)
        if self.chunked:
            w.end_chunks(self.trailers)
        return True


class Raw:
    """Sends bytes as they are (a malformed response, say) and closes unless keep=True."""

    def __init__(self, data, keep=False):
        self.data = data if isinstance(data, bytes) else data.encode("latin-1")
        self.keep = keep

    def __call__(self, req, w):
        w.send(self.data)
        return self.keep


# ------------------------------------------------------------------------------------------------
# The server


class Upstream:
    def __init__(self, handler=None, continue_mode="auto", host="127.0.0.1", ssl_context=None,
                 record_stream=False):
        """handler: an action, or a function req -> action; Echo() when None.
        continue_mode: "auto" answers Expect: 100-continue with 100 Continue before reading the
        body; "ignore" reads the body without sending it (the client must not wait forever)."""
        self.handler = handler if handler is not None else Echo()
        self.continue_mode = continue_mode
        self.host = host
        self.ssl_context = ssl_context   # serve TLS (ssl.SSLContext for the server side)
        self.tls_failures = 0            # handshakes that failed (e.g. the client refused our cert)
        self.tls_resumed = []            # per TLS connection: whether the client resumed a session
        self.record_stream = record_stream
        self.stream = bytearray()        # with record_stream: every byte received, as it arrives
        self.requests = []
        self.connections = 0           # accepted connections
        self.received_bytes = 0        # every byte read from any connection
        self.closed_connections = 0
        self._queue = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._socks = []
        self._threads = []
        self.sock = None

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((self.host, 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.addr = "%s:%d" % (self.host, self.port)
        self.url = "%s://%s" % ("https" if self.ssl_context else "http", self.addr)
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self):
        self._stop.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)   # wakes the accept() (close alone does not)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- control ------------------------------------------------------------------------------
    def next(self, *actions):
        """Queues one-shot actions, used (in order) before the handler."""
        with self._lock:
            self._queue.extend(actions)

    def reset(self):
        with self._lock:
            self.requests.clear()

    def seen_nothing(self):
        with self._lock:
            return self.connections == 0 and self.received_bytes == 0 and not self.requests

    def wait_for_requests(self, n, timeout=10):
        deadline = time.time() + timeout
        with self._changed:
            while len(self.requests) < n:
                left = deadline - time.time()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def wait_for_connections(self, n, timeout=10):
        deadline = time.time() + timeout
        with self._changed:
            while self.connections < n:
                left = deadline - time.time()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def last(self):
        with self._lock:
            return self.requests[-1]

    # -- serving ------------------------------------------------------------------------------
    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._changed:
                self.connections += 1
                conn_id = self.connections
                self._socks.append(conn)
                self._changed.notify_all()
            t = threading.Thread(target=self._serve, args=(conn, conn_id), daemon=True)
            t.start()
            self._threads.append(t)

    def _count(self, n, data=b""):
        with self._changed:
            self.received_bytes += n
            if self.record_stream:
                self.stream += data
            self._changed.notify_all()

    def wait_for_stream(self, pattern, timeout=20):
        """With record_stream: waits until `pattern` has arrived on any connection (even in the
        middle of a request)."""
        deadline = time.time() + timeout
        with self._changed:
            while bytes(pattern) not in self.stream:
                left = deadline - time.time()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def _action_for(self, req):
        with self._lock:
            if self._queue:
                return self._queue.pop(0)
            h = self.handler
        if isinstance(h, type):
            h = h()
        return h

    def _serve(self, conn, conn_id):
        if self.ssl_context is not None:
            raw_conn = conn
            try:
                raw_conn.settimeout(30)
                conn = self.ssl_context.wrap_socket(raw_conn, server_side=True)
                conn.settimeout(None)
            except (OSError, ValueError):
                with self._changed:
                    self.tls_failures += 1
                    if raw_conn in self._socks:
                        self._socks.remove(raw_conn)
                    self._changed.notify_all()
                raw_conn.close()
                return
            with self._lock:
                if raw_conn in self._socks:
                    self._socks.remove(raw_conn)
                self._socks.append(conn)
                self.tls_resumed.append(conn.session_reused)
        reader = _Reader(conn, self._count)
        w = ConnWriter(conn, self._stop)
        w.reader = reader   # actions that take the connection over (WebSocketEcho) read through it
        index = 0
        try:
            while not self._stop.is_set():
                req = RecordedRequest(conn_id, index)
                index += 1
                try:
                    head = reader.read_until(b"\r\n\r\n")
                except _Closed:
                    return
                (request_line, headers) = _parse_head(head)
                req.method = request_line[0]
                req.target = request_line[1] if len(request_line) > 1 else ""
                req.version = request_line[2] if len(request_line) > 2 else ""
                req.headers = headers
                req.expect_continue = (req.header("Expect") or "").lower() == "100-continue"
                try:
                    self._read_body(req, reader, w)
                except _Closed:
                    req.error = "closed in the body"
                    req.raw = reader.take_message()
                    self._record(req)
                    return
                except ValueError as e:
                    req.error = str(e)
                    req.raw = reader.take_message()
                    self._record(req)
                    return
                req.raw = reader.take_message()
                self._record(req)
                action = self._action_for(req)
                if isinstance(action, types.FunctionType) and action.__code__.co_argcount == 1:
                    action = action(req)   # a function req -> action
                keep = action(req, w)
                conn_close = (req.header("Connection") or "").lower() == "close"
                if not keep or conn_close:
                    return
        except (OSError, ValueError):
            return
        finally:
            with self._changed:
                self.closed_connections += 1
                if conn in self._socks:
                    self._socks.remove(conn)
                self._changed.notify_all()
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def _read_body(self, req, reader, w):
        te = (req.header("Transfer-Encoding") or "").lower()
        cl = req.header("Content-Length")
        has_body = bool(te) or (cl is not None and cl.strip() != "0")
        if req.expect_continue and has_body and self.continue_mode == "auto":
            w.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            req.sent_continue = True
        if te:
            if te != "chunked":
                raise ValueError("unsupported transfer-encoding " + te)
            req.chunked = True
            parts = []
            while True:
                line = reader.read_until(b"\r\n")
                size_text = line.split(b";", 1)[0].strip()
                if not re.fullmatch(rb"[0-9a-fA-F]+", size_text):
                    raise ValueError("bad chunk size %r" % line)
                size = int(size_text, 16)
                if size == 0:
                    while reader.read_until(b"\r\n") != b"\r\n":   # trailers
                        pass
                    break
                parts.append(reader.read_exact(size))
                if reader.read_exact(2) != b"\r\n":
                    raise ValueError("chunk without CRLF")
            req.body = b"".join(parts)
        elif cl is not None:
            req.body = reader.read_exact(int(cl))

    def _record(self, req):
        with self._changed:
            self.requests.append(req)
            self._changed.notify_all()


def free_port():
    """A port nothing listens on (bound, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ------------------------------------------------------------------------------------------------
# Talking to the proxy with raw sockets


class RawResponse:
    def __init__(self, status, reason, version, headers, body, raw):
        self.status, self.reason, self.version, self.headers, self.body, self.raw = \
            status, reason, version, headers, body, raw

    def header(self, name, default=None):
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return default

    def header_all(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)

    @property
    def text(self):
        return self.body.decode("latin-1")

    def __repr__(self):
        return "<RawResponse %d %r>" % (self.status, self.body[:200])


class RawClient:
    """One client connection to the proxy, spoken byte by byte."""

    def __init__(self, addr, timeout=15):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.reader = _Reader(self.sock, lambda n, data: None)

    @classmethod
    def over(cls, sock):
        """A RawClient speaking on an already connected socket (e.g. TLS inside a CONNECT tunnel)."""
        c = cls.__new__(cls)
        c.sock = sock
        c.reader = _Reader(sock, lambda n, data: None)
        return c

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def read_response(self, head_request=False, skip_interim=True):
        """Reads one response (interim 1xx skipped unless skip_interim=False)."""
        while True:
            head = self.reader.read_until(b"\r\n\r\n")
            status_line, headers = _parse_head(head)
            version, status = status_line[0], int(status_line[1])
            reason = " ".join(status_line[2:])
            if 100 <= status < 200 and status != 101 and skip_interim:
                self.reader.take_message()
                continue
            break
        te = ""
        cl = None
        for n, v in headers:
            if n.lower() == "transfer-encoding":
                te = v.lower()
            if n.lower() == "content-length":
                cl = int(v)
        body = b""
        if head_request or status in (204, 304) or 100 <= status < 200:
            pass
        elif te == "chunked":
            parts = []
            while True:
                size = int(self.reader.read_until(b"\r\n").split(b";")[0].strip(), 16)
                if size == 0:
                    while self.reader.read_until(b"\r\n") != b"\r\n":
                        pass
                    break
                parts.append(self.reader.read_exact(size))
                self.reader.read_exact(2)
            body = b"".join(parts)
        elif cl is not None:
            body = self.reader.read_exact(cl)
        else:
            parts = []
            try:
                while True:
                    if self.reader.buf:
                        parts.append(self.reader.buf)
                        self.reader.msg += self.reader.buf
                        self.reader.buf = b""
                    self.reader._fill()
            except _Closed:
                pass
            body = b"".join(parts)
        return RawResponse(status, reason, version, headers, body, self.reader.take_message())

    def read_head_only(self):
        """Reads a response head (interim responses included) and returns (status, headers)."""
        head = self.reader.read_until(b"\r\n\r\n")
        self.reader.take_message()
        status_line, headers = _parse_head(head)
        return int(status_line[1]), headers

    def is_closed(self, timeout=5):
        """True when the peer closed (EOF or reset) within `timeout` without sending more."""
        self.sock.settimeout(timeout)
        try:
            if self.reader.buf:
                return False
            data = self.sock.recv(1)
            return data == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def raw_exchange(addr, data, timeout=15, head_request=False):
    """Sends `data` on a new connection and reads one response."""
    with RawClient(addr, timeout) as c:
        c.send(data)
        return c.read_response(head_request=head_request)


# ------------------------------------------------------------------------------------------------
# Audit lines and metrics


def audit_records(sk):
    """The JSON audit lines sidekey wrote to stderr so far."""
    out = []
    for line in sk.logs().splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("event") == "audit":
            out.append(rec)
    return out


def wait_audit(sk, request_id, timeout=10):
    """The audit record with this request_id (audit lines are written once the response is done)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for rec in audit_records(sk):
            if rec.get("request_id") == request_id:
                return rec
        time.sleep(0.05)
    raise AssertionError("no audit line for request %s in:\n%s" % (request_id, sk.logs()[-4000:]))


def metrics_text(sk):
    import requests
    return requests.get(sk.admin_url + "/metrics", timeout=10).text


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """[(name, {label: value}, float)] for every sample line."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = dict(_LABEL.findall(m.group(3) or ""))
        out.append((m.group(1), labels, float(m.group(4))))
    return out


def metric_value(text, name, **labels):
    """The sum of the samples named `name` whose labels include `labels`; None when there is none."""
    total, seen = 0.0, False
    for n, ls, v in parse_metrics(text):
        if n == name and all(ls.get(k) == str(val) for k, val in labels.items()):
            total += v
            seen = True
    return total if seen else None


# ------------------------------------------------------------------------------------------------
# curl


def curl(*args, timeout=60, binary=False):
    """Runs curl -sS; returns (exit code, stdout, stderr). Append '-w', '%{http_code}' etc. as needed."""
    p = subprocess.run(["curl", "-sS"] + list(args), capture_output=True, timeout=timeout, text=not binary)
    return p.returncode, p.stdout, p.stderr


def curl_i(*args, timeout=60):
    """curl -sS -i: returns (status, {lower-case header: value}, body text) of the last response."""
    rc, out, err = curl("-i", *args, timeout=timeout)
    if rc != 0:
        raise AssertionError("curl failed (%d): %s" % (rc, err))
    # -i prints every response head, interim ones included; keep the last.
    blocks = out.replace("\r\n", "\n")
    status, headers, body = None, {}, ""
    rest = blocks
    while rest.startswith("HTTP/"):
        head, _, rest = rest.partition("\n\n")
        lines = head.split("\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            n, _, v = line.partition(":")
            headers[n.strip().lower()] = v.strip()
        body = rest
        if not (100 <= status < 200):
            break
    return status, headers, body


# ------------------------------------------------------------------------------------------------
# A sidekey set up for proxy tests


def proxy_sidekey(policy, secrets=None, config=None, env=None, allow_private=True, **kw):
    """A (not yet started) Sidekey whose secrets come from the environment source
    (SIDEKEY_SECRET_<name>) and that may dial 127.0.0.0/8 unless allow_private=False."""
    from harness import Sidekey
    cfg = {"sources": [{"env": {"prefix": "SIDEKEY_SECRET_"}}]}
    if allow_private:
        cfg["egress"] = {"allow_private": ["127.0.0.0/8"]}
    for k, v in (config or {}).items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            merged = dict(cfg[k])
            merged.update(v)
            cfg[k] = merged
        else:
            cfg[k] = v
    environment = {"SIDEKEY_SECRET_" + name: value for name, value in (secrets or {}).items()}
    environment.update(env or {})
    return Sidekey(policy=policy, config=cfg, env=environment, **kw)


def fill(template, **values):
    """Replaces each @NAME@ in a policy template (YAML is full of braces, so no str.format)."""
    for k, v in values.items():
        template = template.replace("@%s@" % k, str(v))
    return template


def error_of(test, response, status, code):
    """Asserts a sidekey refusal: status, JSON {"error":{"code",...,"request_id"}} matching the
    X-Sidekey-Request-Id header; returns the error object."""
    body = response.json() if hasattr(response, "json") else json.loads(response)
    test.assertEqual(response.status_code if hasattr(response, "status_code") else response.status, status,
                     getattr(response, "text", ""))
    test.assertIn("error", body, body)
    err = body["error"]
    test.assertEqual(err.get("code"), code, body)
    test.assertTrue(err.get("message"), body)
    test.assertTrue(err.get("request_id"), body)
    rid = response.headers.get("X-Sidekey-Request-Id") if hasattr(response, "status_code") \
        else response.header("X-Sidekey-Request-Id")
    test.assertEqual(rid, err["request_id"])
    return err


def self_signed_cert(folder, name="127.0.0.1"):
    """Writes a self-signed certificate for `name` (an IP address or a DNS name) and its key into
    `folder`; returns (cert_path, key_path). Uses the openssl command."""
    import ipaddress
    import os
    cert, key = os.path.join(folder, "upstream.crt"), os.path.join(folder, "upstream.key")
    try:
        ipaddress.ip_address(name)
        san = "IP:" + name
    except ValueError:
        san = "DNS:" + name
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=" + name,
                    "-addext", "subjectAltName=" + san], check=True, capture_output=True, timeout=60)
    return cert, key


def tls_server_context(cert, key):
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


class BodyReader:
    """Reads a response body incrementally (chunked, Content-Length or until close) from a
    RawClient whose head was read with read_head_only(): read_some() returns the next decoded
    bytes as soon as any arrive, so a test can follow a stream piece by piece."""

    def __init__(self, client, headers):
        self.c = client
        te = cl = None
        for n, v in headers:
            if n.lower() == "transfer-encoding":
                te = v.lower()
            elif n.lower() == "content-length":
                cl = int(v)
        self.chunked = te == "chunked"
        self.left = cl              # bytes left with Content-Length framing
        self.chunk_left = 0         # bytes left in the current chunk
        self.done = cl == 0
        self.pending = b""          # decoded bytes not yet handed out

    def _raw_some(self):
        r = self.c.reader
        if not r.buf:
            try:
                r._fill()
            except _Closed:
                return b""
        data, r.buf = r.buf, b""
        return data

    def read_some(self):
        if self.pending:
            out, self.pending = self.pending, b""
            return out
        if self.done:
            return b""
        r = self.c.reader
        if self.chunked:
            if self.chunk_left == 0:
                size = int(r.read_until(b"\r\n").split(b";")[0].strip(), 16)
                if size == 0:
                    while r.read_until(b"\r\n") != b"\r\n":
                        pass
                    self.done = True
                    return b""
                self.chunk_left = size
            if not r.buf:
                r._fill()
            take = r.buf[:self.chunk_left]
            r.buf = r.buf[len(take):]
            self.chunk_left -= len(take)
            if self.chunk_left == 0:
                r.read_exact(2)
            r.take_message()
            return take
        data = self._raw_some()
        if self.left is not None:
            if len(data) > self.left:
                r.buf = data[self.left:] + r.buf
                data = data[:self.left]
            self.left -= len(data)
            if self.left == 0:
                self.done = True
        elif not data:
            self.done = True
        r.take_message()
        return data

    def read_until(self, sep):
        """Decoded bytes up to and including `sep` (raises EOFError when the body ends first)."""
        got = b""
        while sep not in got:
            piece = self.read_some()
            if not piece:
                raise EOFError("body ended before %r; got %r" % (sep, got[-200:]))
            got += piece
        i = got.index(sep) + len(sep)
        self.pending = got[i:] + self.pending
        return got[:i]

    def read_all(self):
        parts = []
        while True:
            piece = self.read_some()
            if not piece:
                return b"".join(parts)
            parts.append(piece)


# ------------------------------------------------------------------------------------------------
# A throwaway certificate authority for TLS upstreams (the openssl command)


class TestCA:
    """A CA of its own in `folder`, for TLS upstreams that stand in for real hosts:

        ca = TestCA(folder)
        cert, key = ca.issue(["api.openai.test", "127.0.0.1"])   # SANs: DNS names and IP addresses
        Upstream(ssl_context=tls_server_context(cert, key))
        ... tls: {upstream_ca_file: ca.cert} ...
    """

    def __init__(self, folder, name="sidekey tests upstream CA"):
        import os
        self.folder = folder
        self.cert = os.path.join(folder, "test-ca.pem")
        self.key = os.path.join(folder, "test-ca.key")
        self._serial = 0
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", self.key, "-out", self.cert, "-days", "2", "-subj", "/CN=" + name,
                        "-addext", "basicConstraints=critical,CA:TRUE",
                        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                        "-addext", "subjectKeyIdentifier=hash"],
                       check=True, capture_output=True, timeout=60)

    def issue(self, names, stem=None):
        """A leaf for `names` (first one is the CN) signed by this CA; returns (cert_path, key_path)."""
        import ipaddress
        import os
        self._serial += 1
        stem = stem or "leaf%d" % self._serial
        cert, key = os.path.join(self.folder, stem + ".crt"), os.path.join(self.folder, stem + ".key")
        csr, ext = os.path.join(self.folder, stem + ".csr"), os.path.join(self.folder, stem + ".ext")
        sans = []
        for n in names:
            try:
                ipaddress.ip_address(n)
                sans.append("IP:" + n)
            except ValueError:
                sans.append("DNS:" + n)
        with open(ext, "w") as f:
            f.write("subjectAltName=%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
                    % ",".join(sans))
        subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", key, "-out", csr, "-subj", "/CN=" + names[0]],
                       check=True, capture_output=True, timeout=60)
        subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
                        "-set_serial", str(1000 + self._serial), "-days", "2", "-extfile", ext, "-out", cert],
                       check=True, capture_output=True, timeout=60)
        return cert, key


def cert_der(path):
    """The DER bytes of the (first) certificate in a PEM file."""
    import ssl
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


# ------------------------------------------------------------------------------------------------
# CONNECT tunnels spoken by hand


def open_tunnel(proxy_addr, authority, timeout=15, extra_headers=""):
    """Sends `CONNECT authority` on a new connection. Returns (client, status, response): on 200
    the RawClient whose socket now carries the tunnel (response is None); otherwise the refusal
    as a RawResponse (and the client, still open)."""
    c = RawClient(proxy_addr, timeout)
    c.send("CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (authority, authority, extra_headers))
    head = c.reader.read_until(b"\r\n\r\n")
    status_line, headers = _parse_head(head)
    status = int(status_line[1])
    c.connect_headers = headers  # [(name, value)] of the CONNECT's answer
    if status == 200:
        c.reader.take_message()
        if c.reader.buf:
            raise AssertionError("bytes after the CONNECT answer: %r" % c.reader.buf[:100])
        return c, status, None
    cl = 0
    for n, v in headers:
        if n.lower() == "content-length":
            cl = int(v)
    body = c.reader.read_exact(cl)
    resp = RawResponse(status, " ".join(status_line[2:]), status_line[0], headers, body, c.reader.take_message())
    return c, status, resp


def tls_over(client, cafile=None, server_hostname=None, verify=True, timeout=15):
    """Wraps a tunnel's socket in TLS (client side) and returns a RawClient on it. The handshake
    happens here (ssl.SSLError when the proxy refuses it)."""
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.load_verify_locations(cafile)
        ctx.check_hostname = server_hostname is not None
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    client.sock.settimeout(timeout)
    tls = ctx.wrap_socket(client.sock, server_hostname=server_hostname)
    return RawClient.over(tls)


# ------------------------------------------------------------------------------------------------
# WebSocket (RFC 6455), just enough for an echo


WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_accept(key):
    import base64
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def ws_frame(payload, opcode=1, mask=True, fin=True):
    """One frame; clients mask (mask=True), servers do not."""
    import os
    import struct
    if isinstance(payload, str):
        payload = payload.encode()
    out = bytearray([(0x80 if fin else 0) | opcode])
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        out.append(mbit | n)
    elif n < 65536:
        out.append(mbit | 126)
        out += struct.pack("!H", n)
    else:
        out.append(mbit | 127)
        out += struct.pack("!Q", n)
    if mask:
        key = os.urandom(4)
        out += key
        out += bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    else:
        out += payload
    return bytes(out)


def ws_read_frame(reader):
    """Reads one frame through a _Reader (RawClient.reader); returns (opcode, payload, was_masked)."""
    import struct
    b0, b1 = reader.read_exact(2)
    opcode = b0 & 0x0F
    masked = bool(b1 & 0x80)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", reader.read_exact(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", reader.read_exact(8))[0]
    key = reader.read_exact(4) if masked else None
    payload = reader.read_exact(n)
    if masked:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    reader.take_message()
    return opcode, payload, masked


class WebSocketEcho:
    """Answers a WebSocket upgrade with 101 and echoes every text/binary frame (unmasked, as a
    server sends), answers ping with pong and close with close. A request that is not an upgrade
    gets 400. `handshakes` holds the upgrade requests, `received` the (opcode, payload) frames,
    `unmasked_from_client` counts client frames that arrived unmasked (a protocol error)."""

    def __init__(self):
        self.handshakes = []
        self.received = []
        self.unmasked_from_client = 0

    def __call__(self, req, w):
        if (req.header("Upgrade") or "").lower() != "websocket" or not req.header("Sec-WebSocket-Key"):
            return Reply(400, b"not a websocket upgrade")(req, w)
        self.handshakes.append(req)
        w.head(101, [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                     ("Sec-WebSocket-Accept", ws_accept(req.header("Sec-WebSocket-Key")))],
               reason="Switching Protocols")
        reader = w.reader
        while True:
            try:
                opcode, payload, masked = ws_read_frame(reader)
            except (_Closed, OSError, ValueError):
                return False
            if not masked:
                self.unmasked_from_client += 1
            self.received.append((opcode, payload))
            if opcode == 8:
                w.send(ws_frame(payload[:2], opcode=8, mask=False))
                return False
            if opcode == 9:
                w.send(ws_frame(payload, opcode=10, mask=False))
            elif opcode in (1, 2):
                w.send(ws_frame(payload, opcode=opcode, mask=False))
