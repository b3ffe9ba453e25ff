"""Secret hygiene in memory (SPEC section 9 "In memory", invariant 7 of section 13), checked on a
real process: a core dump of a running sidekey holds no plaintext that it has used and let go of.

setUpModule starts sidekey, stores secrets with unique random values through the API, uses each
on one path the plaintext takes (an injected header, a query value, a JSON body, an echo that
the scrubber replaces; headers and echoes also through TLS interception; API bodies that grow as
they arrive, that the JSON parser rejects, that name the value under the wrong key), rotates them, deletes
one, uses one current value, rotates a secret that was never used, then dumps the process with gdb's `gcore` and searches
the dump for each value in the forms sidekey writes or derives (raw, base64 at every alignment,
hex), and for any 20 consecutive of its 40 random characters (a freed block loses its first bytes).

gcore honours MADV_DONTDUMP, so current values in their protected pages are skipped (as the
kernel would skip them); what the dump must not hold is a copy anywhere else: freed heap, I/O
buffers, parsed requests, TLS records. A positive control proves the dump holds the heap: the
secrets' names (metadata, kept in ordinary memory) must be found.

Also: core dumps are off (RLIMIT_CORE 0) and the process is not dumpable (PR_SET_DUMPABLE 0:
the kernel then gives its /proc files to root, which shows when sidekey runs as another user).

Needs root (gcore attaches with ptrace to a non-dumpable process) and gdb.
"""
import base64
import json
import os
import secrets as pysecrets
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

import requests

from harness import SIDEKEY_BIN, sanitizer_runtimes, wait_for
from upstreams import Echo, Reply, TestCA, Upstream, fill, proxy_sidekey, tls_server_context

TLS_HOST = "api.hygiene.test"


def token(prefix):
    return prefix + pysecrets.token_hex(20)


# Values (letters and digits only, so JSON and percent-encoding leave them as they are). Each
# path through sidekey gets a secret of its own, so a finding names the path that leaves a copy.
SUFFIX = pysecrets.token_hex(6)
PATHS = {
    # name: how the value is used (see use() below)
    "hdr": "an injected header, plain HTTP",
    "tpl": "the rule's template header (served from the worker's memo after the first), plain HTTP",
    "qry": "a query value, plain HTTP",
    "echo": "an echo the scrubber replaced, plain HTTP",
    "trailer": "an echo in a chunk extension and a trailer (neither reaches the client), plain HTTP",
    "hop": "an echo in hop-by-hop response fields (dropped, not sent on), plain HTTP",
    "early": "an echo in an interim 103 answer (not sent on), plain HTTP",
    "body": "a JSON body substitution, plain HTTP",
    "grow": "an echo at the start of a response head that outgrows the read buffer, plain HTTP",
    "tlshdr": "an injected header, through interception",
    "tlsecho": "an echo the scrubber replaced, through interception",
}
OLD = {k: token("hygOld" + k) for k in PATHS}     # used once on its path, then rotated away
NEW = {k: token("hygNew" + k) for k in PATHS}     # the successors, never used: current
NAMES = {k: "%s_%s" % (k, SUFFIX) for k in PATHS}
DELETED = token("hygDeleted")                     # used in a header, then deleted
N_DEL = "del_" + SUFFIX
CURRENT_USED = token("hygCurrentUsed")            # rotated in, then used in a header: current
N_CUR = "cur_" + SUFFIX
API_OLD = token("hygApiOld")                      # stored and rotated through the API, never used
API_NEW = token("hygApiNew")
N_API = "api_" + SUFFIX
API_CHUNKED = token("hygApiChunked")              # stored through the API in a chunked body that
N_CHUNKED = "chunked_" + SUFFIX                   # grows as it arrives, then rotated
API_SHORT = "hs" + pysecrets.token_hex(7)[:13]    # 15 bytes: held inside string objects; rotated
N_SHORT = "short_" + SUFFIX
API_MALFORMED = token("hygApiMalformed")          # in a body the JSON parser rejects (a raw newline
                                                  # after it): never stored
