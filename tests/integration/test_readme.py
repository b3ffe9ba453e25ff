"""Every command in README.md is run by a test (issue #6).

The README's commands are read from the file itself:
  - every line of a ```sh / ```bash / ```shell block (backslash continuations joined, comments
    dropped; whole-line comments after a command are kept as its notes, e.g. the audit line the
    Quick start shows), and every `$ ` line of a ```console block (the lines after it are the
    output it shows);
  - every inline code span that is a command line: its first word (after VAR=value prefixes) is
    a known program (sidekey, make, curl, kubectl, docker, …) and it has arguments, or it is an
    executable file of the repository (`.ci/run`, `bench/run`, `scripts/…`).

COMMANDS below maps each one (whitespace collapsed) to how it is run and checked:
  run          executed as written, in a scratch copy of the repository's layout (config/,
               deploy/, build/release/sidekey = the binary under test; `sidekey` and `python3`
               first on PATH = the binary under test and Debian's /usr/bin/python3);
  substituted  executed with the substitution its note names (the fixed listener addresses of
               config/sidekey.yaml become the ports of the sidekey the test started, …);
  synopsis     a usage line: its command words and flags must be in `sidekey help`, then it is
               executed with its placeholders filled in as the note says;
  mention      a command named in prose without its arguments: it must exist (a usage line in
               `sidekey help`, or the test that runs it);
  not-run      cannot run here, for the reason given; the note says what is checked instead.

Every executed command's exit status is checked, and its output where the README shows or
promises output. A README command not in COMMANDS fails test_every_command_is_known, and so does
an entry of COMMANDS that is no longer in the README. The commands run in README order in one
scratch folder with its own store: the Quick start's `make run &` becomes a `sidekey serve
--config config/sidekey.yaml` on free ports that stays up for the later sections (the proxy
examples go through it).

Nothing leaves the machine: the scratch config/sidekey.yaml gets `egress.resolve` entries pinning
api.openai.com, api.github.com and pypi.org (port 443) to a local TLS upstream with a test CA
(`tls.upstream_ca_file`), which records every request.

Env: SIDEKEY_BIN (the binary), SIDEKEY_SOURCE (repo root), PYTHONPATH=tests/lib; KUBECTL
(optional).
"""
import collections
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import unittest

from harness import SIDEKEY_BIN, SOURCE_DIR, wait_for
try:
    from harness import sanitizer_report
except ImportError:           # a harness without sanitizer checks
    def sanitizer_report(text):
        return None
from upstreams import Reply, TestCA, Upstream, audit_records, tls_server_context

README = os.path.join(SOURCE_DIR, "README.md")
BIN = os.path.abspath(shutil.which(SIDEKEY_BIN) or SIDEKEY_BIN)
PY = "/usr/bin/python3"

OPENAI_KEY = "sk-readme-PLAINTEXT-4e5f6a7b8c9d"      # stands in for the user's $OPENAI_API_KEY
GITHUB_VALUE = "ghp-readme-PLAINTEXT-1a2b3c"          # piped into `sidekey secrets set github`
PINNED = ["api.openai.com", "api.github.com", "pypi.org"]

SHELL_LANGS = {"sh", "bash", "shell", "console"}
OTHER_LANGS = {"json", "yaml", ""}
COMMAND_WORDS = {
    "sidekey", "make", "curl", "wget", "kubectl", "docker", "podman", "buildah", "systemctl",
    "systemd-analyze", "journalctl", "sudo", "apt", "apt-get", "dpkg", "eval", "export", "source",
    "python", "python3", "pip", "pip3", "node", "npm", "npx", "git", "printf", "echo", "cat", "cd",
    "helm", "openssl", "cmake", "ctest", "ninja", "bash", "sh", "kill", "install", "ln", "cp",
}

# The agent of the Quick start (`python3 agent.py`) does what an SDK does, with the standard
# library only: reads its key from OPENAI_API_KEY, sends it as a bearer token, trusts what
# SSL_CERT_FILE names and goes through HTTPS_PROXY.
AGENT_PY = r'''import json, os, urllib.request
key = os.environ.get("OPENAI_API_KEY", "")
headers = {"Content-Type": "application/json"}
if key:
    headers["Authorization"] = "Bearer " + key
req = urllib.request.Request("https://api.openai.com/v1/chat/completions", headers=headers,
    data=json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode())
with urllib.request.urlopen(req, timeout=30) as r:
    reply = json.load(r)
print(json.dumps({"status": r.status, "key_seen_by_agent": key,
                  "reply": reply["choices"][0]["message"]["content"]}))
'''

COMPLETION = json.dumps({
    "id": "chatcmpl-readme", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello from the README upstream"},
                 "finish_reason": "stop"}]})
MODELS = json.dumps({"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model"}]})
SIMPLE = "<!DOCTYPE html><html><body><a href=\"/simple/requests/\">requests</a></body></html>\n"
GITHUB_USER = json.dumps({"login": "readme-test"})


# ------------------------------------------------------------------------------------------------
# Reading the README


Cmd = collections.namedtuple("Cmd", "section line origin text norm notes output")


def normalize(text):
    return " ".join(text.split())


def strip_comment(line):
    """The line without a trailing shell comment (`#` at a word start, outside quotes)."""
    quote, i = None, 0
    while i < len(line):
        c = line[i]
        if quote:
            if c == quote:
                quote = None
            elif c == "\\" and quote == '"':
                i += 1
        elif c == "\\":
            i += 1
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
        i += 1
    return line.rstrip()


def is_command_span(span):
    try:
        words = shlex.split(span)
    except ValueError:
        words = span.split()
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        words = words[1:]          # VAR=value prefixes; assignments alone are not commands
    if not words:
        return False
    first = words[0]
    if first in COMMAND_WORDS:
        return len(words) >= 2     # a bare program name (`python3`) is a name, not a command line
    path = os.path.join(SOURCE_DIR, first)
    return not os.path.isabs(first) and "/" in first and os.path.isfile(path) and os.access(path, os.X_OK)


def parse_readme(text):
    """(commands, blocks): the commands in README order; blocks = [(section, lang, body, line)]."""
    commands, blocks = [], []
    section = "(top)"
    lines = text.split("\n")
    prose = []          # (line number, section, text) outside fences, for inline spans
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^(`{3,}|~{3,})\s*([\w+-]*)", line)
        if m:
            fence, lang, fence_line = m.group(1), m.group(2).lower(), i + 1
            body = []
            i += 1
            while i < len(lines) and not lines[i].startswith(fence):
                body.append(lines[i])
                i += 1
            i += 1
            blocks.append((section, lang, "\n".join(body) + "\n", fence_line))
            if lang in SHELL_LANGS:
                commands.extend(_block_commands(section, lang, body, fence_line))
            continue
        h = re.match(r"^#{1,6}\s+(.*)$", line)
        if h:
            section = h.group(1).strip()
        prose.append((i + 1, section, line))
        i += 1
    # Inline spans, paragraph by paragraph (a span may wrap onto the next line).
    para, where = [], [None, None]

    def flush():
        joined = "\n".join(para)
        for sm in re.finditer(r"(?<!`)`([^`]+)`(?!`)", joined):
            span = " ".join(sm.group(1).split())
            if is_command_span(span):
                line_no = where[0] + joined.count("\n", 0, sm.start())
                commands.append(Cmd(where[1], line_no, "inline", span, normalize(span), [], None))
    for line_no, sec, line in prose:
        if not line.strip() or line.startswith("#"):
            flush()
            para = []
            continue
        if not para:
            where[:] = [line_no, sec]
        para.append(line)
    flush()
    commands.sort(key=lambda c: c.line)
    return commands, blocks


