"""End to end: a hostile agent cannot harm the host, other jobs or the
service (issue 9, "Containment": per-job limits, the agent's own uid,
output caps).

The real opencode runs under bubblewrap as a leased uid, driven by the
scripted model, whose `bash` steps are the attacks. To keep the file's
cost bounded, every attack job (one session each) and one well-behaved
companion job of another session are submitted together in setUpClass,
and run side by side (WORKER_CONCURRENCY 4); a thread polls /health the
whole time. Each test method then checks one attack's outcome.

Limits are set low here (see LIMITS): a normal job of the scripted model
peaks at about 0.5-0.75 GiB RSS, ~20 tasks and ~5 CPU seconds, and
opencode fills its HOME with ~90 MB (an npm install of its plugin
package) when it runs more than a few seconds (worker log line
job.usage), so the limits leave it room.
"""

import os
import stat
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import script_prompt  # noqa: E402

UID_FIRST, UID_LAST = 231000, 231049
LIMITS = {
    "JOB_MAX_MEMORY_MB": "1200",
    "JOB_MAX_PROCS": "150",
    "JOB_MAX_CPU_S": "25",
    "JOB_MAX_DISK_MB": "300",
    "JOB_TMP_MB": "16",
    "JOB_WATCHDOG_MS": "200",
    "JOB_MAX_OUTPUT_FILES": "200",
    "AGENT_UID_RANGE": "%d-%d" % (UID_FIRST, UID_LAST),
    "WORKER_CONCURRENCY": "4",
}


def bash(cmd):
    return {"bash": {"command": cmd, "description": "attack", "timeout": 300000}}


# name -> (the agent's steps, the error_code expected; None: succeeds)
ATTACKS = {
    "fork_bomb": ([bash("bash -c ':(){ :|:& };:'; sleep 60")], "process_limit"),
    "memory_hog": ([bash("python3 -c \"x = b'a' * (3000 << 20); import time; time.sleep(120)\"")],
                   "memory_limit"),
    "fill_tmp": ([bash("mkdir -p obs; head -c 100M /dev/zero > /tmp/fill; echo rc=$? > obs/tmp.txt;"
                       " stat -c size=%s /tmp/fill >> obs/tmp.txt")], None),
    "fill_workspace": ([bash("for i in 1 2 3 4 5 6 7 8; do head -c 50M /dev/zero > fill$i.bin; "
                             "done; sleep 60")], "disk_limit"),
    "setuid": ([bash("cp /usr/bin/id myid; chmod 4755 myid; mkdir -p obs; ls -ln myid > obs/suid.txt;"
                     " id -u > obs/uid.txt")], None),
    "many_files": ([bash("mkdir many; for i in $(seq 1 300); do : > many/f$i; done")],
                   "output_limit"),
    "cpu_burner": ([bash("timeout 200 sh -c 'while :; do :; done'")], "cpu_limit"),
}


