"""End to end under faults of one service's own processes: workers
killed with SIGKILL or stopped with SIGTERM, two janitors at once, sessions
expiring with and without running jobs, and a queued job whose message was
lost. Nothing here stops the shared PostgreSQL or RabbitMQ (that is
test_faults.py), so this file runs beside the others.

Every test asserts something that breaks when the feature it covers is
missing: leases and the janitor's re-queue, the rebuilt workspace of a
re-run, --die-with-parent / PR_SET_PDEATHSIG, the janitor's advisory lock,
the expiry rules, the worker's hand-back on shutdown and the janitor's
re-announcement of queued jobs.
"""

import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import script_prompt, wait_for  # noqa: E402
from faultkit import (FaultTest, bash, descendants, outputs,  # noqa: E402
                      procs_mentioning, workspace, wait_in_workspace)

# A killed worker's job is re-queued once its lease ran out: short, but
# long enough that a renewal is not missed while other test files load the
# host (each renewal comes a third of a lease after the last).
harness.JOB_LEASE_S = "8"

# ------------------------------------------------------------ 1. kill -9

MARK_THEN_SLEEP = [
    bash("date +%s%N > run-$(date +%s%N).txt"),
    {"sleep": 5},
    {"write": {"filePath": "final.txt", "content": "final\n"}},
    {"text": "finished"},
]


class KillWorker(FaultTest):
    SERVICE_ARGS = {"workers": 1, "janitor": True}

    def test_sigkilled_worker_job_is_rerun_from_a_clean_workspace(self):
        s = self.svc
        sid = s.create_session({"a.txt": "input\n"}, ttl=3600)["session_id"]
        jid = s.submit(sid, script_prompt(MARK_THEN_SLEEP))["job_id"]
        names = wait_in_workspace(s, sid, jid, lambda n: any(x.startswith("run-") for x in n),
                                  what="the first attempt's marker")
        first_marker = [n for n in names if n.startswith("run-")]
        self.assertEqual(len(first_marker), 1, names)

        worker_pid = s.procs["worker0"].pid
        tree = descendants(worker_pid)
        self.assertTrue(tree, "the agent should run under the worker")
        ws = workspace(s, sid, jid)
        self.assertTrue(procs_mentioning(ws), "a sandbox for the workspace should run")
        s.stop("worker0", signal.SIGKILL)

        # --die-with-parent / PR_SET_PDEATHSIG: nothing of the agent survives.
        self.wait_gone(tree, 3)
        wait_for(lambda: not procs_mentioning(ws), 3, 0.1, "no process using the workspace")

        # The dead worker's claim stands until its lease runs out.
        row = s.sql("SELECT status, attempt, worker_id FROM jobs WHERE id = '%s'" % jid)[0]
        self.assertEqual(row, ["running", "1", "worker0"])

        s.start_worker("worker1")
        job = s.wait_job(jid, timeout=240)
        self.assertEqual(job["status"], "succeeded", job)
        self.assertEqual(job["attempt"], 2, job)
        self.assertEqual(s.scalar("SELECT worker_id FROM jobs WHERE id = '%s'" % jid), "worker1")
        self.assertTrue(s.log_lines("janitor", r"janitor\.job_requeued job=%s" % jid),
                        s.log_tail("janitor"))

        # The re-run started from the session's files, not from the killed
        # attempt's half-done workspace: exactly one marker, the new one.
        files = outputs(job)
        markers = [f for f in files if f.startswith("run-")]
        self.assertEqual(len(markers), 1, files)
        self.assertNotEqual(markers, first_marker, "the killed attempt's file was kept")
        self.assertEqual(sorted(set(files) - set(markers)), ["a.txt", "final.txt"])
        self.assertEqual(s.download(sid, "final.txt").body, b"final\n")
        # The published outputs hold the new marker only; the killed
        # attempt's own folder (ws) was never touched by the re-run.
        published = workspace(s, sid, jid)
        self.assertNotEqual(published, ws)
        self.assertEqual(sorted(n for n in os.listdir(published) if n.startswith("run-")),
                         markers)
        self.assertEqual(sorted(n for n in os.listdir(ws) if n.startswith("run-")),
                         first_marker)


