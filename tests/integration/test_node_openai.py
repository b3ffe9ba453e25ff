"""Node with the real `openai` SDK (openai@6) under `sidekey exec --ref-env OPENAI_API_KEY=openai`:
the SDK sends the reference it finds in OPENAI_API_KEY through an undici ProxyAgent (Node 20's
fetch ignores proxy variables), sidekey intercepts the CONNECT, substitutes the real key, and the
TLS upstream standing in for api.openai.test answers a chat completion that the script prints.
The child's environment never holds the real key. The script is tests/e2e_node/chat.mjs; the npm
packages come from tests/package.json (scripts/install-test-deps.sh)."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

from harness import SIDEKEY_BIN, _yaml
from upstreams import Reply, Sse, TestCA, Upstream, proxy_sidekey, tls_server_context

TESTS_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CHAT = os.path.join(TESTS_DIR, "e2e_node", "chat.mjs")
NODE_MODULES = os.path.join(TESTS_DIR, "node_modules")

SECRET = "sk-node-PLAINTEXT-3e4f5a6b7c8d"
HOST = "api.openai.test"

POLICY = """version: 1
default: deny
secrets:
  openai:
    hosts: ["api.openai.test"]
rules:
  - name: openai
    match: { hosts: ["api.openai.test"], paths: ["/v1/*"] }
    inject:
      headers: { Authorization: "Bearer {{secrets.openai}}" }
