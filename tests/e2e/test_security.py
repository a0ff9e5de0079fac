"""End to end: the agent is untrusted, and the sandbox and the API keep it
in its box (issue: agent sandbox and secrets).

The real opencode runs under bubblewrap, driven by the scripted model. The
agent's bash output is not returned by the API, so every probe makes the
agent WRITE what it saw into files of its workspace (obs/*.txt); the test
downloads them through the API and checks them. Each probe also records
proof that it ran (a canary the grep must find, HOME=/home/agent in its
environment, a file find must find), so a probe that silently did nothing
fails instead of passing.

To keep the run short, the probing of several tests is one agent job (run
once in setUpClass) whose observations the test methods read; only the
symlink test runs a second job (the next job of the same session).

test_agent_secrets_are_not_in_the_host_process_list fails as long as
worker/agent.c hands the agent's environment to bwrap as --setenv NAME
VALUE arguments: /proc/PID/cmdline of bwrap is readable by every local
user of the worker host (unlike /proc/PID/environ), so session secrets and
provider keys show in `ps`.
"""

import base64
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import script_prompt  # noqa: E402

# The service's own environment names: none may reach the agent.
SERVICE_ENV_NAMES = ("API_KEY", "DATABASE_URL", "AMQP_URL", "AMQP_QUEUE", "DATA_DIR",
                     "AGENT_CONFIG_FILE", "WORKER_ID", "ENV_FILE", "API_LISTEN",
                     "JOB_LEASE_S", "LOG_LEVEL", "OPENCODE_BIN", "JANITOR_INTERVAL_S")

# Observation files of the probe job (under obs/ in its workspace).
PROBE_FILES = ("env.txt", "environ.txt", "p1env.txt", "cmdline.txt", "proc.txt", "root.txt",
               "etc.txt", "id.txt", "grep.txt", "grep-rc.txt", "steal.txt", "find.txt",
               "writes.txt", "writable.txt", "links.txt")


def b64(text):
    return base64.b64encode(text.encode()).decode()


def run_script_step(script, log="obs/script.log"):
    """One bash tool call that runs script. The script travels base64-encoded:
    opencode's bash tool sees only `bash .probe.sh`, so no path checks of its
    own stand between the agent and the sandbox (the sandbox is what is under
    test), and the prompt never holds a secret in plain text."""
    cmd = ("mkdir -p obs && echo %s | base64 -d > .probe.sh && bash .probe.sh </dev/null > %s 2>&1"
           % (b64(script), log))
    return {"bash": {"command": cmd, "description": "probe"}}


def sh_quote(s):
    return "'" + s.replace("'", "'\\''") + "'"


def url_password(url):
    p = urllib.parse.urlparse(url).password
    return urllib.parse.unquote(p) if p else None