class KillWorkerLastAttempt(FaultTest):
    SERVICE_ARGS = {"workers": 1, "janitor": True, "env": {"JOB_MAX_ATTEMPTS": "1"}}

    def test_job_fails_with_worker_lost_after_max_attempts(self):
        s = self.svc
        sid = s.create_session({"a.txt": "input\n"}, ttl=3600)["session_id"]
        jid = s.submit(sid, script_prompt([bash("echo started > started.txt"),
                                           {"sleep": 60}, {"text": "never"}]))["job_id"]
        # The session's next job waits behind it and must not be stuck.
        nxt = s.submit(sid, script_prompt([
            {"write": {"filePath": "next.txt", "content": "next\n"}}, {"text": "next"}]))
        wait_in_workspace(s, sid, jid, lambda n: "started.txt" in n)
        tree = descendants(s.procs["worker0"].pid)
        s.stop("worker0", signal.SIGKILL)
        self.wait_gone(tree, 3)
        s.start_worker("worker1")

        job = s.wait_job(jid, timeout=60)
        self.assertEqual(job["status"], "failed", job)
        self.assertTrue(job["error"].startswith("worker lost"), job["error"])
        self.assertEqual(job["error_code"], "worker_lost", job)
        self.assertIn("worker0", job["error"])
        self.assertEqual(job["attempt"], 1)
        self.assertIsNotNone(job["finished_at"])
        self.assertTrue(s.log_lines("janitor", r"janitor\.job_failed job=%s" % jid))

        j2 = s.wait_job(nxt["job_id"], timeout=240)
        self.assertEqual(j2["status"], "succeeded", j2)
        self.assertEqual(s.download(sid, "next.txt").body, b"next\n")
        # Not re-run behind our back: still failed, one attempt, no lease.
        self.assertEqual(s.sql("SELECT status, attempt, lease_token IS NULL FROM jobs "
                               "WHERE id = '%s'" % jid), [["failed", "1", "t"]])
        self.assertEqual(s.scalar("SELECT count(*) FROM jobs WHERE status IN "
                                  "('queued', 'running')"), "0")


# ------------------------------------------------------------ 2. janitors

PASS_RE = re.compile(r"janitor\.pass requeued=(\d+) failed=(\d+) expired=(\d+) removed=(\d+)")


class TwoJanitors(FaultTest):
    SERVICE_ARGS = {"workers": 0, "janitor": True}

    def test_two_janitors_purge_each_session_once(self):
        s = self.svc
        s.start_janitor("janitor2")
        keep = s.create_session({"k.txt": "keep\n"}, ttl=3600)["session_id"]
        short = [s.create_session({"f%d.txt" % i: "x\n", "d/g.txt": "y\n"}, ttl=1)["session_id"]
                 for i in range(6)]
        for sid in short:
            self.assertTrue(os.path.isdir(s.session_dir(sid)))

        def purged():
            rows = s.sql("SELECT id FROM sessions WHERE status = 'expired'"
                         " AND files_removed_at IS NOT NULL AND ended_at IS NOT NULL")
            return sorted(r[0] for r in rows) == sorted(short) and \
                not any(os.path.exists(s.session_dir(x)) for x in short)
        wait_for(purged, 30, 0.3, "the expired sessions to be purged")
        time.sleep(3)                   # a few more passes of both janitors

        self.assertEqual(s.scalar("SELECT status FROM sessions WHERE id = '%s'" % keep),
                         "active")
        self.assertTrue(os.path.isdir(s.session_dir(keep)))
        self.assertEqual(s.disk_sessions(), [keep])
        for key in ("janitor", "janitor2"):
            self.assertIsNone(s.procs[key].poll(), "%s exited:\n%s" % (key, s.log_tail(key)))
            bad = s.log_lines(key, r" (warn|error) opencode-janitor ")
            self.assertEqual(bad, [], "%s logged problems" % key)
            self.assertTrue(s.log_lines(key, r"janitor\.(pass|follower)"),
                            "%s made no passes:\n%s" % (key, s.log_tail(key)))

        # Exactly once: the passes of both janitors together expired and
        # removed each session one time.
        passes = s.log_lines("janitor", r"janitor\.pass") + \
            s.log_lines("janitor2", r"janitor\.pass")
        self.assertTrue(passes)
        totals = [0, 0, 0, 0]
        for line in passes:
            m = PASS_RE.search(line)
            self.assertIsNotNone(m, line)
            totals = [t + int(v) for t, v in zip(totals, m.groups())]
        self.assertEqual(totals, [0, 0, len(short), len(short)], passes)


# ------------------------------------------------------------- 3. expiry

