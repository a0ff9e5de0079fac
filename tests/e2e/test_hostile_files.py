"""End to end: files an agent leaves behind are inert (issue 9, points 2,
3 and the janitor's backoff).

The real api, worker, janitor and opencode (under bubblewrap, driven by
the scripted model) run once for the whole file; three agent jobs in all:

  A1  leaves a FIFO, a 70-deep folder tree, a mode-000 folder and a file
      it made setuid: the job succeeds, the FIFO is not an output, 40
      concurrent downloads of it answer 404 at once while /health answers,
      the other outputs are listed with git's mode;
  A2  (the next job of the same session) finds them all in its copy: the
      deep file, the mode-000 folder's content, the execute bit without
      setuid, no FIFO; DELETE /session then leaves nothing on disk;
  B1  leaves a 1 TiB sparse file (truncate -s 1T): the job ends in bounded
      time with a clear outcome (succeeded with the file listed at its
      size, or the sandbox's file-size limit refusing truncate, or failed
      with an error_code naming the limit), never hangs; a 1 GiB sparse
      file is over JOB_MAX_OUTPUT_BYTES (64 MiB here) by its apparent size.

The janitor test needs no job: sessions with a short ttl expire, and one
of them holds a read-only bind mount (made here, in this test's own
folder, and unmounted at the end) that makes its removal fail. The others
are removed in the same passes, the failure is logged and backed off, and
once the mount is gone the janitor removes that folder too.
"""

import base64
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import script_prompt, wait_for  # noqa: E402

DEPTH = 70
DEEP_DIR = "/".join(["d"] * DEPTH)
DEEP_FILE = DEEP_DIR + "/bottom.txt"
TIB = 1 << 40


def bash_step(script, log="obs/script.log"):
    """One bash tool call running script (base64, so opencode's bash tool
    sees only `bash .probe.sh`)."""
    b64 = base64.b64encode(script.encode()).decode()
    cmd = ("mkdir -p obs && echo %s | base64 -d > .probe.sh && bash .probe.sh </dev/null > %s 2>&1;"
           " rm -f .probe.sh" % (b64, log))
    return {"bash": {"command": cmd, "description": "probe"}}


HOSTILE_SCRIPT = """
mkfifo fifo
mkdir -p %(dir)s
echo bottom > %(file)s
mkdir locked
echo inner > locked/inner.txt
chmod 000 locked
printf '#!/bin/sh\\necho hi\\n' > run.sh
chmod 4755 run.sh || chmod 755 run.sh
echo ok > ok.txt
echo made > obs/made.txt
""" % {"dir": DEEP_DIR, "file": DEEP_FILE}

CHECK_SCRIPT = """
test -f %(file)s && echo deep-ok > obs/deep.txt
cat locked/inner.txt > obs/locked.txt 2>&1
stat -c %%a run.sh > obs/runmode.txt
if [ -e fifo ] || [ -p fifo ]; then echo fifo-present; else echo fifo-absent; fi > obs/fifo.txt
""" % {"file": DEEP_FILE}


# 1 TiB is over the sandbox's file-size limit (truncate is refused);
# 1 GiB fits it but not JOB_MAX_OUTPUT_BYTES (64 MiB here), counted whole.
SPARSE_SCRIPT = "truncate -s 1T big\ntruncate -s 1G big1g\necho ok > small.txt\n"
OUTPUT_CAP = 64 << 20


