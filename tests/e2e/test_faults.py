"""End to end under faults of the servers: RabbitMQ and PostgreSQL
stopped or restarted under a running service, a worker cut off from
PostgreSQL past its lease, a ledger check of many jobs while a worker is
killed and RabbitMQ restarted, a job submitted while RabbitMQ is down, and
GET /ready while PostgreSQL is down. These tests stop their servers, so
they run on a PostgreSQL and RabbitMQ of their own (harness.PrivateStack),
beside the other files; the faults a service suffers on its own are in
test_recovery.py.

Every test asserts something that breaks when the feature it covers is
missing: the lease deadline, the outbox, reconnects with backoff, 503
answers while the database is down, exactly-once and in-order jobs.

Needs scripts/stack.sh (STACK_SH), which starts the private stack and
stops and starts its servers mid-test.
"""

import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import script_prompt, wait_for  # noqa: E402
from faultkit import (FaultTest, bash, read, wait_in_workspace,  # noqa: E402
                      workspace)

# A worker cut off from PostgreSQL gives its job up one lease after its
# last renewal; the killed worker's job of the ledger waits a lease too.
# Short, but long enough that a renewal is not missed while other test
# files load the host (each renewal comes a third of a lease after the last).
harness.JOB_LEASE_S = "8"

STACK = None


def setUpModule():
    global STACK
    STACK = harness.PrivateStack()


def tearDownModule():
    if STACK is not None:
        STACK.close()


# ------------------------------------------------------ 1. lease deadline

# Waits up to 25 s, less once the test puts "release" into the workspace.
HOLD = "for i in $(seq 250); do if [ -e release ]; then rm release; break; fi; sleep 0.1; done"


class LeaseDeadline(FaultTest):
    """A worker cut off from PostgreSQL cannot renew its lease: once a whole
    JOB_LEASE_S has passed it stops its agent and drops the attempt, so it
    never keeps working next to the re-run the janitor then starts."""
    SERVICE_ARGS = {"workers": 1, "janitor": True}

    def test_worker_that_cannot_renew_stops_its_agent(self):
        s = self.svc
        sid = s.create_session({"a.txt": "a\n"}, ttl=3600)["session_id"]
        jid = s.submit(sid, script_prompt([bash("echo begun > begun.txt"), bash(HOLD),
                                           {"text": "done"}]), timeout_s=300)["job_id"]
        wait_in_workspace(s, sid, jid, lambda n: "begun.txt" in n)
        ws = workspace(s, sid, jid)
        attempt_dir = os.path.dirname(ws)
        STACK.run("pg-stop")
        try:
            t0 = time.time()
            wait_for(lambda: s.log_lines("worker0", r"job\.lease_expired job=%s" % jid), 30,
                     0.2, "the worker to give the job up")
            took = time.time() - t0
            wait_for(lambda: not harness.processes_mentioning(jid), 10, 0.2,
                     "the agent to stop")
            wait_for(lambda: not os.path.exists(attempt_dir), 30, 0.2,
                     "the dropped attempt's folder to go")
        finally:
            STACK.run("pg-start")
        # Within a lease (8 s) of its last renewal, plus sampling slack.
        self.assertLess(took, 20)
        self.assertIsNone(s.procs["worker0"].poll(), s.log_tail("worker0"))
        # Only the first attempt had to outlast the lease: the re-run is
        # let go once it began.
        wait_in_workspace(s, sid, jid, lambda n: "begun.txt" in n and s.job(jid)["attempt"] == 2,
                          what="the re-run's first step")
        with open(os.path.join(workspace(s, sid, jid), "release"), "w"):
            pass
        job = s.wait_job(jid, timeout=240)
        self.assertEqual((job["status"], job["attempt"]), ("succeeded", 2), job)
        self.assertEqual(job["result"], "done")


# ------------------------------------------------------- 2. broker restart

class BrokerRestart(FaultTest):
    # One slot: the slot whose broker connection died under the running job
    # has to reconnect to take the next one.
    SERVICE_ARGS = {"workers": 1, "janitor": True, "env": {"WORKER_CONCURRENCY": "1"}}

    def test_rabbitmq_restart_while_a_job_runs(self):
        s = self.svc
        sid_a = s.create_session({"a.txt": "a\n"}, ttl=3600)["session_id"]
        sid_b = s.create_session({"b.txt": "b\n"}, ttl=3600)["session_id"]
        ja = s.submit(sid_a, script_prompt([bash("echo ran-A >> count.txt"), {"sleep": 10},
                                            {"text": "A"}]))["job_id"]
        wait_in_workspace(s, sid_a, ja, lambda n: "count.txt" in n)
        STACK.run("mq-stop")
        try:
            r = s.request("POST", "/job?session_id=" + sid_b, {"prompt": script_prompt(
                [bash("echo ran-B >> count.txt"), {"text": "B"}])})
            self.assertEqual(r.status, 200, r)
            jb = r.json()["job_id"]
            self.assertEqual(s.job(jb)["status"], "queued")
        finally:
            STACK.run("mq-start")

        done = [s.wait_job(j, timeout=180) for j in (ja, jb)]
        for d in done:
            self.assertEqual(d["status"], "succeeded", d)
            self.assertEqual(d["attempt"], 1, d)
        # Each ran exactly once: one side effect, one scripted first step.
        self.assertEqual(s.download(sid_a, "count.txt").body, b"ran-A\n")
        self.assertEqual(s.download(sid_b, "count.txt").body, b"ran-B\n")
        model_log = read(os.path.join(s.tmp, "model-requests.log")) or ""
        for tag in ("ran-A", "ran-B"):
            n = len(re.findall(r"step 0 bash echo %s " % tag, model_log))
            self.assertEqual(n, 1, "%s played %d times:\n%s" % (tag, n, model_log))
        wait_for(lambda: s.scalar("SELECT count(*) FROM job_outbox") == "0", 15, 0.3,
                 "an empty outbox")


