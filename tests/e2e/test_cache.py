#!/usr/bin/env python3
"""The api's caches (api/cache.h): rendered status documents of ended jobs
with ETag / If-None-Match, and recently seen API keys.

No worker runs: a job is made "ended" in SQL, as the worker would leave it.
What is checked: a cached document is the same body with the same ETag;
If-None-Match answers 304 without a body; another key still gets 404; a
deleted session's or pruned job's document is what store_job_get answers
(today: 200, the job's history stays readable, test_api.test_delete_session);
a job deleted from the database answers 404 even after caching (also as
seen by a second api process on the same database, and after TRUNCATE,
which fires no row trigger); a queued job is never
served stale; a revoked key stops working within KEY_CACHE_TTL_MS (2 s,
promised 5 s).

Two ways of checking a hit, one class each:
  - CacheTest (API_CACHE_STALE_MS=500, the default): hits are served
    without a query ("fresh", counted in opencode_status_cache_total), and
    a deletion or change reaches the cache by NOTIFY job_changed, so the
    job answers 404 within a bound (GONE_WITHIN_S, generous: without the
    notification it never would). When the listener's connection is cut,
    the cache is emptied and fresh hits come back once it reconnects.
  - CacheQueryTest (API_CACHE_STALE_MS=0): every hit is checked with a
    query, so the very next read after a deletion answers 404.
"""

import os
import re
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

API_BIN = os.path.join(harness.BUILD, "opencode-api")
ETAG_RE = re.compile(r'^"[0-9a-f]{16}"$')
COUNT_RE = re.compile(r'^opencode_status_cache_total\{result="(\w+)"\} (\S+)$', re.M)