def _block_commands(section, lang, body, fence_line):
    out = []
    i = 0
    while i < len(body):
        line, line_no = body[i], fence_line + i + 1
        if lang == "console":
            if not line.startswith("$ "):
                if out:
                    out[-1].output.append(line)
                i += 1
                continue
            line = line[2:]
        while line.rstrip().endswith("\\") and i + 1 < len(body):
            i += 1
            nxt = body[i][2:] if lang == "console" and body[i].startswith("> ") else body[i]
            line = line.rstrip()[:-1].rstrip() + " " + nxt.strip()
        i += 1
        if line.strip().startswith("#"):
            if out:
                out[-1].notes.append(line.strip()[1:].strip())
            continue
        text = strip_comment(line).strip()
        if text:
            out.append(Cmd(section, line_no, lang + " block", text, normalize(text), [],
                           [] if lang == "console" else None))
    return out


# ------------------------------------------------------------------------------------------------
# The table: every README command, and how it is run and checked


Entry = collections.namedtuple("Entry", "how note check")

RUN, SUBST, SYNOPSIS, MENTION, NOT_RUN = "run", "substituted", "synopsis", "mention", "not-run"

COMMANDS = {
    # -- intro -----------------------------------------------------------------------------------
    "make run": Entry(NOT_RUN,
        "installs Debian packages, builds Release in the source tree and binds the fixed ports "
        "3128/8000/9901; checked: `make -n run` runs `build/release/sidekey serve --config "
        "config/sidekey.yaml`, which the Quick start's stand-in for `make run &` executes",
        "check_make_run"),
    "make test": Entry(NOT_RUN,
        "it is the suite this test belongs to (CI runs it: .ci/run); checked: `make -n test` builds "
        "build/release and runs ctest there, and CTEST_ARGS=\"-R api\" reaches ctest",
        "check_make_test"),
    "sidekey serve --config config/sidekey.yaml": Entry(SUBST,
        "with `--listen-proxy/--listen-api/--listen-admin 127.0.0.1:0` appended (the fixed ports may "
        "be taken); checked: the listening line, the store in ./sidekey-data, ready, exit 0 on SIGTERM",
        "run_serve_once"),
    "sidekey exec": Entry(MENTION, "a usage line for `sidekey exec` in `sidekey help`", "check_mention"),
    # -- Quick start -----------------------------------------------------------------------------
    "make run &": Entry(SUBST,
        "replaced by what `make run` runs (`make -n run` checked): `sidekey serve --config "
        "config/sidekey.yaml` plus `--listen-* 127.0.0.1:0`, kept running for the later commands",
        "start_make_run"),
    "SK=build/release/sidekey": Entry(RUN,
        "build/release/sidekey in the scratch folder is the binary under test", "run_assignment"),
    "printf '%s' \"$OPENAI_API_KEY\" | $SK secrets set openai --config config/sidekey.yaml": Entry(RUN,
        "OPENAI_API_KEY is a test value; checked: the reference is printed, the running serve lists the "
        "secret after its re-read", "run_secrets_set_openai"),
    "TOKEN=$(cat sidekey-data/api-token)": Entry(RUN,
        "checked: the token file is mode 0600 and the token is accepted", "run_assignment"),
    "curl -s -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' -d "
    "'{\"secret_key\":\"openai\",\"secret_value\":\"sk-…\"}' http://127.0.0.1:8000/ap/v1/agent/secrets":
        Entry(SUBST, "127.0.0.1:8000 -> the api listener of the running serve; checked: a SecretKey for "
              "openai with the id the CLI created (rotation), no value in the answer", "run_api_post"),
    "$SK policy explain --policy config/policy.yaml POST https://api.openai.com/v1/chat/completions":
        Entry(RUN, "checked: decision inject by rule openai, Authorization injected", "run_explain_openai"),
    "$SK exec --config config/sidekey.yaml --ref-env OPENAI_API_KEY=openai -- python3 agent.py":
        Entry(RUN, "agent.py is a stdlib agent written by the test; checked: exit 0, the agent held the "
              "reference only, the upstream got the stored value, and the audit line shown after it",
              "run_exec_agent"),
    # -- Commands --------------------------------------------------------------------------------
    "sidekey serve [--config F] [--policy F] [--data-dir D] [--listen-proxy H:P] [--listen-api H:P] "
    "[--listen-admin H:P]": Entry(SYNOPSIS,
        "every flag given: config/sidekey.yaml, config/policy.yaml, sidekey-data, 127.0.0.1:0 x3; "
        "checked: listening line, ready, exit 0 on SIGTERM", "run_serve_synopsis"),
    "sidekey secrets set NAME [--host H]…": Entry(SYNOPSIS,
        "`printf '%s\\n' VALUE | sidekey secrets set github --host api.github.com`; checked: through "
        "the running proxy, api.github.com gets the value without the newline", "run_secrets_set_github"),
    "sidekey secrets list": Entry(RUN, "checked: names, ids, hosts; no value", "run_secrets_list"),
    "sidekey secrets rm NAME": Entry(SYNOPSIS, "NAME = github; checked: gone from the list",
                                     "run_secrets_rm"),
    "sidekey exec [--config F] [--ref-env VAR=NAME]… -- CMD…": Entry(SYNOPSIS,
        "`--config config/sidekey.yaml --ref-env OPENAI_API_KEY=openai -- sh -c 'env; exit 3'`, then a "
        "CMD killed by SIGTERM; checked: every variable of \"The variables exec sets\", no SIDEKEY_*, "
        "exit 3, exit 143", "run_exec_synopsis"),
    "sidekey env [--config F] [--ref-env VAR=NAME]…": Entry(SYNOPSIS,
        "`--config config/sidekey.yaml --ref-env OPENAI_API_KEY=openai`, and a config whose "
        "listen.proxy is port 0 (refused); checked: the export lines", "run_env_synopsis"),
    "sidekey ca init": Entry(RUN, "checked: path and SHA-256 fingerprint printed, matching openssl's",
                             "run_ca_init"),
    "sidekey ca export": Entry(RUN, "checked: prints data_dir/ca.pem", "run_ca_export"),
    "sidekey policy check FILE…": Entry(SYNOPSIS,
        "FILE… = config/policy.yaml config/examples/*.yaml (exit 0), then with a broken file (exit 1, "
        "file:line:column)", "run_policy_check"),
    "sidekey policy explain --policy FILE METHOD URL [-H 'Name: value']…": Entry(SYNOPSIS,
        "`--policy config/policy.yaml POST https://api.anthropic.com/v1/messages -H "
        "'anthropic-version: 2023-06-01'`; checked: the JSON decision", "run_explain_synopsis"),
    "sidekey --version": Entry(RUN, "checked: `sidekey X.Y.Z`", "run_version"),
    "sidekey help": Entry(RUN, "checked: a usage line for every command of the table", "run_help"),
    # -- The proxy -------------------------------------------------------------------------------
    "curl -x http://127.0.0.1:3128 http://api.example.com/v1/x": Entry(SUBST,
        "127.0.0.1:3128 -> the running proxy; checked: 403 policy_denied for api.example.com (no rule)",
        "run_curl_forward"),
    "curl -x http://127.0.0.1:3128 https://pypi.org/simple/": Entry(SUBST,
        "127.0.0.1:3128 -> the running proxy, CURL_CA_BUNDLE = the local upstream's CA only (so curl "
        "succeeds only through a blind tunnel); checked: the upstream's page", "run_curl_connect"),
    "curl http://127.0.0.1:3128/openai/v1/models": Entry(SUBST,
        "127.0.0.1:3128 -> the running proxy; checked: the route's upstream answered, with the "
        "openai secret injected", "run_curl_route"),
    # -- Policy reference ------------------------------------------------------------------------
    "sidekey secrets set --host": Entry(MENTION, "--host in `sidekey secrets set`'s usage line",
                                        "check_mention"),
    "sidekey policy check FILE": Entry(SYNOPSIS, "as `sidekey policy check FILE…`", "run_policy_check"),
    # -- Deployment ------------------------------------------------------------------------------
    "sidekey exec --config F -- python3 agent.py": Entry(SYNOPSIS,
        "F = config/sidekey.yaml, agent.py as in the Quick start; checked: exit 0, Authorization "
        "injected though the agent sent none", "run_exec_agent_no_ref"),
    "kubectl apply -k deploy/kubernetes/overlays/job": Entry(NOT_RUN,
        "needs a Kubernetes cluster; instead `kubectl kustomize` renders the same path (a Job)",
        "check_kubectl_apply"),
    "docker build -f deploy/docker/Dockerfile .": Entry(NOT_RUN,
        "needs a container engine, and this machine has none (a docker client, no daemon); the "
        "Dockerfile is checked by test_deploy.py; here: the -f path exists and the README says the "
        "image is not built in CI", "check_docker_build"),
    "systemctl enable --now sidekey": Entry(NOT_RUN,
        "installs and starts a system service (root, systemd as PID 1, the install steps of "
        "deploy/README.md); checked: deploy/systemd/sidekey.service exists (test_deploy.py verifies it)",
        "check_systemctl"),
    "kubectl kustomize": Entry(MENTION, "what test_deploy.py runs on every kustomization",
                               "check_deploy_test_runs"),
    "systemd-analyze verify": Entry(MENTION, "what test_deploy.py runs on the unit",
                                    "check_deploy_test_runs"),
    # -- Troubleshooting -------------------------------------------------------------------------
    "sidekey policy explain --policy F METHOD URL -H 'Name: value'": Entry(SYNOPSIS,
        "as the explain line of the Commands table", "run_explain_synopsis"),
    "eval \"$(sidekey env)\"": Entry(RUN,
        "in the scratch folder (no ./sidekey.yaml: the defaults); checked: the shell then has "
        "HTTPS_PROXY and the trust variables, naming files that exist", "run_eval_env"),
    # -- The data folder -------------------------------------------------------------------------
    "sidekey secrets …": Entry(MENTION, "usage lines for `sidekey secrets`", "check_mention"),
    "sidekey secrets set": Entry(MENTION, "a usage line for `sidekey secrets set`", "check_mention"),
    # -- Development / status --------------------------------------------------------------------
    "make test-asan": Entry(NOT_RUN,
        "CI runs it (.ci/run): a second full build under sanitizers; checked: `make -n test-asan` "
        "builds build/asan and runs ctest there", "check_make_test_asan"),
    "make test-tsan": Entry(NOT_RUN,
        "CI runs it (.ci/run): a third full build, under ThreadSanitizer; checked: `make -n test-tsan` "
        "builds build/tsan and runs ctest there with the suppressions file", "check_make_test_tsan"),
    "make fuzz": Entry(NOT_RUN,
        "CI runs it (.ci/run): installs clang and builds every fuzz target; checked: `make -n fuzz` "
        "runs scripts/fuzz.sh with FUZZ_SECONDS", "check_make_fuzz"),
    ".ci/run": Entry(NOT_RUN, "it is CI itself (make test, test-asan, test-tsan, fuzz); checked: "
                     "executable, runs all four", "check_ci_run"),
    "scripts/install-deps.sh": Entry(NOT_RUN,
        "apt-get install as root (make calls it); checked: executable, uses apt-get", "check_script"),
    "scripts/install-test-deps.sh": Entry(NOT_RUN,
        "installs the npm test tools over the network (make test calls it); checked: executable, "
        "installs into tests/node_modules", "check_script"),
    "bench/run": Entry(NOT_RUN,
        "the benchmark: installs wrk, nginx, haproxy and runs for minutes (make bench); checked: "
        "executable", "check_script"),
    "bench/soak": Entry(NOT_RUN,
        "the soak: ten minutes of mixed load against a Release build; checked: executable",
        "check_script"),
    "bench/instructions": Entry(NOT_RUN,
        "counts instructions under callgrind for a minute (installs valgrind, nginx, wrk); checked: "
        "executable", "check_script"),
    "PROXY=nginx bench/instructions": Entry(NOT_RUN,
        "the same count for nginx doing the injection; checked: executable", "check_script"),
}


