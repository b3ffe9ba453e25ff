"""The deployment files in deploy/: Kubernetes manifests, the container image recipe, the systemd unit.

Kubernetes (deploy/kubernetes):
- every kustomization renders with `kubectl kustomize` (offline), and every component is rendered
  through an overlay; the test is SKIPPED, saying so, when kubectl is not installed (it is not in
  Debian 12's archive; the machine images here ship it);
- every rendered object validates against the Kubernetes schemas (the npm package
  kubernetes-models, installed into tests/node_modules by scripts/install-test-deps.sh: types,
  formats, enums, required fields) and has no field the schema does not know (a strict walk over
  the same package's type declarations, since the schemas themselves allow unknown fields);
- the pods: sidekey is a native sidecar (init container, restartPolicy Always) with a startupProbe
  on /readyz of the admin port, readiness and liveness probes, the hardened security context, the
  resources; the agent container gets exactly the proxy and trust variables `sidekey exec` sets
  (read from cli/child_env.cpp), and its trust files are in the volume sidekey writes data_dir to;
- sidekey itself starts with the rendered configuration and policy (paths moved into a temporary
  folder) and becomes ready, and refuses to start with the placeholder store key.

systemd (deploy/systemd): `systemd-analyze verify` on a copy of the unit whose ExecStart is the
built binary reports nothing, `systemd-analyze security --offline` rates it well, the hardening
directives are there, every system call sidekey makes (strace, where installed) is allowed by the
unit's SystemCallFilter, and sidekey starts with the example configuration.

Docker (deploy/docker): no container engine runs here, so the image is not built by this test. It
checks the Dockerfile's structure, lints it (dockerfile-utils from tests/node_modules), checks that
the runtime stage installs a package for every shared library the built binary needs (ldd, dpkg),
and that sidekey starts with the image's default configuration.

Env: SIDEKEY_BIN (the binary), SIDEKEY_SOURCE (repo root), KUBECTL (optional: a kubectl to use).
"""
import base64
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

import yaml

SOURCE_DIR = os.environ.get("SIDEKEY_SOURCE") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEPLOY = os.path.join(SOURCE_DIR, "deploy")
K8S = os.path.join(DEPLOY, "kubernetes")
DOCKERFILE = os.path.join(DEPLOY, "docker", "Dockerfile")
UNIT = os.path.join(DEPLOY, "systemd", "sidekey.service")
TESTS_DIR = os.path.join(SOURCE_DIR, "tests")
NODE_MODULES = os.path.join(TESTS_DIR, "node_modules")
CHILD_ENV_CPP = os.path.join(SOURCE_DIR, "cli", "child_env.cpp")

IMAGE = "ghcr.io/sidekey/sidekey"
SIDEKEY_UID = 10001
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")
# Packages a debian:12-slim image already has; sanitizer runtimes belong to test builds only.
BASE_IMAGE_PACKAGES = {"libc6", "libstdc++6", "libgcc-s1"}
SANITIZER_LIB = re.compile(r"^lib(asan|ubsan|lsan|tsan)\.so")


def sidekey_bin():
    path = os.environ.get("SIDEKEY_BIN")
    if path and os.path.isfile(path):
        return os.path.abspath(path)
    for build in ("release", "asan", "debug"):
        cand = os.path.join(SOURCE_DIR, "build", build, "sidekey")
        if os.path.isfile(cand):
            return cand
    raise unittest.SkipTest("no sidekey binary: set SIDEKEY_BIN or run `make build`")


def load_yaml_file(path):
    with open(path) as f:
        return yaml.safe_load(f)


def read(path):
    with open(path) as f:
        return f.read()


# --------------------------------------------------------------------------------------------
# Running sidekey with a deploy/ configuration moved into a temporary folder


class ServeProcess:
    """`sidekey serve --config F` with listeners on free loopback ports; stops on exit."""

    def __init__(self, config_path, env=None):
        self.config_path = config_path
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SIDEKEY_")}
        self.env.update(env or {})
        self.proc = None
        self.out = []
        self.err = []
        self.listening = None

    def __enter__(self):
        self.proc = subprocess.Popen(
            [sidekey_bin(), "serve", "--config", self.config_path, "--listen-proxy", "127.0.0.1:0",
             "--listen-api", "127.0.0.1:0", "--listen-admin", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env)
        seen = threading.Event()

        def pump(stream, sink, watch):
            for line in stream:
                sink.append(line)
                if watch and '"listening"' in line and self.listening is None:
                    try:
                        self.listening = json.loads(line)
                    except ValueError:
                        pass
                    seen.set()
            seen.set()

        self.threads = [threading.Thread(target=pump, args=(self.proc.stdout, self.out, True), daemon=True),
                        threading.Thread(target=pump, args=(self.proc.stderr, self.err, False), daemon=True)]
        for t in self.threads:
            t.start()
        seen.wait(30)
        return self

    def wait_ready(self, timeout=30):
        if not self.listening:
            raise AssertionError("sidekey did not start: %s" % self.logs())
        deadline = time.monotonic() + timeout
        url = "http://%s/readyz" % self.listening["admin"]
        last = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError) as e:
                last = e
            time.sleep(0.1)
        raise AssertionError("sidekey not ready (%s): %s" % (last, self.logs()))

    def logs(self):
        return "".join(self.out[-20:]) + "".join(self.err[-20:])

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for t in self.threads:
            t.join(10)
        self.proc.stdout.close()
        self.proc.stderr.close()


def run_exit(config_path, env, timeout=30):
    """Runs serve expecting it to exit by itself; returns (code, stderr)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("SIDEKEY_")}
    full.update(env)
    p = subprocess.run([sidekey_bin(), "serve", "--config", config_path, "--listen-proxy", "127.0.0.1:0",
                        "--listen-api", "127.0.0.1:0", "--listen-admin", "127.0.0.1:0"],
                       capture_output=True, text=True, env=full, timeout=timeout)
    return p.returncode, p.stderr


def fetch(url_or_request, opener=None, timeout=10):
    with (opener.open if opener else urllib.request.urlopen)(url_or_request, timeout=timeout) as r:
        return r.read()


def random_store_key():
    return base64.b64encode(os.urandom(32)).decode()


# --------------------------------------------------------------------------------------------
# Kubernetes schema validation (node + kubernetes-models)

VALIDATOR_JS = r"""
'use strict';
// Validates Kubernetes objects (JSON array on stdin) with kubernetes-models: the model's own
// validate() (types, formats, enums, required), then a strict walk over the package's type
// declarations (.d.ts) that reports fields the schema does not know (its JSON schemas allow them).
const fs = require('fs');
const path = require('path');