class SandboxAndSecrets(harness.ServiceTest):
    # A provider key the operator hands to the agent (AGENT_ENV): it must
    # reach the agent, and nothing else.
    PROVIDER_KEY = "sk-test-" + uuid.uuid4().hex
    SERVICE_ARGS = {"workers": 1, "env": {"AGENT_ENV": "OC_TEST_PROVIDER_KEY",
                                          "OC_TEST_PROVIDER_KEY": PROVIDER_KEY}}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.start_jobs()
        except BaseException:
            # tearDownClass does not run when setUpClass fails.
            sys.stderr.write(cls.svc.all_logs())
            cls.svc.close()
            cls.svc = None
            raise

    @classmethod
    def start_jobs(cls):
        s = cls.svc
        cls.tag = uuid.uuid4().hex[:12]
        cls.secrets = {
            "API_KEY": s.api_key,
            "DATABASE_URL password": url_password(s.database_url),
            "AMQP_URL password": url_password(os.environ["AMQP_URL"]),
        }
        cls.canary = "canary-" + uuid.uuid4().hex
        cls.a_secret = "a-secret-" + uuid.uuid4().hex
        cls.token = "tok-" + uuid.uuid4().hex

        # Session A: a victim with a secret file.
        cls.a_sid = s.create_session({"secret.txt": cls.a_secret + "\n"})["session_id"]
        cls.a_input = os.path.join(s.session_dir(cls.a_sid), "input")
        cls.sessions_root = os.path.join(s.data_dir, "sessions")
        # Host paths the probe tries to write (they must not exist afterwards).
        cls.host_targets = {
            "data": os.path.join(s.data_dir, "pwned-" + cls.tag),
            "usr": "/usr/pwned-" + cls.tag,
            "etc": "/etc/pwned-" + cls.tag,
            "opt": "/opt/pwned-" + cls.tag,
            "tmp": "/tmp/marker-" + cls.tag,
        }

        # Session B: one job probes everything (tests 1-6): the sandbox's
        # view, writes outside it, symlinks it leaves behind, and the
        # session's own secret variable.
        d = s.request("POST", "/session", {"files": [{"path": "README.md", "content": "probe\n"}],
                                           "env": {"MY_TOKEN": cls.token}})
        cls.b_create = d
        if d.status != 200:
            raise AssertionError("create session with env: %r" % d)
        cls.b_sid = d.json()["session_id"]
        probe = s.submit(cls.b_sid, script_prompt(
            [run_script_step(cls.probe_script()), {"text": "probed"}]), timeout_s=300)
        cls.probe_job = cls.wait_and_watch(probe["job_id"], 360)
        cls.obs = {}
        for name in PROBE_FILES:
            r = s.download(cls.b_sid, "obs/" + name, job_id=probe["job_id"])
            cls.obs[name] = r.body.decode("utf-8", "replace") if r.status == 200 else None

    @classmethod
    def wait_and_watch(cls, job_id, timeout):
        """Waits for the job while looking at the host's process list: the
        per-session and provider secrets must not show in any process'
        command line (/proc/PID/cmdline is readable by every local user)."""
        cls.host_hits = {}
        cls.watch_saw_agent = False
        deadline = time.time() + timeout
        while True:
            job = cls.svc.job(job_id)
            if job["status"] in ("succeeded", "failed", "timed_out", "cancelled"):
                return job
            if time.time() > deadline:
                sys.stderr.write(cls.svc.all_logs())
                raise AssertionError("timed out waiting for job %s: %r" % (job_id, job))
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open("/proc/%s/cmdline" % pid, "rb") as f:
                        argv = f.read().split(b"\0")
                    mode = os.stat("/proc/%s/cmdline" % pid).st_mode
                except OSError:
                    continue
                # Our agent's sandbox: bwrap binding this session's workspace.
                if b"/opt/opencode/bin/opencode" in argv and \
                        any(cls.b_sid.encode() in a for a in argv):
                    cls.watch_saw_agent = True
                for what, value in (("MY_TOKEN", cls.token),
                                    ("OC_TEST_PROVIDER_KEY", cls.PROVIDER_KEY)):
                    if any(value.encode() in a for a in argv):
                        cls.host_hits.setdefault(what, set()).add(
                            "%s (pid %s, cmdline mode %o)"
                            % (os.path.basename(argv[0].decode("utf-8", "replace")), pid,
                               mode & 0o777))
            time.sleep(0.5)

    @classmethod
    def probe_script(cls):
        """The probe as a shell script. Secrets appear in it only base64
        encoded; they are decoded into the sandbox's private /tmp."""
        s = cls.svc
        pats = "\n".join(list(cls.secrets.values()) + [cls.canary])
        t = cls.host_targets
        a_secret_path = os.path.join(cls.a_input, "secret.txt")
        return "\n".join([
            "set +e",
            "cd /workspace",
            "mkdir -p obs",
            # Patterns for the grep, and a canary it has to find.
            "echo %s | base64 -d > /tmp/pats" % b64(pats),
            "echo %s | base64 -d > /tmp/canary.txt" % b64(cls.canary),
            "cp /tmp/canary.txt \"$HOME/canary.txt\"",
            "mkdir -p /tmp/findcheck && touch /tmp/findcheck/secret.txt",
            # 1. environment and processes
            "env > obs/env.txt",
            "tr '\\0' '\\n' < /proc/1/environ > obs/p1env.txt 2>&1",
            "for p in /proc/[0-9]*; do echo \"== $p\"; tr '\\0' '\\n' < $p/environ; echo; done"
            " > obs/environ.txt 2>&1",
            "for p in /proc/[0-9]*; do echo \"$p: $(tr '\\0' ' ' < $p/cmdline)\"; done"
            " > obs/cmdline.txt 2>&1",
            "ls /proc > obs/proc.txt 2>&1",
            "ls -la / > obs/root.txt 2>&1",
            "ls -la /etc > obs/etc.txt 2>&1",
            "{ id; echo \"self=$$\"; } > obs/id.txt 2>&1",
            "timeout 60 grep -rlF -D skip -f /tmp/pats --exclude-dir=proc --exclude-dir=sys"
            " --exclude-dir=usr --exclude-dir=dev / > obs/grep.txt 2>/dev/null",
            "echo \"grep-rc=$?\" > obs/grep-rc.txt",
            # 2. another session's files
            "{ echo '--- cat'; cat %s; echo \"rc=$?\";" % sh_quote(a_secret_path) +
            " echo '--- ls sessions'; ls -la %s; echo \"rc=$?\";" % sh_quote(cls.sessions_root) +
            " echo '--- ls data'; ls -laR %s; echo \"rc=$?\";" % sh_quote(s.data_dir) +
            " echo '--- proc1root'; cat %s; echo \"rc=$?\";"
            % sh_quote("/proc/1/root" + a_secret_path) +
            " } > obs/steal.txt 2>&1",
            "timeout 30 find / \\( -path /proc -o -path /sys \\) -prune -o -name secret.txt -print"
            " > obs/find.txt 2>/dev/null; echo \"find-rc=$?\" >> obs/find.txt",
            # 3. writes outside the workspace
            "{",
            "mkdir -p %s; echo pwned > %s; echo \"data rc=$?\""
            % (sh_quote(s.data_dir), sh_quote(t["data"])),
            "echo x > %s; echo \"usr rc=$?\"" % sh_quote(t["usr"]),
            "touch %s; echo \"etc rc=$?\"" % sh_quote(t["etc"]),
            "echo x > %s; echo \"opt rc=$?\"" % sh_quote(t["opt"]),
            "echo x > %s; echo \"tmp rc=$?\"" % sh_quote(t["tmp"]),
            "echo x > /workspace/../escape-%s; echo \"up rc=$?\"" % cls.tag,
            "echo pwned >> %s; echo \"other rc=$?\"" % sh_quote(a_secret_path),
            "} > obs/writes.txt 2>&1",
            "for f in /usr /usr/bin /opt/opencode/bin/opencode /etc/hosts /etc/resolv.conf; do"
            " if [ -w \"$f\" ]; then echo \"$f writable\"; else echo \"$f ro\"; fi;"
            " done > obs/writable.txt 2>&1",
            # 5. symlinks left in the workspace
            "ln -s /etc/passwd passwd_link",
            "ln -s %s other_link" % sh_quote(a_secret_path),
            "ln -s ../../.. up",
            "mkdir d && ln -s /etc d/etc",
            "echo ok > ok.txt",
            "ls -la . d > obs/links.txt 2>&1",
            # 6. the session's variable
            "printenv MY_TOKEN > tok.txt",
            "echo probe-done",
            "",
        ])

    # ---- helpers -----------------------------------------------------------

    def assertJobOk(self, job):
        self.assertIsNotNone(job)
        self.assertEqual(job["status"], "succeeded", job)

    def observation(self, name):
        self.assertJobOk(self.probe_job)
        text = self.obs.get(name)
        self.assertIsNotNone(text, "probe observation obs/%s was not downloadable; outputs: %r"
                             % (name, [f["path"] for f in self.probe_job["output_files"] or []]))
        return text

    def assertNoSecrets(self, text, where):
        for what, value in self.secrets.items():
            self.assertNotIn(value, text, "%s leaked into %s" % (what, where))

    # ---- 1. secrets ----------------------------------------------------------

    def test_secrets_are_real(self):
        # The check below is only meaningful with non-trivial secrets.
        for what, value in self.secrets.items():
            self.assertTrue(value and len(value) >= 8, "%s: %r" % (what, value))

    def test_agent_environment_holds_no_service_secret(self):
        env = self.observation("env.txt")
        self.assertIn("HOME=/home/agent\n", env)       # the probe ran
        self.assertIn("PATH=", env)
        names = {line.split("=", 1)[0] for line in env.splitlines() if "=" in line}
        for n in SERVICE_ENV_NAMES:
            self.assertNotIn(n, names, "service variable %s reached the agent: %s"
                             % (n, sorted(names)))
        self.assertNoSecrets(env, "the agent's environment")

    def test_no_visible_process_holds_a_service_secret(self):
        environ = self.observation("environ.txt")
        cmdline = self.observation("cmdline.txt")
        p1 = self.observation("p1env.txt")
        self.assertIn("== /proc/1\n", environ)
        self.assertIn("/proc/1: ", cmdline)
        self.assertIn("HOME=/home/agent", environ)     # the agent's own processes were read
        for n in SERVICE_ENV_NAMES:
            self.assertIsNone(re.search(r"^%s=" % n, environ + "\n" + p1, re.M),
                              "service variable %s in a visible process' environment" % n)
        self.assertNoSecrets(environ, "/proc/*/environ")
        self.assertNoSecrets(p1, "/proc/1/environ")
        self.assertNoSecrets(cmdline, "/proc/*/cmdline")

    def test_no_readable_file_holds_a_service_secret(self):
        rc = self.observation("grep-rc.txt").strip()
        found = [line for line in self.observation("grep.txt").splitlines()
                 if line and line != "/tmp/pats"]
        # The grep ran to the end and worked: it found the canaries.
        self.assertNotEqual(rc, "grep-rc=124", "the grep over / timed out")
        self.assertIn("/tmp/canary.txt", found)
        self.assertIn("/home/agent/canary.txt", found)
        leaked = [f for f in found if not f.endswith("canary.txt")]
        self.assertEqual(leaked, [], "files inside the sandbox hold a service secret or "
                                     "password: %r" % leaked)

    def test_observations_and_api_answers_hold_no_secret(self):
        for name in PROBE_FILES:
            self.assertNoSecrets(self.observation(name), "obs/" + name)
        r = self.svc.request("GET", "/job/status?job_id=" + self.probe_job["job_id"])
        self.assertNoSecrets(r.body.decode("utf-8", "replace"), "the probe job's status")

    # ---- 2. other sessions -----------------------------------------------

    def test_other_sessions_files_are_invisible(self):
        steal = self.observation("steal.txt")
        find = self.observation("find.txt")
        self.assertIn("--- proc1root", steal)          # every attempt ran
        self.assertNotIn(self.a_secret, steal)
        listings = steal.split("--- ls sessions", 1)[1].split("--- proc1root", 1)[0]
        for sid in (self.a_sid, self.b_sid):
            self.assertNotIn(sid, listings, "the sessions folder is listable from the "
                                            "sandbox:\n" + steal)
        self.assertIn("find-rc=", find)
        self.assertNotIn("find-rc=124", find, "find / timed out")
        hits = [line for line in find.splitlines() if line.endswith("secret.txt")]
        self.assertEqual(hits, ["/tmp/findcheck/secret.txt"], find)
        for name in PROBE_FILES:
            self.assertNotIn(self.a_secret, self.observation(name), "obs/" + name)
        with open(os.path.join(self.a_input, "secret.txt")) as f:
            self.assertEqual(f.read(), self.a_secret + "\n")
        self.assertEqual(self.svc.download(self.a_sid, "secret.txt").body.decode(),
                         self.a_secret + "\n")

    # ---- 3. writes outside the workspace -------------------------------------

    def test_writes_outside_the_workspace_do_not_reach_the_host(self):
        writes = self.observation("writes.txt")
        for name in ("data", "usr", "etc", "opt", "tmp", "up", "other"):
            self.assertRegex(writes, r"(?m)^%s rc=\d+$" % name, "attempt %s did not run" % name)
        # /usr is a read-only bind: the write fails inside the sandbox too.
        self.assertNotIn("usr rc=0", writes)
        for name, path in self.host_targets.items():
            self.assertFalse(os.path.lexists(path), "the agent's write (%s) reached the host: %s"
                             % (name, path))
        for rel in ("escape-" + self.tag, "jobs/escape-" + self.tag):
            self.assertFalse(os.path.lexists(os.path.join(self.svc.session_dir(self.b_sid), rel)),
                             rel)
        writable = self.observation("writable.txt")
        self.assertIn("/usr ro", writable)
        self.assertIn("/opt/opencode/bin/opencode ro", writable)
        self.assertNotIn("writable", writable)

    # ---- 4. PID namespace ----------------------------------------------------

    def test_agent_sees_only_its_own_processes(self):
        pids = [int(x) for x in self.observation("proc.txt").split() if x.isdigit()]
        self.assertIn(1, pids)
        self.assertLess(len(pids), 20, pids)
        self.assertNotIn(self.svc.procs["worker0"].pid, pids)
        self.assertNotIn(self.svc.procs["api"].pid, pids)
        cmdline = self.observation("cmdline.txt")
        for host_prog in ("opencode-worker", "opencode-api", "postgres", "beam.smp",
                          "fake_model.py"):
            self.assertNotIn(host_prog, cmdline, "host process visible in the sandbox")

    # ---- 5. symlinks -----------------------------------------------------------

    LINK_PATHS = ("passwd_link", "other_link", "up", "d/etc", "d/etc/passwd")

    def assertNotServed(self, sid, path, job_id=None):
        r = self.svc.download(sid, path, job_id=job_id)
        self.assertError(r, 404)
        self.assertNotIn(b"root:", r.body)
        self.assertNotIn(self.a_secret.encode(), r.body)

    def test_symlinks_are_neither_listed_nor_served_nor_carried_over(self):
        s = self.svc
        links = self.observation("links.txt")
        self.assertIn("passwd_link -> /etc/passwd", links)      # the links were made
        self.assertIn("up -> ../../..", links)
        self.assertIn("etc -> /etc", links)
        jid = self.probe_job["job_id"]
        paths = sorted(f["path"] for f in self.probe_job["output_files"])
        self.assertIn("ok.txt", paths)
        for p in paths:
            self.assertFalse(p in self.LINK_PATHS or p.startswith(("up/", "d/etc/")),
                             "a symlink is in output_files: %r" % paths)
        results = s.request("GET", "/session/results?session_id=" + self.b_sid).json()
        self.assertEqual(results["latest_job_id"], jid)
        self.assertEqual(sorted(f["path"] for f in results["output_files"]), paths)

        # "up" is DATA_DIR/sessions on the host: through it lies session A.
        through_up = "up/%s/input/secret.txt" % self.a_sid
        for job_id in (jid, None):
            for p in ("passwd_link", "other_link", through_up, "up/" + self.a_sid,
                      "d/etc/passwd", "d/etc/hosts"):
                with self.subTest(path=p, job_id=job_id):
                    self.assertNotServed(self.b_sid, p, job_id)
            self.assertEqual(s.download(self.b_sid, "ok.txt", job_id=job_id).body, b"ok\n")

        # The next job starts from a copy of the workspace without the links.
        nxt = s.wait_job(s.submit(self.b_sid, script_prompt([run_script_step(
            "ls -la . d > obs/ls2.txt 2>&1\n"
            "{ cat passwd_link; cat other_link; cat up/%s/input/secret.txt; } > obs/c2.txt 2>&1\n"
            "echo ok2 > ok2.txt\n" % self.a_sid),
            {"text": "second"}]), timeout=300)["job_id"])
        self.assertJobOk(nxt)
        paths2 = sorted(f["path"] for f in nxt["output_files"])
        self.assertIn("ok.txt", paths2)
        self.assertIn("ok2.txt", paths2)
        for p in paths2:
            self.assertFalse(p in self.LINK_PATHS or p.startswith(("up/", "d/etc/")),
                             "a symlink is in the next job's output_files: %r" % paths2)
        ls2 = s.download(self.b_sid, "obs/ls2.txt").body.decode()
        self.assertIn("ok.txt", ls2)
        for link in ("passwd_link", "other_link", " up ", "up ->", "etc ->"):
            self.assertNotIn(link, ls2, "a symlink survived into the next job:\n" + ls2)
        c2 = s.download(self.b_sid, "obs/c2.txt").body.decode()
        self.assertIn("No such file", c2)
        self.assertNotIn(self.a_secret, c2)
        self.assertNotIn("root:", c2)
        for job_id in (nxt["job_id"], None):
            for p in ("passwd_link", "other_link", through_up):
                with self.subTest(path=p, job_id=job_id, job="next"):
                    self.assertNotServed(self.b_sid, p, job_id)

    # ---- 6. per-session environment ----------------------------------------

    def test_session_env_reaches_the_agent_and_nothing_else(self):
        s = self.svc
        self.assertNotIn(self.token.encode(), self.b_create.body)
        job = self.probe_job
        self.assertJobOk(job)
        r = s.download(self.b_sid, "tok.txt", job_id=job["job_id"])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body.decode(), self.token + "\n")
        self.assertIn("MY_TOKEN=%s\n" % self.token, self.observation("env.txt"))

        status = s.request("GET", "/job/status?job_id=" + job["job_id"])
        self.assertEqual(status.status, 200)
        self.assertNotIn(self.token.encode(), status.body)
        results = s.request("GET", "/session/results?session_id=" + self.b_sid)
        self.assertEqual(results.status, 200)
        self.assertNotIn(self.token.encode(), results.body)
        for key in ("api", "worker0"):
            with open(s.logs[key], errors="replace") as f:
                self.assertNotIn(self.token, f.read(), "the session's secret is in the %s log"
                                 % key)

    def test_provider_key_reaches_the_agent_and_nothing_else(self):
        s = self.svc
        self.assertIn("OC_TEST_PROVIDER_KEY=%s\n" % self.PROVIDER_KEY,
                      self.observation("env.txt"))
        for path in ("/job/status?job_id=" + self.probe_job["job_id"],
                     "/session/results?session_id=" + self.b_sid):
            r = s.request("GET", path)
            self.assertEqual(r.status, 200, r)
            self.assertNotIn(self.PROVIDER_KEY.encode(), r.body, path)
        for key in ("api", "worker0"):
            with open(s.logs[key], errors="replace") as f:
                self.assertNotIn(self.PROVIDER_KEY, f.read(), "the provider key is in the %s log"
                                 % key)

    def test_agent_secrets_are_not_in_the_host_process_list(self):
        # Every local user of the worker host can read /proc/PID/cmdline
        # (environ only the owner). Values handed to the agent must not be
        # passed on a command line.
        self.assertJobOk(self.probe_job)
        self.assertTrue(self.watch_saw_agent, "the process list was never seen while the "
                                              "agent ran")
        self.assertEqual(self.host_hits, {}, "secret values in host command lines, readable "
                                             "by any local user")

    def test_reserved_env_names_are_refused(self):
        before = self.counts()
        value = "v-" + uuid.uuid4().hex
        for name in ("API_KEY", "LD_PRELOAD", "PATH", "DATABASE_URL", "OPENCODE_CONFIG_CONTENT",
                     "AMQP_URL", "HOME", "BASH_ENV", "NODE_OPTIONS"):
            with self.subTest(name=name):
                r = self.svc.request("POST", "/session", {
                    "files": [{"path": "a.txt", "content": "x"}], "env": {name: value}})
                self.assertError(r, 422, name)
                self.assertNotIn(value.encode(), r.body)
        self.assertEqual(self.counts(), before)


