"""The proxy metrics of SPEC section 12 on the admin listener after real traffic:
sidekey_requests_total{rule,decision,code}, sidekey_injections_total{secret},
sidekey_request_duration_seconds and sidekey_upstream_connect_seconds histograms,
sidekey_policy_reloads_total{result}; never a secret value."""
import unittest

import requests

from harness import wait_for
from upstreams import (RawClient, Reply, Upstream, audit_records, fill, metric_value, metrics_text, parse_metrics,
                       proxy_sidekey)

SECRET = "sk-metrics-PLAINTEXT-7777aaaa"
OTHER = "sk-metrics-OTHER-PLAINTEXT-8888"

POLICY = """version: 1
default: deny
secrets:
  s:
    hosts: ["http://127.0.0.1:@PORT@"]
  other:
    hosts: ["http://127.0.0.1:@PORT@"]
  api_key:
    hosts: ["http://127.0.0.1:@PORT@"]
rules:
  - name: no-admin
    match: { hosts: ["127.0.0.1:@PORT@"], paths: ["/admin/*"] }
    action: deny
  - name: open
    match: { hosts: ["127.0.0.1:@PORT@"], paths: ["/open/*"] }
    action: allow
  - name: local
    match: { hosts: ["127.0.0.1:@PORT@"] }
    inject:
      headers: { Authorization: "Bearer {{secrets.s}}" }
"""


def histogram(text, name):
    """(buckets [(le, count)] in order, sum, count)."""
    buckets, total, count = [], None, None
    for n, labels, v in parse_metrics(text):
        if n == name + "_bucket":
            le = labels["le"]
            buckets.append((float("inf") if le == "+Inf" else float(le), v))
        elif n == name + "_sum":
            total = v
        elif n == name + "_count":
            count = v
    return buckets, total, count