const objects = JSON.parse(fs.readFileSync(0, 'utf8'));
const interfaces = new Map();   // .d.ts path -> {props, imports}

function dtsFor(spec, fromDir) {
  const js = require.resolve(spec, { paths: [fromDir] });
  return js.replace(/\.(c|m)?js$/, '.d.ts');
}

function parseDts(file) {
  if (interfaces.has(file)) return interfaces.get(file);
  const text = fs.readFileSync(file, 'utf8');
  const imports = {};
  for (const m of text.matchAll(/^import \{ ([^}]+) \} from "([^"]+)";$/gm)) {
    for (const name of m[1].split(',').map((s) => s.trim())) imports[name] = m[2];
  }
  let props = null;
  const start = text.search(/^export interface I\w+( extends [\w, ]+)? \{$/m);
  if (start >= 0) {
    props = {};
    const lines = text.slice(start).split('\n');
    for (let i = 1; i < lines.length && lines[i] !== '}'; i++) {
      const m = /^    "([^"]+)"\??: (.*)$/.exec(lines[i]);
      if (!m) continue;
      let type = m[2];
      if (type === '{') {   // a map: { [key: string]: T; }
        const v = /^        \[key: string\]: (.*);$/.exec(lines[i + 1] || '');
        type = v ? { map: v[1] } : 'scalar';
      }
      props[m[1]] = type;
    }
  }
  const info = { props, imports, dir: path.dirname(file) };
  interfaces.set(file, info);
  return info;
}

function typeFile(info, typeName) {
  const spec = info.imports[typeName];
  if (!spec) return null;
  return dtsFor(spec, info.dir);
}

function walk(value, file, where, errors) {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return;
  const info = parseDts(file);
  if (!info.props) return;   // a type alias (IntOrString, Quantity, ...): nothing to walk
  for (const [key, child] of Object.entries(value)) {
    const type = info.props[key];
    const here = where + '.' + key;
    if (type === undefined) {
      errors.push(here + ': unknown field');
      continue;
    }
    let t = typeof type === 'object' ? type.map : type;
    const isMap = typeof type === 'object';
    let isArray = false;
    const arr = /^Array<(\w+)>;$/.exec(t) || /^Array<(\w+)>$/.exec(t);
    if (arr) { isArray = true; t = arr[1]; }
    t = t.replace(/;$/, '');
    if (!/^I\w+$/.test(t)) continue;   // scalars, unions of literals
    const sub = typeFile(info, t);
    if (!sub) continue;
    if (isMap) {
      for (const [k, v] of Object.entries(child || {})) walk(v, sub, here + '.' + k, errors);
    } else if (isArray) {
      (child || []).forEach((v, i) => walk(v, sub, here + '[' + i + ']', errors));
    } else {
      walk(child, sub, here, errors);
    }
  }
}