class CacheTest(harness.ServiceTest):
    SERVICE_ARGS = {"workers": 0, "api": False}
    STALE_MS = "500"
    HIT = "fresh"            # how a repeated read of an ended job is answered
    GONE_WITHIN_S = 5.0      # a deleted job answers 404 within this

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.metrics_port = harness.free_port()
        cls.svc.start_api(API_CACHE_STALE_MS=cls.STALE_MS,
                          METRICS_LISTEN="127.0.0.1:%d" % cls.metrics_port)

    def counts(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.metrics_port,
                                    timeout=10) as r:
            text = r.read().decode()
        return {k: float(v) for k, v in COUNT_RE.findall(text)}

    def hits_since(self, before):
        return self.counts().get(self.HIT, 0) - before.get(self.HIT, 0)

    def read_until(self, jid, done):
        """Reads the job's status until done(answer) or GONE_WITHIN_S went
        by (0: once); returns the last answer."""
        deadline = time.monotonic() + self.GONE_WITHIN_S
        while True:
            r = self.status(jid)
            if done(r) or time.monotonic() >= deadline:
                return r
            time.sleep(0.05)

    def assert_gone(self, jid):
        self.assertError(self.read_until(jid, lambda r: r.status == 404), 404, "job not found")

    def new_key(self, name):
        return self.svc.create_key(name)[:2]

    def ended_job(self, key="default", status="succeeded"):
        s = self.svc
        sid = s.create_session({"a.txt": "x"}, key=key)["session_id"]
        jid = s.submit(sid, "p", key=key)["job_id"]
        self.end_job(jid, status)
        return sid, jid

    def end_job(self, jid, status="succeeded"):
        self.svc.sql("UPDATE jobs SET status = '%s', started_at = now(), finished_at = now(),"
                     " exit_code = 0, result = 'done %s' WHERE id = '%s'" % (status, jid, jid))

    def status(self, jid, key="default", headers=None):
        return self.svc.request("GET", "/job/status?job_id=" + jid, key=key, headers=headers)

    def test_same_body_and_etag(self):
        _, jid = self.ended_job()
        a, b = self.status(jid), self.status(jid)
        self.assertEqual(a.status, 200, a)
        self.assertEqual(b.status, 200, b)
        self.assertEqual(a.body, b.body)
        self.assertEqual(a.json()["status"], "succeeded")
        self.assertRegex(a.headers.get("ETag", ""), ETAG_RE)
        self.assertEqual(a.headers["ETag"], b.headers.get("ETag"))

    def test_if_none_match(self):
        _, jid = self.ended_job()
        etag = self.status(jid).headers["ETag"]
        for inm in (etag, '"0000000000000000", ' + etag, "W/" + etag, "*"):
            with self.subTest(inm=inm):
                r = self.status(jid, headers={"If-None-Match": inm})
                self.assertEqual(r.status, 304, r)
                self.assertEqual(r.body, b"")
                self.assertEqual(r.headers.get("ETag"), etag)
        r = self.status(jid, headers={"If-None-Match": '"0000000000000000"'})
        self.assertEqual(r.status, 200, r)
        # 304 needs the caller to see the job: another key gets 404.
        _, other = self.new_key("cache-inm")
        r = self.status(jid, key=other, headers={"If-None-Match": etag})
        self.assertError(r, 404, "job not found")

    def test_other_key_404_after_caching(self):
        _, jid = self.ended_job()
        self.assertEqual(self.status(jid).status, 200)
        _, other = self.new_key("cache-other")
        for _ in range(2):
            self.assertError(self.status(jid, key=other), 404, "job not found")
        self.assertEqual(self.status(jid).status, 200)

    def test_deleted_session_keeps_history(self):
        s = self.svc
        sid, jid = self.ended_job()
        first = self.status(jid)
        r = s.request("DELETE", "/session?session_id=" + sid)
        self.assertEqual(r.status, 204, r)
        # Today's rule (test_api.test_delete_session): a deleted session's
        # jobs stay readable; the cached document is that same document.
        again = self.status(jid)
        self.assertEqual(again.status, 200, again)
        self.assertEqual(again.body, first.body)
        s.sql("UPDATE sessions SET status = 'expired', expires_at = now() WHERE id = '%s'" % sid)
        self.assertEqual(self.status(jid).body, first.body)
        s.sql("UPDATE jobs SET outputs_pruned_at = now() WHERE id = '%s'" % jid)
        self.assertEqual(self.status(jid).body, first.body)

    def test_deleted_job_404_after_caching(self):
        s = self.svc
        sid, jid = self.ended_job()
        self.assertEqual(self.status(jid).status, 200)
        before = self.counts()
        for _ in range(3):
            self.assertEqual(self.status(jid).status, 200)
        self.assertEqual(self.hits_since(before), 3, self.counts())
        # What the janitor's history purge does: the rows go.
        s.sql("DELETE FROM sessions WHERE id = '%s'" % sid)
        self.assert_gone(jid)
        # A 404 is no hit: the metric counts only answers from the cache.
        before = self.counts()
        self.assertError(self.status(jid), 404, "job not found")
        self.assertEqual(self.hits_since(before), 0, self.counts())

    def test_truncated_jobs_404_after_caching(self):
        # TRUNCATE fires no row trigger: a statement trigger tells the
        # listeners to drop everything (migration 018).
        _, jid = self.ended_job()
        self.assertEqual(self.status(jid).status, 200)
        before = self.counts()
        self.assertEqual(self.status(jid).status, 200)
        self.assertEqual(self.hits_since(before), 1, self.counts())
        self.svc.sql("TRUNCATE jobs CASCADE")
        self.assert_gone(jid)

    def test_queued_never_stale(self):
        s = self.svc
        sid = s.create_session({"a.txt": "x"})["session_id"]
        jid = s.submit(sid, "p")["job_id"]
        q = self.status(jid)
        self.assertEqual(q.json()["status"], "queued")
        self.assertEqual(self.status(jid).json()["status"], "queued")
        self.end_job(jid, "failed")
        r = self.status(jid)
        self.assertEqual(r.json()["status"], "failed")
        self.assertNotEqual(r.headers["ETag"], q.headers["ETag"])
        # The old ETag is not "not modified" any more.
        self.assertEqual(self.status(jid, headers={"If-None-Match": q.headers["ETag"]}).status, 200)

    def test_changed_ended_job_rereads(self):
        # Not a transition the service makes; the version check still sees it.
        _, jid = self.ended_job()
        first = self.status(jid)
        self.assertEqual(self.status(jid).status, 200)
        self.svc.sql("UPDATE jobs SET status = 'failed', finished_at = now() + interval '1 s'"
                     " WHERE id = '%s'" % jid)
        r = self.read_until(jid, lambda r: r.json()["status"] == "failed")
        self.assertEqual(r.json()["status"], "failed")
        self.assertNotEqual(r.headers["ETag"], first.headers["ETag"])

    def test_second_api_process(self):
        # Two api processes on one database: what one deletes, the other's
        # cache does not serve.
        s = self.svc
        sid, jid = self.ended_job()
        port2 = harness.free_port()
        env = s.env(API_LISTEN="127.0.0.1:%d" % port2, API_CACHE_STALE_MS=self.STALE_MS)
        s._spawn("api2", [API_BIN], env)
        port1 = s.port
        try:
            s.port = port2
            harness.wait_for(lambda: s._health(s.procs["api2"], key="api2"), 30, what="second api")
            for p in (port1, port2):
                s.port = p
                self.assertEqual(self.status(jid).status, 200)
                self.assertEqual(self.status(jid).status, 200)
            s.sql("DELETE FROM sessions WHERE id = '%s'" % sid)
            for p in (port1, port2):
                s.port = p
                self.assert_gone(jid)
        finally:
            s.port = port1
            s.stop("api2")

    def test_revoked_key_stops_within_5s(self):
        s = self.svc
        kid, key = self.new_key("cache-revoke")
        _, jid = self.ended_job(key=key)
        for _ in range(3):
            self.assertEqual(self.status(jid, key=key).status, 200)
        r = s.run_program([API_BIN, "keys", "revoke", kid])
        self.assertEqual(r.returncode, 0, r.stderr)
        revoked = time.monotonic()
        while True:
            r = self.status(jid, key=key)
            took = time.monotonic() - revoked
            if r.status == 401:
                break
            self.assertEqual(r.status, 200, r)
            self.assertLess(took, 10, "revoked key still accepted")
            time.sleep(0.1)
        self.assertLessEqual(took, 5.5, "revoked key accepted for %.2f s" % took)
        r = s.request("POST", "/session", {"files": [{"path": "a", "content": "b"}]}, key=key)
        self.assertError(r, 401)

    def listener_backends(self):
        """Backend pids of this api's listener connection (its client ports
        are among the api process's own sockets)."""
        inodes = set()
        fd_dir = "/proc/%d/fd" % self.svc.procs["api"].pid
        for fd in os.listdir(fd_dir):
            try:
                m = re.match(r"socket:\[(\d+)\]", os.readlink(os.path.join(fd_dir, fd)))
            except OSError:
                continue
            if m:
                inodes.add(m.group(1))
        ports = []
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as f:
                for line in f.readlines()[1:]:
                    col = line.split()
                    if col[9] in inodes:
                        ports.append(str(int(col[1].rsplit(":", 1)[1], 16)))
        if not ports:
            return []
        rows = self.svc.sql("SELECT pid FROM pg_stat_activity WHERE application_name ="
                            " 'opencode-api-listen' AND client_port IN (%s)" % ",".join(ports))
        return [int(row[0]) for row in rows]

    def test_listener_cut_empties_then_refills(self):
        # Notifications sent while the listener is disconnected are lost:
        # after it reconnects the cache starts empty (a miss, though nothing
        # changed), and hits are fresh again once a heartbeat came back.
        s = self.svc
        sid, jid = self.ended_job()
        self.assertEqual(self.status(jid).status, 200)
        before = self.counts()
        self.assertEqual(self.status(jid).status, 200)
        self.assertEqual(self.hits_since(before), 1, self.counts())
        pids = self.listener_backends()
        self.assertEqual(len(pids), 1, pids)
        self.assertEqual(s.scalar("SELECT pg_terminate_backend(%d)" % pids[0]), "t")
        harness.wait_for(lambda: self.listener_backends() not in ([], pids), 30,
                         what="the listener's new connection")
        before = self.counts()
        deadline = time.monotonic() + self.GONE_WITHIN_S
        while self.hits_since(before) == 0 and time.monotonic() < deadline:
            self.assertEqual(self.status(jid).status, 200)
            time.sleep(0.05)
        after = self.counts()
        self.assertGreaterEqual(after.get("miss", 0) - before.get("miss", 0), 1, after)
        self.assertGreaterEqual(self.hits_since(before), 1, after)
        s.sql("DELETE FROM sessions WHERE id = '%s'" % sid)
        self.assert_gone(jid)


class CacheQueryTest(CacheTest):
    STALE_MS = "0"
    HIT = "checked"
    GONE_WITHIN_S = 0

    def test_listener_cut_empties_then_refills(self):
        self.skipTest("no listener for the cache when every hit is checked")


if __name__ == "__main__":
    harness.main()