class MetricsTest(unittest.TestCase):
    def test_metrics_after_traffic(self):
        with Upstream(Reply(200, b"fine")) as up, \
                proxy_sidekey(fill(POLICY, PORT=up.port), secrets={"s": SECRET, "other": OTHER}) as sk:
            before = metrics_text(sk)
            self.assertIn("# TYPE sidekey_requests_total counter", before)
            self.assertIn("# TYPE sidekey_injections_total counter", before)
            self.assertIn("# TYPE sidekey_request_duration_seconds histogram", before)
            self.assertIn("# TYPE sidekey_upstream_connect_seconds histogram", before)
            self.assertEqual(metric_value(before, "sidekey_policy_reloads_total", result="error"), 0)
            self.assertEqual(metric_value(before, "sidekey_policy_reloads_total", result="ok"), 0)

            proxies = {"http": sk.proxy_url}
            texts = []
            with requests.Session() as s:
                for i in range(7):
                    r = s.get(up.url + "/v1/%d" % i, proxies=proxies, timeout=15)
                    self.assertEqual(r.status_code, 200)
                for i in range(3):
                    r = s.get(up.url + "/v1/x", headers={"X-Other": "{{secrets.other}}"}, proxies=proxies, timeout=15)
                    self.assertEqual(r.status_code, 200)
                for i in range(2):
                    r = s.get(up.url + "/admin/x", proxies=proxies, timeout=15)
                    self.assertEqual(r.status_code, 403)
                    texts.append(r.text)
                r = s.get(up.url + "/open/x", proxies=proxies, timeout=15)
                self.assertEqual(r.status_code, 200)
                r = s.get("http://198.51.100.1/", proxies=proxies, timeout=15)
                self.assertEqual(r.status_code, 403)
                r = s.get(up.url + "/v1/x", headers={"X-K": "{{secrets.ghost}}"}, proxies=proxies, timeout=15)
                self.assertEqual(r.status_code, 403)
            total = 7 + 3 + 2 + 1 + 1 + 1
            # Metrics are recorded with the audit line, once the response is done.
            self.assertTrue(wait_for(lambda: len(audit_records(sk)) >= total))
            text = metrics_text(sk)
            texts.append(text)

            def requests_total(**labels):
                return metric_value(text, "sidekey_requests_total", **labels)

            self.assertEqual(requests_total(rule="local", decision="inject", code="200"), 10)
            self.assertEqual(requests_total(rule="no-admin", decision="deny", code="403"), 2)
            self.assertEqual(requests_total(rule="open", decision="allow", code="200"), 1)
            self.assertEqual(requests_total(rule="", decision="deny", code="403"), 1)
            self.assertEqual(requests_total(rule="local", code="403"), 1, "the unknown_secret refusal")
            self.assertEqual(requests_total(), total)

            self.assertEqual(metric_value(text, "sidekey_injections_total", secret="s"), 10)
            self.assertEqual(metric_value(text, "sidekey_injections_total", secret="other"), 3)
            self.assertIsNone(metric_value(text, "sidekey_injections_total", secret="ghost"))

            buckets, dsum, dcount = histogram(text, "sidekey_request_duration_seconds")
            self.assertEqual(dcount, total)
            self.assertGreater(dsum, 0)
            self.assertEqual(buckets[-1], (float("inf"), dcount))
            self.assertEqual([b[1] for b in buckets], sorted(b[1] for b in buckets), "cumulative buckets")
            self.assertEqual([b[0] for b in buckets], sorted(b[0] for b in buckets))

            cbuckets, csum, ccount = histogram(text, "sidekey_upstream_connect_seconds")
            self.assertGreaterEqual(ccount, 1)
            self.assertEqual(ccount, up.connections, "one observation per upstream connection dialed")
            self.assertEqual(cbuckets[-1], (float("inf"), ccount))

            for line in text.splitlines():
                if line.startswith("sidekey_injections_total{"):
                    self.assertRegex(line, r'^sidekey_injections_total\{secret="[a-z]+"\} \d+')
            sk.assert_never_contains(self, [SECRET, OTHER], texts)

    def test_task_secrets_share_one_series_per_name(self):
        # Task secrets come and go with tasks: a series per task would grow without bound.
        with Upstream(Reply(200, b"fine")) as up, \
                proxy_sidekey(fill(POLICY, PORT=up.port), secrets={"s": SECRET, "other": OTHER}) as sk:
            tasks = ["task-%d" % i for i in range(5)]
            for t in tasks:
                r = requests.post(sk.api_url + "/ap/v1/agent/tasks/%s/secrets" % t, headers=sk.auth(), timeout=15,
                                  json={"name": "api_key", "value": "v-task-PLAINTEXT-" + t})
                self.assertEqual(r.status_code, 200, r.text)
                ref = r.json()["value"]
                r = requests.get(up.url + "/v1/x", headers={"X-Key": ref}, proxies={"http": sk.proxy_url}, timeout=15)
                self.assertEqual(r.status_code, 200, r.text)
                self.assertEqual(up.last().header("X-Key"), "v-task-PLAINTEXT-" + t)
            self.assertTrue(wait_for(lambda: len(audit_records(sk)) >= len(tasks)))
            text = metrics_text(sk)
            self.assertEqual(metric_value(text, "sidekey_injections_total", secret="tasks/*/api_key"), len(tasks))
            self.assertFalse([l for l in text.splitlines() if "task-" in l], "a series names a task")

    def test_audit_to_dev_null_keeps_the_metrics(self):
        # `log.audit: /dev/null` discards audit lines (they are not even composed); the request
        # metrics, recorded with them, still count every request.
        with Upstream(Reply(200, b"fine")) as up, \
                proxy_sidekey(fill(POLICY, PORT=up.port), secrets={"s": SECRET, "other": OTHER},
                              config={"log": {"level": "info", "audit": "/dev/null"}}) as sk:
            with requests.Session() as s:
                for i in range(5):
                    r = s.get(up.url + "/v1/%d" % i, proxies={"http": sk.proxy_url}, timeout=15)
                    self.assertEqual(r.status_code, 200)
                    self.assertEqual(up.last().header("Authorization"), "Bearer " + SECRET)
                r = s.get(up.url + "/admin/x", proxies={"http": sk.proxy_url}, timeout=15)
                self.assertEqual(r.status_code, 403)

            def counted():
                return metric_value(metrics_text(sk), "sidekey_requests_total") or 0
            self.assertTrue(wait_for(lambda: counted() >= 6), counted())
            text = metrics_text(sk)
            self.assertEqual(metric_value(text, "sidekey_requests_total", rule="local", decision="inject", code="200"), 5)
            self.assertEqual(metric_value(text, "sidekey_requests_total", rule="no-admin", decision="deny", code="403"), 1)
            self.assertEqual(metric_value(text, "sidekey_injections_total", secret="s"), 5)
            self.assertEqual(audit_records(sk), [])
            self.assertIn('"level":"info"', sk.logs(), "stderr still carries the diagnostic log")
            sk.assert_never_contains(self, [SECRET, OTHER], [text])

    def test_connect_histogram_counts_new_connections_only(self):
        with Upstream(Reply(200, b"fine")) as up, \
                proxy_sidekey(fill(POLICY, PORT=up.port), secrets={"s": SECRET, "other": OTHER}) as sk:
            with RawClient(sk.proxy_addr) as c:
                for i in range(5):
                    c.send("GET %s/v1/%d HTTP/1.1\r\nHost: x\r\n\r\n" % (up.url, i))
                    self.assertEqual(c.read_response().status, 200)
            self.assertEqual(up.connections, 1)
            text = metrics_text(sk)
            self.assertEqual(histogram(text, "sidekey_upstream_connect_seconds")[2], 1)
            self.assertTrue(wait_for(lambda: metric_value(metrics_text(sk), "sidekey_requests_total",
                                                          rule="local", decision="inject", code="200") == 5))


if __name__ == "__main__":
    unittest.main()