class HostileFiles(harness.ServiceTest):
    SERVICE_ARGS = {"workers": 2, "janitor": True,
                    "env": {"JANITOR_INTERVAL_S": "1", "JANITOR_RETRY_S": "1",
                            "JOB_MAX_OUTPUT_BYTES": str(OUTPUT_CAP)}}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.start_jobs()
        except BaseException:
            sys.stderr.write(cls.svc.all_logs())
            cls.svc.close()
            cls.svc = None
            raise

    @classmethod
    def start_jobs(cls):
        s = cls.svc
        created = s.create_session({"README.md": "hostile files\n"})
        cls.input_modes = [f.get("mode") for f in created["input_files"]]
        cls.a_sid = created["session_id"]
        cls.b_sid = s.create_session({"README.md": "sparse\n"})["session_id"]
        cls.a1 = s.submit(cls.a_sid, script_prompt([bash_step(HOSTILE_SCRIPT),
                                                    {"text": "left odd files"}]))["job_id"]
        t0 = time.time()
        cls.b1 = s.submit(cls.b_sid, script_prompt([bash_step(SPARSE_SCRIPT),
                                                    {"text": "left a sparse file"}]))["job_id"]
        cls.a1_job = s.wait_job(cls.a1, timeout=180)
        if cls.a1_job["status"] == "succeeded":
            cls.a2 = s.submit(cls.a_sid, script_prompt([bash_step(CHECK_SCRIPT),
                                                        {"text": "checked"}]))["job_id"]
            cls.a2_job = s.wait_job(cls.a2, timeout=180)
        cls.b1_job = s.wait_job(cls.b1, timeout=240)
        cls.b1_seconds = time.time() - t0

    def outputs(self, job):
        return {f["path"]: f for f in (job.get("output_files") or [])}

    def test_1_hostile_job_succeeds_without_the_fifo(self):
        j = self.a1_job
        self.assertEqual(j["status"], "succeeded", j)
        out = self.outputs(j)
        self.assertIn("obs/made.txt", out, sorted(out))
        self.assertNotIn("fifo", out)
        self.assertIn(DEEP_FILE, out)
        self.assertIn("locked/inner.txt", out)
        self.assertEqual(out["ok.txt"]["mode"], "100644")
        self.assertEqual(out["run.sh"]["mode"], "100755")
        for f in out.values():
            self.assertIn(f["mode"], ("100644", "100755"), f)
        self.assertEqual(self.input_modes, ["100644"])
        # The deep file downloads like any other.
        r = self.svc.download(self.a_sid, DEEP_FILE, job_id=self.a1)
        self.assertEqual((r.status, r.body), (200, b"bottom\n"))

    def test_2_fifo_downloads_answer_404_at_once(self):
        s = self.svc
        self.assertEqual(self.a1_job["status"], "succeeded")
        fifo = os.path.join(s.session_dir(self.a_sid), "jobs", self.a1, "fifo")
        if not os.path.exists(fifo):
            # The worker took it out of the outputs; put one back where the
            # api looks, as an agent's leftover would be.
            os.mkfifo(fifo)
        results, health = [], []

        def get():
            t = time.time()
            r = s.download(self.a_sid, "fifo", job_id=self.a1)
            results.append((r.status, time.time() - t))

        threads = [threading.Thread(target=get) for _ in range(40)]
        t0 = time.time()
        for t in threads:
            t.start()
        for _ in range(3):
            t = time.time()
            health.append((s.request("GET", "/health", key=None, timeout=10).status,
                           time.time() - t))
        for t in threads:
            t.join(30)
        self.assertEqual(len(results), 40, results)
        self.assertTrue(all(st == 404 for st, _ in results), results)
        self.assertLess(max(d for _, d in results), 5.0, results)
        self.assertLess(time.time() - t0, 10.0)
        self.assertTrue(all(st == 200 and d < 5.0 for st, d in health), health)
        self.assertEqual(s.request("GET", "/health", key=None, timeout=5).status, 200)

    def test_3_next_job_gets_the_tree(self):
        self.assertEqual(self.a1_job["status"], "succeeded")
        j = self.a2_job
        self.assertEqual(j["status"], "succeeded", j)
        s = self.svc

        def obs(name):
            r = s.download(self.a_sid, "obs/" + name, job_id=self.a2)
            self.assertEqual(r.status, 200, (name, r))
            return r.body.decode().strip()

        self.assertEqual(obs("deep.txt"), "deep-ok")
        self.assertEqual(obs("locked.txt"), "inner")
        mode = int(obs("runmode.txt"), 8)
        self.assertTrue(mode & 0o100, oct(mode))          # the execute bit came back
        self.assertFalse(mode & 0o6000, oct(mode))        # setuid/setgid never did
        self.assertEqual(obs("fifo.txt"), "fifo-absent")
        # Nothing setuid anywhere on the host side either.
        for root, dirs, files in os.walk(s.session_dir(self.a_sid)):
            for name in dirs + files:
                st = os.lstat(os.path.join(root, name))
                self.assertFalse(st.st_mode & 0o6000, os.path.join(root, name))

    def test_4_delete_removes_everything(self):
        s = self.svc
        self.assertIn(self.a1_job["status"], ("succeeded", "failed"))
        r = s.request("DELETE", "/session?session_id=" + self.a_sid)
        self.assertEqual(r.status, 204, r)
        wait_for(lambda: not os.path.exists(s.session_dir(self.a_sid)), 30,
                 what="session A's folder to go")
        wait_for(lambda: s.scalar("SELECT files_removed_at IS NOT NULL FROM sessions"
                                  " WHERE id = '%s'" % self.a_sid) == "t", 30,
                 what="files_removed_at of session A")

    def test_5_sparse_file_has_a_clear_outcome(self):
        j = self.b1_job
        sys.stderr.write("sparse job: %s %s %s (%.1fs) " % (j["status"], j.get("error_code"),
                                                             j.get("error"), self.b1_seconds))
        self.assertLess(self.b1_seconds, 240)
        if j["status"] == "succeeded":
            # Only if nothing bounds outputs yet: then the sizes are counted whole.
            out = self.outputs(j)
            self.assertEqual(out["big1g"]["size_bytes"], 1 << 30, out)
            self.assertEqual(out["small.txt"]["mode"], "100644")
            if out["big"]["size_bytes"] != TIB:
                # The sandbox's RLIMIT_FSIZE stopped truncate itself.
                r = self.svc.download(self.b_sid, "obs/script.log", job_id=self.b1)
                self.assertEqual(r.status, 200, r)
                self.assertRegex(r.body.lower(), rb"too large|file size limit", r)
        else:
            self.assertEqual(j["status"], "failed", j)
            self.assertIn("limit", j.get("error_code") or "", j)
            self.assertTrue(j.get("error"), j)
        # The session stays usable and removable.
        self.assertEqual(self.svc.request("GET", "/health", key=None, timeout=5).status, 200)
        r = self.svc.request("DELETE", "/session?session_id=" + self.b_sid)
        self.assertEqual(r.status, 204, r)
        wait_for(lambda: not os.path.exists(self.svc.session_dir(self.b_sid)), 60,
                 what="session B's folder to go")

    def test_6_janitor_backs_off_a_poisoned_folder(self):
        s = self.svc
        poisoned = s.create_session({"p.txt": "p\n"}, ttl=3)["session_id"]
        others = [s.create_session({"o.txt": "o\n"}, ttl=3)["session_id"] for _ in range(2)]
        src = os.path.join(s.tmp, "poison-src")
        os.makedirs(src, exist_ok=True)
        with open(os.path.join(src, "stuck"), "w") as f:
            f.write("stuck\n")
        target = os.path.join(s.session_dir(poisoned), "mnt")
        os.mkdir(target)
        subprocess.run(["mount", "--bind", "-o", "ro", src, target], check=True, timeout=30)
        mounted = [True]

        def unmount():
            if mounted[0]:
                subprocess.run(["umount", "-l", target], timeout=30)
                mounted[0] = False
        self.addCleanup(unmount)

        # The others go while the poisoned one fails, is logged and backed off.
        for sid in others:
            wait_for(lambda sid=sid: not os.path.exists(s.session_dir(sid)), 60,
                     what="expired session %s to be removed" % sid)
        wait_for(lambda: int(s.scalar("SELECT remove_failures FROM sessions WHERE id = '%s'"
                                      % poisoned) or 0) >= 1, 30, what="a recorded failure")
        self.assertEqual(s.scalar("SELECT remove_after > now() - interval '1 minute'"
                                  " FROM sessions WHERE id = '%s'" % poisoned), "t")
        log = s.log_tail("janitor", 200000)
        self.assertIn("janitor.remove_failed session=%s" % poisoned, log)
        self.assertTrue(os.path.exists(os.path.join(src, "stuck")))
        self.assertTrue(os.path.isdir(s.session_dir(poisoned)))
        for sid in others:
            self.assertEqual(s.scalar("SELECT files_removed_at IS NOT NULL FROM sessions"
                                      " WHERE id = '%s'" % sid), "t")

        # Once the mount is gone, the next try removes it.
        unmount()
        wait_for(lambda: not os.path.exists(s.session_dir(poisoned)), 60,
                 what="the poisoned folder to go once unmounted")
        self.assertTrue(os.path.exists(os.path.join(src, "stuck")))
        for sid in [poisoned] + others:
            self.assertNotIn(sid, s.disk_sessions())


if __name__ == "__main__":
    harness.main()
