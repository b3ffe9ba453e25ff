"""Policy reload under load (SPEC section 4 "Reload", invariant 9): requests keep succeeding while
the policy file is replaced 100 times, half of the time with a broken file; broken files are
counted in sidekey_policy_reloads_total{result="error"} and never replace the good policy; a
changed rule takes effect afterwards, by SIGHUP and by file-change polling."""
import signal
import threading
import unittest

import requests

from harness import wait_for
from upstreams import (BodyReader, Download, RawClient, Reply, Upstream, fill, metric_value, metrics_text,
                       proxy_sidekey)

SECRET = "sk-reload-PLAINTEXT-0badcafe77"

GOOD = """version: 1
default: deny
secrets:
  s:
    hosts: ["http://127.0.0.1:@PORT@"]
rules:
  - name: local
    match: { hosts: ["127.0.0.1:@PORT@"] }
    inject:
      headers: { Authorization: "Bearer {{secrets.s}}" }
  - name: filler-@N@
    match: { hosts: ["filler-@N@.example.test"] }
    action: deny
"""

BROKEN = [
    # YAML syntax
    "version: 1\ndefault: deny\nrules:\n  - name: local\n    match: { hosts: [\"127.0.0.1:@PORT@\"\n",
    # unknown key
    GOOD.replace("    inject:", "    bogus_key: 1\n    inject:"),
    # a template outside its secret's binding
    GOOD.replace('hosts: ["http://127.0.0.1:@PORT@"]', 'hosts: ["http://elsewhere.test:1"]'),
    # a malformed reference
    GOOD.replace("{{secrets.s}}", "{{secrets.}}"),
    # duplicate rule names
    GOOD.replace("filler-@N@\n", "local\n", 1),
    # wrong version
    GOOD.replace("version: 1", "version: 2"),
    # empty file
    "",
    # a bad glob
    GOOD.replace('match: { hosts: ["filler-@N@.example.test"] }',
                 'match: { hosts: ["filler-@N@.example.test"], paths: ["no-slash["] }'),
]

CHANGED = """version: 1
default: deny
secrets:
  s:
    hosts: ["http://127.0.0.1:@PORT@"]
rules:
  - name: local-v2
    match: { hosts: ["127.0.0.1:@PORT@"] }
    inject:
      headers: { X-Api-Key: "{{secrets.s}}" }
"""


