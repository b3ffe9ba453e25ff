"""Gateway mode against a real Agent Protocol agent (SPEC sections 2 and 8).

The agent is tests/e2e_node/agent.mjs, built with the reference JS SDK (npm `agent-protocol`,
Express): its step handler echoes the input and writes an artifact of its own. sidekey runs with
`agent: {upstream: http://127.0.0.1:AGENT_PORT}`; through sidekey's api listener the tests create
tasks, execute and list steps, upload and download artifacts of several MB (SHA-256 compared end to
end), and check that the secrets endpoints stay sidekey's own (a task the agent does not know:
404), that a forwarded path needs sidekey's token and the agent never sees that token, and that a
dead agent gives 502 JSON.

Last, the Agent Protocol's own Postman collection (shared/reference/agent-protocol-v1.postman_
collection.json) is run with newman against the agent directly and through sidekey: both runs must
give the same requests, status codes and assertions, with no failure.

npm packages (agent-protocol, newman) come from tests/package.json: scripts/install-test-deps.sh.
"""
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.parse
import uuid

import requests

from harness import Sidekey, wait_for
from upstreams import RawClient, Raw, Reply, Upstream

TESTS_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
AGENT_JS = os.path.join(TESTS_DIR, "e2e_node", "agent.mjs")
NODE_MODULES = os.path.join(TESTS_DIR, "node_modules")
NEWMAN = os.path.join(NODE_MODULES, ".bin", "newman")
SOURCE_DIR = os.environ.get("SIDEKEY_SOURCE", os.path.abspath(os.path.join(TESTS_DIR, "..")))
# The Agent Protocol's Postman collection, kept beside the checkout (/work/shared/reference).
COLLECTION = os.path.abspath(os.path.join(SOURCE_DIR, "..", "shared", "reference",
                                          "agent-protocol-v1.postman_collection.json"))

TIMEOUT = 30  # seconds, for every HTTP call


def missing_prerequisite():
    if not shutil.which("node"):
        return "needs node"
    for pkg in ("agent-protocol", "newman"):
        if not os.path.exists(os.path.join(NODE_MODULES, pkg, "package.json")):
            return "tests/node_modules/%s is missing: run scripts/install-test-deps.sh" % pkg
    return None