const results = [];
for (const obj of objects) {
  const errors = [];
  const [group, version] = obj.apiVersion.includes('/') ? obj.apiVersion.split('/') : ['', obj.apiVersion];
  const spec = 'kubernetes-models/' + (group ? group + '/' : '') + version + '/' + obj.kind;
  let Model;
  try {
    const mod = require(spec);
    Model = mod[obj.kind];
  } catch (e) {
    errors.push('no schema for ' + obj.apiVersion + ' ' + obj.kind + ' (' + e.message.split('\n')[0] + ')');
  }
  if (Model) {
    try {
      new Model(obj).validate();
    } catch (e) {
      errors.push(e.message);
    }
    walk(obj, dtsFor(spec, process.cwd()), obj.kind, errors);
  }
  results.push({ kind: obj.kind, name: (obj.metadata || {}).name, errors });
}
process.stdout.write(JSON.stringify(results));
"""


def validate_objects(objects):
    if not os.path.isdir(os.path.join(NODE_MODULES, "kubernetes-models")):
        raise AssertionError("tests/node_modules/kubernetes-models is missing: run scripts/install-test-deps.sh")
    node = shutil.which("node")
    if not node:
        raise AssertionError("node is missing: run scripts/install-deps.sh")
    with tempfile.NamedTemporaryFile("w", suffix=".js", dir=TESTS_DIR, prefix=".k8s-validate-", delete=False) as f:
        f.write(VALIDATOR_JS)
        script = f.name
    try:
        p = subprocess.run([node, script], input=json.dumps(objects), capture_output=True, text=True,
                           cwd=TESTS_DIR, timeout=120)
    finally:
        os.unlink(script)
    if p.returncode != 0:
        raise AssertionError("validator failed: %s" % p.stderr[-2000:])
    return json.loads(p.stdout)


# --------------------------------------------------------------------------------------------
# Helpers on rendered pods


def pod_spec(workload):
    return workload["spec"]["template"]["spec"]


def container(spec, name, init=False):
    for c in spec.get("initContainers" if init else "containers", []):
        if c["name"] == name:
            return c
    raise AssertionError("no %s container %r" % ("init" if init else "", name))


def port_number(c, port):
    if isinstance(port, int):
        return port
    for p in c.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    raise AssertionError("container %s has no port named %s" % (c["name"], port))


def mount_for(c, spec, volume_name):
    for m in c.get("volumeMounts", []):
        if m["name"] == volume_name:
            return m
    return None


def volume(spec, name):
    for v in spec.get("volumes", []):
        if v["name"] == name:
            return v
    raise AssertionError("no volume %r" % name)


def volume_at(c, spec, path):
    """The (mount, volume) under which `path` lies in container c."""
    best = None
    for m in c.get("volumeMounts", []):
        mp = m["mountPath"].rstrip("/")
        if path == mp or path.startswith(mp + "/"):
            if best is None or len(mp) > len(best["mountPath"].rstrip("/")):
                best = m
    if best is None:
        return None, None
    return best, volume(spec, best["name"])


def child_env_contract():
    """The variables `sidekey exec` sets, from cli/child_env.cpp: {NAME: kind}, and NO_PROXY."""
    src = read(CHILD_ENV_CPP)
    body = src[src.index("proxy_variables("):]
    body = body[:body.index("return v;")]
    pairs = re.findall(r'\{"([A-Za-z_]+)",\s*([^}]+?)\}', body)
    kinds = {}
    for name, expr in pairs:
        expr = expr.strip()
        if expr == "proxy":
            kinds[name] = "proxy"
        elif expr == "no_proxy":
            kinds[name] = "no_proxy"
        elif expr == "in.trust_bundle":
            kinds[name] = "trust_bundle"
        elif expr == "in.ca_file":
            kinds[name] = "ca_file"
        else:
            m = re.fullmatch(r'"([^"]*)"', expr)
            if not m:
                raise AssertionError("cannot read %s = %s in child_env.cpp" % (name, expr))
            kinds[name] = ("literal", m.group(1))
    no_proxy = re.search(r'no_proxy\s*=\s*"([^"]*)"', body).group(1)
    return kinds, no_proxy


# --------------------------------------------------------------------------------------------


class KubernetesManifests(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.kubectl = os.environ.get("KUBECTL") or shutil.which("kubectl")
        if not cls.kubectl:
            raise unittest.SkipTest(
                "kubectl is not installed, so the Kubernetes manifests are not rendered or checked "
                "(kubectl is not in Debian 12's archive; install it from the Kubernetes project's "
                "packages, or point KUBECTL at one)")
        cls.tmp = tempfile.mkdtemp(prefix="sidekey-deploy-")
        cls.kustomizations, cls.components = {}, {}
        for root, _dirs, files in os.walk(K8S):
            if "kustomization.yaml" in files:
                doc = load_yaml_file(os.path.join(root, "kustomization.yaml"))
                rel = os.path.relpath(root, K8S)
                (cls.components if doc.get("kind") == "Component" else cls.kustomizations)[rel] = doc
        # Each kustomization as it is, then each overlay with every component it does not use yet.
        cls.renders = {}
        for rel in sorted(cls.kustomizations):
            cls.renders[rel] = cls.render(os.path.join(K8S, rel))
        cls.component_renders = {}
        for comp in sorted(cls.components):
            for rel in sorted(cls.kustomizations):
                if not rel.startswith("overlays" + os.sep):
                    continue
                used = [os.path.normpath(os.path.join(rel, c)) for c in cls.kustomizations[rel].get("components", [])]
                if comp in used:
                    continue
                d = tempfile.mkdtemp(dir=cls.tmp)
                with open(os.path.join(d, "kustomization.yaml"), "w") as f:
                    yaml.safe_dump({
                        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                        "resources": [os.path.relpath(os.path.join(K8S, rel), d)],
                        "components": [os.path.relpath(os.path.join(K8S, comp), d)],
                    }, f)
                cls.component_renders["%s+%s" % (rel, comp)] = cls.render(d)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def render(cls, path):
        p = subprocess.run([cls.kubectl, "kustomize", path], capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise AssertionError("kubectl kustomize %s failed:\n%s" % (path, p.stderr))
        return [d for d in yaml.safe_load_all(p.stdout) if d]

    def all_renders(self):
        return {**self.renders, **self.component_renders}

    def workloads(self):
        """(render name, workload) for every workload with the sidecar, in every rendering."""
        out = []
        for name, docs in self.all_renders().items():
            for d in docs:
                if d["kind"] in WORKLOAD_KINDS:
                    out.append((name, docs, d))
        return out

    @staticmethod
    def find(docs, kind, prefix):
        """The object of `kind` whose name is `prefix` or `prefix-<hash>` (generated)."""
        for d in docs:
            n = d["metadata"]["name"]
            if d["kind"] == kind and (n == prefix or re.fullmatch(re.escape(prefix) + r"-[a-z0-9]{10}", n)):
                return d
        return None

    def sidekey_config(self, docs, spec):
        sk = container(spec, "sidekey", init=True)
        cfg_path = sk["args"][sk["args"].index("--config") + 1]
        mount, vol = volume_at(sk, spec, cfg_path)
        self.assertIsNotNone(mount, "the --config file is on no volume")
        key = os.path.relpath(cfg_path, mount["mountPath"])
        sources = vol["projected"]["sources"] if "projected" in vol else [{"configMap": vol["configMap"]}]
        files = {}
        for s in sources:
            cm = s.get("configMap")
            if not cm:
                continue
            obj = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == cm["name"])
            for item in cm.get("items") or [{"key": k, "path": k} for k in obj["data"]]:
                files[item["path"]] = obj["data"][item["key"]]
        self.assertIn(key, files, "the config file %s is not in the mounted ConfigMaps" % cfg_path)
        return cfg_path, yaml.safe_load(files[key]), files, mount["mountPath"]

    # -- rendering and schemas ----------------------------------------------------------------

    def test_every_kustomization_and_component_renders(self):
        self.assertIn("base", self.kustomizations)
        self.assertIn(os.path.join("overlays", "job"), self.kustomizations)
        self.assertIn(os.path.join("overlays", "deployment"), self.kustomizations)
        for rel, docs in self.renders.items():
            self.assertTrue(docs, "%s rendered nothing" % rel)
        exercised = set()
        for rel, doc in self.kustomizations.items():
            exercised |= {os.path.normpath(os.path.join(rel, c)) for c in doc.get("components", [])}
        exercised |= {name.split("+", 1)[1] for name in self.component_renders}
        self.assertEqual(set(self.components), exercised & set(self.components))
        kinds = {(d["kind"]) for docs in self.renders.values() for d in docs}
        for kind in ("Job", "Deployment", "ConfigMap", "Secret", "ServiceAccount", "NetworkPolicy"):
            self.assertIn(kind, kinds)

    def test_objects_validate_against_kubernetes_schemas(self):
        seen, objects = set(), []
        for docs in self.all_renders().values():
            for d in docs:
                key = json.dumps(d, sort_keys=True)
                if key not in seen:
                    seen.add(key)
                    objects.append(d)
        results = validate_objects(objects)
        self.assertEqual(len(results), len(objects))
        problems = ["%s/%s: %s" % (r["kind"], r["name"], e) for r in results for e in r["errors"]]
        self.assertEqual([], problems)

    def test_validator_rejects_broken_objects(self):
        """The schema check is not vacuous: a wrong type, a bad quantity and an unknown field fail."""
        job = next(d for _, _, d in self.workloads() if d["kind"] == "Job")
        bad_type = json.loads(json.dumps(job))
        container(pod_spec(bad_type), "sidekey", init=True)["ports"][0]["containerPort"] = "3128"
        bad_quantity = json.loads(json.dumps(job))
        container(pod_spec(bad_quantity), "sidekey", init=True)["resources"]["limits"]["memory"] = "lots"
        unknown = json.loads(json.dumps(job))
        container(pod_spec(unknown), "sidekey", init=True)["startupProbe"]["httpGett"] = {"path": "/readyz"}
        results = validate_objects([bad_type, bad_quantity, unknown])
        self.assertTrue(results[0]["errors"], results[0])
        self.assertTrue(results[1]["errors"], results[1])
        self.assertTrue(any("httpGett: unknown field" in e for e in results[2]["errors"]), results[2])

    # -- the pod ------------------------------------------------------------------------------

    def test_native_sidecar_with_probes(self):
        wls = self.workloads()
        self.assertTrue(wls)
        for name, _docs, wl in wls:
            with self.subTest(render=name, kind=wl["kind"]):
                spec = pod_spec(wl)
                self.assertNotIn("sidekey", [c["name"] for c in spec["containers"]])
                self.assertEqual("sidekey", spec["initContainers"][0]["name"], "sidekey must start first")
                sk = container(spec, "sidekey", init=True)
                self.assertEqual("Always", sk.get("restartPolicy"))
                self.assertEqual(IMAGE + ":0.1.0", sk["image"])
                for probe, path in (("startupProbe", "/readyz"), ("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                    self.assertIn(probe, sk)
                    get = sk[probe]["httpGet"]
                    self.assertEqual(path, get["path"], probe)
                    self.assertEqual(9901, port_number(sk, get["port"]), probe)
                # The agent: a regular container, not started before sidekey's startupProbe.
                self.assertIn("agent", [c["name"] for c in spec["containers"]])
                if wl["kind"] == "Job":
                    self.assertIn(spec["restartPolicy"], ("Never", "OnFailure"))

    def test_image_version_matches_the_project(self):
        version = re.search(r"project\(sidekey VERSION ([0-9.]+)", read(os.path.join(SOURCE_DIR, "CMakeLists.txt"))).group(1)
        for name, _docs, wl in self.workloads():
            self.assertEqual("%s:%s" % (IMAGE, version), container(pod_spec(wl), "sidekey", init=True)["image"], name)

    def test_security_contexts(self):
        for name, docs, wl in self.workloads():
            with self.subTest(render=name, kind=wl["kind"]):
                spec = pod_spec(wl)
                self.assertIs(False, spec.get("automountServiceAccountToken"))
                self.assertIs(True, spec["securityContext"].get("runAsNonRoot"))
                self.assertEqual("RuntimeDefault", spec["securityContext"]["seccompProfile"]["type"])
                sa = self.find(docs, "ServiceAccount", spec["serviceAccountName"])
                self.assertIsNotNone(sa, "the ServiceAccount is not in the rendering")
                self.assertIs(False, sa.get("automountServiceAccountToken"))
                uids = {}
                for c in spec.get("initContainers", []) + spec["containers"]:
                    sc = c.get("securityContext") or {}
                    self.assertIs(True, sc.get("runAsNonRoot"), c["name"])
                    self.assertIsInstance(sc.get("runAsUser"), int, c["name"])
                    self.assertGreater(sc["runAsUser"], 0, c["name"])
                    self.assertIs(True, sc.get("readOnlyRootFilesystem"), c["name"])
                    self.assertIs(False, sc.get("allowPrivilegeEscalation"), c["name"])
                    self.assertEqual(["ALL"], sc.get("capabilities", {}).get("drop"), c["name"])
                    self.assertFalse(sc.get("capabilities", {}).get("add"), c["name"])
                    self.assertNotEqual(True, sc.get("privileged"), c["name"])
                    self.assertEqual("RuntimeDefault", sc.get("seccompProfile", {}).get("type"), c["name"])
                    uids[c["name"]] = sc["runAsUser"]
                self.assertEqual(SIDEKEY_UID, uids["sidekey"], "the image's sidekey user")
                # The agent reads the shared data folder: under another UID it cannot read the
                # 0600 files (store, CA key) sidekey keeps there.
                self.assertNotEqual(uids["sidekey"], uids["agent"])

    def test_sidecar_resources(self):
        for name, _docs, wl in self.workloads():
            with self.subTest(render=name):
                res = container(pod_spec(wl), "sidekey", init=True)["resources"]
                self.assertEqual({"cpu": "50m", "memory": "32Mi"}, res["requests"])
                self.assertEqual({"cpu": "1", "memory": "256Mi"}, res["limits"])
                for c in pod_spec(wl)["containers"]:
                    self.assertIn("limits", c.get("resources", {}), c["name"])

    def test_agent_gets_the_exec_variables(self):
        kinds, no_proxy = child_env_contract()
        self.assertGreaterEqual(len(kinds), 14, kinds)
        for name, docs, wl in self.workloads():
            with self.subTest(render=name, kind=wl["kind"]):
                spec = pod_spec(wl)
                _path, cfg, _files, _dir = self.sidekey_config(docs, spec)
                agent = container(spec, "agent")
                env = {e["name"]: e for e in agent.get("env", [])}
                self.assertFalse([n for n in env if n.startswith("SIDEKEY_")],
                                 "sidekey exec strips SIDEKEY_* from the agent; so does the pod")
                sk = container(spec, "sidekey", init=True)
                data_mount, data_vol = volume_at(sk, spec, cfg["data_dir"])
                self.assertIsNotNone(data_mount, "data_dir is not on a volume")
                self.assertIn("emptyDir", data_vol)
                agent_mount = mount_for(agent, spec, data_vol["name"])
                self.assertIsNotNone(agent_mount, "the agent does not mount sidekey's data folder")
                self.assertIs(True, agent_mount.get("readOnly"))
                agent_dir = agent_mount["mountPath"].rstrip("/") + "/" + os.path.relpath(cfg["data_dir"], data_mount["mountPath"])
                agent_dir = os.path.normpath(agent_dir)
                bundle = agent_dir + "/trust-bundle.pem"
                proxy = "http://" + cfg["listen"]["proxy"]
                for var, kind in kinds.items():
                    self.assertIn(var, env, "the agent lacks %s" % var)
                    value = env[var].get("value")
                    if kind == "proxy":
                        self.assertEqual(proxy, value, var)
                    elif kind == "no_proxy":
                        self.assertEqual(no_proxy, value, var)
                    elif kind == "trust_bundle":
                        self.assertEqual(bundle, value, var)
                    elif kind == "ca_file":
                        # The CA alone (ca.pem, generated CA only) or the bundle (either CA mode).
                        self.assertIn(value, (bundle, agent_dir + "/ca.pem"), var)
                    else:
                        self.assertEqual(kind[1], value, var)
                self.assertTrue(cfg["listen"]["proxy"].startswith("127.0.0.1:"), "the proxy stays on loopback")

    def test_config_secrets_and_mounts_agree(self):
        for name, docs, wl in self.workloads():
            with self.subTest(render=name, kind=wl["kind"]):
                spec = pod_spec(wl)
                sk = container(spec, "sidekey", init=True)
                cfg_path, cfg, files, cfg_dir = self.sidekey_config(docs, spec)
                self.assertEqual("/etc/sidekey/sidekey.yaml", cfg_path, "the image's default --config")
                policy = os.path.normpath(os.path.join(os.path.dirname(cfg_path), cfg["policy"]))
                self.assertIn(os.path.relpath(policy, cfg_dir), files, "the policy is not mounted beside the config")
                self.assertNotIn("subPath", json.dumps(sk.get("volumeMounts")), "subPath mounts miss ConfigMap updates")
                self.assertEqual(9901, int(cfg["listen"]["admin"].rsplit(":", 1)[1]))
                self.assertTrue(cfg["listen"]["admin"].startswith(("0.0.0.0:", "[::]:")), "probes reach the pod IP")
                # Store key and API token from a Secret of the rendering.
                env = {e["name"]: e for e in sk["env"]}
                for var in ("SIDEKEY_STORE_KEY", "SIDEKEY_API_TOKEN"):
                    ref = env[var]["valueFrom"]["secretKeyRef"]
                    secret = next((d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == ref["name"]), None)
                    self.assertIsNotNone(secret, "%s: Secret %s not rendered" % (var, ref["name"]))
                    self.assertIn(ref["key"], secret["data"])
                # Secret sources: the dir source on a Secret volume.
                dirs = [s["dir"]["path"] for s in cfg.get("sources", []) if "dir" in s]
                self.assertEqual(["/var/run/secrets/sidekey"], dirs)
                mount, vol = volume_at(sk, spec, dirs[0])
                self.assertIsNotNone(mount)
                self.assertEqual(dirs[0], mount["mountPath"])
                self.assertIn("secret", vol)
                self.assertIsNotNone(next((d for d in docs if d["kind"] == "Secret"
                                           and d["metadata"]["name"] == vol["secret"]["secretName"]), None))
                # The CA: from a mounted Secret, or generated (components/generated-ca).
                tls = cfg.get("tls") or {}
                if "generated-ca" in name:
                    self.assertFalse(tls.get("ca_cert") or tls.get("ca_key"))
                    self.assertNotIn("sidekey-ca", [v["name"] for v in spec["volumes"]])
                else:
                    for key in ("ca_cert", "ca_key"):
                        mount, vol = volume_at(sk, spec, tls[key])
                        self.assertIsNotNone(mount, key)
                        self.assertIn("secret", vol, key)
                        items = {i["path"] for i in vol["secret"].get("items", [])}
                        self.assertIn(os.path.relpath(tls[key], mount["mountPath"]), items)
                    self.assertIsNone(mount_for(container(spec, "agent"), spec, "sidekey-ca"),
                                      "the agent must not mount the CA Secret")
                # Nothing sidekey mounts from Secrets reaches the agent.
                secret_vols = {v["name"] for v in spec["volumes"] if "secret" in v}
                agent = container(spec, "agent")
                self.assertFalse([m for m in agent.get("volumeMounts", []) if m["name"] in secret_vols])

    def test_network_policy(self):
        for name, docs, wl in self.workloads():
            with self.subTest(render=name):
                np = self.find(docs, "NetworkPolicy", "sidekey-agent")
                self.assertIsNotNone(np)
                labels = wl["spec"]["template"]["metadata"]["labels"]
                for k, v in np["spec"]["podSelector"]["matchLabels"].items():
                    self.assertEqual(v, labels.get(k), "the NetworkPolicy does not select the pod")
                self.assertIn("Egress", np["spec"]["policyTypes"])
                ports = {(p.get("protocol", "TCP"), p["port"]) for rule in np["spec"]["egress"] for p in rule["ports"]}
                self.assertEqual({("UDP", 53), ("TCP", 53), ("TCP", 443)}, ports)
                for rule in np["spec"]["egress"]:
                    for peer in rule.get("to", []):
                        block = peer.get("ipBlock")
                        if block and block["cidr"] == "0.0.0.0/0":
                            self.assertIn("169.254.0.0/16", block.get("except", []), "cloud metadata stays blocked")

    def test_generated_ca_config_differs_only_in_tls(self):
        base = load_yaml_file(os.path.join(K8S, "base", "sidekey.yaml"))
        gen = load_yaml_file(os.path.join(K8S, "components", "generated-ca", "sidekey.yaml"))
        self.assertIn("ca_cert", base["tls"])
        base.pop("tls")
        gen.pop("tls", None)
        self.assertEqual(base, gen)

    # -- sidekey with the rendered files --------------------------------------------------------

    def rendered_setup(self, render_name):
        """Writes the rendered config and policy into a temp folder, paths moved there."""
        docs = self.all_renders()[render_name]
        wl = next(d for d in docs if d["kind"] in WORKLOAD_KINDS)
        spec = pod_spec(wl)
        _path, cfg, files, _dir = self.sidekey_config(docs, spec)
        d = tempfile.mkdtemp(dir=self.tmp)
        os.makedirs(os.path.join(d, "secrets"))
        with open(os.path.join(d, "secrets", "openai"), "w") as f:
            f.write("sk-test-value\n")
        for fname, text in files.items():
            if fname != "sidekey.yaml":
                with open(os.path.join(d, fname), "w") as f:
                    f.write(text)
        cfg["data_dir"] = os.path.join(d, "data")
        cfg["sources"] = [{"dir": {"path": os.path.join(d, "secrets")}} if "dir" in s else s for s in cfg.get("sources", [])]
        if cfg.get("tls", {}).get("ca_cert"):
            subprocess.run([sidekey_bin(), "ca", "init", "--data-dir", os.path.join(d, "ca")], check=True,
                           capture_output=True, env={k: v for k, v in os.environ.items() if not k.startswith("SIDEKEY_")})
            cfg["tls"]["ca_cert"] = os.path.join(d, "ca", "ca.pem")
            cfg["tls"]["ca_key"] = os.path.join(d, "ca", "ca-key.pem")
        config_path = os.path.join(d, "sidekey.yaml")
        with open(config_path, "w") as f:
            json.dump(cfg, f)
        keys = self.find(docs, "Secret", "sidekey-keys")
        placeholders = {k: base64.b64decode(v).decode() for k, v in keys["data"].items()}
        return config_path, cfg, placeholders

    def test_sidekey_starts_with_the_rendered_configuration(self):
        for render in ("overlays/job", "overlays/job+components/generated-ca"):
            render = render.replace("/", os.sep)
            with self.subTest(render=render):
                config_path, cfg, _ = self.rendered_setup(render)
                env = {"SIDEKEY_STORE_KEY": random_store_key(), "SIDEKEY_API_TOKEN": "t" * 40}
                with ServeProcess(config_path, env) as sk:
                    sk.wait_ready()
                    data = cfg["data_dir"]
                    bundle = os.path.join(data, "trust-bundle.pem")
                    self.assertTrue(os.path.isfile(bundle), sk.logs())
                    self.assertEqual(0o644, stat.S_IMODE(os.stat(bundle).st_mode))
                    for f in os.listdir(data):
                        mode = stat.S_IMODE(os.stat(os.path.join(data, f)).st_mode)
                        if f not in ("trust-bundle.pem", "ca.pem"):
                            self.assertEqual(0, mode & 0o077, "%s is readable by others (%o)" % (f, mode))
                    if "generated-ca" in render:
                        self.assertTrue(os.path.isfile(os.path.join(data, "ca-key.pem")))
                    else:
                        self.assertFalse(os.path.exists(os.path.join(data, "ca-key.pem")))
                    ca_file = (cfg.get("tls") or {}).get("ca_cert") or os.path.join(data, "ca.pem")
                    self.assertIn(read(ca_file).strip(), read(bundle))
                    with urllib.request.urlopen("http://%s/metrics" % sk.listening["admin"], timeout=10) as r:
                        metrics = r.read().decode()
                    self.assertRegex(metrics, r"(?m)^sidekey_secrets 1$", "the dir source's secret is loaded")

    def test_placeholder_store_key_is_refused(self):
        config_path, _cfg, placeholders = self.rendered_setup(os.path.join("overlays", "job"))
        self.assertIn("REPLACE", placeholders["store-key"])
        self.assertIn("REPLACE", placeholders["api-token"])
        code, err = run_exit(config_path, {"SIDEKEY_STORE_KEY": placeholders["store-key"],
                                           "SIDEKEY_API_TOKEN": placeholders["api-token"]})
        self.assertNotEqual(0, code)
        self.assertIn("SIDEKEY_STORE_KEY", err)

    def test_policy_passes_policy_check(self):
        p = subprocess.run([sidekey_bin(), "policy", "check", os.path.join(K8S, "base", "policy.yaml")],
                           capture_output=True, text=True)
        self.assertEqual(0, p.returncode, p.stdout + p.stderr)
        self.assertNotIn("warning", (p.stdout + p.stderr).lower())


# --------------------------------------------------------------------------------------------


def unit_file():
    """deploy/systemd/sidekey.service as {section: [(key, value)]} (keys repeat)."""
    sections, current = {}, None
    for line in read(UNIT).splitlines():
        s = line.strip()
        if not s or s.startswith(("#", ";")):
            continue
        if s.startswith("[") and s.endswith("]"):
            current = sections.setdefault(s[1:-1], [])
            continue
        k, v = s.split("=", 1)
        current.append((k.strip(), v.strip()))
    return sections


def syscall_group(name, seen=None):
    seen = set() if seen is None else seen
    out = subprocess.run(["systemd-analyze", "syscall-filter", name], capture_output=True, text=True).stdout
    names = set()
    for line in out.splitlines()[1:]:
        t = line.strip()
        if not t or t.startswith("#"):
            continue
        t = t.split()[0]
        if t.startswith("@"):
            if t not in seen:
                seen.add(t)
                names |= syscall_group(t, seen)
        else:
            names.add(t)
    return names


class SystemdUnit(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not shutil.which("systemd-analyze"):
            raise unittest.SkipTest("systemd-analyze is not installed (Debian package systemd)")
        cls.tmp = tempfile.mkdtemp(prefix="sidekey-unit-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def unit_copy(self):
        """The unit with ExecStart pointing at the built binary (verify needs it to exist)."""
        text = read(UNIT)
        self.assertIn("ExecStart=/usr/local/bin/sidekey ", text)
        path = os.path.join(self.tmp, "sidekey.service")
        with open(path, "w") as f:
            f.write(text.replace("ExecStart=/usr/local/bin/sidekey ", "ExecStart=%s " % sidekey_bin()))
        return path

    def test_verify_reports_nothing(self):
        p = subprocess.run(["systemd-analyze", "verify", self.unit_copy()], capture_output=True, text=True, timeout=120)
        self.assertEqual(0, p.returncode, p.stdout + p.stderr)
        self.assertEqual("", (p.stdout + p.stderr).strip())

    def test_security_exposure_is_low(self):
        p = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--threshold=20", self.unit_copy()],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(0, p.returncode, p.stdout[-3000:] + p.stderr)

    def test_hardening_directives(self):
        svc = dict(unit_file()["Service"])
        all_svc = unit_file()["Service"]
        expected = {
            "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
            "PrivateDevices": "yes", "MemoryDenyWriteExecute": "yes", "LimitCORE": "0",
            "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "CapabilityBoundingSet": "",
            "StateDirectory": "sidekey", "ConfigurationDirectory": "sidekey",
            "ExecReload": "/bin/kill -HUP $MAINPID", "Restart": "on-failure",
        }
        for k, v in expected.items():
            self.assertEqual(v, svc.get(k), k)
        self.assertIn(("SystemCallFilter", "@system-service"), all_svc)
        self.assertTrue(svc.get("DynamicUser") == "yes" or svc.get("User"), "a dedicated user")
        self.assertEqual("/usr/local/bin/sidekey serve --config /etc/sidekey/sidekey.yaml", svc["ExecStart"])
        # The example configuration keeps its state where the unit allows writes.
        cfg = load_yaml_file(os.path.join(DEPLOY, "systemd", "sidekey.yaml"))
        self.assertEqual("/var/lib/sidekey", cfg["data_dir"])
        # The sysusers.d snippet creates the unit's user.
        sysusers = read(os.path.join(DEPLOY, "systemd", "sidekey.sysusers"))
        self.assertRegex(sysusers, r"(?m)^u %s " % re.escape(svc.get("User", "sidekey")))

    def test_every_system_call_is_allowed(self):
        """sidekey under strace (start, API, proxy refusal, SIGHUP, stop) stays in the filter."""
        if not shutil.which("strace"):
            self.skipTest("strace is not installed")
        probe = subprocess.run(["strace", "-f", "-qq", "-o", os.devnull, "true"], capture_output=True, text=True)
        if probe.returncode != 0:
            self.skipTest("strace cannot trace here: %s" % probe.stderr.strip())
        ldd = subprocess.run(["ldd", sidekey_bin()], capture_output=True, text=True).stdout
        if "libasan" in ldd or "libtsan" in ldd:
            self.skipTest("sanitizer builds make system calls of their own")
        allowed = set()
        denied = set()
        for k, v in unit_file()["Service"]:
            if k == "SystemCallFilter":
                target = denied if v.startswith("~") else allowed
                for g in v.lstrip("~").split():
                    target |= syscall_group(g) if g.startswith("@") else {g}
        self.assertTrue(allowed)
        d = tempfile.mkdtemp(dir=self.tmp)
        cfg = load_yaml_file(os.path.join(DEPLOY, "systemd", "sidekey.yaml"))
        cfg["data_dir"] = os.path.join(d, "data")
        shutil.copy(os.path.join(SOURCE_DIR, "config", "policy.yaml"), os.path.join(d, "policy.yaml"))
        with open(os.path.join(d, "sidekey.yaml"), "w") as f:
            json.dump(cfg, f)
        trace = os.path.join(d, "strace.out")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIDEKEY_")}
        env["SIDEKEY_API_TOKEN"] = "t" * 40
        proc = subprocess.Popen(["strace", "-f", "-qq", "-o", trace, sidekey_bin(), "serve", "--config",
                                 os.path.join(d, "sidekey.yaml"), "--listen-proxy", "127.0.0.1:0",
                                 "--listen-api", "127.0.0.1:0", "--listen-admin", "127.0.0.1:0"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        try:
            listening = None
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and listening is None:
                line = proc.stdout.readline()
                if not line:
                    break
                if '"listening"' in line:
                    listening = json.loads(line)
            self.assertIsNotNone(listening, "sidekey did not start under strace")
            deadline = time.monotonic() + 30
            while True:
                try:
                    fetch("http://%s/readyz" % listening["admin"], timeout=5)
                    break
                except (urllib.error.URLError, OSError):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            fetch("http://%s/metrics" % listening["admin"])
            req = urllib.request.Request("http://%s/ap/v1/agent/secrets" % listening["api"],
                                         data=json.dumps({"secret_key": "k", "secret_value": "v",
                                                          "allowed_hosts": ["api.example.com"]}).encode(),
                                         headers={"Authorization": "Bearer " + "t" * 40, "Content-Type": "application/json"})
            fetch(req)
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": "http://" + listening["proxy"]}))
            try:
                fetch("http://denied.example/", opener)
            except urllib.error.HTTPError as e:
                self.assertEqual(403, e.code)
                e.close()
            # The sidekey process is strace's child: signal it, not strace.
            child = int(subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()[0])
            os.kill(child, signal.SIGHUP)
            time.sleep(0.5)
            os.kill(child, signal.SIGTERM)
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        used = set()
        with open(trace) as f:
            for line in f:
                m = re.match(r"^\d+\s+([a-z_0-9]+)\(", line)
                if m:
                    used.add(m.group(1))
        self.assertGreater(len(used), 20)
        used.discard("execve")  # strace's own exec of sidekey, before the filter would apply
        self.assertEqual(set(), used - allowed, "system calls outside SystemCallFilter")
        self.assertEqual(set(), used & denied, "system calls the unit denies")

    def test_agent_environment_file(self):
        """deploy/systemd/agent.env: the variables `sidekey exec` sets, for the example config."""
        kinds, no_proxy = child_env_contract()
        cfg = load_yaml_file(os.path.join(DEPLOY, "systemd", "sidekey.yaml"))
        env = {}
        for line in read(os.path.join(DEPLOY, "systemd", "agent.env")).splitlines():
            if line.strip() and not line.startswith("#"):
                k, v = line.split("=", 1)
                env[k] = v
        bundle = os.path.join(cfg["data_dir"], "trust-bundle.pem")
        expected = {}
        for var, kind in kinds.items():
            expected[var] = {"proxy": "http://" + cfg["listen"]["proxy"], "no_proxy": no_proxy,
                             "trust_bundle": bundle, "ca_file": bundle}.get(kind) if isinstance(kind, str) else kind[1]
        self.assertEqual(expected, env)

    def test_example_configuration_starts(self):
        d = tempfile.mkdtemp(dir=self.tmp)
        cfg = load_yaml_file(os.path.join(DEPLOY, "systemd", "sidekey.yaml"))
        cfg["data_dir"] = os.path.join(d, "data")
        shutil.copy(os.path.join(SOURCE_DIR, "config", "policy.yaml"), os.path.join(d, "policy.yaml"))
        with open(os.path.join(d, "sidekey.yaml"), "w") as f:
            json.dump(cfg, f)
        with ServeProcess(os.path.join(d, "sidekey.yaml")) as sk:
            sk.wait_ready()
            self.assertTrue(os.path.isfile(os.path.join(d, "data", "trust-bundle.pem")))


# --------------------------------------------------------------------------------------------


def dockerfile_instructions():
    """[(INSTRUCTION, arguments)] with continuation lines joined and comments dropped."""
    out, buf = [], ""
    for line in read(DOCKERFILE).splitlines():
        s = line.strip()
        if not buf and (not s or s.startswith("#")):
            continue
        if s.startswith("#"):
            continue
        if s.endswith("\\"):
            buf += s[:-1] + " "
            continue
        buf += s
        instr, _, args = buf.partition(" ")
        out.append((instr.upper(), args.strip()))
        buf = ""
    return out


def stages():
    """[{from, name, instructions}] with ARG defaults substituted into FROM."""
    args, result = {}, []
    for instr, rest in dockerfile_instructions():
        if instr == "ARG" and not result:
            k, _, v = rest.partition("=")
            args[k] = v
        elif instr == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest)
            parts = image.split()
            result.append({"from": parts[0], "name": parts[2] if len(parts) > 2 and parts[1].upper() == "AS" else None,
                           "instructions": []})
        else:
            result[-1]["instructions"].append((instr, rest))
    return result


def apt_packages(run_args):
    m = re.search(r"apt-get install (.*?)(&&|$)", run_args)
    return [w for w in m.group(1).split() if not w.startswith("-")] if m else []


class Dockerfile(unittest.TestCase):
    def test_stages(self):
        st = stages()
        self.assertEqual(2, len(st))
        build, runtime = st
        self.assertEqual("debian:12", build["from"])
        self.assertEqual("debian:12-slim", runtime["from"])
        rt = dict((i, a) for i, a in runtime["instructions"])
        self.assertEqual('["sidekey"]', rt["ENTRYPOINT"])
        self.assertEqual('["serve", "--config", "/etc/sidekey/sidekey.yaml"]', rt["CMD"])
        self.assertEqual({"3128", "8000", "9901"}, set(rt["EXPOSE"].split()))
        user = rt["USER"].split(":")[0]
        self.assertEqual(str(SIDEKEY_UID), user, "a numeric non-root user, the one the pods run as")
        # Files copied from the context exist.
        for instr, a in runtime["instructions"] + build["instructions"]:
            if instr == "COPY" and not a.startswith("--from"):
                src = a.split()[0]
                if src != ".":
                    self.assertTrue(os.path.exists(os.path.join(SOURCE_DIR, src)), src)
        # Build with cmake, Release.
        build_runs = " ".join(a for i, a in build["instructions"] if i == "RUN")
        self.assertIn("-DCMAKE_BUILD_TYPE=Release", build_runs)

    def test_build_packages_come_from_install_deps(self):
        """The build stage installs what scripts/install-deps.sh installs (Boost narrowed to the
        parts of libboost1.81-all-dev the build uses)."""
        script = read(os.path.join(SOURCE_DIR, "scripts", "install-deps.sh"))
        listed = set(re.search(r"APT_PACKAGES=\((.*?)\)", script, re.S).group(1).split())
        boost_parts = {"libboost1.81-dev", "libboost-program-options1.81-dev", "libboost-test1.81-dev"}
        self.assertIn("libboost1.81-all-dev", listed)
        build = stages()[0]
        pkgs = set()
        for i, a in build["instructions"]:
            if i == "RUN":
                pkgs |= set(apt_packages(a))
        self.assertTrue(pkgs)
        self.assertEqual(set(), pkgs - listed - boost_parts)
        for need in ("cmake", "libssl-dev", "libyaml-cpp-dev", "nlohmann-json3-dev"):
            self.assertIn(need, pkgs)

    def test_runtime_packages_cover_the_shared_libraries(self):
        runtime = stages()[1]
        pkgs = set()
        for i, a in runtime["instructions"]:
            if i == "RUN":
                pkgs |= set(apt_packages(a))
        self.assertIn("ca-certificates", pkgs)
        ldd = subprocess.run(["ldd", sidekey_bin()], capture_output=True, text=True, check=True).stdout
        needed = {}
        for line in ldd.splitlines():
            m = re.match(r"\s*(\S+) => (\S+)", line)
            if m and not SANITIZER_LIB.match(m.group(1)):
                real = os.path.realpath(m.group(2))
                owner = subprocess.run(["dpkg", "-S", real], capture_output=True, text=True)
                if owner.returncode != 0:  # merged /usr: dpkg knows one of the two spellings
                    alt = real.replace("/usr/lib/", "/lib/", 1) if real.startswith("/usr/lib/") else "/usr" + real
                    owner = subprocess.run(["dpkg", "-S", alt], capture_output=True, text=True)
                self.assertEqual(0, owner.returncode, "no Debian package owns %s" % real)
                pkg = owner.stdout.split(":")[0].strip()
                needed[m.group(1)] = pkg
        self.assertIn("libssl.so.3", needed)
        missing = {lib: pkg for lib, pkg in needed.items() if pkg not in pkgs | BASE_IMAGE_PACKAGES}
        self.assertEqual({}, missing, "the runtime stage lacks these libraries' packages")
        unused = pkgs - set(needed.values()) - {"ca-certificates"}
        self.assertEqual(set(), unused, "the runtime stage installs packages the binary does not need")

    def test_lint(self):
        lint = os.path.join(NODE_MODULES, ".bin", "dockerfile-utils")
        self.assertTrue(os.path.exists(lint), "tests/node_modules/.bin/dockerfile-utils is missing: run scripts/install-test-deps.sh")
        p = subprocess.run([lint, "lint", DOCKERFILE], capture_output=True, text=True, timeout=60)
        self.assertEqual(0, p.returncode, p.stdout + p.stderr)
        self.assertEqual("", (p.stdout + p.stderr).strip(), "warnings")

    def test_image_default_configuration_starts(self):
        with tempfile.TemporaryDirectory(prefix="sidekey-image-") as d:
            cfg = load_yaml_file(os.path.join(DEPLOY, "docker", "sidekey.yaml"))
            cfg["data_dir"] = os.path.join(d, "data")
            cfg["sources"] = [s if "dir" not in s else {"dir": {"path": os.path.join(d, "secrets")}} for s in cfg["sources"]]
            shutil.copy(os.path.join(SOURCE_DIR, "config", "policy.yaml"), os.path.join(d, "policy.yaml"))
            with open(os.path.join(d, "sidekey.yaml"), "w") as f:
                json.dump(cfg, f)
            with ServeProcess(os.path.join(d, "sidekey.yaml")) as sk:
                sk.wait_ready()
        for key in ("proxy", "api", "admin"):
            self.assertTrue(cfg["listen"][key].startswith("0.0.0.0:"), "published ports need all interfaces")


if __name__ == "__main__":
    unittest.main()
