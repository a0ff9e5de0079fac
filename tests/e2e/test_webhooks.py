"""Webhooks (issue 11, item 4): a job submitted with a webhook_url gets its
status document POSTed when it ends, signed as Standard Webhooks says
(webhook-id, webhook-timestamp, webhook-signature) with its key's secret,
retried with backoff through the webhook_deliveries queue, and never sent
to loopback or private addresses unless WEBHOOK_ALLOW_PRIVATE=1 (checked
when the janitor connects). The receivers are Python servers on
127.0.0.1; the janitor runs with small retry timers.

One test runs the real agent end to end (worker, status document, three
attempts). The others end their job in SQL as the worker records it (the
jobs_webhook trigger queues the delivery in that same UPDATE): what they
check is the janitor's side, and an agent run would only add its CPU."""

import base64
import hashlib
import hmac
import http.server
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import script_prompt, wait_for  # noqa: E402
from test_metrics import scrape, text_string_to_metric_families, value  # noqa: E402

API_BIN = os.path.join(harness.BUILD, "opencode-api")
JOB = script_prompt([{"text": "webhook job done"}])

TIMERS = {
    "WEBHOOK_RETRY_BASE_S": "1",
    "WEBHOOK_RETRY_MAX_S": "2",
    "WEBHOOK_RETRY_S": "120",
    "WEBHOOK_TIMEOUT_MS": "3000",
    "WEBHOOK_SECRET_GRACE_S": "600",
    # The bootstrap key's secret (its jobs sign with it).
    "WEBHOOK_SECRET": "whsec_" + base64.b64encode(b"bootstrap-webhook-secret-32bytes").decode(),
}