API_WRONG_KEY = token("hygApiWrongKey")           # under the other API form's key: refused
DIR_GONE = token("hygDirGone")                    # a dir source's file, then removed
DIR_OLD = token("hygDirOld")                      # a dir source's file, then rewritten...
DIR_NEW = token("hygDirNew")                      # ...with this: current
ENV_VALUE = token("hygEnvSource")                 # from the environment source (a sidekey of its own)

POLICY = """version: 1
default: deny
secrets:
  tpl_@SUFFIX@:
    hosts: ["http://127.0.0.1:@PORT@"]
rules:
  - name: template-@SUFFIX@
    match: { hosts: ["127.0.0.1:@PORT@"], paths: ["/tpl/*"] }
    inject:
      headers: { X-T: "T {{secrets.tpl_@SUFFIX@}}" }
  - name: plain-@SUFFIX@
    match: { hosts: ["127.0.0.1:@PORT@"] }
    references: [headers, query, body]
  - name: tls-@SUFFIX@
    match: { hosts: ["@TLS_HOST@"] }
    references: [headers, query, body]
"""

ENV_POLICY = """version: 1
default: deny
secrets:
  envhyg:
    hosts: ["http://127.0.0.1:@PORT@"]
rules:
  - name: env-inject
    match: { hosts: ["127.0.0.1:@PORT@"] }
    inject:
      headers: { Authorization: "Bearer {{secrets.envhyg}}" }
"""

STATE = {}


def forms(value):
    """The byte strings a value may leave behind: raw, hex, and base64 (standard and URL-safe)
    at each of the three alignments inside a longer blob (the edges, which depend on the
    neighbouring bytes, cut off)."""
    raw = value.encode()
    out = {"raw": raw, "hex": raw.hex().encode(), "HEX": raw.hex().upper().encode()}
    for k in range(3):
        for label, enc in (("b64", base64.b64encode), ("b64url", base64.urlsafe_b64encode)):
            blob = enc(b"\0" * k + raw + b"\0\0")
            out["%s@%d" % (label, k)] = blob[4:-8]
    return out


def find_forms(dump, value):
    found = {label: dump.count(f) for label, f in forms(value).items() if dump.count(f)}
    # A copy in a freed block loses its first bytes to the allocator's own use of the block:
    # any 20 of a value's 40 random characters count.
    random_part = value[-40:].encode() if len(value) > 40 else b""
    for i in range(0, max(0, len(random_part) - 19)):
        n = dump.count(random_part[i:i + 20])
        if n:
            found["part@%d" % i] = n
    return found


def gcore(pid, folder):
    """Dumps process `pid` with gdb's gcore; returns the dump's bytes."""
    prefix = os.path.join(folder, "core")
    p = subprocess.run(["gcore", "-o", prefix, str(pid)], capture_output=True, text=True, timeout=600)
    path = "%s.%d" % (prefix, pid)
    if p.returncode != 0 or not os.path.exists(path):
        raise AssertionError("gcore failed (%d): %s" % (p.returncode, p.stderr[-2000:]))
    with open(path, "rb") as f:
        data = f.read()
    os.unlink(path)
    return data


def need_gcore():
    if os.geteuid() != 0:
        raise unittest.SkipTest("needs root: gcore attaches to a non-dumpable process (uid %d)" % os.geteuid())
    if not shutil.which("gcore"):
        raise unittest.SkipTest("gcore (gdb) is not installed")