def uid_processes():
    """Live processes whose real uid is in the test's range."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/status" % pid) as f:
                st = f.read()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in st.splitlines() if ":" in line)
        uid = int(fields.get("Uid", "-1").split()[0])
        if UID_FIRST <= uid <= UID_LAST and not fields.get("State", "").strip().startswith("Z"):
            found.append((int(pid), uid, fields.get("Name", "").strip()))
    return found


class Containment(harness.ServiceTest):
    SERVICE_ARGS = {"workers": 1, "janitor": True, "env": LIMITS}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        s = cls.svc
        s.extra_env["AGENT_UID_LOCK_DIR"] = os.path.join(s.tmp, "uids")
        try:
            cls.run_all()
        except BaseException:
            sys.stderr.write(s.all_logs())
            s.close(check=False)
            cls.svc = None
            raise

    @classmethod
    def run_all(cls):
        s = cls.svc
        # The worker was started before the lock folder was known: restart
        # it with its own (host-local, per test).
        s.stop("worker0")
        s.start_worker("worker0")
        cls.health_worst = 0.0
        cls.health_failures = []
        stop = threading.Event()
        poller = threading.Thread(target=cls.poll_health, args=(stop,), daemon=True)
        poller.start()
        try:
            cls.jobs = {}
            companion = s.create_session({"README.md": "companion\n"})["session_id"]
            cls.companion = (companion, s.submit(companion, script_prompt(
                [{"write": {"filePath": "ok.txt", "content": "fine\n"}}, {"text": "all good"}]),
                timeout_s=300)["job_id"])
            for name, (steps, _) in ATTACKS.items():
                sid = s.create_session({"README.md": name + "\n"})["session_id"]
                job = s.submit(sid, script_prompt(steps + [{"text": "attack done"}]),
                               timeout_s=240)
                cls.jobs[name] = (sid, job["job_id"])
            cls.results = {}
            cls.results["companion"] = s.wait_job(cls.companion[1], timeout=400)
            for name, (sid, jid) in cls.jobs.items():
                cls.results[name] = s.wait_job(jid, timeout=400)
        finally:
            stop.set()
            poller.join(10)

    @classmethod
    def poll_health(cls, stop):
        while not stop.is_set():
            t0 = time.time()
            try:
                ok = cls.svc.request("GET", "/health", key=None, timeout=10).status == 200
            except OSError as e:
                ok = False
                cls.health_failures.append(repr(e))
            took = time.time() - t0
            cls.health_worst = max(cls.health_worst, took)
            if not ok:
                cls.health_failures.append("status at %.1f" % t0)
            stop.wait(0.5)

    def check_attack(self, name):
        job = self.results[name]
        expected = ATTACKS[name][1]
        if expected is None:
            self.assertEqual(job["status"], "succeeded", job)
        else:
            self.assertEqual(job["status"], "failed", job)
            self.assertEqual(job["error_code"], expected, job)
        return job

    # ---- the companion and the service ------------------------------------

    def test_companion_job_of_another_session_succeeds(self):
        job = self.results["companion"]
        self.assertEqual(job["status"], "succeeded", job)
        self.assertEqual([f["path"] for f in job["output_files"]], ["README.md", "ok.txt"])

    def test_health_answered_throughout(self):
        self.assertEqual(self.health_failures, [])
        self.assertLess(self.health_worst, 5.0)

    # ---- one test per attack ---------------------------------------------

    def test_fork_bomb_ends_with_process_limit(self):
        job = self.check_attack("fork_bomb")
        self.assertIn("JOB_MAX_PROCS", job["error"])
        self.assertIn("150", job["error"])

    def test_memory_hog_ends_with_memory_limit(self):
        job = self.check_attack("memory_hog")
        self.assertEqual(job["error"],
                         "the job used more than 1200 MiB of memory (JOB_MAX_MEMORY_MB)")

    def test_filling_tmp_fails_inside_and_the_host_is_unaffected(self):
        self.check_attack("fill_tmp")
        sid, jid = self.jobs["fill_tmp"]
        r = self.svc.download(sid, "obs/tmp.txt", job_id=jid)
        self.assertEqual(r.status, 200, r)
        text = r.body.decode()
        self.assertNotIn("rc=0", text)
        size = int(text.split("size=")[1].split()[0])
        self.assertLessEqual(size, 16 << 20)

    def test_filling_the_workspace_ends_with_disk_limit(self):
        job = self.check_attack("fill_workspace")
        self.assertEqual(job["error"],
                         "the job's workspace and HOME held more than 300 MiB (JOB_MAX_DISK_MB)")
        # Partial outputs are kept, as after a timeout.
        self.assertIn("fill1.bin", [f["path"] for f in job["output_files"]])

    def test_setuid_bit_and_owner_do_not_survive(self):
        job = self.check_attack("setuid")
        sid, jid = self.jobs["setuid"]
        # Inside, the bit was set and the agent was not root...
        seen = self.svc.download(sid, "obs/suid.txt", job_id=jid).body.decode()
        self.assertTrue(seen.startswith("-rws"), seen)
        agent_uid = int(self.svc.download(sid, "obs/uid.txt", job_id=jid).body.decode())
        self.assertTrue(UID_FIRST <= agent_uid <= UID_LAST, agent_uid)
        # ...outside, the published file has neither the bit nor its owner.
        path = os.path.join(self.svc.session_dir(sid), "jobs", jid, "myid")
        st = os.lstat(path)
        self.assertEqual(st.st_mode & (stat.S_ISUID | stat.S_ISGID), 0, oct(st.st_mode))
        self.assertEqual(st.st_uid, os.geteuid())
        self.assertEqual(st.st_mode & 0o777, 0o700, oct(st.st_mode))
        modes = {f["path"]: f.get("mode") for f in job["output_files"]}
        self.assertIn("myid", modes)
        for root, dirs, files in os.walk(os.path.join(self.svc.session_dir(sid), "jobs", jid)):
            for n in dirs + files:
                self.assertEqual(os.lstat(os.path.join(root, n)).st_uid, os.geteuid(), n)

    def test_too_many_output_files_end_with_output_limit(self):
        job = self.check_attack("many_files")
        self.assertIn("JOB_MAX_OUTPUT_FILES", job["error"])
        self.assertEqual(job["output_files"], [])
        sid, _ = self.jobs["many_files"]
        results = self.svc.request("GET", "/session/results?session_id=" + sid).json()
        self.assertIsNone(results.get("latest_job_id"), results)

    def test_cpu_burner_ends_with_cpu_limit(self):
        job = self.check_attack("cpu_burner")
        self.assertEqual(job["error"],
                         "the job used more than 25 seconds of CPU time (JOB_MAX_CPU_S)")

    # ---- afterwards --------------------------------------------------------

    def test_zz_nothing_left_running_and_the_janitor_removes_everything(self):
        s = self.svc
        harness.wait_for(lambda: not uid_processes(), 10, what="no process of the agents' uids")
        for name, (sid, jid) in list(self.jobs.items()) + [("companion", self.companion)]:
            self.assertEqual(harness.processes_mentioning(jid), [], name)
            r = s.request("DELETE", "/session?session_id=" + sid)
            self.assertEqual(r.status, 204, (name, r))
        for name, (sid, _) in list(self.jobs.items()) + [("companion", self.companion)]:
            harness.wait_for(lambda: not os.path.exists(s.session_dir(sid)), 60,
                             what="the janitor removing %s's folder" % name)


if __name__ == "__main__":
    harness.main()
