"""State faults against the real binary (issue #8): the store's disk fills up under an API write,
and the policy file and a secrets folder change while requests keep coming.

- Disk full: the data folder is a 1 MiB tmpfs (the trust bundle takes ~200 KiB), filled to the last page; every API write then
  fails with 507 and the reason, the store file and the served secrets stay exactly as they were, no
  temporary file is left behind, and writes work again once there is room. Needs root (mount).
- Policy reload under load: generations of a policy whose every part names its generation
  (injected headers, a route's upstream path). Every request is answered, and everything one
  request carries comes from one generation, never older than what an earlier request on the
  same client saw. (test_proxy_reload covers errors while broken files are written.)
- A `dir:` source changing under load: files replaced one by one, and the Kubernetes Secret
  volume layout whose `..data` symlink swaps a whole set at once. Every request is answered with
  whole values, and with the Kubernetes layout with values of one generation.
"""
import errno
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import requests

from harness import wait_for
from upstreams import Reply, Upstream, audit_records, fill, metric_value, metrics_text, proxy_sidekey

# ------------------------------------------------------------------------------------------------
# Disk full under an API write


VALUE_A = "disk-A-PLAINTEXT-3c1f0a9e7d5b"
VALUE_A2 = "disk-A2-PLAINTEXT-88e1d2c3b4a5"
VALUE_B = "disk-B-PLAINTEXT-5d6e7f8091a2"
VALUE_C = "disk-C-PLAINTEXT-b3c4d5e6f708"

DISK_POLICY = """version: 1
default: deny
rules:
  - name: local
    match: { hosts: ["127.0.0.1:@PORT@"] }
    references: [headers]
"""


