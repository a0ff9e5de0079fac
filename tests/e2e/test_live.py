"""Live jobs with the real agent (issue: live jobs): the event stream
(GET /job/events) while a job runs, resuming with Last-Event-ID, the
long-poll (GET /job/status?wait=), and cancelling a running job
(POST /job/cancel, DELETE /session) with a lease long enough that only the
cancel path can end it in time."""

import http.client
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import script_prompt  # noqa: E402

FINAL = ("succeeded", "failed", "timed_out", "cancelled")


class SSE:
    """A GET /job/events stream read event by event."""

    def __init__(self, svc, job_id, last_id=None, timeout=120):
        self.conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=timeout)
        h = {"X-API-Key": svc.api_key}
        if last_id is not None:
            h["Last-Event-ID"] = str(last_id)
        self.conn.request("GET", "/job/events?job_id=" + job_id, headers=h)
        self.resp = self.conn.getresponse()
        self.comments = 0

    def next(self):
        """The next event as (id, kind, data), or None at the end."""
        ev = {}
        while True:
            line = self.resp.fp.readline()
            if not line:
                return None
            line = line.decode().rstrip("\n")
            if line == "":
                if ev:
                    return int(ev["id"]), ev["event"], json.loads(ev["data"])
                continue
            if line.startswith(":"):
                self.comments += 1
                continue
            k, _, v = line.partition(": ")
            ev[k] = v

    def rest(self):
        out = []
        while True:
            e = self.next()
            if e is None:
                return out
            out.append(e)

    def close(self):
        self.conn.close()


