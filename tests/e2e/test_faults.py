"""End to end under faults: workers killed with SIGKILL or stopped with
SIGTERM, RabbitMQ and PostgreSQL restarted under a running service, two
janitors at once, sessions expiring with and without running jobs, a
ledger check of many jobs while faults are injected, a job submitted while
RabbitMQ is down, and GET /ready while PostgreSQL is down. These are the
tests that stop the shared servers, so this file runs alone.

Every test asserts something that breaks when the feature it covers is
missing: leases and the janitor's re-queue, the rebuilt workspace of a
re-run, --die-with-parent / PR_SET_PDEATHSIG, the outbox, reconnects with
backoff, 503 answers while the database is down, the janitor's advisory
lock, the expiry rules and the worker's hand-back on shutdown.

Needs the stack's STACK_SH (scripts/test.sh exports it): the broker and
the database are stopped and started mid-test.
"""

import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import script_prompt, wait_for  # noqa: E402

# These tests wait for leases to run out, and run alone (tests/CMakeLists.txt).
harness.JOB_LEASE_S = "6"

TERMINAL = ("succeeded", "failed", "timed_out", "cancelled")


# ---------------------------------------------------------------- processes

def _proc_table():
    """pid -> (ppid, state, starttime) of every process (from /proc/PID/stat)."""
    table = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                s = f.read()
        except OSError:
            continue
        rest = s[s.rindex(")") + 2:].split()
        table[int(d)] = (int(rest[1]), rest[0], rest[19])
    return table


def descendants(pid):
    """(pid, starttime) of every live descendant of pid."""
    table = _proc_table()
    children = {}
    for p, (ppid, _state, _start) in table.items():
        children.setdefault(ppid, []).append(p)
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if table[c][1] not in "ZX":
                out.add((c, table[c][2]))
            todo.append(c)
    return out