"""

COMPLETION = json.dumps({
    "id": "chatcmpl-node-test", "object": "chat.completion", "created": 1700000000, "model": "gpt-test",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello from the fake openai"},
                 "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}})


def missing_prerequisite():
    if not shutil.which("node"):
        return "needs node"
    if not shutil.which("openssl"):
        return "needs the openssl command"
    for pkg in ("openai", "undici"):
        if not os.path.exists(os.path.join(NODE_MODULES, pkg, "package.json")):
            return "tests/node_modules/%s is missing: run scripts/install-test-deps.sh" % pkg
    return None


class NodeOpenAITest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        why = missing_prerequisite()
        if why:
            raise unittest.SkipTest(why)
        cls.tmp = tempfile.mkdtemp(prefix="sidekey-node-ca-")
        cls.ca = TestCA(cls.tmp)
        cls.leaf_cert, cls.leaf_key = cls.ca.issue([HOST], stem="upstream")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.up = Upstream(Reply(200, COMPLETION.encode(), content_type="application/json"),
                           ssl_context=tls_server_context(self.leaf_cert, self.leaf_key)).start()
        self.addCleanup(self.up.stop)
        self.sk = proxy_sidekey(POLICY, config={
            "egress": {"resolve": {HOST + ":443": "127.0.0.1:%d" % self.up.port}},
            "tls": {"upstream_ca_file": self.ca.cert}})
        self.addCleanup(shutil.rmtree, self.sk.dir, True)
        with open(self.sk.config_path, "w") as f:
            f.write(_yaml(self.sk.config) + "\n")

    def run_chat(self, extra_env=None):
        env = dict(os.environ)
        for k in list(env):
            if k.lower() in ("no_proxy", "http_proxy", "https_proxy", "all_proxy", "node_extra_ca_certs",
                             "node_options", "openai_api_key", "openai_base_url") or \
                    (k.startswith("SIDEKEY_") and k != "SIDEKEY_BIN"):
                del env[k]
        env["SIDEKEY_SECRET_openai"] = SECRET
        env.update(extra_env or {})
        argv = [SIDEKEY_BIN, "exec", "--config", self.sk.config_path, "--ref-env", "OPENAI_API_KEY=openai",
                "--", "node", CHAT]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, cwd=self.sk.dir)
        self.assertNotIn(SECRET, p.stdout)
        self.assertNotIn(SECRET, p.stderr)
        return p

    def test_openai_sdk_through_sidekey_exec(self):
        dump = os.path.join(self.sk.dir, "node-env.json")
        p = self.run_chat({"CHAT_ENV_DUMP": dump})
        self.assertEqual(p.returncode, 0, "stdout:\n%s\nstderr:\n%s" % (p.stdout, p.stderr[-4000:]))
        out = json.loads(p.stdout.strip().splitlines()[-1])
        self.assertTrue(out["ok"], out)
        self.assertEqual(out["content"], "hello from the fake openai")
        self.assertEqual(out["id"], "chatcmpl-node-test")

        self.assertEqual(len(self.up.requests), 1, self.up.requests)
        req = self.up.requests[0]
        self.assertEqual(req.method, "POST")
        self.assertEqual(req.path, "/v1/chat/completions")
        self.assertEqual(req.header("Host"), HOST)
        self.assertEqual(req.header_all("Authorization"), ["Bearer " + SECRET])
        body = json.loads(req.body)
        self.assertEqual(body["model"], "gpt-test")
        self.assertNotIn(b"{{", req.raw, "no literal reference goes upstream")

        with open(dump) as f:
            child_env = json.load(f)
        self.assertEqual(child_env.get("OPENAI_API_KEY"), "{{secrets.openai}}")
        for k, v in child_env.items():
            self.assertNotIn(SECRET, v, "the real key in the child's %s" % k)
        self.assertFalse([k for k in child_env if k.startswith("SIDEKEY_")])

        audits = [json.loads(line) for line in p.stderr.splitlines() if line.startswith("{") and '"audit"' in line]
        rec = [a for a in audits if a.get("path") == "/v1/chat/completions"]
        self.assertEqual(len(rec), 1, p.stderr[-3000:])
        self.assertEqual(rec[0]["secrets"], ["openai"])
        self.assertEqual(rec[0]["decision"], "inject")
        self.assertEqual(rec[0]["status"], 200)

    def test_streamed_completion_through_sidekey_exec(self):
        words = ["Hel", "lo ", "from ", "the ", "stream"]
        def chunk(delta, finish=None):
            return json.dumps({"id": "chatcmpl-stream", "object": "chat.completion.chunk", "created": 1700000000,
                               "model": "gpt-test",
                               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

        events = [chunk({"content": w}) for w in words] + [chunk({}, "stop"), "[DONE]"]
        self.up.handler = Sse(events)
        p = self.run_chat({"CHAT_STREAM": "1"})
        self.assertEqual(p.returncode, 0, "stdout:\n%s\nstderr:\n%s" % (p.stdout, p.stderr[-4000:]))
        lines = [json.loads(line) for line in p.stdout.strip().splitlines()]
        self.assertEqual([x["delta"] for x in lines if "delta" in x and x["delta"]], words)
        self.assertEqual(lines[-1], {"ok": True, "id": "chatcmpl-stream", "content": "".join(words)})
        req = self.up.requests[0]
        self.assertEqual(req.header_all("Authorization"), ["Bearer " + SECRET])
        self.assertIs(json.loads(req.body).get("stream"), True)

    def test_without_the_sidekey_ca_node_refuses_the_minted_leaf(self):
        # The script passes no CA to undici: the trust comes from NODE_EXTRA_CA_CERTS alone. Point
        # it (through `env`, after sidekey exec has set it) at a CA that did not sign the minted
        # leaf, and the request fails in the TLS handshake without reaching the upstream.
        env = dict(os.environ)
        for k in list(env):
            if k.startswith("SIDEKEY_") and k != "SIDEKEY_BIN" or k.lower() in ("no_proxy", "https_proxy"):
                del env[k]
        env["SIDEKEY_SECRET_openai"] = SECRET
        argv = [SIDEKEY_BIN, "exec", "--config", self.sk.config_path, "--ref-env", "OPENAI_API_KEY=openai",
                "--", "env", "NODE_EXTRA_CA_CERTS=" + self.ca.cert, "node", CHAT]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, cwd=self.sk.dir)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        out = json.loads(p.stdout.strip().splitlines()[-1])
        self.assertFalse(out["ok"])
        self.assertRegex(" ".join(out["causes"]), r"CERT|certificate", out)
        self.assertEqual(self.up.requests, [])


if __name__ == "__main__":
    unittest.main()
