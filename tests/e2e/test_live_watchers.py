"""Many watchers at once, the stream caps, and bad input of the live-job
endpoints (issue: live jobs). No agent runs: the jobs stay queued until the
test cancels them, so every wake-up here comes from a status change."""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

STREAMS, POLLS, JOBS = 200, 50, 10


def open_request(port, target, key):
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    s.sendall(("GET %s HTTP/1.1\r\nHost: t\r\nX-API-Key: %s\r\n\r\n" % (target, key)).encode())
    return s


def read_until(s, needle, limit=1 << 20):
    buf = b""
    while needle not in buf and len(buf) < limit:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


def read_all(s):
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return buf
        buf += chunk


class Watchers(harness.ServiceTest):
    SERVICE_ARGS = {"workers": 0, "janitor": False,
                    "env": {"API_THREADS": "400", "API_MAX_STREAMS": "300",
                            "API_MAX_STREAMS_PER_KEY": str(STREAMS + POLLS),
                            "API_SSE_KEEPALIVE_MS": "500"}}

    def new_key(self, name):
        return self.svc.create_key(name)[1]

    def queued_job(self, key="default"):
        s = self.svc
        sid = s.create_session({"a.txt": "x\n"}, key=key)["session_id"]
        return s.submit(sid, "stays queued", key=key)["job_id"]

    def test_many_streams_and_polls_leave_the_api_answering(self):
        s = self.svc
        jobs = [self.queued_job() for _ in range(JOBS)]
        streams = [open_request(s.port, "/job/events?job_id=" + jobs[i % JOBS], s.api_key)
                   for i in range(STREAMS)]
        for st in streams:
            head = read_until(st, b"event: status")
            self.assertIn(b"200 OK", head)
            self.assertIn(b'"status":"queued"', head)
        polls = [open_request(s.port, "/job/status?wait=60&job_id=" + jobs[i % JOBS], s.api_key)
                 for i in range(POLLS)]
        time.sleep(0.5)

        # With every watcher open, the api still answers at once (generous
        # bound; bench/bench_live.py measures the tight one).
        for _ in range(5):
            started = time.time()
            self.assertEqual(s.request("GET", "/health").status, 200)
            self.assertLess(time.time() - started, 5)
        self.assertEqual(s.job(jobs[0])["status"], "queued")
        # The key's cap is reached: one more is 429; another key is not.
        r = s.request("GET", "/job/events?job_id=" + jobs[0])
        self.assertError(r, 429, "API_MAX_STREAMS_PER_KEY", code="too_many_streams")
        other = self.new_key("watcher")
        mine = self.queued_job(key=other)
        extra = open_request(s.port, "/job/events?job_id=" + mine, other)
        self.assertIn(b"200 OK", read_until(extra, b"event: status"))

        # One status change per job wakes every watcher of it: streams end
        # with the final event, long-polls answer with the new status.
        started = time.time()
        for j in jobs + [mine]:
            self.assertEqual(s.request("POST", "/job/cancel?job_id=" + j,
                                       key=other if j == mine else "default").status, 202)
        for st in streams + [extra]:
            body = read_all(st)
            self.assertTrue(body.rstrip().endswith(b'}'), body[-200:])
            self.assertIn(b'"status":"cancelled"', body.split(b"event: status")[-1])
            st.close()
        for p in polls:
            body = read_until(p, b"}")
            self.assertIn(b'"status":"cancelled"', body)
            p.close()
        self.assertLess(time.time() - started, 60)
        # Every slot came back: a new stream is admitted again.
        r = s.request("GET", "/job/events?job_id=" + jobs[0])
        self.assertEqual(r.status, 200)
        self.assertIn(b'"status":"cancelled"', r.body)

    def test_bad_input_changes_nothing(self):
        s = self.svc
        job = self.queued_job()
        other = self.new_key("stranger")
        cases = [
            ("GET", "/job/events?job_id=" + "0" * 32, "default", 404, "not_found"),
            ("GET", "/job/events?job_id=" + job, other, 404, "not_found"),
            ("GET", "/job/events?job_id=nothex", "default", 404, "not_found"),
            ("GET", "/job/events", "default", 422, "validation_error"),
            ("GET", "/job/events?job_id=%s&last_event_id=abc" % job, "default", 422,
             "validation_error"),
            ("GET", "/job/status?job_id=%s&wait=61" % job, "default", 422, "validation_error"),
            ("GET", "/job/status?job_id=%s&wait=-1" % job, "default", 422, "validation_error"),
            ("GET", "/job/status?job_id=%s&wait=soon" % job, "default", 422, "validation_error"),
            ("GET", "/job/status?job_id=%s&wait=5" % job, other, 404, "not_found"),
            ("POST", "/job/cancel?job_id=" + "0" * 32, "default", 404, "not_found"),
            ("POST", "/job/cancel?job_id=" + job, other, 404, "not_found"),
            ("POST", "/job/cancel", "default", 422, "validation_error"),
            ("GET", "/job/cancel?job_id=" + job, "default", 405, "method_not_allowed"),
        ]
        for method, path, key, status, code in cases:
            with self.subTest(path=path, key=key is other):
                self.assertError(s.request(method, path, key=key), status, code=code)
        self.assertEqual(s.job(job)["status"], "queued")
        self.assertEqual(s.scalar("SELECT count(*) FROM jobs WHERE cancel_requested_at"
                                  " IS NOT NULL"), "0")
        r = s.request("GET", "/job/events?job_id=%s" % job,
                      headers={"Last-Event-ID": "x1"})
        self.assertError(r, 422, "Last-Event-ID", code="validation_error")

        # Cancelled, then cancelled again: 202, then 409 with its status.
        r = s.request("POST", "/job/cancel?job_id=" + job)
        self.assertEqual((r.status, r.json()["status"]), (202, "cancelled"))
        self.assertError(s.request("POST", "/job/cancel?job_id=" + job), 409, "cancelled",
                         code="job_ended")
        # Its stream replays queued then cancelled, and ends.
        body = s.request("GET", "/job/events?job_id=" + job).body.decode()
        self.assertEqual([ln for ln in body.splitlines() if ln.startswith("id: ")],
                         ["id: 1", "id: 2"])


if __name__ == "__main__":
    harness.main()
