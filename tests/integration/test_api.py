"""The Agent Protocol secrets API against the real binary, driven by curl and Python requests."""
import base64
import json
import os
import shutil
import subprocess
import tempfile
import threading
import unittest

import requests

from harness import SIDEKEY_BIN, Sidekey, wait_for
from upstreams import Reply, Upstream, fill, proxy_sidekey

PLAINTEXTS = ["sk-live-ALPHA-0123456789abcdef", "ghp_BRAVO_rotated_9876543210", "task-value-CHARLIE-42",
              "first-value-DELTA-77"]


def curl(*args):
    p = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}"] + list(args), capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    body, _, code = p.stdout.rpartition("\n")
    return int(code), body


class ApiTest(unittest.TestCase):
    def setUp(self):
        self.sk = Sidekey().start()
        self.responses = []

    def tearDown(self):
        self.sk.stop()
        metrics = requests.get(self.sk.admin_url + "/metrics").text if self.sk.proc.poll() is None else ""
        self.sk.assert_never_contains(self, PLAINTEXTS, self.responses + [metrics])
        self.sk.__exit__(None, None, None)

    def call(self, method, path, **kw):
        kw.setdefault("headers", self.sk.auth())
        r = requests.request(method, self.sk.api_url + path, timeout=10, **kw)
        self.responses.append(r.text)
        self.responses.append(json.dumps(dict(r.headers)))
        return r

    def test_create_list_get_rotate_delete_with_requests(self):
        r = self.call("POST", "/ap/v1/agent/secrets",
                      json={"secret_key": "openai", "secret_value": PLAINTEXTS[3], "allowed_hosts": ["api.openai.com"]})
        self.assertEqual(r.status_code, 200, r.text)
        created = r.json()
        self.assertEqual(created["secret_key"], "openai")
        self.assertEqual(created["reference"], "{{secrets.openai}}")
        self.assertEqual(created["allowed_hosts"], ["api.openai.com"])
        self.assertNotIn("secret_value", created)

        r = self.call("GET", "/ap/v1/agent/secrets/" + created["secret_id"])
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.json()["secret_key"], "openai")

        # Rotation: same id, new value, binding only grows.
        r = self.call("POST", "/ap/v1/agent/secrets",
                      json={"secret_key": "openai", "secret_value": PLAINTEXTS[0], "allowed_hosts": ["*.openai.com"]})
        self.assertEqual(r.status_code, 200)
        rotated = r.json()
        self.assertEqual(rotated["secret_id"], created["secret_id"])
        self.assertEqual(rotated["created_at"], created["created_at"])
        self.assertEqual(rotated["allowed_hosts"], ["api.openai.com", "*.openai.com"])
        self.assertEqual(len(self.call("GET", "/ap/v1/agent/secrets").json()["secret_keys"]), 1)

        r = self.call("DELETE", "/ap/v1/agent/secrets/" + created["secret_id"])
        self.assertEqual(r.status_code, 204)
        self.assertEqual(r.text, "")
        self.assertEqual(self.call("GET", "/ap/v1/agent/secrets/" + created["secret_id"]).status_code, 404)
        self.assertEqual(self.call("DELETE", "/ap/v1/agent/secrets/" + created["secret_id"]).status_code, 404)

    def test_paging(self):
        for i in range(23):
            r = self.call("POST", "/ap/v1/agent/secrets", json={"secret_key": "k%02d" % i, "secret_value": "v%d-x" % i})
            self.assertEqual(r.status_code, 200)
        r = self.call("GET", "/ap/v1/agent/secrets")
        body = r.json()
        self.assertEqual(body["pagination"], {"total_items": 23, "total_pages": 3, "current_page": 1, "page_size": 10})
        self.assertEqual([s["secret_key"] for s in body["secret_keys"]], ["k%02d" % i for i in range(10)])
        body = self.call("GET", "/ap/v1/agent/secrets?current_page=3&page_size=10").json()
        self.assertEqual([s["secret_key"] for s in body["secret_keys"]], ["k20", "k21", "k22"])
        body = self.call("GET", "/ap/v1/agent/secrets?current_page=2&page_size=5").json()
        self.assertEqual([s["secret_key"] for s in body["secret_keys"]], ["k05", "k06", "k07", "k08", "k09"])
        self.assertEqual(body["pagination"]["total_pages"], 5)
        body = self.call("GET", "/ap/v1/agent/secrets?current_page=9").json()
        self.assertEqual(body["secret_keys"], [])
        for bad in ["current_page=0", "page_size=0", "page_size=abc", "current_page=-1"]:
            self.assertEqual(self.call("GET", "/ap/v1/agent/secrets?" + bad).status_code, 422, bad)

    def test_auth(self):
        for headers in [{}, {"Authorization": "Bearer wrong"}, {"X-API-KEY": "wrong"}, {"Authorization": self.sk.token}]:
            r = self.call("GET", "/ap/v1/agent/secrets", headers=headers)
            self.assertEqual(r.status_code, 401, headers)
            self.assertIn("message", r.json())
        self.assertEqual(self.call("GET", "/ap/v1/agent/secrets", headers={"X-API-KEY": self.sk.token}).status_code, 200)
        self.assertEqual(self.call("GET", "/ap/v1/agent/secrets",
                                   headers={"Authorization": "bearer " + self.sk.token}).status_code, 200)
        self.assertEqual(oct(os.stat(os.path.join(self.sk.data_dir, "api-token")).st_mode & 0o777), "0o600")

    def test_validation_422(self):
        cases = [
            ("not json", "{"),
            ("array", "[]"),
            ("missing value", json.dumps({"secret_key": "a"})),
            ("missing key", json.dumps({"secret_value": "a"})),
            ("number value", json.dumps({"secret_key": "a", "secret_value": 5})),
            ("bad name", json.dumps({"secret_key": "bad name", "secret_value": "x"})),
            ("name starts with dot", json.dumps({"secret_key": ".a", "secret_value": "x"})),
            ("name too long", json.dumps({"secret_key": "a" * 129, "secret_value": "x"})),
            ("empty value", json.dumps({"secret_key": "a", "secret_value": ""})),
            ("LF in value", json.dumps({"secret_key": "a", "secret_value": "x\ny"})),
            ("CR in value", json.dumps({"secret_key": "a", "secret_value": "x\ry"})),
            ("NUL in value", json.dumps({"secret_key": "a", "secret_value": "x\u0000y"})),
            ("too large", json.dumps({"secret_key": "a", "secret_value": "x" * (64 * 1024 + 1)})),
            ("hosts not a list", json.dumps({"secret_key": "a", "secret_value": "x", "allowed_hosts": "h"})),
            ("reserved prefix", json.dumps({"secret_key": "tasks/x/y", "secret_value": "x"})),
        ]
        for what, body in cases:
            r = self.call("POST", "/ap/v1/agent/secrets", data=body,
                          headers=dict(self.sk.auth(), **{"Content-Type": "application/json"}))
            self.assertEqual(r.status_code, 422, what)
            self.assertIsInstance(r.json().get("message"), str, what)
        ok = self.call("POST", "/ap/v1/agent/secrets", json={"secret_key": "a" * 128, "secret_value": "x" * 65536})
        self.assertEqual(ok.status_code, 200)
        self.assertEqual(self.call("GET", "/ap/v1/agent/secrets").json()["pagination"]["total_items"], 1)

    def test_allowed_hosts_follow_the_policy_grammar(self):
        """allowed_hosts entries are the policy's host patterns (SPEC section 4): one the grammar
        rejects is refused with 422 naming it, never stored only to be left out of the binding."""
        for bad in ("*", "a.com/x", "https://a.com/v1", "ftp://a.com", "user@a.com", "a*.example.com",
                    "*.10.0.0.1", "a.com:99999", "http://", "a b.com"):
            for path, body in (("/ap/v1/agent/secrets", {"secret_key": "k", "secret_value": "v"}),
                               ("/ap/v1/agent/tasks/t-1/secrets", {"name": "k", "value": "v"})):
                r = self.call("POST", path, json=dict(body, allowed_hosts=["api.example.com", bad]))
                self.assertEqual(r.status_code, 422, "%s %r: %s" % (path, bad, r.text))
                self.assertIn("allowed_hosts", r.json()["message"], bad)
                self.assertIn(bad, r.json()["message"])
        self.assertEqual(self.call("GET", "/ap/v1/agent/secrets").json()["secret_keys"], [])
        self.assertEqual(self.call("GET", "/ap/v1/agent/tasks/t-1/secrets").json()["secrets"], [])
        # Every form the grammar has is accepted, schemes included.
        good = ["api.example.com", "*.example.com", "api.example.com:8443", "http://127.0.0.1:18080",
                "https://api.example.com", "HTTP://Upper.Example.com", "[::1]:8443", "::1", "10.0.0.5"]
        r = self.call("POST", "/ap/v1/agent/secrets", json={"secret_key": "k", "secret_value": "v", "allowed_hosts": good})
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.json()["allowed_hosts"], good)

    def test_task_scoped(self):
        base1, base2 = "/ap/v1/agent/tasks/task-1/secrets", "/ap/v1/agent/tasks/task-2/secrets"
        r1 = self.call("POST", base1, json={"name": "api_key", "value": PLAINTEXTS[2]})
        self.assertEqual(r1.status_code, 200, r1.text)
        s1 = r1.json()
        self.assertEqual(set(s1), {"secret_id", "name", "value"})
        self.assertEqual(s1["value"], "{{secrets.tasks/task-1/api_key}}")
        r2 = self.call("POST", base2, json={"name": "api_key", "value": PLAINTEXTS[1]})
        self.assertNotEqual(r2.json()["secret_id"], s1["secret_id"])
        listed = self.call("GET", base1).json()
        self.assertEqual([s["name"] for s in listed["secrets"]], ["api_key"])
        self.assertEqual(listed["pagination"]["total_items"], 1)
        self.assertEqual(self.call("GET", base1 + "/" + s1["secret_id"]).json()["value"], s1["value"])
        # A task's secret is not reachable through another task or the agent scope.
        self.assertEqual(self.call("GET", base2 + "/" + s1["secret_id"]).status_code, 404)
        self.assertEqual(self.call("GET", "/ap/v1/agent/secrets/" + s1["secret_id"]).status_code, 404)
        self.assertEqual(self.call("GET", "/ap/v1/agent/secrets").json()["secret_keys"], [])
        self.assertEqual(self.call("DELETE", base1 + "/" + s1["secret_id"]).status_code, 204)
        self.assertEqual(self.call("GET", base1).json()["secrets"], [])
        self.assertEqual(len(self.call("GET", base2).json()["secrets"]), 1)
        self.assertEqual(self.call("POST", base1, json={"secret_key": "x", "secret_value": "y"}).status_code, 422)
        self.assertEqual(self.call("GET", "/ap/v1/agent/tasks/bad%20id/secrets").status_code, 404)

    def test_not_found_and_methods(self):
        self.assertEqual(self.call("GET", "/ap/v1/agent/secrets/no-such-id").status_code, 404)
        self.assertEqual(self.call("GET", "/ap/v1/agent/tasks").status_code, 404)  # no gateway configured
        self.assertEqual(self.call("GET", "/nothing").json(), {"message": "Unable to find entity with the provided path"})
        r = self.call("PUT", "/ap/v1/agent/secrets")
        self.assertEqual(r.status_code, 405)
        self.assertEqual(r.headers["Allow"], "GET, POST")

    def test_curl_and_persistence_across_restart(self):
        auth = "Authorization: Bearer " + self.sk.token
        code, body = curl("-H", auth, "-H", "Content-Type: application/json", "-d",
                          json.dumps({"secret_key": "github", "secret_value": PLAINTEXTS[1]}),
                          self.sk.api_url + "/ap/v1/agent/secrets")
        self.responses.append(body)
        self.assertEqual(code, 200, body)
        sid = json.loads(body)["secret_id"]
        code, body = curl("-H", auth, self.sk.api_url + "/ap/v1/agent/secrets")
        self.assertEqual(code, 200)
        self.assertEqual(json.loads(body)["secret_keys"][0]["secret_id"], sid)

        self.sk.restart()
        code, body = curl("-H", "X-API-KEY: " + self.sk.token, self.sk.api_url + "/ap/v1/agent/secrets/" + sid)
        self.responses.append(body)
        self.assertEqual(code, 200)
        self.assertEqual(json.loads(body)["secret_key"], "github")
        code, body = curl("-X", "DELETE", "-H", auth, self.sk.api_url + "/ap/v1/agent/secrets/" + sid)
        self.assertEqual(code, 204)
        self.sk.restart()
        code, body = curl("-H", auth, self.sk.api_url + "/ap/v1/agent/secrets")
        self.assertEqual(json.loads(body)["pagination"]["total_items"], 0)

    def test_env_token_and_auth_none(self):
        self.sk.stop()
        with Sidekey(env={"SIDEKEY_API_TOKEN": "env-token-123"}) as sk:
            self.assertEqual(requests.get(sk.api_url + "/ap/v1/agent/secrets",
                                          headers={"X-API-KEY": "env-token-123"}).status_code, 200)
            self.assertEqual(requests.get(sk.api_url + "/ap/v1/agent/secrets", headers=self.sk.auth()).status_code, 401)
            self.assertFalse(os.path.exists(os.path.join(sk.data_dir, "api-token")))
        with Sidekey(config={"api": {"auth": "none"}}) as sk:
            self.assertEqual(requests.get(sk.api_url + "/ap/v1/agent/secrets").status_code, 200)
        self.sk.start()