class ReloadTest(unittest.TestCase):
    def setUp(self):
        self.up = Upstream(Reply(200, b"ok")).start()
        self.addCleanup(self.up.stop)
        self.sk = proxy_sidekey(fill(GOOD, PORT=self.up.port, N=0), secrets={"s": SECRET})
        self.sk.start()
        self.addCleanup(self.sk.__exit__, None, None, None)

    def tearDown(self):
        self.sk.assert_never_contains(self, [SECRET], [metrics_text(self.sk)] if self.sk.proc.poll() is None else [])

    def reloads(self, result):
        return metric_value(metrics_text(self.sk), "sidekey_policy_reloads_total", result=result) or 0

    def test_reload_under_load(self):
        stop = threading.Event()
        results = []      # (status, error text)
        lock = threading.Lock()

        def load(n):
            with requests.Session() as s:
                i = 0
                while not stop.is_set():
                    i += 1
                    try:
                        r = s.get(self.up.url + "/load/%d/%d" % (n, i), proxies={"http": self.sk.proxy_url},
                                  timeout=20)
                        item = (r.status_code, r.text if r.status_code != 200 else "")
                    except requests.RequestException as e:
                        item = (0, repr(e))
                    with lock:
                        results.append(item)

        threads = [threading.Thread(target=load, args=(n,), daemon=True) for n in range(4)]
        for t in threads:
            t.start()
        try:
            self.assertTrue(wait_for(lambda: len(results) >= 20, timeout=20), "no load")
            ok0, err0 = self.reloads("ok"), self.reloads("error")
            broken_written = 0
            for i in range(100):
                if i % 2:
                    text = fill(BROKEN[(i // 2) % len(BROKEN)], PORT=self.up.port, N=i)
                    broken_written += 1
                else:
                    text = fill(GOOD, PORT=self.up.port, N=i)
                before = self.reloads("ok") + self.reloads("error")
                self.sk.write_policy(text)
                self.sk.proc.send_signal(signal.SIGHUP)
                # Each replacement is read at least once (by the signal or by the file watch).
                self.assertTrue(wait_for(lambda: self.reloads("ok") + self.reloads("error") > before, timeout=10),
                                "replacement %d was not reloaded" % i)
            with lock:
                during = len(results)
            self.assertTrue(wait_for(lambda: len(results) >= during + 20, timeout=20), "load stalled after reloads")
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)

        failed = [r for r in results if r[0] != 200]
        self.assertEqual(failed, [], "%d of %d requests failed during reloads" % (len(failed), len(results)))
        self.assertGreater(len(results), 100)
        self.assertGreaterEqual(self.reloads("error") - err0, broken_written,
                                "every broken file is counted as a reload error")
        self.assertGreaterEqual(self.reloads("ok") - ok0, 100 - broken_written)
        self.assertEqual(self.sk.proc.poll(), None)
        # Every request that reached the upstream carried the injected secret.
        self.assertTrue(all(q.header("Authorization") == "Bearer " + SECRET for q in self.up.requests))
        self.assertIn("policy_reload_failed", self.sk.logs())

        # The last file written was broken: the last good one (filler-98) is in force.
        r = requests.get(self.up.url + "/after", proxies={"http": self.sk.proxy_url}, timeout=20)
        self.assertEqual(r.status_code, 200)

        # A changed rule takes effect, picked up by file-change polling alone (no signal).
        self.sk.write_policy(fill(CHANGED, PORT=self.up.port))
        self.assertTrue(wait_for(lambda: self.probe().header("X-Api-Key") == SECRET, timeout=15),
                        "the changed policy did not take effect")
        q = self.probe()
        self.assertIsNone(q.header("Authorization"))
        self.assertEqual(q.header("X-Api-Key"), SECRET)

    def probe(self):
        r = requests.get(self.up.url + "/probe", proxies={"http": self.sk.proxy_url}, timeout=20)
        self.assertEqual(r.status_code, 200, r.text)
        return self.up.last()

    def test_file_change_without_signal(self):
        err0 = self.reloads("error")
        self.sk.write_policy(BROKEN[0])
        self.assertTrue(wait_for(lambda: self.reloads("error") > err0, timeout=15),
                        "a broken file was not noticed by the file watch")
        self.assertEqual(self.probe().header("Authorization"), "Bearer " + SECRET)
        # A deny-everything policy takes effect the same way.
        self.sk.write_policy("version: 1\ndefault: deny\n")
        self.assertTrue(wait_for(lambda: requests.get(self.up.url + "/x", proxies={"http": self.sk.proxy_url},
                                                      timeout=20).status_code == 403, timeout=15))
        r = requests.get(self.up.url + "/x", proxies={"http": self.sk.proxy_url}, timeout=20)
        self.assertEqual(r.json()["error"]["code"], "policy_denied")

    def test_changed_rule_by_sighup(self):
        self.sk.write_policy(fill(CHANGED, PORT=self.up.port))
        self.sk.proc.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: self.probe().header("X-Api-Key") == SECRET, timeout=10))
        r = requests.get(self.up.url + "/audit", proxies={"http": self.sk.proxy_url}, timeout=20)
        from upstreams import wait_audit
        self.assertEqual(wait_audit(self.sk, r.headers["X-Sidekey-Request-Id"])["rule"], "local-v2")

    def test_in_flight_request_finishes_across_a_reload(self):
        gate = threading.Event()
        total, first = 8 << 20, 4 << 20
        self.up.next(Download(total, gate_at=first, gate=gate))
        try:
            with RawClient(self.sk.proxy_addr, timeout=20) as c:
                c.send("GET %s/long HTTP/1.1\r\nHost: x\r\n\r\n" % self.up.url)
                status, headers = c.read_head_only()
                self.assertEqual(status, 200)
                body = BodyReader(c, headers)
                got = b""
                while len(got) < first - (1 << 20):
                    got += body.read_some()
                # Deny everything, then let the upstream finish: the response in flight completes.
                ok0 = self.reloads("ok")
                self.sk.write_policy("version: 1\ndefault: deny\n")
                self.sk.proc.send_signal(signal.SIGHUP)
                self.assertTrue(wait_for(lambda: self.reloads("ok") > ok0, timeout=10))
                gate.set()
                got += body.read_all()
                self.assertEqual(got, Download.expected(total))
                # The next request on the same connection is decided by the new policy.
                c.send("GET %s/next HTTP/1.1\r\nHost: x\r\n\r\n" % self.up.url)
                r = c.read_response()
                self.assertEqual(r.status, 403)
                self.assertEqual(r.json()["error"]["code"], "policy_denied")
        finally:
            gate.set()


if __name__ == "__main__":
    unittest.main()
