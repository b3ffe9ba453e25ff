"""`sidekey exec` and `sidekey env` (SPEC section 11, 6): the child's environment (proxy variables,
trust variables, --ref-env references, no SIDEKEY_* variable), exit codes, signal forwarding, and
real clients run as the child with no settings of their own (Python requests and httpx, curl,
git) reaching a TLS upstream through interception with the secret injected, while the child only
ever holds the reference.

The upstream is a local TLS server with a test CA of its own, stood in for api.openai.test with
egress.resolve and trusted through tls.upstream_ca_file. sidekey is invoked directly as
`sidekey exec --config F ...`; the harness's Sidekey object only writes the config and policy."""
import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from harness import SIDEKEY_BIN, _yaml, wait_for
from upstreams import Reply, TestCA, Upstream, proxy_sidekey, tls_server_context

SECRET = "sk-exec-PLAINTEXT-0c1d2e3f4a5b"
STORE_KEY = base64.b64encode(bytes(range(32))).decode()
HOST = "api.openai.test"
PY = "/usr/bin/python3"

POLICY = """version: 1
default: deny
secrets:
  openai:
    hosts: ["api.openai.test"]
rules:
  - name: openai
    match: { hosts: ["api.openai.test"] }
    inject:
      headers: { Authorization: "Bearer {{secrets.openai}}" }
"""