class SessionExpiry(FaultTest):
    SERVICE_ARGS = {"workers": 1, "janitor": True}

    def wait_expired_now(self, sid, timeout=30):
        s = self.svc
        wait_for(lambda: s.scalar("SELECT expires_at <= now() FROM sessions WHERE id = '%s'"
                                  % sid) == "t", timeout, 0.05, "the session's expiry")

    def test_expired_session_is_purged_and_its_history_kept(self):
        s = self.svc
        sid = s.create_session({"a.txt": "a\n"}, ttl=3)["session_id"]
        jid = s.submit(sid, script_prompt([
            {"write": {"filePath": "out.txt", "content": "out\n"}}, {"text": "ok"}]))["job_id"]
        self.assertEqual(s.wait_job(jid, timeout=240)["status"], "succeeded")
        self.assertEqual(s.download(sid, "out.txt").status, 200)

        self.wait_expired_now(sid)
        # 404 from the instant of expiry, whether or not the janitor came by.
        self.assertError(s.request("GET", "/session/results?session_id=" + sid), 404)
        self.assertEqual(s.download(sid, "out.txt").status, 404)
        self.assertError(s.request("POST", "/job?session_id=" + sid, {"prompt": "x"}), 404)

        wait_for(lambda: not os.path.exists(s.session_dir(sid)), 15, 0.2, "folder removal")
        row = s.sql("SELECT status, ended_at IS NOT NULL, files_removed_at IS NOT NULL "
                    "FROM sessions WHERE id = '%s'" % sid)
        self.assertEqual(row, [["expired", "t", "t"]])
        # Job history stays readable.
        self.assertEqual(s.scalar("SELECT count(*) FROM jobs WHERE session_id = '%s'" % sid), "1")
        job = s.job(jid)
        self.assertEqual((job["status"], job["result"]), ("succeeded", "ok"))

    def test_session_with_a_running_job_is_not_purged(self):
        s = self.svc
        sid = s.create_session({"a.txt": "a\n"}, ttl=2)["session_id"]
        jid = s.submit(sid, script_prompt([
            bash("echo working > working.txt"), {"sleep": 9},
            {"write": {"filePath": "b.txt", "content": "late\n"}}, {"text": "late"}]))["job_id"]
        wait_in_workspace(s, sid, jid, lambda n: "working.txt" in n)
        self.wait_expired_now(sid)
        self.assertEqual(s.download(sid, "a.txt").status, 404)
        passes = len(s.log_lines("janitor", r"janitor\.pass"))
        # Several janitor passes while the expired session's job runs.
        wait_for(lambda: len(s.log_lines("janitor", r"janitor\.pass")) >= passes + 3, 15,
                 0.2, "janitor passes")
        self.assertEqual(s.job(jid)["status"], "running", "the job should still sleep")
        self.assertEqual(s.sql("SELECT status, files_removed_at IS NULL FROM sessions "
                               "WHERE id = '%s'" % sid), [["active", "t"]])
        self.assertTrue(os.path.isfile(os.path.join(workspace(s, sid, jid), "working.txt")))
        self.assertTrue(os.path.isdir(os.path.join(s.session_dir(sid), "input")))

        job = s.wait_job(jid, timeout=240)
        self.assertEqual(job["status"], "succeeded", job)
        self.assertIn("b.txt", outputs(job))
        self.assertEqual(s.scalar("SELECT count(*) FROM job_files WHERE job_id = '%s'"
                                  " AND path = 'b.txt'" % jid), "1")
        # Finishing gave the session its ttl again; then it goes.
        wait_for(lambda: s.sql("SELECT status, files_removed_at IS NOT NULL FROM sessions "
                               "WHERE id = '%s'" % sid) == [["expired", "t"]], 20, 0.3,
                 "the session to be purged after its job")
        self.assertFalse(os.path.exists(s.session_dir(sid)))
        self.assertEqual(s.job(jid)["status"], "succeeded")


# ---------------------------------------------------- 4. graceful shutdown