# ------------------------------------------------------------------------------------------------
# A sidekey serve started by the test (a README command stands for it)


class Served:
    def __init__(self, command, cwd, env):
        self.command = command
        self.proc = subprocess.Popen(["bash", "-c", "exec " + command], cwd=cwd, env=env, text=True,
                                     errors="replace", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.first_line = self.proc.stdout.readline()
        self._err, self._out = [], []
        self._threads = [threading.Thread(target=self._pump, args=(self.proc.stderr, self._err), daemon=True),
                         threading.Thread(target=self._pump, args=(self.proc.stdout, self._out), daemon=True)]
        for t in self._threads:
            t.start()
        if not self.first_line:
            self.proc.wait(timeout=30)
            for t in self._threads:
                t.join(timeout=5)
            self.proc.stdout.close()
            self.proc.stderr.close()
            raise AssertionError("%s did not start (exit %s): %s" % (command, self.proc.returncode, self.logs()))
        self.listening = json.loads(self.first_line)
        self.proxy, self.api, self.admin = self.listening["proxy"], self.listening["api"], self.listening["admin"]

    @staticmethod
    def _pump(stream, sink):
        for line in stream:
            sink.append(line)

    def logs(self):
        return "".join(self._err)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("%s did not stop within 40 s of SIGTERM" % self.command)
        for t in self._threads:
            t.join(timeout=5)
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()
        report = sanitizer_report(self.logs())
        if report:
            raise AssertionError("%s: sanitizer report:\n%s" % (self.command, report))
        return self.proc.returncode


class _Logs:
    """Text with the logs() of a Sidekey, for upstreams.audit_records."""

    def __init__(self, text):
        self.text = text

    def logs(self):
        return self.text


# ------------------------------------------------------------------------------------------------
# Running the README


class ReadmeRun:
    """The scratch folder, the local upstream, the running serve, and one method per kind of
    README command (COMMANDS names them)."""

    def __init__(self, test, readme_text, blocks):
        self.t = test
        self.readme = readme_text
        self.blocks = blocks
        self.tmp = tempfile.mkdtemp(prefix="sidekey-readme-")
        self.ws = os.path.join(self.tmp, "ws")
        self.bin = os.path.join(self.tmp, "bin")
        os.makedirs(self.bin)
        os.makedirs(os.path.join(self.ws, "build", "release"))
        os.symlink(BIN, os.path.join(self.bin, "sidekey"))
        os.symlink(PY, os.path.join(self.bin, "python3"))
        os.symlink(BIN, os.path.join(self.ws, "build", "release", "sidekey"))
        shutil.copytree(os.path.join(SOURCE_DIR, "config"), os.path.join(self.ws, "config"))
        shutil.copytree(os.path.join(SOURCE_DIR, "deploy"), os.path.join(self.ws, "deploy"))
        with open(os.path.join(self.ws, "agent.py"), "w") as f:
            f.write(AGENT_PY)
        # The local TLS upstream that stands in for every public host the commands reach.
        ca_dir = os.path.join(self.tmp, "upstream-ca")
        os.makedirs(ca_dir)
        self.ca = TestCA(ca_dir)
        cert, key = self.ca.issue(PINNED)

        def answer(req):
            body = {"/v1/chat/completions": COMPLETION, "/v1/models": MODELS, "/simple/": SIMPLE,
                    "/user": GITHUB_USER}.get(req.path, "{}")
            return Reply(200, body, content_type="text/html" if req.path == "/simple/" else "application/json")
        self.up = Upstream(handler=answer, ssl_context=tls_server_context(cert, key)).start()
        cfg_path = os.path.join(self.ws, "config", "sidekey.yaml")
        with open(cfg_path) as f:
            original = f.read()
        test.assertNotRegex(original, r"(?m)^(tls|egress):", "config/sidekey.yaml now sets tls/egress: "
                            "merge the test's additions instead of appending them")
        with open(cfg_path, "a") as f:
            f.write("\n# Added by tests/integration/test_readme.py: the public hosts the README reaches are\n"
                    "# pinned to a local TLS upstream, whose CA is trusted for upstream connections.\n"
                    "tls: { upstream_ca_file: %s }\n" % json.dumps(self.ca.cert) +
                    "egress: { resolve: { %s } }\n" % ", ".join(
                        '"%s:443": "%s"' % (h, self.up.addr) for h in PINNED))
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("SIDEKEY_") and not k.startswith("NODE_")
                    and k.lower() not in ("http_proxy", "https_proxy", "no_proxy", "all_proxy")
                    and k not in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO",
                                  "AWS_CA_BUNDLE", "PIP_CERT", "OPENAI_API_KEY", "TOKEN", "SK")}
        self.env["PATH"] = self.bin + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin")
        self.env["OPENAI_API_KEY"] = OPENAI_KEY
        self.vars = {}            # shell variables the README's commands set (SK, TOKEN)
        self.serve = None         # the `make run &` stand-in
        self.openai_value = None  # what the store holds for openai, as bytes
        self.openai_id = None
        self._help = None

    def close(self):
        errors = []
        if self.serve:
            try:
                rc = self.serve.stop()
                if rc != 0:
                    errors.append("the serve standing in for `make run &` exited %s on SIGTERM:\n%s"
                                  % (rc, self.serve.logs()[-3000:]))
            except AssertionError as e:
                errors.append(str(e))
        self.up.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
        return errors

    # -- helpers ---------------------------------------------------------------------------------
    def sh(self, command, env=None, input=None, timeout=120, unset=()):
        e = dict(self.env)
        e.update(self.vars)
        e.update(env or {})
        for name in unset:
            e.pop(name, None)
        return subprocess.run(["bash", "-c", command], cwd=self.ws, env=e, input=input, capture_output=True,
                              text=True, errors="replace", timeout=timeout)

    def ok(self, p, rc=0, what=None):
        self.t.assertEqual(p.returncode, rc, "%s: exit %d, expected %d\nstdout: %s\nstderr: %s"
                           % (what or p.args[-1], p.returncode, rc, p.stdout[-3000:], p.stderr[-3000:]))
        self.t.assertIsNone(sanitizer_report(p.stderr), what or p.args[-1])
        return p

    def path(self, *parts):
        return os.path.join(self.ws, *parts)

    def readme_block(self, lang, needle):
        for _, block_lang, body, _ in self.blocks:
            if block_lang == lang and needle in body:
                return body
        raise AssertionError("README has no %s block containing %r" % (lang, needle))

    def help_text(self):
        if self._help is None:
            self._help = self.ok(self.sh("sidekey help"), what="sidekey help").stdout
        return self._help

    def usage_line(self, words):
        prefix = " ".join(["sidekey"] + words)
        for line in self.help_text().splitlines():
            line = line.strip()
            if line == prefix or line.startswith(prefix + " ") or line.startswith(prefix + "|"):
                return line
        raise AssertionError("`sidekey help` has no usage line for `%s`:\n%s" % (prefix, self.help_text()))

    def check_usage(self, cmd):
        """A README usage line or mention: its command words and flags are in `sidekey help`."""
        words = []
        for w in cmd.norm.split()[1:]:
            if not re.match(r"^[a-z][a-z-]*$", w):
                break
            words.append(w)
        line = self.usage_line(words)
        for flag in re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", cmd.norm):
            self.t.assertRegex(line, r"(?<![\w-])%s(?![\w-])" % re.escape(flag),
                               "README `%s`: %s is not in `sidekey help`: %s" % (cmd.norm, flag, line))
        return line

    def api_get(self, path):
        import requests
        with open(self.path("sidekey-data", "api-token")) as f:
            token = f.read().strip()
        return requests.get("http://%s%s" % (self.serve.api, path), headers={"Authorization": "Bearer " + token},
                            timeout=30)

    def expect_injected(self, path, header, prefix, value, since):
        """The last request for `path` the upstream got after `since` carries `header: prefix value`."""
        reqs = [r for r in self.up.requests[since:] if r.path == path]
        self.t.assertTrue(reqs, "the upstream got no request for %s" % path)
        want = (header + ": " + prefix).encode() + value
        self.t.assertIn(want, reqs[-1].raw, "the upstream did not get %r: %r" % (want, reqs[-1].raw[:600]))
        return reqs[-1]

    def start_serve(self, command):
        served = Served(command, self.ws, dict(self.env))
        try:
            # The listening line has the form the README shows (its keys, in that order).
            shown = json.loads(self.readme_block("json", '"event":"listening"'))
            self.t.assertEqual(list(served.listening), list(shown), served.first_line)
            self.t.assertEqual(served.listening["event"], "listening")
            for k in ("proxy", "api", "admin"):
                self.t.assertRegex(served.listening[k], r"^127\.0\.0\.1:\d+$")
            import requests
            self.t.assertTrue(wait_for(lambda: requests.get("http://%s/readyz" % served.admin, timeout=5)
                                       .status_code == 200, timeout=20), served.logs())
        except BaseException:
            served.stop()
            raise
        return served

    # -- make targets, CI, scripts -----------------------------------------------------------------
    def make_n(self, *args):
        # What a user's shell would see: not the make this suite may run under (MAKEFLAGS, MAKELEVEL),
        # nor the Makefile's variables set from outside.
        env = {k: v for k, v in os.environ.items()
               if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "BUILD_DIR", "DEBUG_DIR", "ASAN_DIR", "TSAN_DIR", "TSAN_TESTS", "FUZZ_SECONDS",
                            "CTEST_ARGS", "JOBS", "GENERATOR")}
        p = subprocess.run(["make", "-n", "--no-print-directory"] + list(args), cwd=SOURCE_DIR, env=env,
                           capture_output=True, text=True, timeout=60)
        self.ok(p, what="make -n " + " ".join(args))
        return [l.strip() for l in p.stdout.replace("\\\n", " ").splitlines() if l.strip()]

    def check_make_run(self, cmd):
        lines = self.make_n("run")
        self.t.assertEqual(lines[-1], "build/release/sidekey serve --config config/sidekey.yaml", lines)
        self.t.assertIn("cmake --build build/release", " ".join(lines))

    def check_make_test(self, cmd):
        lines = self.make_n("test")
        self.t.assertIn("cmake --build build/release", " ".join(lines))
        self.t.assertRegex(lines[-1], r"^cd build/release && ctest ")
        # "`CTEST_ARGS="-R api"` narrows it."
        lines = self.make_n("test", "CTEST_ARGS=-R api")
        self.t.assertRegex(lines[-1], r"^cd build/release && ctest .*-R api$")

    def check_make_test_asan(self, cmd):
        lines = self.make_n("test-asan")
        self.t.assertIn("cmake -S . -B build/asan", " ".join(lines))
        self.t.assertRegex(lines[-1], r"^cd build/asan && .*ctest ")

    def check_ci_run(self, cmd):
        path = os.path.join(SOURCE_DIR, cmd.norm)
        self.t.assertTrue(os.access(path, os.X_OK), path)
        with open(path) as f:
            lines = [l.strip() for l in f]
        for target in ("make test", "make test-asan", "make test-tsan", "make fuzz"):
            self.t.assertIn(target, lines)

    def check_make_test_tsan(self, cmd):
        lines = self.make_n("test-tsan")
        self.t.assertIn("cmake -S . -B build/tsan", " ".join(lines))
        self.t.assertIn("-DCMAKE_BUILD_TYPE=Tsan", " ".join(lines))
        self.t.assertRegex(lines[-1], r"ctest .*-R ")
        self.t.assertIn("tests/sanitizers/tsan.supp", " ".join(lines))

    def check_make_fuzz(self, cmd):
        lines = self.make_n("fuzz")
        self.t.assertEqual(lines[-1], "scripts/fuzz.sh 20")
        lines = self.make_n("fuzz", "FUZZ_SECONDS=5")
        self.t.assertEqual(lines[-1], "scripts/fuzz.sh 5")

    def check_script(self, cmd):
        words = cmd.norm.split()
        settings = []
        while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):  # VAR=value prefixes
            settings.append(words.pop(0).split("=", 1)[0])
        script = words[0]
        path = os.path.join(SOURCE_DIR, script)
        self.t.assertTrue(os.path.isfile(path) and os.access(path, os.X_OK), path)
        with open(path) as f:
            text = f.read()
        for name in settings:  # the script reads each variable the README sets
            self.t.assertIn("${%s" % name, text, "%s does not read %s" % (script, name))
        if script == "scripts/install-deps.sh":
            self.t.assertIn("apt-get", text)
        if script == "scripts/install-test-deps.sh":
            self.t.assertIn("node_modules", text)

    # -- serve -----------------------------------------------------------------------------------
    def run_serve_once(self, cmd):
        # "`make run` starts `sidekey serve --config config/sidekey.yaml`: the encrypted store in
        # ./sidekey-data, the example policy config/policy.yaml, the proxy on 127.0.0.1:3128, the
        # Agent Protocol API on 127.0.0.1:8000 and the admin endpoints on 127.0.0.1:9901."
        import yaml
        with open(self.path("config", "sidekey.yaml")) as f:
            cfg = yaml.safe_load(f)
        self.t.assertEqual(cfg["listen"], {"proxy": "127.0.0.1:3128", "api": "127.0.0.1:8000",
                                           "admin": "127.0.0.1:9901"})
        self.t.assertEqual(os.path.normpath(os.path.join(self.ws, "config", cfg["policy"])),
                           self.path("config", "policy.yaml"))
        served = self.start_serve(cmd.text + " --listen-proxy 127.0.0.1:0 --listen-api 127.0.0.1:0 "
                                             "--listen-admin 127.0.0.1:0")
        self.t.assertEqual(served.stop(), 0, served.logs())
        for name in ("store.key", "api-token", "ca.pem", "ca-key.pem", "trust-bundle.pem"):
            self.t.assertTrue(os.path.isfile(self.path("sidekey-data", name)), name)

    def start_make_run(self, cmd):
        self.check_make_run(cmd)
        self.t.assertIsNone(self.serve)
        self.serve = self.start_serve("sidekey serve --config config/sidekey.yaml --listen-proxy 127.0.0.1:0 "
                                      "--listen-api 127.0.0.1:0 --listen-admin 127.0.0.1:0")

    def run_serve_synopsis(self, cmd):
        self.check_usage(cmd)
        served = self.start_serve("sidekey serve --config config/sidekey.yaml --policy config/policy.yaml "
                                  "--data-dir sidekey-data --listen-proxy 127.0.0.1:0 --listen-api 127.0.0.1:0 "
                                  "--listen-admin 127.0.0.1:0")
        self.t.assertEqual(served.stop(), 0, served.logs())
        self.t.assertIn('"event":"stopped"', served.logs())

    # -- Quick start -------------------------------------------------------------------------------
    def run_assignment(self, cmd):
        name = cmd.norm.split("=", 1)[0]
        p = self.ok(self.sh(cmd.text + '\nprintf %s "$' + name + '"'), what=cmd.text)
        self.vars[name] = p.stdout
        if name == "SK":
            self.t.assertTrue(os.access(self.path(p.stdout), os.X_OK), p.stdout)
            self.t.assertEqual(os.path.realpath(self.path(p.stdout)), os.path.realpath(BIN))
        if name == "TOKEN":
            self.t.assertRegex(p.stdout, r"^\S{16,}$")
            mode = stat.S_IMODE(os.stat(self.path("sidekey-data", "api-token")).st_mode)
            self.t.assertEqual(mode, 0o600, "api-token mode %o" % mode)
            self.t.assertEqual(self.api_get("/ap/v1/agent/secrets").status_code, 200)

    def run_secrets_set_openai(self, cmd):
        p = self.ok(self.sh(cmd.text), what=cmd.text)
        self.t.assertIn("{{secrets.openai}}", p.stdout)
        self.t.assertNotIn(OPENAI_KEY, p.stdout + p.stderr)
        self.openai_value = OPENAI_KEY.encode()
        # The running serve re-reads the store (every 2 s) and lists it.
        found = {}

        def listed():
            for s in self.api_get("/ap/v1/agent/secrets").json()["secret_keys"]:
                if s["secret_key"] == "openai":
                    found.update(s)
            return bool(found)
        self.t.assertTrue(wait_for(listed, timeout=15), "the running serve did not pick up the CLI's secret")
        self.openai_id = found["secret_id"]

    def run_api_post(self, cmd):
        self.t.assertIn("http://127.0.0.1:8000/", cmd.text)
        p = self.ok(self.sh(cmd.text.replace("127.0.0.1:8000", self.serve.api)), what=cmd.text)
        body = json.loads(p.stdout)
        value = re.search(r'"secret_value":"([^"]*)"', cmd.text).group(1)
        self.t.assertEqual(body["secret_key"], "openai", body)
        self.t.assertEqual(body["reference"], "{{secrets.openai}}", body)
        self.t.assertEqual(body["secret_id"], self.openai_id, "rotation keeps the id: %s" % body)
        self.t.assertNotIn("secret_value", body)
        self.t.assertNotIn(value, p.stdout)
        self.openai_value = value.encode()

    def run_explain_openai(self, cmd):
        p = self.ok(self.sh(cmd.text), what=cmd.text)
        d = json.loads(p.stdout)
        self.t.assertEqual((d["decision"], d["rule"], d["injected"], d["secrets"]),
                           ("inject", "openai", ["header:Authorization"], ["openai"]), d)

    def _run_agent(self, cmd, text, expect_key, unset=()):
        since = len(self.up.requests)
        p = self.ok(self.sh(text, unset=unset), what=cmd.text)
        out = json.loads(p.stdout.strip().splitlines()[-1])
        self.t.assertEqual(out, {"status": 200, "key_seen_by_agent": expect_key,
                                 "reply": "hello from the README upstream"})
        self.expect_injected("/v1/chat/completions", "Authorization", "Bearer ", self.openai_value, since)
        self.t.assertNotIn(self.openai_value.decode("utf-8", "replace"), p.stdout)
        return p

    def run_exec_agent(self, cmd):
        p = self._run_agent(cmd, cmd.text, "{{secrets.openai}}")
        # "4. Each request leaves one audit line on sidekey's stderr:" and the line it shows.
        records = [r for r in audit_records(_Logs(p.stderr)) if r.get("host") == "api.openai.com"]
        self.t.assertEqual(len(records), 1, p.stderr)
        shown = "".join(n for n in cmd.notes if n.startswith("{") or n.startswith('"'))
        self.t.assertTrue(shown, "the Quick start no longer shows an audit line after exec: adjust the check")
        shown = json.loads(re.sub(r",\s*…\s*}$", "}", shown))
        for k, v in shown.items():
            self.t.assertEqual(records[0].get(k), v, "audit line %s: %s" % (k, records[0]))
        # The full audit line of "Audit lines and metrics" has exactly the keys of a real one.
        full = json.loads(self.readme_block("json", '"event":"audit"'))
        self.t.assertEqual(sorted(records[0]), sorted(full))

    def run_exec_agent_no_ref(self, cmd):
        self.check_usage(cmd)
        # The agent starts with no key of its own (the Quick start's shell had OPENAI_API_KEY).
        self._run_agent(cmd, cmd.text.replace("--config F", "--config config/sidekey.yaml"), "",
                        unset=("OPENAI_API_KEY",))

    # -- Commands table ----------------------------------------------------------------------------
    def run_secrets_set_github(self, cmd):
        self.check_usage(cmd)
        p = self.ok(self.sh("printf '%s\\n' \"$GH\" | sidekey secrets set github --host api.github.com",
                            env={"GH": GITHUB_VALUE}), what=cmd.text)
        self.t.assertIn("{{secrets.github}}", p.stdout)
        # The binding from --host, and the trailing newline dropped, as the upstream sees them: the
        # policy's github-api rule substitutes references the agent writes.
        import requests
        since = len(self.up.requests)
        proxies = {"https": "http://" + self.serve.proxy}
        bundle = self.path("sidekey-data", "trust-bundle.pem")
        answers = []

        def through():
            r = requests.get("https://api.github.com/user", proxies=proxies, verify=bundle, timeout=30,
                             headers={"Authorization": "token {{secrets.github}}"})
            answers.append(r.text)
            return r.status_code == 200
        self.t.assertTrue(wait_for(through, timeout=15, interval=0.5), answers[-1:])
        self.expect_injected("/user", "Authorization", "token ", GITHUB_VALUE.encode() + b"\r\n", since)

    def run_secrets_list(self, cmd):
        p = self.ok(self.sh(cmd.text), what=cmd.text)
        rows = [l.split("\t") for l in p.stdout.strip().splitlines()]
        names = [r[0] for r in rows]
        self.t.assertEqual(sorted(names), ["github", "openai"], p.stdout)
        for row in rows:      # "name, id, allowed hosts, last update"
            self.t.assertEqual(len(row), 4, row)
            self.t.assertRegex(row[3], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
        self.t.assertIn("api.github.com", rows[names.index("github")])
        self.t.assertIn(self.openai_id, rows[names.index("openai")])
        for v in (OPENAI_KEY, GITHUB_VALUE, self.openai_value.decode()):
            self.t.assertNotIn(v, p.stdout + p.stderr)

    def run_secrets_rm(self, cmd):
        self.check_usage(cmd)
        p = self.ok(self.sh("sidekey secrets rm github"), what=cmd.text)
        self.t.assertIn("removed github", p.stdout)
        p = self.ok(self.sh("sidekey secrets list"), what="sidekey secrets list")
        self.t.assertEqual([l.split("\t")[0] for l in p.stdout.strip().splitlines()], ["openai"])

    def readme_variables(self):
        """The variable names of the paragraph "The variables `exec` sets"."""
        m = re.search(r"\*\*The variables `exec` sets\*\*(.*?)\n\n", self.readme, re.S)
        self.t.assertTrue(m, "README lost the paragraph \"The variables `exec` sets\"")
        names = [n for n in re.findall(r"`([A-Z][A-Z0-9_]+|[a-z]+_proxy)`", m.group(1)) if n != "VAR"]
        self.t.assertGreaterEqual(len(names), 14, names)
        return names

    def check_variables(self, env, proxy):
        for name in self.readme_variables():
            self.t.assertIn(name, env, "README says exec/env set %s" % name)
        for n in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            self.t.assertEqual(env[n], proxy)
        for n in ("NO_PROXY", "no_proxy"):
            self.t.assertEqual(env[n], "localhost,127.0.0.1,::1")
        for n in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO", "AWS_CA_BUNDLE",
                  "PIP_CERT"):
            self.t.assertEqual(os.path.realpath(os.path.join(self.ws, env[n])),
                               os.path.realpath(self.path("sidekey-data", "trust-bundle.pem")), n)
        self.t.assertEqual(os.path.realpath(os.path.join(self.ws, env["NODE_EXTRA_CA_CERTS"])),
                           os.path.realpath(self.path("sidekey-data", "ca.pem")))
        self.t.assertEqual(env["NODE_USE_ENV_PROXY"], "1")
        self.t.assertEqual(env["OPENAI_API_KEY"], "{{secrets.openai}}")

    def run_exec_synopsis(self, cmd):
        self.check_usage(cmd)
        p = self.sh("sidekey exec --config config/sidekey.yaml --ref-env OPENAI_API_KEY=openai -- "
                    "sh -c 'env; exit 3'", env={"SIDEKEY_SECRET_other": "x", "SIDEKEY_API_TOKEN": "t0ken-x"})
        self.ok(p, rc=3, what=cmd.text)
        env = dict(l.split("=", 1) for l in p.stdout.splitlines() if "=" in l)
        self.t.assertFalse([k for k in env if k.startswith("SIDEKEY_")], "SIDEKEY_* reached CMD")
        self.t.assertRegex(env["HTTPS_PROXY"], r"^http://127\.0\.0\.1:\d+$")
        self.t.assertNotEqual(env["HTTPS_PROXY"], "http://127.0.0.1:3128", "exec serves on free ports")
        self.check_variables(env, env["HTTPS_PROXY"])
        # "128+N when killed by signal N"
        self.ok(self.sh("sidekey exec --config config/sidekey.yaml -- sh -c 'kill -TERM $$'"), rc=128 + 15,
                what=cmd.text + " (CMD killed by SIGTERM)")

    def run_env_synopsis(self, cmd):
        self.check_usage(cmd)
        p = self.ok(self.sh("sidekey env --config config/sidekey.yaml --ref-env OPENAI_API_KEY=openai"),
                    what=cmd.text)
        env = {}
        for line in p.stdout.splitlines():
            m = re.match(r"^export ([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
            self.t.assertTrue(m, "not an export line: %r" % line)
            env[m.group(1)] = shlex.split(m.group(2))[0]
        self.check_variables(env, "http://127.0.0.1:3128")    # config/sidekey.yaml's listen.proxy
        # "(its listen.proxy, which must not be port 0)"
        with open(self.path("port0.yaml"), "w") as f:
            f.write('listen: { proxy: "127.0.0.1:0" }\ndata_dir: ./sidekey-data\n')
        p = self.sh("sidekey env --config port0.yaml")
        self.t.assertEqual(p.returncode, 2, "env with listen.proxy port 0: %s %s" % (p.stdout, p.stderr))
        self.t.assertEqual(p.stdout, "")

    def run_ca_init(self, cmd):
        p = self.ok(self.sh(cmd.text), what=cmd.text)
        ca = self.path("sidekey-data", "ca.pem")
        fp = subprocess.run(["openssl", "x509", "-in", ca, "-noout", "-fingerprint", "-sha256"],
                            capture_output=True, text=True, check=True).stdout.strip().split("=", 1)[1]
        self.t.assertIn(fp.upper(), p.stdout.upper())
        paths = re.findall(r"(/\S*ca\.pem)", p.stdout)
        self.t.assertTrue(paths and os.path.samefile(paths[0], ca), p.stdout)

    def run_ca_export(self, cmd):
        p = self.ok(self.sh(cmd.text), what=cmd.text)
        with open(self.path("sidekey-data", "ca.pem")) as f:
            self.t.assertEqual(p.stdout.strip(), f.read().strip())

    def run_policy_check(self, cmd):
        self.check_usage(cmd)
        p = self.ok(self.sh("sidekey policy check config/policy.yaml config/examples/*.yaml"), what=cmd.text)
        files = ["config/policy.yaml"] + sorted("config/examples/" + n
                                                for n in os.listdir(self.path("config", "examples")))
        for f in files:
            self.t.assertIn(f + ": ok (", p.stdout)
        with open(self.path("broken.yaml"), "w") as f:
            f.write("version: 1\nrules:\n  - name: x\n    match: { hosts: [\"a.example\"] }\n    actoin: allow\n")
        p = self.ok(self.sh("sidekey policy check config/policy.yaml broken.yaml"), rc=1,
                    what=cmd.text + " (with an invalid file)")
        self.t.assertRegex(p.stderr, r"broken\.yaml:5:5: ")

    def run_explain_synopsis(self, cmd):
        self.check_usage(cmd)
        p = self.ok(self.sh("sidekey policy explain --policy config/policy.yaml POST "
                            "https://api.anthropic.com/v1/messages -H 'anthropic-version: 2023-06-01'"),
                    what=cmd.text)
        d = json.loads(p.stdout)
        self.t.assertEqual((d["decision"], d["rule"], d["injected"]), ("inject", "anthropic", ["header:x-api-key"]))

    def run_version(self, cmd):
        p = self.ok(self.sh(cmd.text), what=cmd.text)
        self.t.assertRegex(p.stdout, r"^sidekey \d+\.\d+\.\d+\n$")

    def run_help(self, cmd):
        p = self.ok(self.sh(cmd.text), what=cmd.text)
        self.t.assertEqual(p.stdout, self.help_text())
        for words in (["serve"], ["secrets", "set"], ["secrets", "list"], ["secrets", "rm"], ["exec"], ["env"],
                      ["ca", "init"], ["ca", "export"], ["policy", "check"], ["policy", "explain"],
                      ["--version"], ["help"]):
            if words == ["ca", "export"]:
                self.t.assertRegex(self.usage_line(["ca"]), r"^sidekey ca (init\|export|export)")
                continue
            self.usage_line(words)

    def check_mention(self, cmd):
        self.check_usage(cmd)

    # -- The proxy ---------------------------------------------------------------------------------
    def proxied(self, cmd, env=None):
        self.t.assertIn("127.0.0.1:3128", cmd.text)
        return self.ok(self.sh(cmd.text.replace("127.0.0.1:3128", self.serve.proxy), env=env), what=cmd.text)

    def run_curl_forward(self, cmd):
        since = len(self.up.requests)
        p = self.proxied(cmd)
        err = json.loads(p.stdout)["error"]
        self.t.assertEqual((err["code"], err["host"]), ("policy_denied", "api.example.com"), p.stdout)
        self.t.assertEqual(len(self.up.requests), since, "a denied request reached the upstream")
        rec = []
        self.t.assertTrue(wait_for(lambda: rec.extend(r for r in audit_records(self.serve)
                                                      if r.get("request_id") == err["request_id"]) or rec))
        self.t.assertEqual([(r["host"], r["port"], r["status"]) for r in rec], [("api.example.com", 80, 403)])

    def run_curl_connect(self, cmd):
        since = len(self.up.requests)
        p = self.proxied(cmd, env={"CURL_CA_BUNDLE": self.ca.cert})
        self.t.assertEqual(p.stdout, SIMPLE)
        reqs = [r for r in self.up.requests[since:] if r.path == "/simple/"]
        self.t.assertEqual(len(reqs), 1)
        self.t.assertEqual(reqs[0].header("Host"), "pypi.org")
        self.t.assertFalse(reqs[0].has_header("Authorization"))

    def run_curl_route(self, cmd):
        since = len(self.up.requests)
        p = self.proxied(cmd)
        self.t.assertEqual(json.loads(p.stdout), json.loads(MODELS))
        req = self.expect_injected("/v1/models", "Authorization", "Bearer ", self.openai_value, since)
        self.t.assertEqual(req.header("Host"), "api.openai.com")

    # -- Deployment --------------------------------------------------------------------------------
    def check_kubectl_apply(self, cmd):
        path = cmd.norm.split(" -k ", 1)[1].split()[0]
        kubectl = os.environ.get("KUBECTL") or shutil.which("kubectl")
        if not kubectl:
            self.t.skipTest("kubectl is not installed: `kubectl kustomize %s` not run" % path)
        p = subprocess.run([kubectl, "kustomize", path], cwd=self.ws, capture_output=True, text=True, timeout=120)
        self.ok(p, what="kubectl kustomize " + path)
        import yaml
        kinds = [d.get("kind") for d in yaml.safe_load_all(p.stdout) if d]
        self.t.assertIn("Job", kinds)

    def check_docker_build(self, cmd):
        words = cmd.norm.split()
        dockerfile = words[words.index("-f") + 1]
        self.t.assertTrue(os.path.isfile(os.path.join(SOURCE_DIR, dockerfile)), dockerfile)
        self.t.assertEqual(words[-1], ".", "built from the repository root")
        section = self.readme.split("\n## Deployment", 1)[1].split("\n## ", 1)[0]
        self.t.assertIn("not built in CI", " ".join(section.split()),
                        "the README's Deployment section must say the image is not built in CI")

    def check_systemctl(self, cmd):
        unit = cmd.norm.split()[-1]
        self.t.assertTrue(os.path.isfile(os.path.join(SOURCE_DIR, "deploy", "systemd", unit + ".service")), unit)

    def check_deploy_test_runs(self, cmd):
        with open(os.path.join(SOURCE_DIR, "tests", "integration", "test_deploy.py")) as f:
            text = f.read()
        program, sub = cmd.norm.split()
        # test_deploy.py calls [cls.kubectl, "kustomize", path] and ["systemd-analyze", "verify", unit].
        self.t.assertRegex(text, r'%s"?,\s*"%s"' % (re.escape(program), re.escape(sub)),
                           "test_deploy.py no longer runs `%s`" % cmd.norm)

    # -- Troubleshooting ---------------------------------------------------------------------------
    def run_eval_env(self, cmd):
        self.t.assertFalse(os.path.exists(self.path("sidekey.yaml")))
        p = self.ok(self.sh(cmd.text + "\nenv"), what=cmd.text)
        env = dict(l.split("=", 1) for l in p.stdout.splitlines() if "=" in l)
        self.t.assertEqual(env.get("HTTPS_PROXY"), "http://127.0.0.1:3128")   # the default listen.proxy
        for n in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS"):
            self.t.assertTrue(os.path.isfile(os.path.join(self.ws, env[n])), "%s=%s" % (n, env[n]))
        self.t.assertEqual(os.path.realpath(os.path.join(self.ws, env["SSL_CERT_FILE"])),
                           os.path.realpath(self.path("sidekey-data", "trust-bundle.pem")))


# ------------------------------------------------------------------------------------------------


class ReadmeCommandsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(README, encoding="utf-8") as f:
            cls.text = f.read()
        cls.commands, cls.blocks = parse_readme(cls.text)

    def test_every_command_is_known(self):
        unknown = ["  README.md:%d (%s, %s): %s" % (c.line, c.section, c.origin, c.norm)
                   for c in self.commands if c.norm not in COMMANDS]
        present = {c.norm for c in self.commands}
        stale = ["  %s" % k for k in COMMANDS if k not in present]
        msg = ""
        if unknown:
            msg += ("README commands that tests/integration/test_readme.py does not know; add each to "
                    "COMMANDS (run, substituted, synopsis, mention, or not-run with the reason):\n"
                    + "\n".join(unknown) + "\n")
        if stale:
            msg += "COMMANDS entries no longer in the README (remove them):\n" + "\n".join(stale) + "\n"
        self.assertFalse(msg, msg)
        for k, e in COMMANDS.items():
            self.assertIn(e.how, (RUN, SUBST, SYNOPSIS, MENTION, NOT_RUN), k)
            self.assertTrue(e.note, k)
            self.assertTrue(callable(getattr(ReadmeRun, e.check, None)), "%s: no check %s" % (k, e.check))

    def test_code_blocks_are_classified(self):
        """A shell command in a block the parser skips would never run: every fenced block is shell,
        json or yaml, and untyped blocks hold no command line."""
        for section, lang, body, line in self.blocks:
            self.assertIn(lang, SHELL_LANGS | OTHER_LANGS, "README.md:%d (%s): a ```%s block; classify it "
                          "in test_readme.py" % (line, section, lang))
            if lang == "":
                for l in body.splitlines():
                    self.assertFalse(is_command_span(l.strip()) or l.startswith("$ "),
                                     "README.md:%d: a command in an untyped block (use ```sh): %s" % (line, l))
        self.assertTrue(any(lang in SHELL_LANGS for _, lang, _, _ in self.blocks))

    def test_readme_commands_run(self):
        """Every README command in order, each checked as its COMMANDS entry says."""
        run = ReadmeRun(self, self.text, self.blocks)
        try:
            for c in self.commands:
                entry = COMMANDS.get(c.norm)
                if entry is None:
                    continue          # reported by test_every_command_is_known
                with self.subTest(line=c.line, section=c.section, command=c.norm):
                    self.assertFalse(c.output, "a ```console block shows output for `%s`: compare it in %s"
                                     % (c.norm, entry.check))
                    getattr(run, entry.check)(c)
        finally:
            errors = run.close()
        self.assertFalse(errors, "\n".join(errors))

    def test_every_command_but_policy_takes_config_and_data_dir(self):
        """"Every command but `policy` takes `--config F` and `--data-dir D`" (serve: the synopsis run)."""
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "sidekey.yaml"), "w") as f:
                f.write("data_dir: ./from-config\npolicy: ./policy.yaml\n")
            with open(os.path.join(d, "policy.yaml"), "w") as f:
                f.write("version: 1\ndefault: deny\n")
            env = {k: v for k, v in os.environ.items() if not k.startswith("SIDEKEY_")}
            for args in (["secrets", "list"], ["ca", "init"], ["ca", "export"], ["env"], ["exec", "--", "true"]):
                tail = args[1:] if args[0] == "exec" else []
                head = args[:1] if args[0] == "exec" else args
                p = subprocess.run([BIN] + head + ["--config", "sidekey.yaml", "--data-dir", "flagged"] + tail,
                                   cwd=d, env=env, capture_output=True, text=True, timeout=60)
                self.assertEqual(p.returncode, 0, "%s: %s %s" % (args, p.stdout, p.stderr))
            self.assertTrue(os.path.isfile(os.path.join(d, "flagged", "ca.pem")))
            self.assertFalse(os.path.exists(os.path.join(d, "from-config")))

    def test_configuration_and_policy_blocks_load(self):
        """The README's sidekey.yaml and policy.yaml references are accepted as written."""
        with tempfile.TemporaryDirectory() as d:
            policy = [b for _, lang, b, _ in self.blocks if lang == "yaml" and b.startswith("version: 1")]
            config = [b for _, lang, b, _ in self.blocks if lang == "yaml" and b.startswith("listen:")]
            self.assertEqual((len(policy), len(config)), (1, 1))
            with open(os.path.join(d, "policy.yaml"), "w") as f:
                f.write(policy[0])
            with open(os.path.join(d, "sidekey.yaml"), "w") as f:
                f.write(config[0])
            env = {k: v for k, v in os.environ.items() if not k.startswith("SIDEKEY_")}
            p = subprocess.run([BIN, "policy", "check", "policy.yaml"], cwd=d, env=env, capture_output=True,
                               text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertNotIn("warning", p.stderr)
            p = subprocess.run([BIN, "secrets", "list", "--config", "sidekey.yaml"], cwd=d, env=env,
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)


if __name__ == "__main__":
    unittest.main()