class DiskFullTest(unittest.TestCase):
    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to mount a tmpfs for the data folder (running as uid %d)" % os.geteuid())
        if not shutil.which("mount"):
            self.skipTest("no mount command")
        self.up = Upstream(Reply(200, b"fine")).start()
        self.addCleanup(self.up.stop)
        self.sk = proxy_sidekey(fill(DISK_POLICY, PORT=self.up.port))
        self.addCleanup(self.sk.__exit__, None, None, None)   # last: removes the folder
        os.makedirs(self.sk.data_dir)
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", self.sk.data_dir],
                           capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            self.skipTest("cannot mount a tmpfs: %s" % p.stderr.strip())
        self.addCleanup(self.unmount)
        self.sk.start()
        self.addCleanup(self.sk.stop)                          # first: sidekey lets go of the mount
        self.api = self.sk.api_url + "/ap/v1/agent/secrets"
        self.seen = []
        self.filler = os.path.join(self.sk.data_dir, "filler")

    def unmount(self):
        p = subprocess.run(["umount", self.sk.data_dir], capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            subprocess.run(["umount", "-l", self.sk.data_dir], capture_output=True, timeout=30)

    def post(self, name, value, hosts=None):
        body = {"secret_key": name, "secret_value": value}
        if hosts:
            body["allowed_hosts"] = hosts
        r = requests.post(self.api, json=body, headers=self.sk.auth(), timeout=20)
        self.seen.append(r.text)
        return r

    def listing(self):
        r = requests.get(self.api + "?page_size=100", headers=self.sk.auth(), timeout=20)
        self.assertEqual(r.status_code, 200, r.text)
        self.seen.append(r.text)
        return {s["secret_key"]: s for s in r.json()["secret_keys"]}

    def injected(self, name):
        r = requests.get(self.up.url + "/use", headers={"X-K": "{{secrets.%s}}" % name},
                         proxies={"http": self.sk.proxy_url}, timeout=20)
        self.seen.append(r.text)
        self.assertEqual(r.status_code, 200, r.text)
        return self.up.last().header("X-K")

    def db_digest(self):
        with open(os.path.join(self.sk.data_dir, "secrets.db"), "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()

    def temp_files(self):
        return [n for n in os.listdir(self.sk.data_dir) if ".tmp" in n]

    def fill_disk(self):
        """Writes the filler until the file system refuses: no page is left."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as e:
            self.assertEqual(e.errno, errno.ENOSPC, e)
        finally:
            os.close(fd)
        st = os.statvfs(self.sk.data_dir)
        self.assertEqual(st.f_bavail, 0, "the tmpfs still has room")

    def assert_write_refused(self, r):
        # 507 Insufficient Storage, saying why (api/openapi.yaml: StoreFull).
        self.assertEqual(r.status_code, 507, r.text)
        self.assertEqual(r.json(), {"message": "secrets store write failed: No space left on device"})

    def test_disk_full_refuses_writes_and_keeps_the_old_store(self):
        hosts = ["http://127.0.0.1:%d" % self.up.port]
        self.assertEqual(self.post("a", VALUE_A, hosts).status_code, 200)
        self.assertEqual(self.post("b", VALUE_B, hosts).status_code, 200)
        before = self.listing()
        digest = self.db_digest()
        self.assertEqual(self.injected("a"), VALUE_A)

        self.fill_disk()
        # Rotation, creation and deletion all need a new store file: each is refused.
        r = self.post("a", VALUE_A2)
        self.assert_write_refused(r)
        self.assert_write_refused(self.post("c", VALUE_C, hosts))
        r = requests.delete(self.api + "/" + before["b"]["secret_id"], headers=self.sk.auth(), timeout=20)
        self.seen.append(r.text)
        self.assert_write_refused(r)
        self.assertIn("No space left on device", self.sk.logs(), "the log does not say why the write failed")

        # Nothing changed: on disk, in the API and in what the proxy injects; no temp file left.
        self.assertEqual(self.db_digest(), digest)
        self.assertEqual(self.temp_files(), [])
        self.assertEqual(self.listing(), before)
        self.assertEqual(self.injected("a"), VALUE_A)
        self.assertEqual(self.injected("b"), VALUE_B)
        self.assertIsNone(self.sk.proc.poll(), "sidekey died on a full disk:\n" + self.sk.logs()[-3000:])
        self.assertEqual(requests.get(self.sk.admin_url + "/healthz", timeout=10).status_code, 200)
        self.assertEqual(requests.get(self.sk.admin_url + "/readyz", timeout=10).status_code, 200)
        # A store poll on a full disk does not disturb anything either.
        time.sleep(2.5)
        self.assertEqual(self.injected("a"), VALUE_A)

        # Room again: writes succeed and are durable.
        os.unlink(self.filler)
        self.assertEqual(self.post("a", VALUE_A2).status_code, 200)
        self.assertEqual(self.injected("a"), VALUE_A2)
        r = requests.delete(self.api + "/" + before["b"]["secret_id"], headers=self.sk.auth(), timeout=20)
        self.assertEqual(r.status_code, 204, r.text)
        self.sk.stop()
        self.sk.start()
        self.api = self.sk.api_url + "/ap/v1/agent/secrets"   # new ports
        after = self.listing()
        self.assertEqual(sorted(after), ["a"])
        self.assertEqual(after["a"]["secret_id"], before["a"]["secret_id"])
        self.assertEqual(self.injected("a"), VALUE_A2)
        self.sk.assert_never_contains(self, [VALUE_A, VALUE_A2, VALUE_B, VALUE_C], self.seen)


# ------------------------------------------------------------------------------------------------
# Policy reload under load: one generation per request


GEN_SECRET = "sk-gen-PLAINTEXT-4d4d4d4d9e"

GEN_POLICY = """version: 1
default: deny
secrets:
  s:
    hosts: ["http://127.0.0.1:@PORT@"]
routes:
  - prefix: /r/
    upstream: http://127.0.0.1:@PORT@/gen@N@/
rules:
  - name: gen-@N@
    match: { hosts: ["127.0.0.1:@PORT@"] }
    inject:
      headers: { X-Gen-A: "g@N@", X-Gen-B: "g@N@:{{secrets.s}}", Authorization: "Bearer {{secrets.s}}" }
"""

GENERATIONS = 40


class LoadThreads:
    """`n` threads, each sending requests one after another (keep-alive) through `send(thread,
    i)` until stopped; records (thread, i, status, text)."""

    def __init__(self, n, send):
        self.stop = threading.Event()
        self.results = []
        self.lock = threading.Lock()
        self.send = send
        self.threads = [threading.Thread(target=self.run, args=(t,), daemon=True) for t in range(n)]

    def run(self, t):
        with requests.Session() as s:
            i = 0
            while not self.stop.is_set():
                i += 1
                try:
                    r = self.send(s, t, i)
                    item = (t, i, r.status_code, r.text)
                except requests.RequestException as e:
                    item = (t, i, 0, repr(e))
                with self.lock:
                    self.results.append(item)

    def count(self):
        with self.lock:
            return len(self.results)

    def __enter__(self):
        for th in self.threads:
            th.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for th in self.threads:
            th.join(timeout=30)


class PolicyGenerationTest(unittest.TestCase):
    def setUp(self):
        self.up = Upstream(Reply(200, b"fine")).start()
        self.addCleanup(self.up.stop)
        self.sk = proxy_sidekey(fill(GEN_POLICY, PORT=self.up.port, N=0), secrets={"s": GEN_SECRET})
        self.sk.start()
        self.addCleanup(self.sk.__exit__, None, None, None)

    def reloads(self):
        return metric_value(metrics_text(self.sk), "sidekey_policy_reloads_total", result="ok") or 0

    def send(self, s, t, i):
        if t % 2:
            return s.get(self.sk.proxy_url + "/r/load/%d/%d" % (t, i), timeout=20)   # reverse route
        return s.get(self.up.url + "/load/%d/%d" % (t, i), proxies={"http": self.sk.proxy_url}, timeout=20)

    def test_every_request_sees_one_whole_generation(self):
        with LoadThreads(4, self.send) as load:
            self.assertTrue(wait_for(lambda: load.count() >= 20, timeout=20), "no load")
            for n in range(1, GENERATIONS + 1):
                before = self.reloads()
                self.sk.write_policy(fill(GEN_POLICY, PORT=self.up.port, N=n))
                if n % 2:
                    self.sk.proc.send_signal(signal.SIGHUP)   # even generations: the file watch alone
                self.assertTrue(wait_for(lambda: self.reloads() > before, timeout=15), "generation %d not loaded" % n)
                time.sleep(0.05)
            during = load.count()
            self.assertTrue(wait_for(lambda: load.count() >= during + 20, timeout=20), "load stalled")

        failed = [r for r in load.results if r[2] != 200]
        self.assertEqual(failed[:5], [], "%d of %d requests failed" % (len(failed), len(load.results)))
        self.assertIsNone(self.sk.proc.poll())

        # Everything one request carries comes from one generation.
        last_seen = {}   # thread -> (i, generation)
        gens = set()
        rows = []
        for q in self.up.requests:
            m = re.fullmatch(r"(?:/gen(\d+))?/load/(\d+)/(\d+)", q.path)
            self.assertTrue(m, q.path)
            a, b = q.header("X-Gen-A"), q.header("X-Gen-B")
            self.assertRegex(a or "", r"^g\d+$", q.headers)
            n = int(a[1:])
            self.assertEqual(b, "g%d:%s" % (n, GEN_SECRET), "headers of two generations in one request")
            self.assertEqual(q.header("Authorization"), "Bearer " + GEN_SECRET)
            if m.group(1) is not None:
                self.assertEqual(int(m.group(1)), n, "route of generation %s, rule of generation %d" % (m.group(1), n))
            rows.append((int(m.group(2)), int(m.group(3)), n))
            gens.add(n)
        # Per client, requests are sequential: a later request never sees an older generation.
        for t, i, n in sorted(rows):
            if t in last_seen:
                self.assertGreaterEqual(n, last_seen[t][1],
                                        "thread %d: request %d saw generation %d after request %d saw %d"
                                        % (t, i, n, last_seen[t][0], last_seen[t][1]))
            last_seen[t] = (i, n)
        self.assertIn(GENERATIONS, gens, "the last generation never took effect")
        self.assertGreater(len(gens), GENERATIONS // 2, "too few generations seen to prove anything: %s" % sorted(gens))
        rules = {a.get("rule") for a in audit_records(self.sk)}
        self.assertIn("gen-%d" % GENERATIONS, rules)
        self.sk.assert_never_contains(self, [GEN_SECRET], [r[3] for r in load.results] + [metrics_text(self.sk)])


# ------------------------------------------------------------------------------------------------
# A secrets folder changing under load


DIR_POLICY = """version: 1
default: deny
secrets:
  a:
    hosts: ["http://127.0.0.1:@PORT@"]
  b:
    hosts: ["http://127.0.0.1:@PORT@"]
rules:
  - name: local
    match: { hosts: ["127.0.0.1:@PORT@"] }
    inject:
      headers: { X-A: "{{secrets.a}}", X-B: "{{secrets.b}}" }
"""

DIR_RUN_SECONDS = 16   # the folder is re-read every 2 s: about 8 refreshes


def dir_value(name, n):
    """Generation n of secret `name`: its length changes with n, so a torn read shows."""
    return "%s-PLAINTEXT-gen%d-%s" % (name, n, "z" * (n % 7 * 5))


VALUE_RE = re.compile(r"^([ab])-PLAINTEXT-gen(\d+)-(z*)$")

# Swaps DIR/..data among generation folders as fast as it can until SIGTERM, renewing a folder
# (removed, made again as the next generation) every 2000 swaps; prints "ready" once the layout
# stands, and at the end the number of swaps and the last generation made.
K8S_SWAPPER = r"""
import os, shutil, signal, sys
d, names = sys.argv[1], sys.argv[2].split(",")
def value(name, n):
    return "%s-PLAINTEXT-gen%d-%s" % (name, n, "z" * (n % 7 * 5)) if name in ("a", "b") else "other-%d" % n
def make(n):
    folder = "..gen_%06d" % n
    os.mkdir(os.path.join(d, folder))
    for name in names:
        with open(os.path.join(d, folder, name), "w") as f:
            f.write(value(name, n) + "\n")
    return folder
def swap(folder):
    os.symlink(folder, os.path.join(d, "..data_tmp"))
    os.replace(os.path.join(d, "..data_tmp"), os.path.join(d, "..data"))
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
pool = [make(n) for n in range(1, 21)]
n = len(pool)
swap(pool[0])
for name in names:
    os.symlink(os.path.join("..data", name), os.path.join(d, name))
print("ready", flush=True)
swaps = 0
while not stop:
    k = swaps % len(pool)
    swap(pool[k])
    swaps += 1
    if swaps % 2000 == 0:
        j = (k + len(pool) // 2) % len(pool)
        shutil.rmtree(os.path.join(d, pool[j]))
        n += 1
        pool[j] = make(n)
print(swaps, n, flush=True)
"""


class DirSourceUnderLoadTest(unittest.TestCase):
    def setUp(self):
        self.secrets_dir = tempfile.mkdtemp(prefix="sidekey-dir-source-")
        self.addCleanup(shutil.rmtree, self.secrets_dir, True)
        self.up = Upstream(Reply(200, b"fine")).start()
        self.addCleanup(self.up.stop)
        self.written = set()

    def start(self):
        self.sk = proxy_sidekey(fill(DIR_POLICY, PORT=self.up.port),
                                config={"sources": [{"dir": {"path": self.secrets_dir}}]})
        self.sk.start()
        self.addCleanup(self.sk.__exit__, None, None, None)

    def send(self, s, t, i):
        return s.get(self.up.url + "/load/%d/%d" % (t, i), proxies={"http": self.sk.proxy_url}, timeout=20)

    def write_file(self, path, text):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, path)

    def run_load(self, change):
        """Runs the load while `change(n)` makes generation n, n = 1, 2, … for DIR_RUN_SECONDS."""
        with LoadThreads(3, self.send) as load:
            self.assertTrue(wait_for(lambda: load.count() >= 10, timeout=20), "no load")
            n = 0
            deadline = time.time() + DIR_RUN_SECONDS
            while time.time() < deadline:
                n += 1
                change(n)
                time.sleep(0.01)
            during = load.count()
            self.assertTrue(wait_for(lambda: load.count() >= during + 10, timeout=20), "load stalled")
        return load, n

    def check(self, load, same_generation):
        failed = [r for r in load.results if r[2] != 200]
        self.assertEqual(failed[:5], [], "%d of %d requests failed while the folder changed"
                         % (len(failed), len(load.results)))
        self.assertIsNone(self.sk.proc.poll())
        gens = set()
        mixed = []
        for q in self.up.requests:
            ma, mb = VALUE_RE.match(q.header("X-A") or ""), VALUE_RE.match(q.header("X-B") or "")
            self.assertTrue(ma and mb, "not a whole value: %r %r" % (q.header("X-A"), q.header("X-B")))
            for m in (ma, mb):
                self.assertEqual(len(m.group(3)), int(m.group(2)) % 7 * 5, "a torn value: %s" % m.group(0))
            self.assertEqual((ma.group(1), mb.group(1)), ("a", "b"))
            gens.add(int(ma.group(2)))
            if ma.group(2) != mb.group(2):
                mixed.append((q.path, ma.group(0), mb.group(0)))
        if same_generation:
            self.assertEqual(mixed[:5], [], "%d of %d requests carried values of two generations"
                             % (len(mixed), len(self.up.requests)))
        self.assertGreaterEqual(len(gens), 4, "the folder was hardly re-read: generations seen %s" % sorted(gens))
        # Every value went out whole and was never echoed anywhere.
        self.sk.assert_never_contains(self, sorted(self.written)[:200], [r[3] for r in load.results] +
                                      [metrics_text(self.sk)])

    def test_a_file_name_that_is_not_utf8_is_skipped(self):
        # Skipped with a warning; before, the warning's JSON threw on the name, which failed the
        # start (and, appearing later, every refresh).
        for name in ("a", "b"):
            self.write_file(os.path.join(self.secrets_dir, name), dir_value(name, 0))
        with open(os.path.join(self.secrets_dir.encode(), b"bad-\xff-name"), "w") as f:
            f.write("x\n")
        self.start()
        r = requests.get(self.up.url + "/one", proxies={"http": self.sk.proxy_url}, timeout=20)
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(self.up.last().header("X-A"), dir_value("a", 0))
        self.assertTrue(wait_for(lambda: "secret_source_file_bad_name" in self.sk.logs(), timeout=10), self.sk.logs()[-2000:])
        # A later refresh still works: a new value is picked up.
        self.write_file(os.path.join(self.secrets_dir, "a"), dir_value("a", 1))
        self.assertTrue(wait_for(lambda: requests.get(self.up.url + "/two", proxies={"http": self.sk.proxy_url},
                                                      timeout=20).status_code == 200
                                 and self.up.last().header("X-A") == dir_value("a", 1), timeout=15))
        self.written |= {dir_value("a", 0), dir_value("a", 1), dir_value("b", 0)}
        self.sk.assert_never_contains(self, sorted(self.written), [])

    def test_files_replaced_one_by_one(self):
        for name in ("a", "b"):
            self.write_file(os.path.join(self.secrets_dir, name), dir_value(name, 0))
        self.start()

        def change(n):
            for name in ("a", "b"):
                v = dir_value(name, n)
                self.written.add(v)
                self.write_file(os.path.join(self.secrets_dir, name), v)

        load, _ = self.run_load(change)
        # Files are replaced one at a time, so a refresh between the two may pair generations
        # n and n-1; each value is whole.
        self.check(load, same_generation=False)

    def test_kubernetes_volume_swap_is_seen_whole(self):
        # The kubelet's layout: NAME -> ..data/NAME, ..data -> ..<timestamp>/, a whole set swapped
        # at once by renaming a new ..data symlink over the old one, old folders removed. Here a
        # process of its own swaps back to back (a pool of prepared folders, one renewed every
        # few thousand swaps), so swaps land in the middle of sidekey's reading of the folder; 200
        # other secrets make that reading take a while (a and b are read far apart).
        d = self.secrets_dir
        names = ["a"] + ["other%03d" % i for i in range(200)] + ["b"]
        swapper = subprocess.Popen([sys.executable, "-c", K8S_SWAPPER, d, ",".join(names)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: swapper.poll() is None and swapper.kill())
        self.assertEqual(swapper.stdout.readline().strip(), "ready", swapper.stderr.read() if swapper.poll() else "")
        self.start()
        load, _ = self.run_load(lambda n: time.sleep(0.1))
        swapper.terminate()
        out, err = swapper.communicate(timeout=30)
        swaps, last = (int(x) for x in out.split())
        self.assertGreater(swaps, 1000, err)
        self.written |= {dir_value(name, n) for name in ("a", "b") for n in range(last + 1)}
        self.check(load, same_generation=True)


if __name__ == "__main__":
    unittest.main()
