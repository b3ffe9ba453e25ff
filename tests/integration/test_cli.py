"""The sidekey command line: serve start-up errors, secrets set/list/rm, version, help."""
import base64
import os
import re
import subprocess
import unittest

import requests

from harness import SIDEKEY_BIN, Sidekey

VALUE = "cli-secret-VALUE-5f3a9e"


def run(args, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 60)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDEKEY_")}
    env.update(kw.pop("env", {}))
    return subprocess.run([SIDEKEY_BIN] + args, env=env, **kw)


class CliTest(unittest.TestCase):
    def test_version_and_help(self):
        p = run(["--version"])
        self.assertEqual(p.returncode, 0)
        self.assertRegex(p.stdout, r"^sidekey \d+\.\d+\.\d+\n$")
        p = run(["help"])
        self.assertEqual(p.returncode, 0)
        for word in ["serve", "secrets set", "--config"]:
            self.assertIn(word, p.stdout)
        self.assertEqual(run([]).returncode, 2)
        p = run(["frobnicate"])
        self.assertEqual(p.returncode, 2)
        self.assertIn("unknown command", p.stderr)

    def test_help_lists_data_dir_for_every_command_that_takes_it(self):
        """SPEC section 11: every subcommand that touches the data folder takes --config F and
        --data-dir D, and `sidekey help` says so on its usage line (exec and env included)."""
        lines = [l.strip() for l in run(["help"]).stdout.splitlines()]
        for words in (["serve"], ["secrets", "set"], ["secrets", "list"], ["secrets", "rm"], ["exec"], ["env"],
                      ["ca", "init|export"]):
            prefix = " ".join(["sidekey"] + words) + " "
            usage = [l for l in lines if l.startswith(prefix)]
            self.assertEqual(len(usage), 1, (words, lines))
            self.assertIn("[--config F]", usage[0])
            self.assertIn("[--data-dir D]", usage[0])
        # exec also takes --policy (like serve).
        self.assertIn("[--policy F]", [l for l in lines if l.startswith("sidekey exec ")][0])

    def test_secrets_set_refuses_a_host_the_policy_grammar_rejects(self):
        """--host takes the policy's host patterns; anything else is a usage error (exit 2) naming
        it, and nothing is stored (it would be left out of the binding without a word)."""
        sk = Sidekey()
        try:
            for bad in ("*", "a.com/x", "ftp://a.com", "a*.example.com"):
                p = sk.run_cli("secrets", "set", "s", "--host", "api.example.com", "--host", bad, input=VALUE,
                               check=False)
                self.assertEqual(p.returncode, 2, (bad, p.stderr))
                self.assertIn("--host", p.stderr)
                self.assertIn("'%s'" % bad, p.stderr)
            self.assertEqual(sk.run_cli("secrets", "list").stdout, "")
            sk.run_cli("secrets", "set", "s", "--host", "https://api.example.com", "--host", "http://127.0.0.1:8080",
                       "--host", "*.example.com:8443", input=VALUE)
            self.assertIn("https://api.example.com,http://127.0.0.1:8080,*.example.com:8443",
                          sk.run_cli("secrets", "list").stdout)
        finally:
            sk.__exit__(None, None, None)

    def test_config_errors_name_file_line_column(self):
        sk = Sidekey()
        try:
            with open(sk.config_path, "w") as f:
                f.write("listen:\n  proxy: \"127.0.0.1:0\"\nlimits:\n  idle_timout: 5s\n")
            p = run(["serve", "--config", sk.config_path])
            self.assertEqual(p.returncode, 2)
            self.assertIn(sk.config_path + ":4:3: unknown key 'idle_timout' in limits", p.stderr)
            p = run(["serve", "--config", os.path.join(sk.dir, "missing.yaml")])
            self.assertEqual(p.returncode, 2)
            self.assertIn("missing.yaml", p.stderr)
            p = run(["serve", "--config", sk.config_path.replace("sidekey.yaml", "x"), "--bogus"])
            self.assertEqual(p.returncode, 2)
            p = run(["serve", "--listen-proxy", "nonsense"], cwd=sk.data_dir if os.path.isdir(sk.data_dir) else "/")
            self.assertEqual(p.returncode, 2)
            self.assertIn("--listen-proxy", p.stderr)
        finally:
            sk.__exit__(None, None, None)

    def test_secrets_set_list_rm_and_serve_sees_them(self):
        sk = Sidekey()
        try:
            p = sk.run_cli("secrets", "set", "openai", "--host", "api.openai.com", "--host", "*.openai.com",
                           input=VALUE + "\n")
            self.assertIn("{{secrets.openai}}", p.stdout)
            sk.run_cli("secrets", "set", "github", input=VALUE + "-2")
            p = sk.run_cli("secrets", "list")
            lines = p.stdout.strip().split("\n")
            self.assertEqual([l.split("\t")[0] for l in lines], ["openai", "github"])
            self.assertIn("api.openai.com,*.openai.com", lines[0])
            self.assertNotIn(VALUE, p.stdout + p.stderr)
            # The value is never taken from argv: an extra positional argument is refused.
            p = sk.run_cli("secrets", "set", "x", VALUE, input="", check=False)
            self.assertEqual(p.returncode, 2)
            p = sk.run_cli("secrets", "set", "empty", input="", check=False)
            self.assertEqual(p.returncode, 2)
            self.assertIn("must not be empty", p.stderr)
            p = sk.run_cli("secrets", "set", "bad name", input="v", check=False)
            self.assertEqual(p.returncode, 2)
            # The largest value fits (a trailing CRLF dropped); one byte more does not; an endless
            # stdin is cut at the limit rather than read into memory forever.
            p = sk.run_cli("secrets", "set", "big", input="b" * 65536 + "\r\n")
            self.assertIn("{{secrets.big}}", p.stdout)
            p = sk.run_cli("secrets", "set", "too-big", input="b" * 65537, check=False)
            self.assertEqual(p.returncode, 2)
            self.assertIn("larger than 64 KiB", p.stderr)
            with open("/dev/zero", "rb") as endless:
                p = subprocess.run([SIDEKEY_BIN, "secrets", "set", "endless", "--config", sk.config_path], stdin=endless,
                                   capture_output=True, text=True, timeout=30, env=sk.env, cwd=sk.dir)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn("larger than 64 KiB", p.stderr)
            sk.run_cli("secrets", "rm", "big")
            sk.start()
            r = requests.get(sk.api_url + "/ap/v1/agent/secrets", headers=sk.auth())
            self.assertEqual([s["secret_key"] for s in r.json()["secret_keys"]], ["openai", "github"])
            self.assertEqual(r.json()["secret_keys"][0]["allowed_hosts"], ["api.openai.com", "*.openai.com"])
            sk.stop()
            p = sk.run_cli("secrets", "rm", "github")
            self.assertIn("removed github", p.stdout)
            p = sk.run_cli("secrets", "rm", "github", check=False)
            self.assertEqual(p.returncode, 1)
            self.assertEqual(sk.run_cli("secrets", "list").stdout.count("\n"), 1)
            sk.assert_never_contains(self, [VALUE], [r.text])
            self.assertEqual(oct(os.stat(os.path.join(sk.data_dir, "store.key")).st_mode & 0o777), "0o600")
            self.assertEqual(oct(os.stat(os.path.join(sk.data_dir, "secrets.db")).st_mode & 0o777), "0o600")
        finally:
            sk.__exit__(None, None, None)

    def test_wrong_key_and_tampered_store_refuse_to_start(self):
        key = base64.b64encode(os.urandom(32)).decode()
        sk = Sidekey(env={"SIDEKEY_STORE_KEY": key})
        try:
            sk.run_cli("secrets", "set", "a", input=VALUE)
            self.assertFalse(os.path.exists(os.path.join(sk.data_dir, "store.key")))
            # Wrong key: a clear start-up error, never an empty store.
            sk.env["SIDEKEY_STORE_KEY"] = base64.b64encode(os.urandom(32)).decode()
            with self.assertRaisesRegex(RuntimeError, r"(?s)exit 1\).*wrong key or tampered"):
                sk.start()
            p = sk.run_cli("secrets", "list", check=False)
            self.assertEqual(p.returncode, 1)
            self.assertIn("wrong key or tampered", p.stderr)
            sk.env["SIDEKEY_STORE_KEY"] = "not-base64"
            with self.assertRaisesRegex(RuntimeError, r"SIDEKEY_STORE_KEY"):
                sk.start()
            # Tampered file: flip one byte in the ciphertext.
            sk.env["SIDEKEY_STORE_KEY"] = key
            db = os.path.join(sk.data_dir, "secrets.db")
            with open(db, "rb") as f:
                blob = bytearray(f.read())
            blob[len(blob) // 2] ^= 0x01
            with open(db, "wb") as f:
                f.write(bytes(blob))
            with self.assertRaisesRegex(RuntimeError, r"wrong key or tampered"):
                sk.start()
            # Truncated file.
            with open(db, "wb") as f:
                f.write(bytes(blob[:10]))
            with self.assertRaisesRegex(RuntimeError, r"exit 1\)"):
                sk.start()
        finally:
            sk.__exit__(None, None, None)

    def test_graceful_shutdown_on_sigint(self):
        with Sidekey() as sk:
            self.assertEqual(requests.get(sk.admin_url + "/healthz").status_code, 200)
            import signal
            self.assertEqual(sk.stop(sig=signal.SIGINT), 0)
            self.assertIn('"event":"stopped"', sk.logs())


if __name__ == "__main__":
    unittest.main()