class StartupRefusals(harness.ServiceTest):
    """The programs refuse unsafe configurations before doing anything.
    No api and no worker: nothing here can run a job."""

    SERVICE_ARGS = {"workers": 0, "api": False}

    def run_briefly(self, prog, timeout=30, **env):
        try:
            return subprocess.run([os.path.join(harness.BUILD, prog)], env=self.svc.env(**env),
                                  capture_output=True, text=True, timeout=timeout,
                                  cwd=self.svc.tmp)
        except subprocess.TimeoutExpired as e:
            self.fail("%s started instead of refusing (env %r); output: %r"
                      % (prog, env, (e.stdout, e.stderr)))

    # ---- 7. the sandbox ---------------------------------------------------

    def test_worker_refuses_an_unknown_sandbox_mode(self):
        for mode in ("maybe", "None", "off"):
            with self.subTest(mode=mode):
                p = self.run_briefly("opencode-worker", AGENT_SANDBOX=mode)
                self.assertEqual(p.returncode, 2, p)
                self.assertIn("AGENT_SANDBOX", p.stderr)

    def test_worker_without_socat_refuses_to_start(self):
        # In a mount namespace of this test's own, /usr/bin/socat is
        # /dev/null (not executable): without its bridge the sandbox would
        # have no way to the gateway, so the worker stops at once, while
        # AGENT_EGRESS=open (no bridge needed) starts.
        if shutil.which("unshare") is None:
            self.skipTest("unshare (util-linux) is not installed")
        hide = "mount --bind /dev/null /usr/bin/socat && exec \"$@\""
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", hide, "sh",
                os.path.join(harness.BUILD, "opencode-worker")]
        p = subprocess.run(argv, env=self.svc.env(), capture_output=True, text=True,
                           timeout=30, cwd=self.svc.tmp)
        self.assertEqual(p.returncode, 1, p)
        self.assertIn("/usr/bin/socat is missing", p.stderr)
        self.assertIn("AGENT_EGRESS=none", p.stderr)
        log = os.path.join(self.svc.tmp, "w-open.log")
        with open(log, "w") as out:
            q = subprocess.Popen(argv, env=self.svc.env(AGENT_EGRESS="open", WORKER_ID="w-open"),
                                 stdout=out, stderr=subprocess.STDOUT, cwd=self.svc.tmp)
        try:
            harness.wait_for(lambda: q.poll() is not None or "worker.started" in open(log).read(),
                             30, what="worker.started")
            self.assertIsNone(q.poll(), open(log).read())
        finally:
            q.terminate()
            q.wait(30)

    def test_worker_without_bwrap_refuses_to_start(self):
        p = self.run_briefly("opencode-worker", AGENT_SANDBOX=None, BWRAP_BIN="/nonexistent")
        self.assertEqual(p.returncode, 2, p)
        self.assertIn("BWRAP_BIN", p.stderr)
        self.assertIn("AGENT_SANDBOX=none", p.stderr)
        p = self.run_briefly("opencode-worker", AGENT_SANDBOX="bwrap", BWRAP_BIN="/nonexistent")
        self.assertEqual(p.returncode, 2, p)

    def test_worker_refuses_to_pass_service_secrets_to_the_agent(self):
        for name in ("API_KEY", "DATABASE_URL", "AMQP_URL", "PGPASSWORD"):
            with self.subTest(name=name):
                p = self.run_briefly("opencode-worker", AGENT_ENV="OPENAI_API_KEY," + name)
                self.assertEqual(p.returncode, 2, p)
                self.assertIn(name, p.stderr)

    def test_unsandboxed_mode_is_explicit_and_logged(self):
        s = self.svc
        # This Service has no api and its database no jobs: the worker
        # cannot pick up anything to run unsandboxed.
        p = s.start_worker("unsandboxed", AGENT_SANDBOX="none", BWRAP_BIN="/nonexistent")
        harness.wait_for(lambda: "worker.unsandboxed" in s.log_tail("unsandboxed", 100000)
                         or p.poll() is not None, 30, what="worker.unsandboxed in the log")
        log = s.log_tail("unsandboxed", 100000)
        self.assertIsNone(p.poll(), "the worker exited: " + log)
        self.assertIn("worker.unsandboxed", log)
        self.assertIn("AGENT_SANDBOX=none", log)
        self.assertEqual(s.stop("unsandboxed"), 0, s.log_tail("unsandboxed"))

    # ---- 8. the API key ---------------------------------------------------

    def test_api_refuses_to_start_without_a_key(self):
        port = harness.free_port()
        for key in (None, ""):
            with self.subTest(key=key):
                p = self.run_briefly("opencode-api", API_KEY=key,
                                     API_LISTEN="127.0.0.1:%d" % port)
                self.assertEqual(p.returncode, 2, p)
                self.assertIn("API_KEY", p.stderr)

    def test_api_refuses_a_short_key(self):
        p = self.run_briefly("opencode-api", API_KEY="short-key-123",
                             API_LISTEN="127.0.0.1:%d" % harness.free_port())
        self.assertEqual(p.returncode, 2, p)
        self.assertIn("API_KEY", p.stderr)
        self.assertNotIn("short-key-123", p.stderr)


if __name__ == "__main__":
    harness.main()