class EnvSourceTest(unittest.TestCase):
    def test_env_source_never_takes_sidekeys_own_variables(self):
        # A prefix that also matches SIDEKEY_API_TOKEN and SIDEKEY_STORE_KEY leaves them to sidekey:
        # the token still guards the API, the key still opens the store, neither becomes a secret.
        store_key = base64.b64encode(b"k" * 32).decode()
        env = {"SIDEKEY_API_TOKEN": "env-token-789", "SIDEKEY_STORE_KEY": store_key, "SIDEKEY_other": "v-1234567"}
        with Sidekey(config={"sources": [{"env": {"prefix": "SIDEKEY_"}}]}, env=env) as sk:
            self.assertEqual(requests.get(sk.api_url + "/ap/v1/agent/secrets",
                                          headers={"X-API-KEY": "env-token-789"}).status_code, 200)
            self.assertFalse(os.path.exists(os.path.join(sk.data_dir, "api-token")), "the env token was used")
            self.assertFalse(os.path.exists(os.path.join(sk.data_dir, "store.key")), "the env store key was used")
            metrics = requests.get(sk.admin_url + "/metrics").text
            taken = [k for k in sk.env if k.startswith("SIDEKEY_") and k not in ("SIDEKEY_API_TOKEN", "SIDEKEY_STORE_KEY")]
            self.assertIn("SIDEKEY_other", taken)
            self.assertIn("sidekey_secrets %d\n" % len(taken), metrics, "secrets from: %s" % taken)
            logs = sk.logs()
            for variable in ("SIDEKEY_API_TOKEN", "SIDEKEY_STORE_KEY"):
                self.assertRegex(logs, r'"event":"secret_source_env_reserved".*"variable":"%s"|"variable":"%s".*"event":"secret_source_env_reserved"'
                                 % (variable, variable))
            self.assertNotIn("env-token-789", logs)
            self.assertNotIn(store_key, logs)