class GracefulShutdown(FaultTest):
    SERVICE_ARGS = {"workers": 0, "janitor": False}

    def begun_job(self, worker, grace_s, sleep_s, **fields):
        """Starts worker with WORKER_GRACE_S=grace_s and a job on it that has
        begun, then sleeps sleep_s and writes end.txt: (session, job)."""
        s = self.svc
        s.start_worker(worker, WORKER_GRACE_S=str(grace_s))
        sid = s.create_session({"a.txt": "a\n"}, ttl=3600)["session_id"]
        jid = s.submit(sid, script_prompt([
            bash("echo begun > begun.txt"), {"sleep": sleep_s},
            {"write": {"filePath": "end.txt", "content": "end\n"}}, {"text": worker}]),
            **fields)["job_id"]
        wait_in_workspace(s, sid, jid, lambda n: "begun.txt" in n)
        return sid, jid

    def test_sigterm_lets_a_short_job_finish(self):
        s = self.svc
        # A grace that is long enough on a loaded machine; the job's last
        # steps take a second or two.
        sid, jid = self.begun_job("short", 30, 1)
        self.assertEqual(s.scalar("SELECT worker_id FROM jobs WHERE id = '%s'" % jid), "short")
        other = s.create_session({"b.txt": "b\n"}, ttl=3600)["session_id"]
        p = s.procs["short"]
        t0 = time.time()
        p.send_signal(signal.SIGTERM)
        # A job that arrives after SIGTERM is not taken: the worker's idle
        # slot (it has two) must leave it for another worker.
        late = s.submit(other, script_prompt([{"text": "late"}]))["job_id"]
        code = p.wait(60)
        took = time.time() - t0
        self.assertEqual(code, 0, s.log_tail("short"))
        job = s.job(jid)
        self.assertEqual(job["status"], "succeeded", (job, s.log_tail("short")))
        self.assertEqual(job["attempt"], 1)
        self.assertEqual(s.download(sid, "end.txt").body, b"end\n")
        self.assertLess(took, 30)
        self.assertFalse(s.log_lines("short", r"job\.released"))
        self.assertFalse(s.log_lines("short", r"job\.started job=%s" % late),
                         "the stopping worker took a new job:\n" + s.log_tail("short"))
        self.assertEqual(s.sql("SELECT status, attempt FROM jobs WHERE id = '%s'" % late),
                         [["queued", "0"]])

    def test_sigterm_hands_a_long_job_back(self):
        s = self.svc
        sid, jid = self.begun_job("long", 1, 7, timeout_s=300)
        tree = descendants(s.procs["long"].pid)
        t0 = time.time()
        code = s.stop("long", signal.SIGTERM, timeout=30)
        took = time.time() - t0
        self.assertEqual(code, 0, s.log_tail("long"))
        self.assertLess(took, 1 + 5, "the worker took %.1fs to stop" % took)
        self.wait_gone(tree, 3)
        self.assertTrue(s.log_lines("long", r"job\.released job=%s" % jid), s.log_tail("long"))

        # Handed back: queued, the attempt not counted, no lease; and
        # announced again (outbox row, or already published by the relay).
        row = s.sql("SELECT status, attempt, lease_token IS NULL, finished_at IS NULL "
                    "FROM jobs WHERE id = '%s'" % jid)
        self.assertEqual(row, [["queued", "0", "t", "t"]])

        s.start_worker("after")
        job = s.wait_job(jid, timeout=240)
        self.assertEqual(job["status"], "succeeded", job)
        self.assertEqual(job["attempt"], 1)
        self.assertEqual(s.download(sid, "end.txt").body, b"end\n")
        self.assertEqual(s.scalar("SELECT worker_id FROM jobs WHERE id = '%s'" % jid), "after")
        self.assertEqual(s.stop("after"), 0)


# ------------------------------------------------------ 5. lost messages

class LostMessage(FaultTest):
    SERVICE_ARGS = {"workers": 1, "janitor": True, "env": {"JOB_REPUBLISH_S": "5"}}

    def test_queued_job_whose_message_was_lost_is_announced_again(self):
        # A job the database holds as queued and published long ago, with
        # no message anywhere (as after a broker whose data was wiped).
        s = self.svc
        sid = s.create_session({"a.txt": "x\n"}, ttl=3600)["session_id"]
        jid = "%032x" % int(time.time() * 1e6)
        prompt = script_prompt([{"write": {"filePath": "b.txt", "content": "found\n"}},
                                {"text": "ok"}]).replace("'", "''")
        s.sql("INSERT INTO jobs (id, session_id, prompt, model, timeout_s, created_at, "
              "published_at) VALUES ('%s', '%s', '%s', '%s', 300, now() - interval '1 hour', "
              "now() - interval '1 hour')" % (jid, sid, prompt, harness.MODEL))
        job = s.wait_job(jid, timeout=240)
        self.assertEqual(job["status"], "succeeded", job)
        self.assertEqual(s.download(sid, "b.txt").body, b"found\n")
        self.assertTrue(any(int(m) >= 1 for m in re.findall(r"republished=(\d+)",
                                                             s.log_tail("janitor", 100000))))
        # Announced once more, not on every pass: published_at moved on.
        self.assertEqual(s.scalar("SELECT published_at > now() - interval '10 minutes' "
                                  "FROM jobs WHERE id = '%s'" % jid), "t")


if __name__ == "__main__":
    harness.main()