def free_port():
    """A port nothing listens on (bound, then closed)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class AgentProcess:
    """`node agent.mjs` on 127.0.0.1:0; url, requests_seen(), clear_seen(), stop()."""

    def __init__(self, unknown_task="404", keep_alive_ms=None):
        self.dir = tempfile.mkdtemp(prefix="sidekey-agent-")
        self.workspace = os.path.join(self.dir, "workspace")
        env = dict(os.environ, AGENT_PORT="0", AGENT_WORKSPACE=self.workspace, AGENT_UNKNOWN_TASK=unknown_task)
        if keep_alive_ms is not None:
            env["AGENT_KEEP_ALIVE_MS"] = str(keep_alive_ms)
        self.out_path = os.path.join(self.dir, "agent.out")
        self.err_path = os.path.join(self.dir, "agent.err")
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(["node", AGENT_JS], stdout=out, stderr=err, env=env, cwd=self.dir)
        line = {}

        def ready():
            nonlocal line
            if self.proc.poll() is not None:
                return True
            with open(self.out_path) as f:
                first = f.readline()
            if first.endswith("\n"):
                line = json.loads(first)
                return True
            return False

        wait_for(ready, timeout=20)
        if line.get("event") != "agent_listening":
            self.stop()
            raise RuntimeError("the agent did not start: %s" % self.logs())
        self.port = line["port"]
        self.url = "http://127.0.0.1:%d" % self.port

    def logs(self):
        with open(self.err_path) as f:
            return f.read()

    def requests_seen(self):
        return requests.get(self.url + "/_test/requests", timeout=TIMEOUT).json()

    def clear_seen(self):
        requests.delete(self.url + "/_test/requests", timeout=TIMEOUT)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def gateway_sidekey(upstream, auth=True):
    config = {"agent": {"upstream": upstream}}
    if not auth:
        config["api"] = {"auth": "none"}
    return Sidekey(config=config)


def multipart_parts(field, file_name, data, piece=256 << 10):
    """A multipart/form-data body as a generator of pieces (requests then sends it chunked)."""
    boundary = "sidekey-" + uuid.uuid4().hex
    content_type = "multipart/form-data; boundary=" + boundary

    def gen():
        yield ("--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
               "Content-Type: application/octet-stream\r\n\r\n" % (boundary, field, file_name)).encode()
        for i in range(0, len(data), piece):
            yield data[i:i + piece]
        yield ("\r\n--%s--\r\n" % boundary).encode()

    return content_type, gen()


class _Prefixed:
    """A socket whose first `recv` returns bytes already read."""

    def __init__(self, sock, first):
        self.sock, self.first = sock, first

    def settimeout(self, t):
        self.sock.settimeout(t)

    def recv(self, n):
        if self.first:
            data, self.first = self.first, b""
            return data
        return self.sock.recv(n)


def read_response(sock, timeout=15):
    """Reads interim (1xx) responses and one final response from a raw socket:
    ([interim status codes], final status, {lower-case header: value}, body)."""
    sock.settimeout(timeout)
    buf = b""

    def fill():
        nonlocal buf
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed; got %r" % buf[:300])
        buf += data

    interim = []
    while True:
        while b"\r\n\r\n" not in buf:
            fill()
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        if not re.match(r"HTTP/1\.[01] \d{3}", lines[0]):
            raise AssertionError("not an HTTP response after the interim responses %s: %r" % (interim, head[:300]))
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if 100 <= status < 200:
            interim.append(status)
            continue
        break
    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(buf) < n:
            fill()
        return interim, status, headers, buf[:n]
    body = b""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            while b"\r\n" not in buf:
                fill()
            size_line, buf = buf.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(buf) < size + 2:
                fill()
            body, buf = body + buf[:size], buf[size + 2:]
            if size == 0:
                return interim, status, headers, body
    return interim, status, headers, body


class GatewayTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        why = missing_prerequisite()
        if why:
            raise unittest.SkipTest(why)
        cls.agent = AgentProcess()
        cls.sk = gateway_sidekey(cls.agent.url)
        try:
            cls.sk.start()
        except Exception:
            cls.agent.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.sk.__exit__(None, None, None)
        cls.agent.cleanup()

    def setUp(self):
        self.http = requests.Session()
        self.http.headers.update(self.sk.auth())
        self.addCleanup(self.http.close)

    # -- helpers -------------------------------------------------------------------------------
    def api(self, method, path, **kw):
        kw.setdefault("timeout", TIMEOUT)
        return self.http.request(method, self.sk.api_url + path, **kw)

    def new_task(self, text="write 'Washington' to a file"):
        r = self.api("POST", "/ap/v1/agent/tasks", json={"input": text, "additional_input": {"run": "gateway"}})
        self.assertEqual(r.status_code, 200, r.text)
        task = r.json()
        self.assertEqual(task["input"], text)
        self.assertEqual(task["additional_input"], {"run": "gateway"})
        self.assertEqual(task["artifacts"], [])
        return task["task_id"]

    def assert_message(self, r, status):
        self.assertEqual(r.status_code, status, r.text)
        self.assertIn("application/json", r.headers.get("Content-Type", ""))
        body = r.json()
        self.assertIsInstance(body.get("message"), str, r.text)
        self.assertTrue(body["message"])
        return body

    # -- tasks and steps -------------------------------------------------------------------------
    def test_tasks_and_steps_are_forwarded(self):
        task_id = self.new_task()
        other = self.new_task("a second task")

        r = self.api("GET", "/ap/v1/agent/tasks?page_size=1000")
        self.assertEqual(r.status_code, 200, r.text)
        ids = [t["task_id"] for t in r.json()["tasks"]]
        self.assertIn(task_id, ids)
        self.assertIn(other, ids)
        self.assertGreaterEqual(r.json()["pagination"]["total_items"], 2)

        # The query string reaches the agent.
        r = self.api("GET", "/ap/v1/agent/tasks?page_size=1&current_page=1")
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(len(r.json()["tasks"]), 1)
        self.assertEqual(r.json()["pagination"]["page_size"], 1)

        r = self.api("GET", "/ap/v1/agent/tasks/" + task_id)
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.json()["task_id"], task_id)

        steps = []
        for text in ("hello", "world"):
            r = self.api("POST", "/ap/v1/agent/tasks/%s/steps" % task_id, json={"input": text})
            self.assertEqual(r.status_code, 200, r.text)
            step = r.json()
            self.assertEqual(step["task_id"], task_id)
            self.assertEqual(step["input"], text)
            self.assertEqual(step["output"], "echo: " + text)
            self.assertEqual(step["status"], "completed")
            self.assertEqual(len(step["artifacts"]), 1)
            self.assertTrue(step["artifacts"][0]["agent_created"])
            steps.append(step)

        r = self.api("GET", "/ap/v1/agent/tasks/%s/steps" % task_id)
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual([s["step_id"] for s in r.json()["steps"]], [s["step_id"] for s in steps])
        self.assertEqual(r.json()["pagination"]["total_items"], 2)

        r = self.api("GET", "/ap/v1/agent/tasks/%s/steps/%s" % (task_id, steps[1]["step_id"]))
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.json()["output"], "echo: world")

        # The artifacts the steps created are listed on the task and download as octet streams.
        r = self.api("GET", "/ap/v1/agent/tasks/%s/artifacts" % task_id)
        self.assertEqual(r.status_code, 200, r.text)
        listed = {a["artifact_id"] for a in r.json()["artifacts"]}
        self.assertEqual(listed, {s["artifacts"][0]["artifact_id"] for s in steps})
        download = "/ap/v1/agent/tasks/%s/artifacts/%s" % (task_id, steps[0]["artifacts"][0]["artifact_id"])
        r = self.api("GET", download)
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.content, b"echo: hello\n")
        direct = requests.get(self.agent.url + download, timeout=TIMEOUT)
        self.assertEqual(r.headers["Content-Type"], direct.headers["Content-Type"])
        self.assertEqual(r.headers["Content-Length"], direct.headers["Content-Length"])

        # The agent's own errors come back as they are.
        r = self.api("GET", "/ap/v1/agent/tasks/%s/steps/%s" % (other, steps[0]["step_id"]))
        self.assertEqual(r.status_code, 500, r.text)
        self.assertIn("not found", r.json()["error"])

    def test_artifact_upload_and_download_stream_intact(self):
        # 6 MiB: far over the api listener's 1 MiB limit for the requests sidekey answers itself,
        # so this can only pass through the streaming path (SPEC section 2).
        data = os.urandom(6 << 20)
        digest = hashlib.sha256(data).hexdigest()
        task_id = self.new_task()

        uploads = []
        # With Content-Length (requests builds the multipart body itself) ...
        r = self.api("POST", "/ap/v1/agent/tasks/%s/artifacts" % task_id,
                     files={"file": ("blob-length.bin", data, "application/octet-stream")},
                     data={"relative_path": "uploads"})
        self.assertEqual(r.status_code, 200, r.text)
        uploads.append(r.json())
        # ... and chunked (a generator body). Half-way through, the agent must already have the
        # request: sidekey forwards as it reads, it does not collect the body first.
        self.agent.clear_seen()
        content_type, parts = multipart_parts("file", "blob-chunked.bin", data)
        path = "/ap/v1/agent/tasks/%s/artifacts" % task_id
        reached_agent_early = []

        def body():
            sent = 0
            for piece in parts:
                yield piece
                sent += len(piece)
                if not reached_agent_early and sent >= len(data) // 2:
                    reached_agent_early.append(wait_for(
                        lambda: any(q["url"] == path for q in self.agent.requests_seen()), timeout=10, interval=0.1))

        r = self.api("POST", path, data=body(), headers={"Content-Type": content_type})
        self.assertEqual(r.status_code, 200, r.text)
        uploads.append(r.json())
        self.assertEqual(reached_agent_early, [True], "the agent saw nothing of a half-sent upload")

        self.assertEqual(uploads[0]["file_name"], "blob-length.bin")
        self.assertEqual(uploads[0]["relative_path"], "uploads")
        self.assertEqual(uploads[1]["file_name"], "blob-chunked.bin")
        for artifact in uploads:
            self.assertFalse(artifact["agent_created"])
            # The bytes the agent stored ...
            stored = os.path.join(self.agent.workspace, task_id, artifact["relative_path"] or "", artifact["file_name"])
            with open(stored, "rb") as f:
                self.assertEqual(hashlib.sha256(f.read()).hexdigest(), digest, "upload corrupted: " + stored)
            # ... and the bytes that come back through sidekey.
            with self.api("GET", "/ap/v1/agent/tasks/%s/artifacts/%s" % (task_id, artifact["artifact_id"]),
                          stream=True) as r:
                self.assertEqual(r.status_code, 200)
                self.assertEqual(r.headers["Content-Type"], "application/octet-stream")
                h, n = hashlib.sha256(), 0
                for piece in r.iter_content(64 << 10):
                    h.update(piece)
                    n += len(piece)
            self.assertEqual(n, len(data))
            self.assertEqual(h.hexdigest(), digest, "download corrupted")

        r = self.api("GET", "/ap/v1/agent/tasks/%s/artifacts" % task_id)
        self.assertEqual({a["artifact_id"] for a in r.json()["artifacts"]}, {a["artifact_id"] for a in uploads})

    # -- secrets stay sidekey's ---------------------------------------------------------------
    def test_secrets_endpoints_are_served_by_sidekey(self):
        task_id = self.new_task()
        self.agent.clear_seen()

        name = "gw_" + uuid.uuid4().hex[:8]
        r = self.api("POST", "/ap/v1/agent/secrets", json={"secret_key": name, "secret_value": "v-agent-scoped"})
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.json()["reference"], "{{secrets.%s}}" % name)
        agent_secret = r.json()["secret_id"]
        r = self.api("GET", "/ap/v1/agent/secrets?page_size=100")
        self.assertEqual(r.status_code, 200, r.text)
        self.assertIn(name, [s["secret_key"] for s in r.json()["secret_keys"]])
        r = self.api("GET", "/ap/v1/agent/secrets/" + agent_secret)
        self.assertEqual(r.status_code, 200, r.text)

        # Task-scoped, for a task the agent knows.
        base = "/ap/v1/agent/tasks/%s/secrets" % task_id
        r = self.api("POST", base, json={"name": "api_key", "value": "v-task-scoped"})
        self.assertEqual(r.status_code, 200, r.text)
        secret = r.json()
        self.assertEqual(secret["name"], "api_key")
        self.assertNotEqual(secret["value"], "v-task-scoped")
        self.assertTrue(secret["value"].startswith("{{secrets."), secret)
        r = self.api("GET", base)
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual([s["secret_id"] for s in r.json()["secrets"]], [secret["secret_id"]])
        r = self.api("GET", base + "/" + secret["secret_id"])
        self.assertEqual(r.status_code, 200, r.text)
        r = self.api("DELETE", base + "/" + secret["secret_id"])
        self.assertEqual(r.status_code, 204, r.text)
        r = self.api("DELETE", "/ap/v1/agent/secrets/" + agent_secret)
        self.assertEqual(r.status_code, 204, r.text)

        # Task-scoped, for a task id the agent does not know: 404 {"message"}.
        unknown = str(uuid.uuid4())
        ubase = "/ap/v1/agent/tasks/%s/secrets" % unknown
        self.assert_message(self.api("GET", ubase), 404)
        self.assert_message(self.api("POST", ubase, json={"name": "api_key", "value": "v-unknown"}), 404)
        self.assert_message(self.api("GET", ubase + "/" + str(uuid.uuid4())), 404)

        # None of that was forwarded: the agent saw only sidekey's task lookups (GET, no body).
        seen = self.agent.requests_seen()
        for req in seen:
            self.assertNotIn("/secrets", req["url"], req)
            self.assertEqual(req["method"], "GET", req)
            self.assertIn(req["url"], ("/ap/v1/agent/tasks/" + task_id, "/ap/v1/agent/tasks/" + unknown), req)
        self.assertTrue(any(req["url"].endswith(unknown) for req in seen), "sidekey never asked the agent")

        # Paths outside /ap/v1 are not forwarded either.
        before = len(self.agent.requests_seen())
        r = self.api("GET", "/openapi.yaml")
        self.assert_message(r, 404)
        self.assertEqual(len(self.agent.requests_seen()), before)

    def test_secrets_paths_in_other_spellings_are_never_forwarded(self):
        # Dot segments and escaped letters name a secrets endpoint once normalized, and the agent's
        # server may normalize them: sidekey answers 404 rather than forward a secret's value.
        self.agent.clear_seen()
        u = urllib.parse.urlsplit(self.sk.api_url)
        body = json.dumps({"secret_key": "k", "secret_value": "v-never-for-the-agent"})
        for path in ("/ap/v1/agent/./secrets", "/ap/v1/agent/%73ecrets", "/ap/v1/agent/x/../secrets", "/AP/v1/agent/Secrets",
                     "/ap/v1/agent/tasks/%s/%%2E/secrets" % uuid.uuid4()):
            with self.subTest(path=path):
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=TIMEOUT)
                try:
                    conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **self.sk.auth()})
                    r = conn.getresponse()
                    self.assertEqual(r.status, 404, r.read())
                finally:
                    conn.close()
        self.assertEqual(self.agent.requests_seen(), [])

    def test_unknown_task_with_the_sdk_as_shipped(self):
        """agent-protocol@1.0.5 answers GET /ap/v1/agent/tasks/{unknown} with 500 {"error"}, not
        the protocol's 404. sidekey must still not serve (or store) task secrets for a task the
        agent did not confirm: 404 per SPEC section 8."""
        agent = AgentProcess(unknown_task="sdk")
        self.addCleanup(agent.cleanup)
        r = requests.get(agent.url + "/ap/v1/agent/tasks/" + str(uuid.uuid4()), timeout=TIMEOUT)
        self.assertEqual(r.status_code, 500, "the SDK changed: %s %s" % (r.status_code, r.text))
        with gateway_sidekey(agent.url) as sk, requests.Session() as s:
            s.headers.update(sk.auth())
            task = s.post(sk.api_url + "/ap/v1/agent/tasks", json={"input": "x"}, timeout=TIMEOUT).json()["task_id"]
            r = s.get(sk.api_url + "/ap/v1/agent/tasks/%s/secrets" % task, timeout=TIMEOUT)
            self.assertEqual(r.status_code, 200, r.text)

            ubase = sk.api_url + "/ap/v1/agent/tasks/%s/secrets" % uuid.uuid4()
            r = s.post(ubase, json={"name": "api_key", "value": "v-unknown-sdk"}, timeout=TIMEOUT)
            self.assertEqual(r.status_code, 404, "task secret served for a task the agent does not know: "
                             "%s %s" % (r.status_code, r.text))
            self.assert_message(r, 404)
            self.assert_message(s.get(ubase, timeout=TIMEOUT), 404)

    # -- auth -----------------------------------------------------------------------------------
    def test_forwarded_paths_need_the_token_and_the_agent_never_sees_it(self):
        token = self.sk.token
        self.assertTrue(token)
        task_id = self.new_task()
        self.agent.clear_seen()

        for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-KEY": "wrong"}):
            r = requests.get(self.sk.api_url + "/ap/v1/agent/tasks", headers=headers, timeout=TIMEOUT)
            self.assert_message(r, 401)
            self.assertIn("Bearer", r.headers.get("WWW-Authenticate", ""))
        # A body-carrying request without the token: 401, and nothing reaches the agent.
        r = requests.post(self.sk.api_url + "/ap/v1/agent/tasks/%s/artifacts" % task_id,
                          files={"file": ("x.bin", os.urandom(256 << 10))}, timeout=TIMEOUT)
        self.assert_message(r, 401)
        self.assertEqual(self.agent.requests_seen(), [])

        # With the token, either form: forwarded, without sidekey's credentials.
        r = requests.get(self.sk.api_url + "/ap/v1/agent/tasks", headers={"X-API-KEY": token}, timeout=TIMEOUT)
        self.assertEqual(r.status_code, 200, r.text)
        r = self.api("POST", "/ap/v1/agent/tasks/%s/steps" % task_id, json={"input": "hi"},
                     headers={"X-API-KEY": token, "X-Request-Id": "req-42"})  # both token forms at once
        self.assertEqual(r.status_code, 200, r.text)
        r = self.api("POST", "/ap/v1/agent/tasks/%s/artifacts" % task_id, files={"file": ("y.bin", b"y" * 1000)})
        self.assertEqual(r.status_code, 200, r.text)
        seen = self.agent.requests_seen()
        self.assertEqual([(q["method"], q["url"]) for q in seen],
                         [("GET", "/ap/v1/agent/tasks"), ("POST", "/ap/v1/agent/tasks/%s/steps" % task_id),
                          ("POST", "/ap/v1/agent/tasks/%s/artifacts" % task_id)])
        for req in seen:
            self.assertNotIn("authorization", req["headers"], req)
            self.assertNotIn("x-api-key", req["headers"], req)
            self.assertNotIn(token, json.dumps(req), req)
            self.assertEqual(req["headers"]["host"], "127.0.0.1:%d" % self.agent.port)
        self.assertEqual(seen[1]["headers"].get("x-request-id"), "req-42")  # other headers pass

    # -- HTTP details -----------------------------------------------------------------------------
    def test_expect_100_continue_upload(self):
        """curl (7.88) sends `Expect: 100-continue` with every upload over 1 MiB (-F file=@…). The
        client must get the agent's final answer (200 and the artifact), not the interim 100,
        and should get a 100 Continue before it sends the body (as on the proxy listener)."""
        task_id = self.new_task()
        data = os.urandom(200 << 10)
        boundary = "sidekey-expect"
        body = (b"--" + boundary.encode() + b"\r\nContent-Disposition: form-data; name=\"file\"; "
                b"filename=\"expect.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n" + data +
                b"\r\n--" + boundary.encode() + b"--\r\n")
        host, port = self.sk.api_url[len("http://"):].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
            head = ("POST /ap/v1/agent/tasks/%s/artifacts HTTP/1.1\r\nHost: %s:%s\r\nAuthorization: Bearer %s\r\n"
                    "Content-Type: multipart/form-data; boundary=%s\r\nContent-Length: %d\r\n"
                    "Expect: 100-continue\r\n\r\n" % (task_id, host, port, self.sk.token, boundary, len(body)))
            sock.sendall(head.encode())
            sock.settimeout(3)
            try:
                early = sock.recv(65536)
            except socket.timeout:
                early = b""
            sock.sendall(body)
            interim, status, headers, answer = read_response(_Prefixed(sock, early))
        self.assertEqual(status, 200, "final answer %s %r (interim %s, first bytes %r)" % (status, answer[:200], interim, early[:200]))
        artifact = json.loads(answer)
        self.assertEqual(artifact["file_name"], "expect.bin")
        self.assertTrue(early.startswith(b"HTTP/1.1 100 Continue\r\n"), "no 100 Continue before the body: %r" % early[:200])

    def test_pooled_connection_the_agent_closed(self):
        """The agent closes an idle keep-alive connection (Node: keepAliveTimeout); sidekey must
        not hand the next request to that dead connection."""
        agent = AgentProcess(keep_alive_ms=300)
        self.addCleanup(agent.cleanup)
        with gateway_sidekey(agent.url) as sk, requests.Session() as s:
            s.headers.update(sk.auth())
            for i in range(3):
                r = s.get(sk.api_url + "/ap/v1/agent/tasks", timeout=TIMEOUT)
                self.assertEqual(r.status_code, 200, "GET #%d: %s %s" % (i, r.status_code, r.text))
                r = s.post(sk.api_url + "/ap/v1/agent/tasks", json={"input": "after idle %d" % i}, timeout=TIMEOUT)
                self.assertEqual(r.status_code, 200, "POST #%d: %s %s" % (i, r.status_code, r.text))
                time.sleep(1.0)

    def test_agent_that_switches_protocols_unasked_gives_502(self):
        """The request's Upgrade is hop-by-hop and never reaches the agent: a 101 from it is not
        relayed (it was relayed as a chunked 101 with what followed as its body), the agent
        connection is closed, and the client's connection keeps working."""
        agent = Upstream(Raw("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
                             "frames-after-the-switch", keep=True)).start()
        self.addCleanup(agent.stop)
        with gateway_sidekey(agent.url) as sk:
            u = urllib.parse.urlsplit(sk.api_url)
            with socket.create_connection((u.hostname, u.port), timeout=TIMEOUT) as sock:
                head = ("GET /ap/v1/agent/tasks HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: Bearer %s\r\n"
                        "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n" % (u.hostname, u.port, sk.token))
                sock.sendall(head.encode())
                interim, status, headers, body = read_response(sock)
                self.assertEqual((interim, status), ([], 502), (headers, body[:300]))
                self.assertNotIn(b"frames-after-the-switch", body)
                self.assertIn("switched protocols", json.loads(body)["message"])
            self.assertNotIn("upgrade", agent.requests[0].header("Connection", "").lower())
            self.assertIsNone(agent.requests[0].header("Upgrade"))
            self.assertTrue(wait_for(lambda: agent.closed_connections >= 1, timeout=TIMEOUT), "the agent connection was kept")
            with requests.Session() as s:
                s.headers.update(sk.auth())
                agent.next(Raw("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", keep=True))
                r = s.get(sk.api_url + "/ap/v1/agent/tasks", timeout=TIMEOUT)
                self.assertEqual((r.status_code, r.text), (200, "{}"))

    def test_agent_that_closes_right_after_answering(self):
        """The keep-alive race through the gateway: the agent answers, then closes the connection
        (pipelined GETs make the next request go out before sidekey has seen the close). A GET is
        sent again, once, on a fresh connection; so is one that got a 408 idle-close notice."""
        def answer_then_close(req, w):
            Reply(200, b'{"path":"%s"}' % req.path.encode(), content_type="application/json")(req, w)
            return False

        def answer_then_408(req, w):
            Reply(200, b'{"path":"%s"}' % req.path.encode(), content_type="application/json")(req, w)
            w.send(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            return False

        agent = Upstream(Reply(200, b"{}", content_type="application/json")).start()
        self.addCleanup(agent.stop)
        with gateway_sidekey(agent.url) as sk:
            u = urllib.parse.urlsplit(sk.api_url)
            with RawClient("%s:%d" % (u.hostname, u.port), timeout=TIMEOUT) as c:
                for i in range(10):
                    action = answer_then_close if i % 2 else answer_then_408
                    agent.next(action, action)
                    paths = ["/ap/v1/agent/tasks/t%d-%s" % (i, part) for part in ("a", "b")]
                    c.send("".join("GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n" % (p, sk.token)
                                   for p in paths))
                    for p in paths:
                        r = c.read_response()
                        self.assertEqual(r.status, 200, r.raw[:300])
                        self.assertEqual(json.loads(r.body)["path"], p)

    # -- agent down -----------------------------------------------------------------------------
    def test_agent_down_gives_502(self):
        with gateway_sidekey("http://127.0.0.1:%d" % free_port()) as sk, requests.Session() as s:
            s.headers.update(sk.auth())
            self.assert_message(s.get(sk.api_url + "/ap/v1/agent/tasks", timeout=TIMEOUT), 502)
            self.assert_message(s.post(sk.api_url + "/ap/v1/agent/tasks", json={"input": "x"}, timeout=TIMEOUT), 502)
            task_secrets = sk.api_url + "/ap/v1/agent/tasks/%s/secrets" % uuid.uuid4()
            self.assert_message(s.get(task_secrets, timeout=TIMEOUT), 502)
            # Agent-scoped secrets do not need the agent.
            r = s.get(sk.api_url + "/ap/v1/agent/secrets", timeout=TIMEOUT)
            self.assertEqual(r.status_code, 200, r.text)

    def test_agent_that_goes_away_gives_502(self):
        agent = AgentProcess()
        self.addCleanup(agent.cleanup)
        with gateway_sidekey(agent.url) as sk, requests.Session() as s:
            s.headers.update(sk.auth())
            r = s.get(sk.api_url + "/ap/v1/agent/tasks", timeout=TIMEOUT)  # leaves a pooled connection
            self.assertEqual(r.status_code, 200, r.text)
            agent.stop()
            for _ in range(2):
                self.assert_message(s.get(sk.api_url + "/ap/v1/agent/tasks", timeout=TIMEOUT), 502)
            self.assert_message(s.post(sk.api_url + "/ap/v1/agent/tasks", json={"input": "x"}, timeout=TIMEOUT), 502)

    # -- the Agent Protocol's Postman collection ---------------------------------------------------
    def test_postman_collection_passes_through_sidekey_as_it_does_directly(self):
        if not os.path.exists(COLLECTION):
            self.skipTest("%s not found" % COLLECTION)
        work = tempfile.mkdtemp(prefix="sidekey-newman-")
        self.addCleanup(shutil.rmtree, work, True)
        with open(COLLECTION) as f:
            collection = json.load(f)
        # Left out: "Basic User Experience" / "Cleanup Previous Run Copy", a GET to
        # https://postman-echo.com/delay/0 (an internet host; its prerequest script only unsets
        # collection variables, of which a fresh newman run has none). Every other request goes
        # to {{url}}.
        removed = []
        for folder in collection["item"]:
            kept = []
            for item in folder["item"]:
                url = item["request"]["url"]
                raw = url if isinstance(url, str) else url.get("raw", "")
                (kept if raw.startswith("{{url}}") else removed).append(item)
            folder["item"] = kept
        self.assertEqual([i["name"] for i in removed], ["Cleanup Previous Run Copy"])
        # Every request carries sidekey's token (the agent ignores it): one collection for both runs.
        collection["auth"] = {"type": "bearer", "bearer": [{"key": "token", "value": "{{token}}", "type": "string"}]}
        path = os.path.join(work, "collection.json")
        with open(path, "w") as f:
            json.dump(collection, f)
        with open(os.path.join(work, "test_output.txt"), "w") as f:  # the "Upload Artifact" file
            f.write("Washington\n")

        def newman(url, name):
            report = os.path.join(work, name + ".json")
            p = subprocess.run([NEWMAN, "run", path, "--env-var", "url=" + url, "--env-var", "token=" + self.sk.token,
                                "--working-dir", work, "-r", "json", "--reporter-json-export", report,
                                "--timeout-request", "20000", "--suppress-exit-code", "--disable-unicode",
                                "--color", "off"], capture_output=True, text=True, timeout=120, cwd=work)
            self.assertTrue(os.path.exists(report), "newman failed: %s\n%s" % (p.stdout, p.stderr))
            with open(report) as f:
                return json.load(f)["run"]

        def summary(run):
            stats = {k: (run["stats"][k]["total"], run["stats"][k]["failed"])
                     for k in ("requests", "assertions", "testScripts", "prerequestScripts")}
            executions = [(e["item"]["name"], e["request"]["method"], e.get("response", {}).get("code"),
                           [(a["assertion"], bool(a.get("error"))) for a in e.get("assertions", [])])
                          for e in run["executions"]]
            failures = [(f["source"].get("name"), f["error"].get("message")) for f in run["failures"]]
            return stats, executions, failures

        direct = summary(newman(self.agent.url, "direct"))
        self.agent.clear_seen()
        gateway = summary(newman(self.sk.api_url, "gateway"))
        seen = self.agent.requests_seen()

        print("\nnewman direct:  %s failures=%d" % (direct[0], len(direct[2])))
        print("newman gateway: %s failures=%d" % (gateway[0], len(gateway[2])))
        self.assertEqual(direct[2], [], "the collection fails against the agent itself")
        self.assertEqual(direct[0]["requests"], (12, 0))
        self.assertGreater(direct[0]["assertions"][0], 20)
        self.assertEqual(gateway[0], direct[0])
        self.assertEqual(gateway[1], direct[1])
        self.assertEqual(gateway[2], direct[2])
        # The agent saw each of the gateway run's requests, and never sidekey's token.
        self.assertEqual(len(seen), 12)
        self.assertNotIn(self.sk.token, json.dumps(seen))


class GatewayPoolTest(unittest.TestCase):
    """The gateway's connections to the agent are dialed without the egress guard (the operator
    named agent.upstream); a proxied request to the same address must not take one from the
    worker's pool and so pass the guard."""

    def test_a_proxied_request_does_not_take_the_gateways_connection(self):
        agent = Upstream(Reply(200, b"{}")).start()
        self.addCleanup(agent.stop)
        # One worker: the api listener's request and the proxied one share its pool. Loopback
        # is not in egress.allow_private.
        sk = Sidekey(config={"agent": {"upstream": agent.url}, "workers": 1}, policy="version: 1\ndefault: allow\n")
        with sk:
            r = requests.get(sk.api_url + "/ap/v1/agent/tasks", headers=sk.auth(), timeout=TIMEOUT)
            self.assertEqual((r.status_code, r.text), (200, "{}"))
            self.assertEqual(agent.connections, 1)
            r = requests.get(agent.url + "/through-the-proxy", proxies={"http": sk.proxy_url}, timeout=TIMEOUT)
            self.assertEqual(r.status_code, 403, r.text)
            self.assertEqual(r.json()["error"]["code"], "egress_blocked")
            self.assertEqual([q.path for q in agent.requests], ["/ap/v1/agent/tasks"])
            # The gateway's own connection is still reused by the gateway.
            r = requests.get(sk.api_url + "/ap/v1/agent/tasks", headers=sk.auth(), timeout=TIMEOUT)
            self.assertEqual(r.status_code, 200)
            self.assertEqual(agent.connections, 1)


if __name__ == "__main__":
    unittest.main()
