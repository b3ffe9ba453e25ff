"""One store file, two processes: a running `sidekey serve` (writing through the API) and the
offline `sidekey secrets set/rm`. Nothing either writes may be lost, and the running server must
see what the CLI wrote without a restart (it polls the file every 2 s).
"""
import json
import os
import unittest

import requests

from harness import Sidekey, wait_for

CLI_VALUE = "cli-VALUE-mp-3f9d2a71"
CLI_VALUE_2 = "cli-VALUE-mp-rotated-5c1e"
API_VALUE = "api-VALUE-mp-8b44e0c6"
API_VALUE_2 = "api-VALUE-mp-second-a7d2"
PLAINTEXTS = [CLI_VALUE, CLI_VALUE_2, API_VALUE, API_VALUE_2]
SEE_WITHIN_S = 5.0


class StoreMultiProcessTest(unittest.TestCase):
    def setUp(self):
        self.sk = Sidekey()
        self.responses = []

    def tearDown(self):
        try:
            self.sk.stop()
            cli_list = self.sk.run_cli("secrets", "list", check=False)
            self.sk.assert_never_contains(self, PLAINTEXTS, self.responses + [cli_list.stdout, cli_list.stderr])
        finally:
            self.sk.__exit__(None, None, None)

    # -- helpers -------------------------------------------------------------------------
    def api(self, method, path, **kw):
        kw.setdefault("headers", self.sk.auth())
        r = requests.request(method, self.sk.api_url + path, timeout=10, **kw)
        self.responses.append(r.text)
        self.responses.append(json.dumps(dict(r.headers)))
        return r

    def api_secrets(self):
        r = self.api("GET", "/ap/v1/agent/secrets", params={"page_size": 100})
        self.assertEqual(r.status_code, 200, r.text)
        return {s["secret_key"]: s for s in r.json()["secret_keys"]}

    def api_put(self, name, value, hosts=None):
        body = {"secret_key": name, "secret_value": value}
        if hosts is not None:
            body["allowed_hosts"] = hosts
        r = self.api("POST", "/ap/v1/agent/secrets", json=body)
        self.assertEqual(r.status_code, 200, r.text)
        return r.json()

    def cli_set(self, name, value, *hosts):
        args = ["secrets", "set", name]
        for h in hosts:
            args += ["--host", h]
        p = self.sk.run_cli(*args, input=value)
        self.responses += [p.stdout, p.stderr]
        return p

    def cli_names(self):
        p = self.sk.run_cli("secrets", "list")
        self.responses += [p.stdout, p.stderr]
        return {line.split("\t")[0] for line in p.stdout.splitlines() if line}

    def wait_until_listed(self, predicate, what):
        seen = {}

        def check():
            seen.clear()
            seen.update(self.api_secrets())
            return predicate(seen)

        self.assertTrue(wait_for(check, timeout=SEE_WITHIN_S, interval=0.1),
                        "the running server did not see %s within %ss; it lists %s" % (what, SEE_WITHIN_S, sorted(seen)))
        return seen

    # -- tests ---------------------------------------------------------------------------
    def test_cli_and_api_writes_are_both_kept(self):
        self.sk.start()
        self.cli_set("from_cli", CLI_VALUE, "cli.example.com")
        # Straight after, before the server's poll has had a chance to notice: the API write
        # must be applied on top of the file as the CLI left it, not on the server's old copy.
        created = self.api_put("from_api", API_VALUE, ["api.example.com"])
        self.assertEqual(created["secret_key"], "from_api")

        listed = self.wait_until_listed(lambda s: {"from_cli", "from_api"} <= set(s), "the CLI's secret")
        self.assertEqual(listed["from_cli"]["allowed_hosts"], ["cli.example.com"])
        self.assertEqual(listed["from_api"]["allowed_hosts"], ["api.example.com"])
        self.assertEqual(self.cli_names(), {"from_cli", "from_api"})

        # And again the other way round: a CLI write after the server's.
        self.api_put("from_api_2", API_VALUE_2)
        self.cli_set("from_cli", CLI_VALUE_2, "cli2.example.com")  # rotation of the CLI secret
        self.assertEqual(self.cli_names(), {"from_cli", "from_api", "from_api_2"})

        self.sk.stop()
        self.sk.start()
        listed = self.api_secrets()
        self.assertEqual(set(listed), {"from_cli", "from_api", "from_api_2"})
        self.assertEqual(listed["from_cli"]["allowed_hosts"], ["cli.example.com", "cli2.example.com"])
        self.assertEqual(listed["from_api"]["allowed_hosts"], ["api.example.com"])

    def test_running_server_follows_cli_set_and_rm(self):
        self.sk.start()
        created = self.api_put("shared", API_VALUE, ["api.example.com"])
        self.cli_set("only_cli", CLI_VALUE)
        self.wait_until_listed(lambda s: "only_cli" in s, "`secrets set`")

        # The CLI rotating a secret the server created keeps its id and merges the hosts.
        self.cli_set("shared", CLI_VALUE_2, "cli.example.com")
        listed = self.wait_until_listed(
            lambda s: s.get("shared", {}).get("allowed_hosts") == ["api.example.com", "cli.example.com"],
            "the CLI's rotation")
        self.assertEqual(listed["shared"]["secret_id"], created["secret_id"])

        p = self.sk.run_cli("secrets", "rm", "only_cli")
        self.responses += [p.stdout, p.stderr]
        self.wait_until_listed(lambda s: "only_cli" not in s and "shared" in s, "`secrets rm`")
        # A deletion through the API of what only the CLI's write made visible.
        r = self.api("DELETE", "/ap/v1/agent/secrets/" + created["secret_id"])
        self.assertEqual(r.status_code, 204, r.text)
        self.assertEqual(self.cli_names(), set())

    def test_a_tampered_file_is_never_overwritten_by_the_server(self):
        self.sk.start()
        self.api_put("from_api", API_VALUE)
        db = os.path.join(self.sk.data_dir, "secrets.db")
        with open(db, "rb") as f:
            blob = bytearray(f.read())
        blob[len(blob) // 2] ^= 0x01
        tampered = bytes(blob)
        with open(db, "wb") as f:
            f.write(tampered)

        r = self.api("POST", "/ap/v1/agent/secrets", json={"secret_key": "other", "secret_value": API_VALUE_2})
        self.assertEqual(r.status_code, 503, r.text)  # api/openapi.yaml: StoreUnavailable
        self.assertEqual(r.json(), {"message": "secrets store write failed: the store file cannot be used (see the log)"})
        with open(db, "rb") as f:
            self.assertEqual(f.read(), tampered, "the server overwrote a file it could not read")
        # The poll reports it (once) and the server keeps serving the last good content.
        self.assertTrue(wait_for(lambda: "secrets_store_reload_failed" in self.sk.logs(), timeout=SEE_WITHIN_S),
                        self.sk.logs())
        self.assertEqual(set(self.api_secrets()), {"from_api"})
        p = self.sk.run_cli("secrets", "set", "from_cli", input=CLI_VALUE, check=False)
        self.responses += [p.stdout, p.stderr]
        self.assertEqual(p.returncode, 1)
        self.assertIn("wrong key or tampered", p.stderr)
        with open(db, "rb") as f:
            self.assertEqual(f.read(), tampered)

    def test_cli_removes_temp_files_left_by_a_killed_write(self):
        self.sk.start()
        self.api_put("from_api", API_VALUE)
        stale = os.path.join(self.sk.data_dir, ".secrets.db.tmp-0123456789ab")
        unrelated = os.path.join(self.sk.data_dir, ".secrets.db.tmp-keep")
        for path in (stale, unrelated):
            with open(path, "wb") as f:
                f.write(b"leftover")
        self.assertEqual(self.cli_names(), {"from_api"})
        self.assertFalse(os.path.exists(stale))
        self.assertTrue(os.path.exists(unrelated))
        lock = os.path.join(self.sk.data_dir, "secrets.db.lock")
        self.assertEqual(oct(os.stat(lock).st_mode & 0o777), "0o600")


if __name__ == "__main__":
    unittest.main()
