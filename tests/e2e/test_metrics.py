"""Prometheus metrics (issue 13, item 2): each program serves /metrics on
its own METRICS_LISTEN port, the text parses with the Prometheus parser
(python3-prometheus-client), the expected series exist and the counters
move as requests, a job and janitor passes happen; the public API port
has no /metrics."""

import http.client
import os
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import script_prompt  # noqa: E402

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    # Debian's python3-prometheus-client, when python3 is another
    # interpreter (pyenv) that does not look in Debian's dist-packages.
    sys.path.append("/usr/lib/python3/dist-packages")
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:  # pragma: no cover
        text_string_to_metric_families = None


def scrape(port):
    """{(sample name, frozenset(labels)): value} and the families' types."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", "/metrics")
        r = c.getresponse()
        body = r.read().decode("utf-8")
        assert r.status == 200, (r.status, body[:300])
        assert r.getheader("Content-Type", "").startswith("text/plain; version=0.0.4"), \
            r.getheader("Content-Type")
    finally:
        c.close()
    samples, types = {}, {}
    for fam in text_string_to_metric_families(body):
        types[fam.name] = fam.type
        for s in fam.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples, types


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def names(samples):
    return {n for n, _ in samples}


COMMON = ["opencode_build_info", "opencode_outbox_backlog", "opencode_outbox_oldest_age_seconds",
          "opencode_jobs_queued", "opencode_jobs_running", "opencode_webhooks_pending"]


@__import__("unittest").skipIf(text_string_to_metric_families is None,
                               "python3-prometheus-client is not installed (scripts/deps.sh)")
class Metrics(harness.ServiceTest):
    SERVICE_ARGS = {"workers": 0, "api": False}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        s = cls.svc
        cls.ports = {k: harness.free_port() for k in ("api", "worker0", "janitor")}
        s.start_api(METRICS_LISTEN="127.0.0.1:%d" % cls.ports["api"])
        s.start_worker("worker0", METRICS_LISTEN="127.0.0.1:%d" % cls.ports["worker0"])
        s.start_janitor("janitor", METRICS_LISTEN="127.0.0.1:%d" % cls.ports["janitor"])
        for k, p in cls.ports.items():
            harness.wait_for(lambda: cls._up(p), 30, what="%s /metrics" % k)

    @staticmethod
    def _up(port):
        try:
            scrape(port)
            return True
        except OSError:
            return False

    def test_api_requests_counted_by_route(self):
        s = self.svc
        before, types = scrape(self.ports["api"])
        for n in COMMON:
            self.assertIn(n, types, n)
        self.assertEqual(types["opencode_http_requests"], "counter")
        self.assertEqual(types["opencode_http_request_duration_seconds"], "histogram")
        self.assertEqual(value(before, "opencode_build_info", program="opencode-api",
                               version=[v for (n, l) in before if n == "opencode_build_info"
                                        for k, v in l if k == "version"][0]), 1)
        base = value(before, "opencode_http_requests_total", route="/health", method="GET",
                     status="200") or 0
        base_timed = value(before, "opencode_http_request_duration_seconds_count",
                           route="/health") or 0
        for _ in range(3):
            self.assertEqual(s.request("GET", "/health", key=None).status, 200)
        # A path nobody routes is counted as "unknown", never by its text.
        self.assertEqual(s.request("GET", "/no/such/path-123", key=None).status, 404)
        self.assertEqual(s.request("GET", "/job/status", key=None).status, 401)
        # A request is counted once its answer has gone out, so the client
        # may scrape a moment before: wait until all five are in (and timed).
        def counted():
            after, _ = scrape(self.ports["api"])
            health = value(after, "opencode_http_requests_total", route="/health",
                           method="GET", status="200") or 0
            seen = [value(after, "opencode_http_requests_total", route=route, method="GET",
                          status=code) for route, code in (("unknown", "404"),
                                                           ("/job/status", "401"))]
            timed = value(after, "opencode_http_request_duration_seconds_count",
                          route="/health") or 0
            return (after if health >= base + 3 and timed >= base_timed + 3 and None not in seen
                    else None)
        after = harness.wait_for(counted, 10, 0.05, "the requests counted")
        self.assertEqual(value(after, "opencode_http_requests_total", route="/health",
                               method="GET", status="200"), base + 3)
        self.assertGreaterEqual(value(after, "opencode_http_requests_total", route="unknown",
                                      method="GET", status="404"), 1)
        self.assertGreaterEqual(value(after, "opencode_http_requests_total",
                                      route="/job/status", method="GET", status="401"), 1)
        for (n, labels) in after:
            if n == "opencode_http_requests_total":
                self.assertNotIn("/no/such/path-123", dict(labels).values())
        self.assertEqual(value(after, "opencode_http_request_duration_seconds_count",
                               route="/health"), base_timed + 3)
        self.assertEqual(value(after, "opencode_http_request_duration_seconds_bucket",
                               route="/health", le="+Inf"),
                         value(after, "opencode_http_request_duration_seconds_count",
                               route="/health"))

    def test_public_port_has_no_metrics(self):
        r = self.svc.request("GET", "/metrics", key=None)
        self.assertEqual(r.status, 404, r)
        r = self.svc.request("GET", "/metrics")
        self.assertEqual(r.status, 404, r)

    def test_metrics_port_serves_only_metrics(self):
        c = http.client.HTTPConnection("127.0.0.1", self.ports["api"], timeout=10)
        c.request("GET", "/health")
        self.assertEqual(c.getresponse().status, 404)
        c.close()

    def test_job_moves_worker_counters(self):
        s = self.svc
        w0, types = scrape(self.ports["worker0"])
        for n in COMMON + ["opencode_worker_slots_running", "opencode_lease_renewals",
                           "opencode_leases_lost", "opencode_jobs_finished",
                           "opencode_job_duration_seconds", "opencode_job_queue_wait_seconds",
                           "opencode_agent_startup_seconds"]:
            self.assertIn(n, types, n)
        self.assertEqual(value(w0, "opencode_worker_slots_running"), 0)
        sid = s.create_session({"a.txt": "x\n"}, ttl=3600)["session_id"]
        job = s.submit(sid, script_prompt([{"write": {"filePath": "b.txt", "content": "y\n"}},
                                           {"text": "done"}]))
        self.assertEqual(s.wait_job(job["job_id"])["status"], "succeeded")
        # The slot counts the attempt's end just after the outcome is visible.
        harness.wait_for(lambda: value(scrape(self.ports["worker0"])[0],
                                       "opencode_job_duration_seconds_count") == 1,
                         10, what="job duration observed")
        w1, _ = scrape(self.ports["worker0"])
        self.assertEqual(value(w1, "opencode_jobs_finished_total", status="succeeded",
                               error_code="none"), 1)
        self.assertEqual(value(w1, "opencode_job_queue_wait_seconds_count"), 1)
        self.assertGreaterEqual(value(w1, "opencode_job_queue_wait_seconds_sum"), 0)
        self.assertEqual(value(w1, "opencode_agent_startup_seconds_count"), 1)
        self.assertGreater(value(w1, "opencode_agent_startup_seconds_sum"), 0)
        # What the agent took (result_json.resources), as metrics too.
        self.assertEqual(value(w1, "opencode_job_agent_cpu_seconds_count"), 1)
        self.assertGreater(value(w1, "opencode_job_agent_cpu_seconds_sum"), 0)
        self.assertEqual(value(w1, "opencode_job_agent_peak_rss_bytes_count"), 1)
        self.assertGreater(value(w1, "opencode_job_agent_peak_rss_bytes_sum"), 50e6)
        self.assertEqual(value(w1, "opencode_worker_slots_running"), 0)
        self.assertEqual(value(w1, "opencode_leases_lost_total"), 0)
        self.assertGreaterEqual(value(w1, "opencode_lease_renewals_total"), 1)

    def test_janitor_passes_and_queue_gauges(self):
        first, types = scrape(self.ports["janitor"])
        for n in COMMON + ["opencode_janitor_pass_duration_seconds",
                           "opencode_janitor_rows", "opencode_janitor_passes",
                           "opencode_webhook_attempts", "opencode_webhook_attempt_duration_seconds"]:
            self.assertIn(n, types, n)
        for result in ("delivered", "retry", "gave_up"):
            self.assertEqual(value(first, "opencode_webhook_attempts_total", result=result), 0)
        for step in ("requeued", "failed", "expired", "removed", "pruned", "republished",
                     "published", "outputs_pruned"):
            self.assertIsNotNone(value(first, "opencode_janitor_rows_total", step=step), step)
        passes = value(first, "opencode_janitor_passes_total", role="leader")
        harness.wait_for(lambda: value(scrape(self.ports["janitor"])[0],
                                       "opencode_janitor_passes_total", role="leader") > passes,
                         15, what="janitor pass counted")
        later, _ = scrape(self.ports["janitor"])
        self.assertGreaterEqual(value(later, "opencode_janitor_pass_duration_seconds_count"),
                                passes + 1)
        # Queue gauges come from PostgreSQL (nothing waits in this service).
        self.assertEqual(value(later, "opencode_jobs_queued"), 0)
        self.assertEqual(value(later, "opencode_outbox_backlog"), 0)
        # A delivery not yet due (its row made here, as a job's end makes
        # one): the pending gauge counts it once the cache is re-read.
        s = self.svc
        # An ended job of its own, made in SQL: a submitted one would run.
        sid = s.create_session({"a.txt": "x"})["session_id"]
        jid = uuid.uuid4().hex
        s.sql("INSERT INTO jobs (id, session_id, prompt, model, timeout_s, status, finished_at)"
              " VALUES ('%s', '%s', 'x', 'm/x', 60, 'succeeded', now())" % (jid, sid))
        s.sql("INSERT INTO webhook_deliveries (id, job_id, key_id, url, job_status,"
              " next_attempt_at) VALUES ('msg_%s', '%s', 'bootstrap', 'http://127.0.0.1:9/',"
              " 'succeeded', now() + interval '1 hour')" % (jid, jid))
        try:
            harness.wait_for(lambda: value(scrape(self.ports["janitor"])[0],
                                           "opencode_webhooks_pending") == 1, 15,
                             what="opencode_webhooks_pending = 1")
        finally:
            s.sql("DELETE FROM jobs WHERE id = '%s'" % jid)

    def test_queue_gauges_cached(self):
        """Gauges are re-read at most every 5 s: a job queued now shows up
        in the next read, not necessarily the next scrape."""
        s = self.svc
        port = self.ports["api"]
        scrape(port)
        t0 = time.time()
        self.assertIsNotNone(s.sql("SELECT 1"))
        # Fast scrapes: served from the cache (no failure, same values).
        values = [value(scrape(port)[0], "opencode_jobs_running") for _ in range(20)]
        self.assertEqual(len(set(values)), 1, values)
        self.assertLess(time.time() - t0, 5)


if __name__ == "__main__":
    harness.main()