class AdminTest(unittest.TestCase):
    def test_health_ready_metrics(self):
        with Sidekey() as sk:
            self.assertEqual(requests.get(sk.admin_url + "/healthz").status_code, 200)
            r = requests.get(sk.admin_url + "/readyz")
            self.assertEqual((r.status_code, r.text.strip()), (200, "ready"))
            requests.post(sk.api_url + "/ap/v1/agent/secrets", headers=sk.auth(),
                          json={"secret_key": "m1", "secret_value": "metric-secret-value"})
            m = requests.get(sk.admin_url + "/metrics")
            self.assertTrue(m.headers["Content-Type"].startswith("text/plain"))
            self.assertIn("sidekey_secrets 1", m.text)
            self.assertRegex(m.text, r'sidekey_api_requests_total\{code="200"\} [1-9]')
            self.assertIn("# TYPE sidekey_active_connections gauge", m.text)
            self.assertNotIn("metric-secret-value", m.text)
            self.assertEqual(requests.get(sk.admin_url + "/nope").status_code, 404)


if __name__ == "__main__":
    unittest.main()


class StoreWriteOffTheWorkersTest(unittest.TestCase):
    """A secrets API write ends in fsync, which a busy disk can make slow: it runs on a thread of
    its own, so the proxy keeps serving on the (here only) worker while the write waits."""

    POLICY = """version: 1
default: deny
rules:
  - name: local
    match: { hosts: ["127.0.0.1:@PORT@"] }
    action: allow
"""

    def setUp(self):
        folder = os.environ.get("SIDEKEY_TOOLS")
        if not folder:
            self.skipTest("SIDEKEY_TOOLS is not set (run through CTest)")
        self.preload = os.path.join(folder, "libslow_fsync.so")
        self.assertTrue(os.path.exists(self.preload), self.preload + " is missing: build the slow_fsync target")
        ldd = subprocess.run(["ldd", shutil.which(SIDEKEY_BIN) or SIDEKEY_BIN], capture_output=True, text=True).stdout
        if "libasan" in ldd or "libtsan" in ldd:
            self.skipTest("a sanitizer runtime must come first in the library list: checked on the normal build")
        self.tmp = tempfile.mkdtemp(prefix="sidekey-slow-fsync-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.gate = os.path.join(self.tmp, "gate")
        self.up = Upstream(Reply(200, b"served-while-the-store-syncs")).start()
        self.addCleanup(self.up.stop)
        self.sk = proxy_sidekey(fill(self.POLICY, PORT=self.up.port), config={"workers": 1},
                                env={"LD_PRELOAD": self.preload, "SIDEKEY_SLOW_FSYNC_GATE": self.gate})
        self.sk.start()
        self.addCleanup(self.sk.__exit__, None, None, None)

    def test_proxy_serves_while_a_store_write_waits_for_the_disk(self):
        open(self.gate, "w").close()
        self.addCleanup(lambda: os.path.exists(self.gate) and os.remove(self.gate))
        result = {}

        def write():
            r = requests.post(self.sk.api_url + "/ap/v1/agent/secrets", headers=self.sk.auth(), timeout=60,
                              json={"secret_key": "slowdisk", "secret_value": "v-slow-disk-1234"})
            result["status"] = r.status_code

        t = threading.Thread(target=write)
        t.start()
        self.assertTrue(wait_for(lambda: os.path.exists(self.gate + ".started"), timeout=30),
                        "the API write never reached fsync")
        # The write is held in fsync now. A request through the proxy, on the same worker:
        r = requests.get(self.up.url + "/during", proxies={"http": self.sk.proxy_url}, timeout=30)
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.text, "served-while-the-store-syncs")
        self.assertTrue(t.is_alive(), "the write finished before the gate opened")
        os.remove(self.gate)
        t.join(60)
        self.assertEqual(result.get("status"), 200)