# ------------------------------------------------------ 3. database restart

class DatabaseRestart(FaultTest):
    SERVICE_ARGS = {"workers": 1, "janitor": True}

    def db_requests(self, sid, jid):
        s = self.svc
        return [
            ("GET /job/status", lambda: s.request("GET", "/job/status?job_id=" + jid,
                                                  timeout=20)),
            ("GET /session/results", lambda: s.request(
                "GET", "/session/results?session_id=" + sid, timeout=20)),
            ("POST /session", lambda: s.request(
                "POST", "/session", {"files": [{"path": "x.txt", "content": "x"}]},
                timeout=20)),
            ("POST /job", lambda: s.request(
                "POST", "/job?session_id=" + sid, {"prompt": "hello"}, timeout=20)),
        ]

    def test_postgresql_restart_under_a_running_service(self):
        s = self.svc
        sid = s.create_session({"a.txt": "a\n"}, ttl=3600)["session_id"]
        jid = s.submit(sid, script_prompt([{"text": "before"}]))["job_id"]
        self.assertEqual(s.wait_job(jid, timeout=240)["status"], "succeeded")
        passes_before = len(s.log_lines("janitor", r"janitor\.pass"))

        STACK.run("pg-stop")
        # The api's cache of ended jobs' documents stays fresh for
        # API_CACHE_STALE_MS (0.5 s) after the last heartbeat came back
        # (README, "Status reads"): nothing can have deleted the job in that
        # time, so it may answer the status from memory. Past it, it asks
        # the database like every other request here.
        time.sleep(1.5)
        restarted = False
        try:
            for name, call in self.db_requests(sid, jid):
                for _ in range(2):     # a stale connection, then a refused one
                    t0 = time.time()
                    r = call()
                    took = time.time() - t0
                    self.assertError(r, 503)
                    self.assertLess(took, 5, "%s took %.1fs" % (name, took))
            h = s.request("GET", "/health", key=None, timeout=10)
            self.assertEqual(h.status, 200, h)
            self.assertIsNone(s.procs["api"].poll())
            STACK.run("pg-start")
            restarted = True
        finally:
            if not restarted:
                STACK.run("pg-start")

        # Back without restarting anything. Once PostgreSQL accepts
        # connections again, no request may fail: a connection that died
        # with the old server must be replaced, not reported as an outage.
        failures = []
        for i in range(60):
            name, call = self.db_requests(sid, jid)[i % 2]
            r = call()
            if r.status != 200:
                failures.append("%s -> %r" % (name, r))
        for key in ("api", "worker0", "janitor"):
            self.assertIsNone(s.procs[key].poll(), "%s exited:\n%s" % (key, s.log_tail(key)))

        # The worker and the janitor keep working.
        def submit():
            r = s.request("POST", "/job?session_id=" + sid, {"prompt": script_prompt([
                {"write": {"filePath": "after.txt", "content": "after\n"}},
                {"text": "after"}])})
            return r.json()["job_id"] if r.status == 200 else None
        j2 = wait_for(submit, 20, 0.2, "a job submitted after the restart")
        job = s.wait_job(j2, timeout=240)
        self.assertEqual(job["status"], "succeeded", job)
        self.assertEqual(s.download(sid, "after.txt").body, b"after\n")
        wait_for(lambda: len(s.log_lines("janitor", r"janitor\.pass")) > passes_before + 2, 20,
                 0.5, "janitor passes after the restart")
        self.assertEqual(s.job(jid)["result"], "before")

        self.assertEqual(len(failures), 0, "requests that failed after PostgreSQL was back "
                         "(a stale connection per api thread?), first: %s" % failures[:1])


# ------------------------------------------------------------- 4. ledger