def setUpModule():
    need_gcore()
    tmp = tempfile.mkdtemp(prefix="sidekey-hygiene-")
    STATE["tmp"] = tmp
    ca = TestCA(tmp)
    cert, key = ca.issue([TLS_HOST], stem="upstream")

    def echo_around_the_body(req, w):
        # The written value comes back where the scrubber never looks, as it only sees the body:
        # in a chunk extension and in a trailer field. sidekey re-chunks and drops both.
        value = (req.header("X-K") or "").encode()
        w.head(200, [("Content-Type", "text/plain"), ("Transfer-Encoding", "chunked")])
        w.send(b"2;echo=" + value + b"\r\nok\r\n")
        w.end_chunks(trailers=[("X-Echo", value.decode())])
        return True

    def echo_in_hop_by_hop_fields(req, w):
        value = req.header("X-K") or ""
        w.head(200, [("Content-Length", "2"), ("Keep-Alive", "timeout=5, k=" + value), ("Connection", "x-e"),
                     ("X-E", value), ("Proxy-Authenticate", "Bearer " + value)])
        w.send(b"ok")
        return True

    def echo_in_an_interim_answer(req, w):
        value = (req.header("X-K") or "").encode()
        # Then closed: the connection's read buffer goes with it, not overwritten by later answers.
        w.send(b"HTTP/1.1 103 Early Hints\r\nLink: </x?k=" + value + b">\r\n\r\n"
               b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        return False

    def echo_in_a_growing_head(req, w):
        # The value in the first bytes read, then 6 KB of fields: the connection's read buffer
        # moves to larger blocks as the head comes in.
        value = req.header("X-K") or ""
        w.head(200, [("X-Echo", value)] + [("X-Pad-%d" % i, "p" * 1000) for i in range(6)] +
               [("Content-Length", "2")])
        w.send(b"ok")
        return True

    around = {"/trailer": echo_around_the_body, "/hop": echo_in_hop_by_hop_fields, "/early": echo_in_an_interim_answer,
              "/grow": echo_in_a_growing_head}

    def handler(req):
        # The echo in one write with its head (scrubbed whole before the head goes out), or past
        # that size (scrubbed as it streams): both paths leave the plaintext only where it is wiped.
        if req.path.startswith("/echo-stream"):
            return Echo(pad=20000)
        if req.path.startswith("/echo"):
            return Echo(one_write=True)
        return around.get(req.path, Reply(200, b"ok"))

    up = Upstream(handler).start()
    tls_up = Upstream(handler, ssl_context=tls_server_context(cert, key)).start()
    STATE["ups"] = [up, tls_up]
    folder = os.path.join(tmp, "dir-source")
    os.mkdir(folder)
    STATE["dir"] = folder
    for name, value in (("dirgone_" + SUFFIX, DIR_GONE), ("dirrot_" + SUFFIX, DIR_OLD)):
        with open(os.path.join(folder, name), "w") as f:
            f.write(value + "\n")
    sk = proxy_sidekey(fill(POLICY, PORT=up.port, TLS_HOST=TLS_HOST, SUFFIX=SUFFIX),
                       config={"egress": {"allow_private": ["127.0.0.0/8"],
                                          "resolve": {TLS_HOST + ":443": tls_up.addr}},
                               "tls": {"upstream_ca_file": ca.cert},
                               "sources": [{"dir": {"path": folder}}]})
    sk.start()
    STATE["sk"] = sk
    try:
        runtimes = sanitizer_runtimes(sk.proc.pid)
        if runtimes:
            # A sanitizer's shadow memory makes the dump many gigabytes (more than this test can
            # read), and its allocator keeps freed memory in quarantine on purpose: the question
            # is one for the release build, which `make test` runs.
            raise unittest.SkipTest("sidekey runs with %s: memory hygiene is checked on the release build"
                                    % ", ".join(runtimes))
        drive(sk, up, tls_up)
        time.sleep(2.5)   # let the 2 s store/source refresh run once after the last change
        STATE["dump"] = gcore(sk.proc.pid, tmp)
        STATE["pid"] = sk.proc.pid
    except BaseException:
        tearDownModule()
        raise


def drive(sk, up, tls_up):
    api = sk.api_url + "/ap/v1/agent/secrets"
    hosts = ["http://127.0.0.1:%d" % up.port, TLS_HOST]
    ids = {}
    seen = []

    def put(name, value, **extra):
        body = {"secret_key": name, "secret_value": value, "allowed_hosts": hosts}
        r = requests.post(api, json=body, headers=sk.auth(), timeout=20)
        assert r.status_code == 200, r.text
        seen.append(r.text)
        ids[name] = r.json()["secret_id"]

    ca_pem = os.path.join(sk.data_dir, "ca.pem")

    plain = (up.url, {"proxies": {"http": sk.proxy_url}}, up)
    tls = ("https://" + TLS_HOST, {"proxies": {"https": sk.proxy_url}, "verify": ca_pem}, tls_up)

    def use(how, name, value):
        """Writes the value on one path; the upstream must have received it each time and the
        client never."""
        ref = "{{secrets.%s}}" % name
        base, kw, server = tls if how.startswith("tls") else plain
        if how == "tpl":
            for i in range(4):  # the first fills a worker's memo; the others may be served from it
                r = requests.get(base + "/tpl/%d" % i, timeout=20, **kw)
                assert server.last().header("X-T") == "T " + value, server.last().headers
                assert r.status_code == 200 and value not in r.text, r.text
        elif how in ("hdr", "tlshdr"):
            r = requests.get(base + "/header", headers={"X-K": ref}, timeout=20, **kw)
            assert server.last().header("X-K") == value, server.last().headers
        elif how == "qry":
            r = requests.get(base + "/query", params={"key": ref}, timeout=20, **kw)
            assert server.last().query["key"] == [value], server.last().target
        elif how in ("echo", "tlsecho"):
            # The plain echo comes whole with its head; the intercepted one streams.
            r = requests.get(base + ("/echo" if how == "echo" else "/echo-stream"), headers={"X-K": ref}, timeout=20, **kw)
            assert value not in r.text and ref in r.text, r.text
        elif how in ("trailer", "hop", "early", "grow"):
            r = requests.get(base + "/" + how, headers={"X-K": ref}, timeout=20, **kw)
            assert r.text == "ok" and server.last().header("X-K") == value, r.text
            assert not [v for v in r.headers.values() if value in v], r.headers
        elif how == "body":
            r = requests.post(base + "/body", json={"token": ref, "n": 1}, timeout=20, **kw)
            assert json.loads(server.last().body)["token"] == value
        assert r.status_code == 200, r.text
        assert value not in r.text, r.text
        seen.append(r.text)

    def post_raw(data, status):
        r = requests.post(api, data=data, headers=dict(sk.auth(), **{"Content-Type": "application/json"}), timeout=20)
        assert r.status_code == status, (r.status_code, r.text)
        seen.append(r.text)

    def put_chunked(name, value):
        # Whitespace between the fields makes the body 8 KB; sent in 256-byte chunks, it grows
        # in sidekey as it arrives.
        body = json.dumps({"secret_key": name, "secret_value": value}).encode()
        body = body[:-1] + b" " * 8192 + b', "allowed_hosts": ' + json.dumps(hosts).encode() + b"}"
        post_raw((body[i:i + 256] for i in range(0, len(body), 256)), 200)

    for k in PATHS:
        put(NAMES[k], OLD[k])
    put(N_SHORT, API_SHORT)
    put(N_SHORT, token("hygShortNext"))
    post_raw(b'{"secret_key": "malformed_%s", "secret_value": "%s\n"}' % (SUFFIX.encode(), API_MALFORMED.encode()), 422)
    post_raw(json.dumps({"secret_key": "wrongkey_" + SUFFIX, "value": API_WRONG_KEY}).encode(), 422)
    put_chunked(N_CHUNKED, API_CHUNKED)
    put(N_CHUNKED, token("hygApiChunkedNext"))
    put(N_DEL, DELETED)
    put(N_CUR, token("hygCurrentBefore"))
    put(N_API, API_OLD)
    for k in PATHS:
        use(k, NAMES[k], OLD[k])
    use("hdr", N_DEL, DELETED)
    for k in PATHS:
        put(NAMES[k], NEW[k])
    put(N_API, API_NEW)
    put(N_CUR, CURRENT_USED)
    r = requests.delete(api + "/" + ids[N_DEL], headers=sk.auth(), timeout=20)
    assert r.status_code == 204, r.text
    use("hdr", N_CUR, CURRENT_USED)
    # The dir source: one file removed, one rewritten (read again at the next refresh).
    os.remove(os.path.join(STATE["dir"], "dirgone_" + SUFFIX))
    with open(os.path.join(STATE["dir"], "dirrot_" + SUFFIX + ".tmp"), "w") as f:
        f.write(DIR_NEW + "\n")
    os.rename(os.path.join(STATE["dir"], "dirrot_" + SUFFIX + ".tmp"), os.path.join(STATE["dir"], "dirrot_" + SUFFIX))
    r = requests.get(up.url + "/header", headers={"X-K": "{{secrets.%s}}" % N_DEL},
                     proxies={"http": sk.proxy_url}, timeout=20)
    assert r.status_code == 403, r.text
    STATE["seen"] = seen


def tearDownModule():
    sk = STATE.get("sk")
    if sk:
        sk.__exit__(None, None, None)
    for up in STATE.get("ups", []):
        up.stop()
    if STATE.get("tmp"):
        shutil.rmtree(STATE["tmp"], ignore_errors=True)


class CoreDumpTest(unittest.TestCase):
    def setUp(self):
        self.dump = STATE["dump"]

    def test_the_dump_holds_the_heap(self):
        # Positive control: the names are in ordinary memory, so a dump without them is not a
        # dump of the process's heap and would prove nothing below.
        for name in list(NAMES.values()) + [N_CUR, N_API, N_CHUNKED]:
            self.assertIn(name.encode(), self.dump, "gcore wrote a dump without the heap (%d bytes)" % len(self.dump))
        self.assertIn(("plain-" + SUFFIX).encode(), self.dump)

    def assert_absent(self, values):
        found = {}
        for label, value in values.items():
            hits = find_forms(self.dump, value)
            if hits:
                i = self.dump.find(forms(value)[next(iter(hits))])
                found[label] = (hits, self.dump[max(0, i - 48):i + len(value) + 16])
        if found:
            self.fail("plaintext in the core dump (form: count; context):\n" +
                      "\n".join("  %s: %s %r" % (k, v[0], v[1]) for k, v in found.items()))

    def test_rotated_and_deleted_values_are_gone(self):
        values = {"rotated away after " + PATHS[k]: OLD[k] for k in PATHS}
        values["deleted after an injected header"] = DELETED
        values["stored and rotated through the API only"] = API_OLD
        values["stored through the API in a growing chunked body, rotated"] = API_CHUNKED
        values["15 bytes, stored through the API, rotated"] = API_SHORT
        values["in an API body the JSON parser rejected"] = API_MALFORMED
        values["under the wrong key in an API body"] = API_WRONG_KEY
        values["a dir source's file, removed"] = DIR_GONE
        values["a dir source's file, rewritten"] = DIR_OLD
        self.assert_absent(values)

    def test_current_values_stay_in_protected_pages(self):
        # Current values live in MADV_DONTDUMP pages; no copy may sit in ordinary memory.
        values = {"current, never used (%s)" % k: NEW[k] for k in PATHS}
        values["current, used in an injected header"] = CURRENT_USED
        values["current, stored through the API only"] = API_NEW
        values["current, from a dir source (read every refresh)"] = DIR_NEW
        self.assert_absent(values)

    def test_nothing_reached_the_client_or_the_log(self):
        STATE["sk"].assert_never_contains(self, list(OLD.values()) + list(NEW.values()) +
                                          [DELETED, CURRENT_USED, API_OLD, API_NEW, API_CHUNKED, API_SHORT,
                                           API_MALFORMED, API_WRONG_KEY], STATE["seen"])


class ProcessHardeningTest(unittest.TestCase):
    def test_core_file_size_limit_is_zero(self):
        with open("/proc/%d/limits" % STATE["sk"].proc.pid) as f:
            line = next(l for l in f if l.startswith("Max core file size"))
        self.assertEqual(line.split()[4:6], ["0", "0"], line)

    @unittest.skipUnless(shutil.which("setpriv"), "needs setpriv (util-linux)")
    def test_process_is_not_dumpable(self):
        # The kernel hands /proc/PID/* of a non-dumpable process to root. As root, that shows
        # nothing, so sidekey runs here as nobody: its /proc files must belong to root, not to
        # nobody (the control: a dumpable `sleep` run the same way keeps its own).
        nobody = 65534
        folder = tempfile.mkdtemp(prefix="sidekey-nodump-")
        self.addCleanup(shutil.rmtree, folder, True)
        os.chmod(folder, 0o755)
        config = os.path.join(folder, "sidekey.yaml")
        with open(os.path.join(folder, "policy.yaml"), "w") as f:
            f.write("version: 1\ndefault: deny\n")
        with open(config, "w") as f:
            json.dump({"listen": {"proxy": "127.0.0.1:0", "api": "127.0.0.1:0", "admin": "127.0.0.1:0"},
                       "data_dir": "./data", "policy": "./policy.yaml", "workers": 1}, f)
        os.makedirs(os.path.join(folder, "data"))
        for path in (folder, os.path.join(folder, "data"), config, os.path.join(folder, "policy.yaml")):
            os.chown(path, nobody, nobody)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIDEKEY_")}
        as_nobody = ["setpriv", "--reuid=%d" % nobody, "--regid=%d" % nobody, "--clear-groups"]
        control = subprocess.Popen(as_nobody + ["sleep", "30"])
        self.addCleanup(control.wait)
        self.addCleanup(control.kill)
        proc = subprocess.Popen(as_nobody + [os.path.abspath(SIDEKEY_BIN), "serve", "--config", config],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=folder, env=env, text=True)
        try:
            line = proc.stdout.readline()
            self.assertTrue(line.startswith("{"), "sidekey did not start as nobody: %s" % proc.stderr.read()
                            if proc.poll() is not None else line)
            self.assertTrue(wait_for(lambda: os.stat("/proc/%d/status" % control.pid).st_uid == nobody, timeout=5))
            with open("/proc/%d/status" % proc.pid) as f:
                uid_line = next(l for l in f if l.startswith("Uid:"))
            self.assertEqual(uid_line.split()[1:3], [str(nobody)] * 2, uid_line)
            self.assertEqual(os.stat("/proc/%d/status" % proc.pid).st_uid, 0,
                             "sidekey's /proc files belong to its user: it is dumpable")
            with open("/proc/%d/limits" % proc.pid) as f:
                line = next(l for l in f if l.startswith("Max core file size"))
            self.assertEqual(line.split()[4:6], ["0", "0"], line)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


class EnvSourceDumpTest(unittest.TestCase):
    """A value from the environment source is plaintext like any other: once sidekey has taken
    it into protected memory, no copy may stay in ordinary memory. No request uses it here, so
    only the reading of the source can have left a copy (the environment block included)."""

    def test_env_source_value_is_not_in_the_dump(self):
        with Upstream(Reply(200, b"ok")) as up:
            sk = proxy_sidekey(fill(ENV_POLICY, PORT=up.port), secrets={"envhyg": ENV_VALUE})
            with sk:
                self.assertTrue(wait_for(lambda: "sidekey_secrets 1" in requests.get(
                    sk.admin_url + "/metrics", timeout=10).text, timeout=10), "the env secret was not loaded")
                folder = tempfile.mkdtemp(prefix="sidekey-hygiene-env-")
                self.addCleanup(shutil.rmtree, folder, True)
                dump = gcore(sk.proc.pid, folder)
                self.assertIn(b"env-inject", dump, "gcore wrote a dump without the heap")
                hits = find_forms(dump, ENV_VALUE)
                if hits:
                    i = dump.find(ENV_VALUE.encode())
                    where = "the environment block" if dump[max(0, i - 22):i] == b"SIDEKEY_SECRET_envhyg=" \
                        else "memory"
                    self.fail("the environment source's value is in the core dump (%s) %s: %r"
                              % (where, hits, dump[max(0, i - 64):i + len(ENV_VALUE) + 16]))

if __name__ == "__main__":
    unittest.main()