def alive(pid, starttime):
    """True while pid is the same process (same start time) and not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return False
    rest = s[s.rindex(")") + 2:].split()
    return rest[19] == starttime and rest[0] not in "ZX"


def procs_mentioning(text):
    """pids of live processes whose command line contains text (e.g. a
    workspace path: bwrap gets it as --bind PATH /workspace)."""
    needle = text.encode()
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmd = f.read()
            with open("/proc/%s/stat" % d) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if needle in cmd and state not in "ZX":
            found.append((int(d), cmd.replace(b"\0", b" ").decode(errors="replace")))
    return found


# ---------------------------------------------------------------- helpers

def bash(cmd):
    return {"bash": {"command": cmd, "description": "run " + cmd.split()[0]}}


def workspace(svc, sid, jid):
    return svc.workspace(sid, jid)


def ws_files(svc, sid, jid):
    try:
        return sorted(os.listdir(workspace(svc, sid, jid)))
    except OSError:
        return []


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def wait_in_workspace(svc, sid, jid, pred, timeout=240, what="agent step"):
    """Waits until pred(list of workspace names) holds while the job runs:
    the agent is up and has done its first step."""
    def check():
        j = svc.job(jid)
        if j["status"] in TERMINAL:
            raise AssertionError("job ended before the fault could be injected: %r\n%s"
                                 % (j, svc.all_logs()))
        names = ws_files(svc, sid, jid)
        return names if j["status"] == "running" and pred(names) else None
    return wait_for(check, timeout, 0.1, what)


def log_lines(svc, key, pattern):
    path = svc.logs.get(key)
    if not path or not os.path.exists(path):
        return []
    rx = re.compile(pattern)
    with open(path, errors="replace") as f:
        return [line for line in f if rx.search(line)]


def outputs(job):
    return sorted(f["path"] for f in job["output_files"] or [])


class FaultTest(harness.ServiceTest):
    def wait_gone(self, procs, timeout=3):
        try:
            wait_for(lambda: not [p for p in procs if alive(*p)], timeout, 0.1,
                     "agent processes to die")
        except AssertionError:
            left = [p for p in procs if alive(*p)]
            cmds = []
            for pid, _ in left:
                cmds.append("%d: %s" % (pid, read("/proc/%d/cmdline" % pid)))
            raise AssertionError("processes of the killed worker survived:\n" + "\n".join(cmds))


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
        self.assertTrue(log_lines(s, "janitor", r"janitor\.job_requeued job=%s" % jid),
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


class LeaseDeadline(FaultTest):
    """A worker cut off from PostgreSQL cannot renew its lease: once a whole
    JOB_LEASE_S has passed it stops its agent and drops the attempt, so it
    never keeps working next to the re-run the janitor then starts."""
    SERVICE_ARGS = {"workers": 1, "janitor": True, "env": {"JOB_LEASE_S": "6"}}

    def test_worker_that_cannot_renew_stops_its_agent(self):
        s = self.svc
        sid = s.create_session({"a.txt": "a\n"}, ttl=3600)["session_id"]
        jid = s.submit(sid, script_prompt([bash("echo begun > begun.txt"), bash("sleep 25"),
                                           {"text": "done"}]), timeout_s=300)["job_id"]
        wait_in_workspace(s, sid, jid, lambda n: "begun.txt" in n)
        ws = workspace(s, sid, jid)
        attempt_dir = os.path.dirname(ws)
        harness.stack("pg-stop")
        try:
            t0 = time.time()
            wait_for(lambda: log_lines(s, "worker0", r"job\.lease_expired job=%s" % jid), 30,
                     0.2, "the worker to give the job up")
            took = time.time() - t0
            wait_for(lambda: not harness.processes_mentioning(jid), 10, 0.2,
                     "the agent to stop")
            wait_for(lambda: not os.path.exists(attempt_dir), 30, 0.2,
                     "the dropped attempt's folder to go")
        finally:
            harness.stack("pg-start")
        # Within a lease (6 s) of its last renewal, plus sampling slack.
        self.assertLess(took, 20)
        self.assertIsNone(s.procs["worker0"].poll(), s.log_tail("worker0"))
        job = s.wait_job(jid, timeout=240)
        self.assertEqual((job["status"], job["attempt"]), ("succeeded", 2), job)
        self.assertEqual(job["result"], "done")


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
        self.assertTrue(log_lines(s, "janitor", r"janitor\.job_failed job=%s" % jid))

        j2 = s.wait_job(nxt["job_id"], timeout=240)
        self.assertEqual(j2["status"], "succeeded", j2)
        self.assertEqual(s.download(sid, "next.txt").body, b"next\n")
        # Not re-run behind our back: still failed, one attempt, no lease.
        self.assertEqual(s.sql("SELECT status, attempt, lease_token IS NULL FROM jobs "
                               "WHERE id = '%s'" % jid), [["failed", "1", "t"]])
        self.assertEqual(s.scalar("SELECT count(*) FROM jobs WHERE status IN "
                                  "('queued', 'running')"), "0")


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
        harness.stack("mq-stop")
        try:
            r = s.request("POST", "/job?session_id=" + sid_b, {"prompt": script_prompt(
                [bash("echo ran-B >> count.txt"), {"text": "B"}])})
            self.assertEqual(r.status, 200, r)
            jb = r.json()["job_id"]
            self.assertEqual(s.job(jb)["status"], "queued")
        finally:
            harness.stack("mq-start")

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
        passes_before = len(log_lines(s, "janitor", r"janitor\.pass"))

        harness.stack("pg-stop")
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
            harness.stack("pg-start")
            restarted = True
        finally:
            if not restarted:
                harness.stack("pg-start")

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
        wait_for(lambda: len(log_lines(s, "janitor", r"janitor\.pass")) > passes_before + 2, 20,
                 0.5, "janitor passes after the restart")
        self.assertEqual(s.job(jid)["result"], "before")

        self.assertEqual(len(failures), 0, "requests that failed after PostgreSQL was back "
                         "(a stale connection per api thread?), first: %s" % failures[:1])


# ------------------------------------------------------------ 4. janitors

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
            bad = log_lines(s, key, r" (warn|error) opencode-janitor ")
            self.assertEqual(bad, [], "%s logged problems" % key)
            self.assertTrue(log_lines(s, key, r"janitor\.(pass|follower)"),
                            "%s made no passes:\n%s" % (key, s.log_tail(key)))

        # Exactly once: the passes of both janitors together expired and
        # removed each session one time.
        passes = log_lines(s, "janitor", r"janitor\.pass") + \
            log_lines(s, "janitor2", r"janitor\.pass")
        self.assertTrue(passes)
        totals = [0, 0, 0, 0]
        for line in passes:
            m = PASS_RE.search(line)
            self.assertIsNotNone(m, line)
            totals = [t + int(v) for t, v in zip(totals, m.groups())]
        self.assertEqual(totals, [0, 0, len(short), len(short)], passes)


# ------------------------------------------------------------- 5. expiry

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
        passes = len(log_lines(s, "janitor", r"janitor\.pass"))
        # Several janitor passes while the expired session's job runs.
        wait_for(lambda: len(log_lines(s, "janitor", r"janitor\.pass")) >= passes + 3, 15,
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


# ---------------------------------------------------- 6. graceful shutdown

class GracefulShutdown(FaultTest):
    SERVICE_ARGS = {"workers": 0, "janitor": False}

    def test_sigterm_lets_a_short_job_finish(self):
        s = self.svc
        # A grace that is long enough on a loaded machine; the job's last
        # steps take a second or two.
        s.start_worker("short", WORKER_GRACE_S="30")
        sid = s.create_session({"a.txt": "a\n"}, ttl=3600)["session_id"]
        jid = s.submit(sid, script_prompt([
            bash("echo begun > begun.txt"), {"sleep": 1},
            {"write": {"filePath": "end.txt", "content": "end\n"}}, {"text": "short"}]))["job_id"]
        wait_in_workspace(s, sid, jid, lambda n: "begun.txt" in n)
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
        self.assertFalse(log_lines(s, "short", r"job\.released"))
        self.assertFalse(log_lines(s, "short", r"job\.started job=%s" % late),
                         "the stopping worker took a new job:\n" + s.log_tail("short"))
        self.assertEqual(s.sql("SELECT status, attempt FROM jobs WHERE id = '%s'" % late),
                         [["queued", "0"]])

    def test_sigterm_hands_a_long_job_back(self):
        s = self.svc
        s.start_worker("long", WORKER_GRACE_S="1")
        sid = s.create_session({"a.txt": "a\n"}, ttl=3600)["session_id"]
        jid = s.submit(sid, script_prompt([
            bash("echo begun > begun.txt"), {"sleep": 7},
            {"write": {"filePath": "end.txt", "content": "end\n"}}, {"text": "long"}]),
            timeout_s=300)["job_id"]
        wait_in_workspace(s, sid, jid, lambda n: "begun.txt" in n)
        tree = descendants(s.procs["long"].pid)
        t0 = time.time()
        code = s.stop("long", signal.SIGTERM, timeout=30)
        took = time.time() - t0
        self.assertEqual(code, 0, s.log_tail("long"))
        self.assertLess(took, 1 + 5, "the worker took %.1fs to stop" % took)
        self.wait_gone(tree, 3)
        self.assertTrue(log_lines(s, "long", r"job\.released job=%s" % jid), s.log_tail("long"))

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


# ------------------------------------------------------ 7. ledger

class LedgerUnderFaults(FaultTest):
    SERVICE_ARGS = {"workers": 2, "janitor": True, "env": {"WORKER_CONCURRENCY": "1"}}

    SESSIONS = 6

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
        harness.stack("mq-stop")
        harness.stack("mq-start")

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


# ------------------------------------------------------ 8. lost messages

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


# ------------------------------------------------ 9. outages seen by the api

class BrokerDownAtSubmit(FaultTest):
    SERVICE_ARGS = {"workers": 1}

    def test_job_submitted_while_rabbitmq_is_down_completes_after_restart(self):
        s = self.svc
        sid = s.create_session({"a.txt": "x\n"})["session_id"]
        harness.stack("mq-stop")
        try:
            q = s.submit(sid, script_prompt([
                {"write": {"filePath": "b.txt", "content": "after outage\n"}},
                {"text": "ok"}]))
            time.sleep(2)
            self.assertEqual(s.job(q["job_id"])["status"], "queued")
            self.assertEqual(s.scalar("SELECT count(*) FROM job_outbox WHERE job_id = '%s'"
                                      % q["job_id"]), "1")
        finally:
            harness.stack("mq-start")
        job = s.wait_job(q["job_id"], timeout=180)
        self.assertEqual(job["status"], "succeeded", job)
        self.assertEqual(s.download(sid, "b.txt").body, b"after outage\n")
        self.assertEqual(s.scalar("SELECT count(*) FROM job_outbox"), "0")


class NotReadyWithoutDatabase(FaultTest):
    SERVICE_ARGS = {"workers": 0}

    def test_not_ready_while_the_database_is_down(self):
        s = self.svc
        wait_for(lambda: s.ready().status == 200, 20, what="/ready 200")
        harness.stack("pg-stop")
        try:
            r = s.ready()
            detail = self.assertError(r, 503, code="not_ready")
            self.assertIn("database", detail)
            self.assertNotIn("broker", detail)
            self.assertEqual(s.request("GET", "/health", key=None, timeout=10).status, 200)
        finally:
            harness.stack("pg-start")
        wait_for(lambda: s.ready().status == 200, 30, what="/ready 200 after the restart")


if __name__ == "__main__":
    harness.main()