class LedgerUnderFaults(FaultTest):
    SERVICE_ARGS = {"workers": 2, "janitor": True, "env": {"WORKER_CONCURRENCY": "1"}}

    SESSIONS = 4

    def test_every_job_ends_once_in_order_despite_faults(self):
        s = self.svc
        sids = [s.create_session({"ledger.txt": "start\n"}, ttl=3600)["session_id"]
                for _ in range(self.SESSIONS)]
        submitted = []                   # (job id, session index, tag)
        for rnd in range(2):
            for i, sid in enumerate(sids):
                k = rnd * self.SESSIONS + i
                steps = [bash("echo J%d >> ledger.txt" % k)]
                if rnd == 0:
                    steps.append({"sleep": 2})
                steps.append({"text": "J%d" % k})
                submitted.append((s.submit(sid, script_prompt(steps))["job_id"], i, k))

        # Fault 1: kill -9 a worker in the middle of a job, start another.
        def victim():
            for jid, sid in s.sql("SELECT id, session_id FROM jobs WHERE status = 'running'"
                                  " AND worker_id = 'worker0'"):
                k = [t for j, _, t in submitted if j == jid][0]
                led = read(os.path.join(workspace(s, sid, jid), "ledger.txt")) or ""
                if ("J%d\n" % k) in led:
                    return jid
            return None
        killed = wait_for(victim, 240, 0.1, "a job running on worker0")
        s.stop("worker0", signal.SIGKILL)
        self.assertEqual(s.scalar("SELECT status FROM jobs WHERE id = '%s'" % killed), "running")
        s.start_worker("worker2")

        # Fault 2: restart RabbitMQ (the killed job's lease runs out meanwhile).
        STACK.run("mq-stop")
        STACK.run("mq-start")

        ids = [j for j, _, _ in submitted]
        in_list = ",".join("'%s'" % j for j in ids)

        def all_terminal():
            n = s.scalar("SELECT count(*) FROM jobs WHERE id IN (%s) AND status IN "
                         "('succeeded', 'failed', 'timed_out', 'cancelled')" % in_list)
            return n == str(len(ids))
        try:
            wait_for(all_terminal, 420, 0.5, "every job to end")
        except AssertionError:
            sys.stderr.write(s.all_logs())
            raise

        rows = s.sql("SELECT id, status, attempt, session_id, seq,"
                     " extract(epoch FROM started_at), extract(epoch FROM finished_at)"
                     " FROM jobs ORDER BY seq")
        self.assertEqual(sorted(r[0] for r in rows), sorted(ids), "each job exactly once")
        self.assertEqual({r[1] for r in rows}, {"succeeded"}, rows)
        self.assertEqual(s.scalar("SELECT count(*) FROM jobs WHERE status IN "
                                  "('queued', 'running') OR lease_token IS NOT NULL"), "0")
        attempts = {r[0]: int(r[2]) for r in rows}
        self.assertEqual(attempts[killed], 2, rows)
        self.assertEqual({j: a for j, a in attempts.items() if j != killed},
                         {j: 1 for j in ids if j != killed})
        wait_for(lambda: s.scalar("SELECT count(*) FROM job_outbox") == "0", 15, 0.3,
                 "an empty outbox")

        # Per session: seq order, each job started after the previous ended.
        for sid in sids:
            mine = [r for r in rows if r[3] == sid]
            self.assertEqual(len(mine), 2)
            for prev, cur in zip(mine, mine[1:]):
                self.assertLess(int(prev[4]), int(cur[4]))
                self.assertGreaterEqual(float(cur[5]), float(prev[6]), (prev, cur))
        # The ledgers: each job's line once, in submission order (the
        # killed attempt's line was discarded with its workspace).
        for i, sid in enumerate(sids):
            want = "start\n" + "".join("J%d\n" % k for _, si, k in submitted if si == i)
            self.assertEqual(s.download(sid, "ledger.txt").body.decode(), want)


# ------------------------------------------------ 5. outages seen by the api

class BrokerDownAtSubmit(FaultTest):
    SERVICE_ARGS = {"workers": 1}

    def test_job_submitted_while_rabbitmq_is_down_completes_after_restart(self):
        s = self.svc
        sid = s.create_session({"a.txt": "x\n"})["session_id"]
        STACK.run("mq-stop")
        try:
            q = s.submit(sid, script_prompt([
                {"write": {"filePath": "b.txt", "content": "after outage\n"}},
                {"text": "ok"}]))
            time.sleep(2)
            self.assertEqual(s.job(q["job_id"])["status"], "queued")
            self.assertEqual(s.scalar("SELECT count(*) FROM job_outbox WHERE job_id = '%s'"
                                      % q["job_id"]), "1")
        finally:
            STACK.run("mq-start")
        job = s.wait_job(q["job_id"], timeout=180)
        self.assertEqual(job["status"], "succeeded", job)
        self.assertEqual(s.download(sid, "b.txt").body, b"after outage\n")
        self.assertEqual(s.scalar("SELECT count(*) FROM job_outbox"), "0")


class NotReadyWithoutDatabase(FaultTest):
    SERVICE_ARGS = {"workers": 0}

    def test_not_ready_while_the_database_is_down(self):
        s = self.svc
        wait_for(lambda: s.ready().status == 200, 20, what="/ready 200")
        STACK.run("pg-stop")
        try:
            r = s.ready()
            detail = self.assertError(r, 503, code="not_ready")
            self.assertIn("database", detail)
            self.assertNotIn("broker", detail)
            self.assertEqual(s.request("GET", "/health", key=None, timeout=10).status, 200)
        finally:
            STACK.run("pg-start")
        wait_for(lambda: s.ready().status == 200, 30, what="/ready 200 after the restart")


if __name__ == "__main__":
    harness.main()
