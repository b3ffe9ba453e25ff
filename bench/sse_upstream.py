"""Server-sent-event upstream for bench/run: each GET gets EVENTS events, one every INTERVAL ms,
each "data: <time.monotonic_ns() just before the send>", chunked. Like the nginx upstream it
answers 401 unless Authorization is exactly the injected value. Plain HTTP on --port and, with
--cert/--key, TLS on --tls-port; one thread per connection, the connection closed after the
stream.

sidekey-bench-load --mode sse reads the stamps (CLOCK_MONOTONIC is system-wide on Linux) and
reports how long after its stamp each event arrived."""
import argparse
import socket
import ssl
import threading
import time


def serve(conn, args):
    try:
        head = b""
        while b"\r\n\r\n" not in head:
            data = conn.recv(65536)
            if not data:
                return
            head += data
        auth = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"authorization":
                auth = value.strip().decode("latin-1")
        if auth != args.auth:
            body = b"missing or wrong Authorization\n"
            conn.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
                         + body)
            return
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                     b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        interval = args.interval_ms / 1000.0
        next_at = time.monotonic()
        for _ in range(args.events):
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            event = b"data: %d\n\n" % time.monotonic_ns()
            conn.sendall(b"%x\r\n%s\r\n" % (len(event), event))
        conn.sendall(b"0\r\n\r\n")
    except (OSError, ssl.SSLError):
        pass
    finally:
        try:
            conn.close()
        except OSError:
            pass


def listen(port, args, tls_context=None):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(64)

    def accept_loop():
        while True:
            conn, _ = s.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls_context is not None:
                try:
                    conn.settimeout(10)
                    conn = tls_context.wrap_socket(conn, server_side=True)
                    conn.settimeout(None)
                except (OSError, ssl.SSLError):
                    conn.close()
                    continue
            threading.Thread(target=serve, args=(conn, args), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tls-port", type=int)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--auth", required=True)
    p.add_argument("--events", type=int, default=500)
    p.add_argument("--interval-ms", type=float, default=10.0)
    args = p.parse_args()
    listen(args.port, args)
    if args.tls_port:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        ctx.set_alpn_protocols(["http/1.1"])
        listen(args.tls_port, args, ctx)
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