class Receiver:
    """An HTTP server on 127.0.0.1 that records each POST and answers the
    next status of `statuses` (200 once they are used up)."""

    def __init__(self, statuses=()):
        self.statuses = list(statuses)
        self.requests = []
        self.lock = threading.Lock()
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                with rec.lock:
                    rec.requests.append({k.lower(): v for k, v in self.headers.items()} |
                                        {"_body": body})
                    status = rec.statuses.pop(0) if rec.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/hook" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def got(self):
        with self.lock:
            return list(self.requests)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def signature(secret, msg_id, ts, body):
    key = base64.b64decode(secret[len("whsec_"):])
    mac = hmac.new(key, ("%s.%s." % (msg_id, ts)).encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


class Webhooks(harness.ServiceTest):
    SERVICE_ARGS = {"workers": 0, "janitor": False, "env": dict(TIMERS)}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.key_id, cls.key, cls.secret = cls.new_key("webhooks")
        cls.metrics_port = harness.free_port()
        cls.svc.start_janitor("janitor", WEBHOOK_ALLOW_PRIVATE="1",
                              METRICS_LISTEN="127.0.0.1:%d" % cls.metrics_port)
        wait_for(cls.metrics_up, 30, what="the janitor's metrics listener")

    @classmethod
    def metrics_up(cls):
        try:
            scrape(cls.metrics_port)
            return True
        except OSError:
            return False

    @classmethod
    def new_key(cls, name):
        return cls.svc.create_key(name)

    def run_job(self, agent=False, key=None, **fields):
        """Submits JOB in a new session of key (the class's) and ends it:
        with the real agent on a worker started for it, or in SQL.
        Returns (job id, status document)."""
        s = self.svc
        key = key or self.key
        sid = s.create_session({"a.txt": "x"}, key=key)["session_id"]
        jid = s.submit(sid, JOB, key=key, **fields)["job_id"]
        if not agent:
            self.end_job(jid)
            return jid, s.job(jid, key=key)
        s.start_worker("worker0")
        try:
            return jid, s.wait_job(jid, timeout=180, key=key)
        finally:
            s.stop("worker0")

    def end_job(self, jid):
        """What the worker records when a job succeeds."""
        self.svc.sql("UPDATE jobs SET status = 'succeeded', started_at = now(),"
                     " finished_at = now(), exit_code = 0, result = 'webhook job done'"
                     " WHERE id = '%s' AND status = 'queued'" % jid)

    def delivery(self, jid):
        rows = self.svc.sql("SELECT id, attempts, coalesce(last_status_code, 0),"
                            " coalesce(last_error, ''), delivered_at IS NOT NULL, url, job_status"
                            " FROM webhook_deliveries WHERE job_id = '%s'" % jid)
        return rows

    # ---- delivery, retries, signature, body -----------------------------------

    def attempts(self):
        """opencode_webhook_attempts_total by result, and the attempts'
        duration count, from the janitor's metrics."""
        if text_string_to_metric_families is None:
            return None
        samples, _ = scrape(self.metrics_port)
        out = {r: value(samples, "opencode_webhook_attempts_total", result=r)
               for r in ("delivered", "retry", "gave_up")}
        out["timed"] = value(samples, "opencode_webhook_attempt_duration_seconds_count")
        return out

    def test_500_twice_then_delivered_signed_with_status_document(self):
        rec = Receiver([500, 500])
        before = self.attempts()
        try:
            jid, job = self.run_job(agent=True, webhook_url=rec.url)
            self.assertEqual(job["status"], "succeeded", job)
            self.assertEqual(job["result"], "webhook job done", job)
            reqs = wait_for(lambda: len(rec.got()) >= 3 and rec.got(), 60,
                            what="three webhook attempts")
            time.sleep(1.5)
            self.assertEqual(len(rec.got()), 3, "no attempt after the 2xx")
            ids = {r["webhook-id"] for r in reqs}
            self.assertEqual(len(ids), 1, "webhook-id must be the same on retries")
            msg_id = ids.pop()
            self.assertRegex(msg_id, r"^msg_[0-9a-f]{32}$")
            status_doc = self.svc.request("GET", "/job/status?job_id=" + jid, key=self.key).body
            for r in reqs:
                ts = r["webhook-timestamp"]
                self.assertLess(abs(int(ts) - time.time()), 120)
                self.assertEqual(r["content-type"], "application/json")
                sigs = r["webhook-signature"].split(" ")
                self.assertIn(signature(self.secret, msg_id, ts, r["_body"]), sigs, r)
                # Any other secret does not verify.
                self.assertNotIn(signature("whsec_" + base64.b64encode(b"x" * 32).decode(),
                                           msg_id, ts, r["_body"]), sigs)
            self.assertEqual(reqs[2]["_body"], status_doc)
            rows = wait_for(lambda: [r for r in self.delivery(jid) if r[4] == "t"], 20,
                            what="delivered_at recorded")
            self.assertEqual(len(self.delivery(jid)), 1)
            did, attempts, code, err, _, url, st = rows[0]
            self.assertEqual((did, attempts, code, err, url, st),
                             (msg_id, "3", "200", "", rec.url, "succeeded"))
            self.assertEqual(self.svc.scalar("SELECT webhook_url FROM jobs WHERE id = '%s'" % jid),
                             rec.url)
            after = self.attempts()
            if after is not None:
                self.assertEqual({k: after[k] - before[k] for k in after},
                                 {"delivered": 1, "retry": 2, "gave_up": 0, "timed": 3})
        finally:
            rec.close()

    def test_job_without_webhook_url_queues_no_delivery(self):
        jid, job = self.run_job()
        time.sleep(1)
        self.assertEqual(self.delivery(jid), [])

    def test_key_default_webhook_url(self):
        rec = Receiver()
        try:
            r = self.svc.run_program([API_BIN, "keys", "set", self.key_id, "webhook_url=" + rec.url])
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("webhook_url=" + rec.url, r.stdout)
            bad = self.svc.run_program([API_BIN, "keys", "set", self.key_id, "webhook_url=ftp://x"])
            self.assertNotEqual(bad.returncode, 0)
            jid, _ = self.run_job()
            reqs = wait_for(rec.got, 60, what="a delivery to the key's default URL")
            self.assertEqual(reqs[0]["_body"],
                             self.svc.request("GET", "/job/status?job_id=" + jid, key=self.key).body)
        finally:
            self.svc.run_program([API_BIN, "keys", "set", self.key_id, "webhook_url=default"])
            rec.close()

    # ---- bad input ------------------------------------------------------------

    def test_bad_webhook_url_is_422_and_creates_nothing(self):
        s = self.svc
        sid = s.create_session({"a.txt": "x"}, key=self.key)["session_id"]
        before = s.scalar("SELECT count(*) FROM jobs")
        for url in ("ftp://example.com/hook", "not a url", "http://", "http:///x",
                    "http://exa mple.com/", "file:///etc/passwd", 42, ["http://x"],
                    "http://x/" + "a" * 3000):
            r = s.request("POST", "/job?session_id=" + sid, {"prompt": JOB, "webhook_url": url},
                          key=self.key)
            self.assertError(r, 422, "webhook_url", code="validation_error")
        self.assertEqual(s.scalar("SELECT count(*) FROM jobs"), before)
        self.assertEqual(s.scalar("SELECT count(*) FROM webhook_deliveries"
                                  " WHERE url NOT LIKE 'http://127.0.0.1:%'"), "0")

    # ---- the address rule, when connecting --------------------------------------

    def test_loopback_refused_at_connect_without_allow_private(self):
        s = self.svc
        rec = Receiver()
        s.stop("janitor")
        try:
            s.start_janitor("janitor-strict")      # WEBHOOK_ALLOW_PRIVATE unset
            jid, job = self.run_job(webhook_url=rec.url)   # accepted at submission
            rows = wait_for(lambda: [r for r in self.delivery(jid) if r[3]], 60,
                            what="the refused attempt recorded")
            err = rows[0][3]
            self.assertIn("refused", err)
            self.assertIn("127.0.0.1 is loopback", err)
            self.assertEqual(rows[0][4], "f")
            time.sleep(2)
            self.assertEqual(rec.got(), [], "the receiver must get nothing")
            with open(s.logs["janitor-strict"]) as f:
                log = f.read()
            self.assertIn("delivery=" + rows[0][0], log)
            self.assertNotIn(self.secret, log)
            self.assertNotIn('"stdout"', log)   # never the body
        finally:
            s.stop("janitor-strict")
            s.sql("UPDATE webhook_deliveries SET gave_up_at = now(), next_attempt_at = NULL"
                  " WHERE delivered_at IS NULL")
            s.start_janitor("janitor", WEBHOOK_ALLOW_PRIVATE="1")
            rec.close()

    def test_janitor_once_delivers_what_is_due(self):
        # Run from cron, `opencode-janitor --once` sends the due deliveries
        # too (no thread outlives its pass).
        s = self.svc
        rec = Receiver()
        s.stop("janitor")
        try:
            jid, job = self.run_job(webhook_url=rec.url)
            self.assertEqual(len(self.delivery(jid)), 1)
            self.assertEqual(rec.got(), [])
            r = s.run_program([os.path.join(harness.BUILD, "opencode-janitor"), "--once"],
                              WEBHOOK_ALLOW_PRIVATE="1")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("janitor.webhooks_once", r.stderr)
            got = rec.got()
            self.assertEqual(len(got), 1, got)
            self.assertEqual(got[0]["_body"],
                             s.request("GET", "/job/status?job_id=" + jid, key=self.key).body)
            self.assertEqual(self.delivery(jid)[0][4], "t")
        finally:
            s.start_janitor("janitor", WEBHOOK_ALLOW_PRIVATE="1",
                            METRICS_LISTEN="127.0.0.1:%d" % self.metrics_port)
            rec.close()

    # ---- rotation ---------------------------------------------------------------

    def test_rotation_sends_both_signatures_during_grace(self):
        kid, key, old = self.new_key("rotating")
        r = self.svc.run_program([API_BIN, "keys", "rotate-webhook-secret", kid])
        self.assertEqual(r.returncode, 0, r.stderr)
        new = re.search(r"^webhook_secret: (whsec_[A-Za-z0-9+/=]+)$", r.stdout, re.M).group(1)
        self.assertNotEqual(new, old)
        self.assertEqual(self.svc.run_program(
            [API_BIN, "keys", "rotate-webhook-secret", "key_0000000000000000"]).returncode, 1)
        rec = Receiver()
        try:
            s = self.svc
            jid, _ = self.run_job(key=key, webhook_url=rec.url)
            req = wait_for(rec.got, 60, what="the delivery")[0]
            sigs = req["webhook-signature"].split(" ")
            self.assertEqual(len(sigs), 2, req)
            ts, mid = req["webhook-timestamp"], req["webhook-id"]
            self.assertEqual(sigs[0], signature(new, mid, ts, req["_body"]))
            self.assertEqual(sigs[1], signature(old, mid, ts, req["_body"]))
            self.assertEqual(s.scalar("SELECT count(*) FROM webhook_deliveries"
                                      " WHERE job_id = '%s'" % jid), "1")
        finally:
            rec.close()

    def test_bootstrap_key_signs_with_WEBHOOK_SECRET(self):
        s = self.svc
        rec = Receiver()
        try:
            jid, _ = self.run_job(key=s.api_key, webhook_url=rec.url)
            req = wait_for(rec.got, 60, what="the bootstrap key's delivery")[0]
            ts, mid = req["webhook-timestamp"], req["webhook-id"]
            self.assertEqual(req["webhook-signature"],
                             signature(TIMERS["WEBHOOK_SECRET"], mid, ts, req["_body"]))
            self.assertEqual(req["_body"], s.request("GET", "/job/status?job_id=" + jid).body)
        finally:
            rec.close()

    def test_bad_WEBHOOK_SECRET_stops_the_janitor(self):
        r = self.svc.run_program([os.path.join(harness.BUILD, "opencode-janitor"), "--once"],
                                 WEBHOOK_SECRET="not-a-secret")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("WEBHOOK_SECRET", r.stdout + r.stderr)
        self.assertNotIn("not-a-secret", r.stdout + r.stderr)

    # ---- schema -----------------------------------------------------------------

    def test_secrets_table_is_separate_and_documented(self):
        s = self.svc
        cols = [r[0] for r in s.sql("SELECT column_name FROM information_schema.columns"
                                    " WHERE table_name = 'webhook_deliveries'")]
        self.assertFalse([c for c in cols if "secret" in c or "body" in c], cols)
        comment = s.scalar("SELECT obj_description('webhook_secrets'::regclass)")
        self.assertIn("must NOT be granted", comment)
        self.assertEqual(s.scalar("SELECT count(*) FROM webhook_secrets WHERE key_id = '%s'"
                                  % self.key_id), "1")


if __name__ == "__main__":
    harness.main()
