"""`sidekey policy check` and `sidekey policy explain` as a user runs them, and `upgrade_tls`
through the real proxy (a plain-HTTP request sent upstream over verified TLS)."""
import glob
import json
import os
import subprocess
import tempfile
import unittest

import requests

from harness import SIDEKEY_BIN, SOURCE_DIR
from upstreams import Reply, TestCA, Upstream, fill, proxy_sidekey, tls_server_context

SECRET = "sk-upgrade-PLAINTEXT-0a1b2c3d"


def sidekey(*args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDEKEY_")}
    return subprocess.run([SIDEKEY_BIN] + list(args), capture_output=True, text=True, timeout=60, env=env)


class PolicyCheckTest(unittest.TestCase):
    def test_every_shipped_policy_checks(self):
        files = [os.path.join(SOURCE_DIR, "config", "policy.yaml")] + sorted(
            glob.glob(os.path.join(SOURCE_DIR, "config", "examples", "*.yaml")))
        self.assertGreaterEqual(len(files), 5)
        p = sidekey("policy", "check", *files)
        self.assertEqual(p.returncode, 0, p.stderr)
        for f in files:
            self.assertIn(f + ": ok (", p.stdout)

    def test_a_bad_policy_names_file_line_column(self):
        with tempfile.TemporaryDirectory() as d:
            bad = os.path.join(d, "bad.yaml")
            with open(bad, "w") as f:
                f.write("version: 1\ndefault: deny\nrules:\n  - name: x\n    match: { hosts: [\"a.test\"] }\n"
                        "    actoin: allow\n")
            p = sidekey("policy", "check", bad)
            self.assertEqual(p.returncode, 1)
            self.assertRegex(p.stderr, r"bad\.yaml:6:5: .*actoin")
            # Usage errors are 2.
            self.assertEqual(sidekey("policy", "check").returncode, 2)
            self.assertEqual(sidekey("policy", "frobnicate").returncode, 2)

    def test_an_option_is_a_usage_error(self):
        """check takes files only: an option (`--data-dir d`, as other commands take) is a usage
        error, exit 2, like explain's unknown options, not a file it cannot open (exit 1)."""
        good = os.path.join(SOURCE_DIR, "config", "policy.yaml")
        for args in (["--data-dir", "d", good], [good, "--config", "x.yaml"], ["--bogus", good], ["-x", good]):
            p = sidekey("policy", "check", *args)
            self.assertEqual(p.returncode, 2, (args, p.stderr))
            self.assertEqual(p.stdout, "")
            self.assertIn("unknown option '%s'" % [a for a in args if a.startswith("-")][0], p.stderr)
            self.assertIn("usage: sidekey policy check FILE", p.stderr)
            self.assertNotIn("cannot open", p.stderr)
        # explain agrees.
        self.assertEqual(sidekey("policy", "explain", "--data-dir", "d", "--policy", good, "GET",
                                 "https://a.test/").returncode, 2)
        # "--" ends options: a file named like one can still be checked.
        with tempfile.TemporaryDirectory() as d:
            dashed = os.path.join(d, "-dashed.yaml")
            with open(dashed, "w") as f:
                f.write("version: 1\ndefault: deny\n")
            p = subprocess.run([SIDEKEY_BIN, "policy", "check", "--", "-dashed.yaml"], capture_output=True, text=True,
                               timeout=60, cwd=d)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("-dashed.yaml: ok (", p.stdout)

    def test_a_shadowed_rule_is_a_warning_not_an_error(self):
        with tempfile.TemporaryDirectory() as d:
            f = os.path.join(d, "shadow.yaml")
            with open(f, "w") as fh:
                fh.write("version: 1\ndefault: deny\nrules:\n  - name: all\n    match: { hosts: [\"a.test\"] }\n"
                         "    action: allow\n  - name: never\n    match: { hosts: [\"a.test\"], methods: [GET] }\n"
                         "    action: deny\n")
            p = sidekey("policy", "check", f)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("warning: ", p.stderr)
            self.assertRegex(p.stderr, r"shadow\.yaml:7:\d+: ")


class PolicyExplainTest(unittest.TestCase):
    POLICY = os.path.join(SOURCE_DIR, "config", "policy.yaml")

    def explain(self, *args):
        p = sidekey("policy", "explain", "--policy", self.POLICY, *args)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

    def test_inject_names_rule_secret_and_place_never_a_value(self):
        out = self.explain("POST", "https://api.openai.com/v1/chat/completions", "-H", "Content-Type: application/json")
        self.assertEqual(out["rule"], "openai")
        self.assertEqual(out["decision"], "inject")
        self.assertIn("openai", out["secrets"])
        self.assertIn("header:Authorization", out["injected"])
        self.assertNotIn("refusal", out)

    def test_denied_and_default(self):
        out = self.explain("GET", "http://169.254.169.254/latest/meta-data/")
        self.assertEqual(out["decision"], "deny")
        self.assertEqual(out["rule"], "cloud-metadata")
        self.assertEqual(out["refusal"]["code"], "policy_denied")
        out = self.explain("GET", "https://unknown.example/")
        self.assertEqual(out["decision"], "deny")
        self.assertTrue(out["default"])

    def test_connect_and_route(self):
        self.assertEqual(self.explain("CONNECT", "pypi.org:443")["decision"], "tunnel")
        self.assertEqual(self.explain("CONNECT", "api.openai.com:443")["decision"], "intercept")
        out = self.explain("GET", "/openai/v1/models")
        self.assertEqual(out["destination"]["host"], "api.openai.com")
        self.assertEqual(out["rule"], "openai")

    def test_a_reference_to_an_unbound_host_is_refused(self):
        out = self.explain("GET", "https://api.github.com/user", "-H", "Authorization: Bearer {{secrets.openai}}")
        self.assertEqual(out["refusal"]["code"], "secret_not_bound")

    def test_usage(self):
        self.assertEqual(sidekey("policy", "explain", "GET").returncode, 2)
        self.assertEqual(sidekey("policy", "explain", "--policy", self.POLICY, "GET", "https://a.test/", "-H",
                                 "no-colon").returncode, 2)


POLICY = """version: 1
default: deny
secrets:
  up:
    hosts: ["api.upgrade.test"]
rules:
  - name: upgraded
    match: { hosts: ["api.upgrade.test"] }
    upgrade_tls: true
    inject:
      headers: { Authorization: "Bearer {{secrets.up}}" }
"""


class UpgradeTlsTest(unittest.TestCase):
    def test_plain_http_goes_upstream_over_verified_tls(self):
        with tempfile.TemporaryDirectory() as d:
            ca = TestCA(d)
            cert, key = ca.issue(["api.upgrade.test"], stem="upstream")
            up = Upstream(ssl_context=tls_server_context(cert, key)).start()
            up.handler = Reply(200, b"over-tls")
            sk = proxy_sidekey(POLICY, secrets={"up": SECRET},
                               config={"egress": {"resolve": {"api.upgrade.test:443": up.addr}},
                                       "tls": {"upstream_ca_file": ca.cert}})
            try:
                sk.start()
                # The agent speaks plain HTTP to port 80; the secret may only travel over TLS.
                r = requests.get("http://api.upgrade.test/v1/x", proxies={"http": sk.proxy_url}, timeout=20)
                self.assertEqual(r.status_code, 200, r.text)
                self.assertEqual(r.content, b"over-tls")
                self.assertEqual(up.requests[0].header("Authorization"), "Bearer " + SECRET)
                self.assertEqual(up.requests[0].header("Host"), "api.upgrade.test")
                sk.assert_never_contains(self, [SECRET], [r.text])
            finally:
                sk.stop()
                up.stop()
                sk.__exit__(None, None, None)

    def test_an_upstream_that_fails_verification_gets_nothing(self):
        with tempfile.TemporaryDirectory() as d:
            os.makedirs(os.path.join(d, "other"))
            ca, other = TestCA(d), TestCA(os.path.join(d, "other"))
            cert, key = ca.issue(["api.upgrade.test"], stem="upstream")
            up = Upstream(ssl_context=tls_server_context(cert, key)).start()
            sk = proxy_sidekey(POLICY, secrets={"up": SECRET},
                               config={"egress": {"resolve": {"api.upgrade.test:443": up.addr}},
                                       "tls": {"upstream_ca_file": other.cert}})
            try:
                sk.start()
                r = requests.get("http://api.upgrade.test/v1/x", proxies={"http": sk.proxy_url}, timeout=20)
                self.assertEqual(r.status_code, 502)
                self.assertEqual(r.json()["error"]["code"], "upstream_tls_failed")
                self.assertEqual(up.requests, [])
            finally:
                sk.stop()
                up.stop()
                sk.__exit__(None, None, None)


if __name__ == "__main__":
    unittest.main()
