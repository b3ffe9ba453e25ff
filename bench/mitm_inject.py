"""mitmproxy add-on for bench/run: the same injection as the other rows.

BENCH_AUTH     the Authorization value set on every request
BENCH_RESOLVE  "host:port=ip:port": where to connect for that destination (the bench host name
               has no DNS entry; sidekey uses egress.resolve and Squid a hosts_file for the same)."""
import os

AUTH = os.environ["BENCH_AUTH"]
FROM, _, TO = os.environ.get("BENCH_RESOLVE", "").partition("=")


class Inject:
    def server_connect(self, data):
        host, port = data.server.address
        if TO and "%s:%d" % (host, port) == FROM:
            ip, _, to_port = TO.rpartition(":")
            data.server.address = (ip, int(to_port))

    def request(self, flow):
        flow.request.headers["Authorization"] = AUTH


addons = [Inject()]