class LiveJobs(harness.ServiceTest):
    # A lease of 10 minutes: a cancel that ends a running job within the
    # bounds below went through the worker's cancel path, not the janitor.
    SERVICE_ARGS = {"workers": 1, "janitor": True,
                    "env": {"WORKER_CONCURRENCY": "2", "JOB_LEASE_S": "600",
                            "API_SSE_KEEPALIVE_MS": "300"}}

    def test_events_arrive_live_and_resume_without_gap(self):
        s = self.svc
        sid = s.create_session({"a.txt": "one\n"})["session_id"]
        jid = s.submit(sid, script_prompt([
            {"write": {"filePath": "b.txt", "content": "two\n"}},
            {"sleep": 6},
            {"text": "all done"},
        ]))["job_id"]
        first = SSE(s, jid)
        self.assertEqual(first.resp.status, 200)
        self.assertEqual(first.resp.getheader("Content-Type"), "text/event-stream")
        got = []
        while not any(k == "tool" for _, k, _ in got):
            e = first.next()
            self.assertIsNotNone(e, "stream ended before a tool event: %r" % got)
            got.append(e)
        # The write's event came while the agent still sleeps.
        self.assertEqual(s.job(jid)["status"], "running")
        first.close()

        # Reconnect after the last event seen: the rest, once each.
        again = SSE(s, jid, last_id=got[-1][0])
        rest = again.rest()
        again.close()
        self.assertGreater(again.comments, 0, "no keep-alive while the agent slept")
        events = got + rest
        ids = [i for i, _, _ in events]
        self.assertEqual(ids, list(range(1, len(ids) + 1)), events)
        kinds = [k for _, k, _ in events]
        self.assertEqual([d["status"] for _, k, d in events if k == "status"],
                         ["queued", "running", "succeeded"])
        self.assertEqual(kinds[-1], "status")
        self.assertIn("text", kinds)
        self.assertIn("step", kinds)
        tool = [d for _, k, d in events if k == "tool"][0]
        self.assertEqual((tool["tool"], tool["status"], tool["phase"]),
                         ("write", "completed", "finished"))
        self.assertIn("all done", [d["text"] for _, k, d in events if k == "text"])
        for _, _, d in events:
            self.assertEqual(set(d) >= {"seq", "attempt", "time"}, True, d)

        # A finished job replays in full, the same events.
        replay = SSE(s, jid)
        self.assertEqual(replay.rest(), events)
        replay.close()
        # And after the last one: nothing but the end.
        tail = SSE(s, jid, last_id=ids[-1])
        self.assertEqual(tail.rest(), [])
        tail.close()

    def test_long_poll_returns_when_the_job_ends(self):
        s = self.svc
        sid = s.create_session({"a.txt": "one\n"})["session_id"]
        jid = s.submit(sid, script_prompt([{"sleep": 4}, {"text": "done"}]))["job_id"]
        started = time.time()
        r = s.request("GET", "/job/status?job_id=%s&wait=60" % jid, timeout=90)
        took = time.time() - started
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["status"], "succeeded")
        # Generous: the job takes a few seconds; the wait would be 60.
        self.assertLess(took, 45)
        # An ended job answers at once, with its status.
        started = time.time()
        self.assertEqual(s.request("GET", "/job/status?job_id=%s&wait=60" % jid)
                         .json()["status"], "succeeded")
        self.assertLess(time.time() - started, 10)

    def test_cancel_a_running_job_keeps_partial_outputs_and_runs_the_next(self):
        s = self.svc
        sid = s.create_session({"a.txt": "one\n"})["session_id"]
        jid = s.submit(sid, script_prompt([
            {"write": {"filePath": "partial.txt", "content": "half\n"}},
            {"sleep": 300},
            {"text": "never"},
        ]))["job_id"]
        nxt = s.submit(sid, script_prompt([{"text": "next one"}]))["job_id"]
        stream = SSE(s, jid)
        while True:
            e = stream.next()
            self.assertIsNotNone(e)
            if e[1] == "tool":
                break
        started = time.time()
        r = s.request("POST", "/job/cancel?job_id=" + jid)
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json()["status"], "running")
        self.assertIsNotNone(r.json()["cancel_requested_at"])
        rest = stream.rest()
        stream.close()
        took = time.time() - started
        self.assertEqual(rest[-1][1], "status")
        self.assertEqual(rest[-1][2]["status"], "cancelled")
        # The lease is 600 s: only the worker's cancel path is this fast.
        self.assertLess(took, 60)
        job = s.job(jid)
        self.assertEqual((job["status"], job["error_code"]), ("cancelled", "cancelled"), job)
        self.assertEqual([f["path"] for f in job["output_files"]], ["a.txt", "partial.txt"])
        self.assertEqual(s.download(sid, "partial.txt", job_id=jid).body, b"half\n")
        # A second cancel is 409 with the job's status.
        self.assertError(s.request("POST", "/job/cancel?job_id=" + jid), 409, "cancelled",
                         code="job_ended")
        # The session's next job runs, from the session's files (the
        # cancelled job did not change them).
        self.assertEqual(s.wait_job(nxt)["status"], "succeeded")
        self.assertEqual(s.download(sid, "partial.txt").status, 404)

    def test_delete_session_with_a_running_job_stops_it(self):
        s = self.svc
        sid = s.create_session({"a.txt": "x\n"})["session_id"]
        jid = s.submit(sid, script_prompt([{"sleep": 300}, {"text": "never"}]))["job_id"]
        harness.wait_for(lambda: s.job(jid)["status"] == "running", 120, 0.2, "job running")
        started = time.time()
        self.assertEqual(s.request("DELETE", "/session?session_id=" + sid).status, 204)
        self.assertLess(time.time() - started, 10)
        self.assertEqual(s.request("GET", "/session/results?session_id=" + sid).status, 404)
        job = s.wait_job(jid, timeout=90)
        self.assertEqual((job["status"], job["error_code"]), ("cancelled", "cancelled"), job)
        # The janitor removes the folder once the run has stopped.
        harness.wait_for(lambda: not os.path.exists(s.session_dir(sid)), 60, 0.5,
                         "session folder removed")


if __name__ == "__main__":
    harness.main()