COMPLETION = json.dumps({
    "id": "chatcmpl-test", "object": "chat.completion", "created": 1700000000, "model": "gpt-test",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello from the upstream"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}})

GIT_SHA = "7f0c3b7e1d2a4c5b6a79880123456789abcdef01"

TRUST_VARS = ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO", "AWS_CA_BUNDLE", "PIP_CERT"]
PROXY_VARS = ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"]


def pkt(s):
    return "%04x%s" % (len(s) + 4, s)


def git_info_refs(req):
    """A minimal smart-HTTP v0 advertisement for GET /repo.git/info/refs?service=git-upload-pack."""
    if req.path.endswith("/info/refs") and req.query.get("service") == ["git-upload-pack"]:
        body = (pkt("# service=git-upload-pack\n") + "0000" +
                pkt("%s HEAD\0multi_ack symref=HEAD:refs/heads/main agent=git/sidekey-test\n" % GIT_SHA) +
                pkt("%s refs/heads/main\n" % GIT_SHA) + "0000")
        return Reply(200, body.encode(), headers=[("Cache-Control", "no-cache")],
                     content_type="application/x-git-upload-pack-advertisement")
    return Reply(200, COMPLETION.encode(), content_type="application/json")


def parent_env(extra=None):
    """The environment sidekey exec starts with: the machine's, minus proxy variables and
    SIDEKEY_* (SIDEKEY_BIN aside), plus the secret source and a store key."""
    env = dict(os.environ)
    for k in list(env):
        if k.lower() in ("no_proxy", "http_proxy", "https_proxy", "all_proxy") or \
                (k.startswith("SIDEKEY_") and k != "SIDEKEY_BIN"):
            del env[k]
    env.update({"SIDEKEY_SECRET_openai": SECRET, "SIDEKEY_STORE_KEY": STORE_KEY,
                "SIDEKEY_API_TOKEN": "api-token-not-for-the-child", "SIDEKEY_TEST_OTHER": "x",
                "EXEC_TEST_KEEP": "kept-as-is", "HTTPS_PROXY": "http://bogus.invalid:1",
                "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"})
    env.update(extra or {})
    return env


@unittest.skipUnless(shutil.which("openssl"), "needs the openssl command")
class ExecTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sidekey-exec-ca-")
        cls.ca = TestCA(cls.tmp)
        cls.leaf_cert, cls.leaf_key = cls.ca.issue([HOST], stem="upstream")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.up = Upstream(git_info_refs, ssl_context=tls_server_context(self.leaf_cert, self.leaf_key)).start()
        self.addCleanup(self.up.stop)
        self.sk = proxy_sidekey(POLICY, config={
            "egress": {"resolve": {HOST + ":443": "127.0.0.1:%d" % self.up.port}},
            "tls": {"upstream_ca_file": self.ca.cert}})
        self.addCleanup(shutil.rmtree, self.sk.dir, True)
        with open(self.sk.config_path, "w") as f:
            f.write(_yaml(self.sk.config) + "\n")
        self.home = os.path.join(self.sk.dir, "home")
        os.mkdir(self.home)
        self.outputs = []

    def tearDown(self):
        for text in self.outputs:
            self.assertNotIn(SECRET, text, "the plaintext reached the child's output or sidekey's log")

    def exec_argv(self, *cmd, refs=("OPENAI_API_KEY=openai",)):
        argv = [SIDEKEY_BIN, "exec", "--config", self.sk.config_path]
        for r in refs:
            argv += ["--ref-env", r]
        return argv + ["--"] + list(cmd)

    def run_exec(self, *cmd, timeout=45, extra_env=None, refs=("OPENAI_API_KEY=openai",)):
        p = subprocess.run(self.exec_argv(*cmd, refs=refs), capture_output=True, text=True, timeout=timeout,
                           env=parent_env(dict({"HOME": self.home}, **(extra_env or {}))), cwd=self.sk.dir)
        self.outputs += [p.stdout, p.stderr]
        return p

    def child_env(self):
        out = os.path.join(self.sk.dir, "child-env.json")
        p = self.run_exec(PY, "-c", "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))", out)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(out) as f:
            return json.load(f)

    # -- the child's environment ----------------------------------------------------------------
    def test_child_environment(self):
        env = self.child_env()
        proxy = env.get("HTTPS_PROXY", "")
        self.assertRegex(proxy, r"^http://127\.0\.0\.1:[1-9][0-9]*$")
        for v in PROXY_VARS:
            self.assertEqual(env.get(v), proxy, v)
        self.assertNotEqual(proxy, "http://bogus.invalid:1", "the parent's proxy is replaced")
        for v in ("NO_PROXY", "no_proxy"):
            self.assertIn(v, env)
            entries = env[v].split(",")
            self.assertIn("localhost", entries)
            self.assertIn("127.0.0.1", entries)
            self.assertNotIn(HOST, entries)
        bundle = os.path.join(self.sk.data_dir, "trust-bundle.pem")
        ca = os.path.join(self.sk.data_dir, "ca.pem")
        for v in TRUST_VARS:
            self.assertEqual(os.path.realpath(env.get(v, "")), os.path.realpath(bundle), v)
        self.assertEqual(os.path.realpath(env.get("NODE_EXTRA_CA_CERTS", "")), os.path.realpath(ca))
        self.assertEqual(env.get("NODE_USE_ENV_PROXY"), "1")
        self.assertEqual(env.get("OPENAI_API_KEY"), "{{secrets.openai}}")
        leaked = sorted(k for k in env if k.startswith("SIDEKEY_"))
        self.assertEqual(leaked, [], "no SIDEKEY_* variable reaches the child")
        self.assertEqual(env.get("EXEC_TEST_KEEP"), "kept-as-is", "other variables pass through")
        for k, v in env.items():
            self.assertNotIn(SECRET, v, k)
            self.assertNotIn(STORE_KEY, v, k)
        # The files the variables name: the bundle is the system roots plus the sidekey CA.
        with open(ca) as f:
            ca_pem = f.read().strip()
        with open(bundle) as f:
            bundle_text = f.read()
        self.assertIn(ca_pem, bundle_text)
        self.assertGreater(bundle_text.count("BEGIN CERTIFICATE"), 10)

    def test_several_ref_envs(self):
        out = os.path.join(self.sk.dir, "env2.json")
        p = self.run_exec(PY, "-c", "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))", out,
                          refs=("OPENAI_API_KEY=openai", "GITHUB_TOKEN=gh/token"))
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(out) as f:
            env = json.load(f)
        self.assertEqual(env["OPENAI_API_KEY"], "{{secrets.openai}}")
        self.assertEqual(env["GITHUB_TOKEN"], "{{secrets.gh/token}}")

    def test_usage_errors(self):
        p = subprocess.run([SIDEKEY_BIN, "exec", "--config", self.sk.config_path], capture_output=True, text=True,
                           timeout=30, env=parent_env(), cwd=self.sk.dir)
        self.assertEqual(p.returncode, 2, p.stderr)
        p = self.run_exec("true", refs=("not a var=openai",))
        self.assertEqual(p.returncode, 2, p.stderr)
        p = self.run_exec("true", refs=("OPENAI_API_KEY=bad name!",))
        self.assertEqual(p.returncode, 2, p.stderr)
        # Variables sidekey sets itself, SIDEKEY_* (never passed on) and one variable twice: the
        # child would get two values, or none.
        for refs in (("HTTPS_PROXY=openai",), ("SSL_CERT_FILE=openai",), ("SIDEKEY_X=openai",),
                     ("OPENAI_API_KEY=openai", "OPENAI_API_KEY=other")):
            p = self.run_exec("true", refs=refs)
            self.assertEqual(p.returncode, 2, (refs, p.stderr))
            self.assertIn("--ref-env", p.stderr)
        p = self.run_exec("sidekey-no-such-command-here")
        self.assertEqual(p.returncode, 127, p.stderr)

    # -- exit codes and signals ---------------------------------------------------------------
    def test_exit_code_of_the_child(self):
        self.assertEqual(self.run_exec("sh", "-c", "exit 7").returncode, 7)
        self.assertEqual(self.run_exec("sh", "-c", "exit 0").returncode, 0)
        self.assertEqual(self.run_exec("sh", "-c", "kill -TERM $$").returncode, 128 + signal.SIGTERM)
        self.assertEqual(self.run_exec("sh", "-c", "kill -KILL $$").returncode, 128 + signal.SIGKILL)

    def test_signals_are_forwarded_to_the_child(self):
        ready = os.path.join(self.sk.dir, "ready")
        marker = os.path.join(self.sk.dir, "marker")
        script = ('trap \'echo "got TERM" > %s; exit 3\' TERM; trap \'echo hup >> %s.hup\' HUP; touch %s; '
                  'while :; do sleep 0.05; done' % (marker, marker, ready))
        p = subprocess.Popen(self.exec_argv("bash", "-c", script), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=parent_env({"HOME": self.home}), cwd=self.sk.dir)
        try:
            self.assertTrue(wait_for(lambda: os.path.exists(ready), timeout=20), "the child did not start")
            p.send_signal(signal.SIGHUP)
            self.assertTrue(wait_for(lambda: os.path.exists(marker + ".hup"), timeout=10), "SIGHUP not forwarded")
            self.assertIsNone(p.poll(), "sidekey exec stays up while the child runs")
            p.send_signal(signal.SIGTERM)
            out, err = p.communicate(timeout=20)
            self.outputs += [out, err]
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.assertEqual(p.returncode, 3, err)
        with open(marker) as f:
            self.assertEqual(f.read().strip(), "got TERM")

    def test_sigterm_to_sidekey_ends_an_untrapping_child_with_143(self):
        ready = os.path.join(self.sk.dir, "ready2")
        p = subprocess.Popen(self.exec_argv("sh", "-c", "touch %s; exec sleep 30" % ready), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=parent_env({"HOME": self.home}), cwd=self.sk.dir)
        try:
            self.assertTrue(wait_for(lambda: os.path.exists(ready), timeout=20), "the child did not start")
            time.sleep(0.2)   # sh has exec'd sleep
            p.send_signal(signal.SIGTERM)
            out, err = p.communicate(timeout=20)
            self.outputs += [out, err]
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.assertEqual(p.returncode, 128 + signal.SIGTERM, err)

    def test_child_starts_clean(self):
        # Default signal dispositions, nothing blocked, no descriptor of sidekey's (listeners,
        # store lock), stdin passed through.
        out = os.path.join(self.sk.dir, "clean.json")
        code = ("import json, os, sys\n"
                "status = dict(l.split(':', 1) for l in open('/proc/self/status').read().splitlines() if ':' in l)\n"
                "fds = sorted(int(f) for f in os.listdir('/proc/self/fd'))\n"
                "json.dump({'blk': status['SigBlk'].strip(), 'ign': status['SigIgn'].strip(), 'fds': fds,\n"
                "           'stdin': sys.stdin.read()}, open(sys.argv[1], 'w'))\n")
        p = subprocess.run(self.exec_argv(PY, "-c", code, out), input="from the parent\n", capture_output=True,
                           text=True, timeout=45, env=parent_env({"HOME": self.home}), cwd=self.sk.dir)
        self.outputs += [p.stdout, p.stderr]
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(out) as f:
            got = json.load(f)
        self.assertEqual(int(got["blk"], 16), 0, "signals blocked in the child")
        # Python itself ignores SIGPIPE (and SIGXFSZ) at start-up; nothing else may be ignored.
        ignored = int(got["ign"], 16) & ~((1 << (signal.SIGPIPE - 1)) | (1 << (signal.SIGXFSZ - 1)))
        self.assertEqual(ignored, 0, "signals ignored in the child: %s" % got["ign"])
        # 0, 1, 2 and the descriptor listdir itself opened.
        self.assertLessEqual(len(got["fds"]), 4, got["fds"])
        self.assertEqual(got["fds"][:3], [0, 1, 2])
        self.assertEqual(got["stdin"], "from the parent\n")

    def test_child_holds_no_descriptor_of_sidekey_without_close_range(self):
        # Where close_range fails (Linux < 5.9, seccomp), every descriptor is closed one by one:
        # an inherited listener would let the agent accept the operator's API requests.
        folder = os.environ.get("SIDEKEY_TOOLS")
        if not folder:
            self.skipTest("SIDEKEY_TOOLS is not set (run through CTest)")
        preload = os.path.join(folder, "libno_close_range.so")
        self.assertTrue(os.path.exists(preload), preload + " is missing: build the no_close_range target")
        ldd = subprocess.run(["ldd", shutil.which(SIDEKEY_BIN) or SIDEKEY_BIN], capture_output=True, text=True).stdout
        if "libasan" in ldd or "libtsan" in ldd:
            self.skipTest("a sanitizer runtime must come first in the library list: checked on the normal build")
        out = os.path.join(self.sk.dir, "fds.json")
        code = ("import json, os, sys\n"
                "fds = sorted(int(f) for f in os.listdir('/proc/self/fd'))\n"
                "json.dump([(fd, os.readlink('/proc/self/fd/%d' % fd) if os.path.exists('/proc/self/fd/%d' % fd) else '')\n"
                "           for fd in fds], open(sys.argv[1], 'w'))\n")
        # A descriptor sidekey itself inherited, not close-on-exec (the listeners are): only the
        # closing loop keeps it from the child.
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        p = subprocess.run(self.exec_argv(PY, "-c", code, out), pass_fds=(w,), capture_output=True, text=True,
                           timeout=45, env=parent_env({"HOME": self.home, "LD_PRELOAD": preload}), cwd=self.sk.dir)
        self.outputs += [p.stdout, p.stderr]
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(out) as f:
            got = json.load(f)
        self.assertFalse([t for _, t in got if t.startswith(("socket:", "pipe:")) and _ > 2], got)
        self.assertLessEqual(len(got), 4, got)

    def test_sigpipe_is_default_in_the_child(self):
        p = self.run_exec("sh", "-c", "yes | head -n 1; echo done")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, "y\ndone\n")
        self.assertNotIn("Broken pipe", p.stderr)

    def test_bad_policy_is_a_configuration_error_and_runs_nothing(self):
        # Like `serve`, a bad policy is exit code 2 naming file:line:column; the child never runs.
        self.sk.write_policy(POLICY + "  - name: broken\n    match: { hosts: [] }\n")
        marker = os.path.join(self.sk.dir, "ran")
        p = self.run_exec("sh", "-c", "touch %s" % marker)
        self.assertFalse(os.path.exists(marker), "the child ran despite the bad policy")
        self.assertRegex(p.stderr, r"policy\.yaml:\d+:\d+: ")
        self.assertEqual(p.returncode, 2, p.stderr)

    # -- real clients as the child, with no settings of their own ---------------------------------
    def script(self, name, text):
        path = os.path.join(self.sk.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def assert_injected(self, n=1):
        self.assertTrue(self.up.wait_for_requests(n), "the upstream got nothing")
        for req in self.up.requests:
            self.assertEqual(req.header_all("Authorization"), ["Bearer " + SECRET])
            self.assertEqual(req.header("Host"), HOST)

    CLIENT = r'''
import json, os, sys
import {lib}
key = os.environ["OPENAI_API_KEY"]
assert key == "{{{{secrets.openai}}}}", key
r = {lib}.post("https://api.openai.test/v1/chat/completions", headers={{"Authorization": "Bearer " + key}},
               json={{"model": "gpt-test", "messages": [{{"role": "user", "content": "hi"}}]}}, timeout=30)
print(json.dumps({{"status": r.status_code, "content": r.json()["choices"][0]["message"]["content"],
                  "rid": r.headers.get("X-Sidekey-Request-Id")}}))
'''

    def run_python_client(self, lib):
        path = self.script("client_%s.py" % lib, self.CLIENT.format(lib=lib))
        p = self.run_exec(PY, path)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        got = json.loads(p.stdout.strip().splitlines()[-1])
        self.assertEqual(got["status"], 200, p.stdout)
        self.assertEqual(got["content"], "hello from the upstream")
        self.assertTrue(got["rid"], "the response came through sidekey (X-Sidekey-Request-Id)")
        self.assert_injected()
        self.assertEqual(self.up.requests[0].path, "/v1/chat/completions")
        self.assertIn('"gpt-test"', self.up.requests[0].body.decode())
        # The audit line on sidekey exec's stderr names the secret.
        audits = [json.loads(line) for line in p.stderr.splitlines()
                  if line.startswith("{") and '"audit"' in line]
        rec = [a for a in audits if a.get("request_id") == got["rid"]]
        self.assertEqual(len(rec), 1, p.stderr)
        self.assertEqual(rec[0]["secrets"], ["openai"])
        self.assertEqual(rec[0]["host"], HOST)

    def test_python_requests_child(self):
        self.run_python_client("requests")

    def test_python_httpx_child(self):
        self.run_python_client("httpx")

    def test_curl_child_trusts_through_curl_ca_bundle(self):
        # No --cacert, no -x: curl finds the proxy in HTTPS_PROXY and the roots in CURL_CA_BUNDLE.
        p = self.run_exec("sh", "-c", 'curl -sS -H "Authorization: Bearer $OPENAI_API_KEY" https://%s/v1/models' % HOST)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["choices"][0]["message"]["content"], "hello from the upstream")
        self.assert_injected()

    @unittest.skipUnless(shutil.which("git"), "needs git")
    def test_git_ls_remote_child(self):
        p = self.run_exec("git", "ls-remote", "https://%s/repo.git" % HOST)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("%s\trefs/heads/main" % GIT_SHA, p.stdout)
        self.assertIn("%s\tHEAD" % GIT_SHA, p.stdout)
        self.assert_injected()
        self.assertEqual(self.up.requests[0].path, "/repo.git/info/refs")

    # -- sidekey env ----------------------------------------------------------------------------
    def test_env_prints_export_lines(self):
        sk = self.sk
        sk.config["listen"] = dict(sk.config["listen"], proxy="127.0.0.1:3199")
        p = sk.run_cli("env", "--ref-env", "OPENAI_API_KEY=openai")
        self.outputs += [p.stdout, p.stderr]
        lines = [line for line in p.stdout.splitlines() if line.strip()]
        self.assertTrue(lines)
        for line in lines:
            self.assertRegex(line, r"^export [A-Za-z_][A-Za-z0-9_]*=")
        names = [line.split()[1].split("=", 1)[0] for line in lines]
        for v in PROXY_VARS + ["NO_PROXY", "no_proxy", "NODE_EXTRA_CA_CERTS", "NODE_USE_ENV_PROXY",
                               "OPENAI_API_KEY"] + TRUST_VARS:
            self.assertIn(v, names)
        # What a shell makes of them.
        script = self.script("env.sh", p.stdout)
        q = subprocess.run(["bash", "-c", '. "$1"; env -0', "bash", script], capture_output=True, text=True,
                           timeout=30, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        env = dict(item.split("=", 1) for item in q.stdout.split("\0") if "=" in item)
        self.assertEqual(env["HTTPS_PROXY"], "http://127.0.0.1:3199")
        self.assertEqual(env["https_proxy"], "http://127.0.0.1:3199")
        self.assertEqual(env["OPENAI_API_KEY"], "{{secrets.openai}}")
        self.assertEqual(env["NODE_USE_ENV_PROXY"], "1")
        bundle = env["SSL_CERT_FILE"]
        self.assertTrue(os.path.isabs(bundle), bundle)
        self.assertEqual(os.path.realpath(bundle), os.path.realpath(os.path.join(sk.data_dir, "trust-bundle.pem")))
        self.assertTrue(os.path.exists(bundle))
        self.assertTrue(os.path.exists(env["NODE_EXTRA_CA_CERTS"]))
        self.assertFalse(any(k.startswith("SIDEKEY_") for k in names))

    # -- relative data_dir: the trust paths handed on are absolute -------------------------------
    def assert_trust_paths_absolute(self, env, data_dir):
        for v in TRUST_VARS + ["NODE_EXTRA_CA_CERTS"]:
            path = env[v]
            self.assertTrue(os.path.isabs(path), "%s=%s" % (v, path))
            self.assertEqual(path, os.path.normpath(path), "%s=%s" % (v, path))
            name = "ca.pem" if v == "NODE_EXTRA_CA_CERTS" else "trust-bundle.pem"
            self.assertTrue(os.path.samefile(path, os.path.join(data_dir, name)), "%s=%s" % (v, path))

    def test_trust_paths_are_absolute_with_a_relative_data_dir(self):
        """data_dir relative (the defaults, a relative config file, a relative --data-dir): the
        exported SSL_CERT_FILE, NODE_EXTRA_CA_CERTS… are still absolute, so a child that changes
        folder keeps trusting the interception CA."""
        sk = self.sk
        os.mkdir(os.path.join(sk.dir, "sub"))
        out = os.path.join(sk.dir, "child-env.json")
        dump = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"
        cd_check = ('cd / && test -f "$SSL_CERT_FILE" && test -f "$CURL_CA_BUNDLE" && test -f "$REQUESTS_CA_BUNDLE" '
                    '&& test -f "$NODE_EXTRA_CA_CERTS"')
        for cwd, opts, data in ((sk.dir, ["--config", "sidekey.yaml"], "data"),
                                (sk.dir, [], "data"),                                   # ./sidekey.yaml
                                (sk.dir, ["--config", "sidekey.yaml", "--data-dir", "other"], "other"),
                                (os.path.join(sk.dir, "sub"), ["--config", "../sidekey.yaml", "--data-dir", "./d/"],
                                 "sub/d")):
            data_dir = os.path.join(sk.dir, data)
            argv = [SIDEKEY_BIN, "exec"] + opts + ["--"]
            p = subprocess.run(argv + ["sh", "-c", cd_check], capture_output=True, text=True, timeout=45,
                               env=parent_env({"HOME": self.home}), cwd=cwd)
            self.outputs += [p.stdout, p.stderr]
            self.assertEqual(p.returncode, 0, "%s in %s: the child lost its trust files after cd /: %s"
                             % (opts, cwd, p.stderr))
            p = subprocess.run(argv + [PY, "-c", dump, out], capture_output=True, text=True, timeout=45,
                               env=parent_env({"HOME": self.home}), cwd=cwd)
            self.outputs += [p.stdout, p.stderr]
            self.assertEqual(p.returncode, 0, p.stderr)
            with open(out) as f:
                self.assert_trust_paths_absolute(json.load(f), data_dir)

    def test_env_trust_paths_are_absolute_with_a_relative_data_dir(self):
        sk = self.sk
        sk.config["listen"] = dict(sk.config["listen"], proxy="127.0.0.1:3199")
        with open(sk.config_path, "w") as f:
            f.write(_yaml(sk.config) + "\n")
        for opts, data in ((["--config", "sidekey.yaml"], "data"), ([], "data"),
                           (["--config", "sidekey.yaml", "--data-dir", "./other/"], "other")):
            p = subprocess.run([SIDEKEY_BIN, "env"] + opts, capture_output=True, text=True, timeout=45,
                               env=parent_env(), cwd=sk.dir)
            self.outputs += [p.stdout, p.stderr]
            self.assertEqual(p.returncode, 0, p.stderr)
            script = self.script("env-rel.sh", p.stdout)
            q = subprocess.run(["bash", "-c", '. "$1"; cd /; env -0', "bash", script], capture_output=True, text=True,
                               timeout=30, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
            env = dict(item.split("=", 1) for item in q.stdout.split("\0") if "=" in item)
            self.assert_trust_paths_absolute(env, os.path.join(sk.dir, data))

    def test_env_refuses_port_zero(self):
        p = self.sk.run_cli("env", check=False)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertEqual(p.stdout, "")


if __name__ == "__main__":
    unittest.main()
