"""Black-box test harness: starts the real programs against the private
PostgreSQL and RabbitMQ of scripts/test.sh, and talks to them over HTTP.

Each Service gets its own database, queue, data folder and ports, so test
files never see each other's rows or messages. Only the model provider is
replaced: by tests/fakemodel/fake_model.py, a scripted OpenAI-compatible
server on loopback that tells the real opencode which tools to call.

Environment (set by scripts/test.sh and tests/CMakeLists.txt):
  DATABASE_URL   the stack's database (its role owns the test databases)
  AMQP_URL       the stack's broker
  STACK_DIR      the stack's folder (admin socket for CREATE DATABASE)
  STACK_SH       scripts/stack.sh, for a test's own stack (PrivateStack)
  OC_BUILD_DIR   where opencode-api, opencode-worker, opencode-janitor are
  OC_SOURCE_DIR  the project root
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import uuid

SOURCE = os.environ.get("OC_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BUILD = os.environ.get("OC_BUILD_DIR", os.path.join(SOURCE, "build"))
STACK_SH = os.environ.get("STACK_SH", os.path.join(SOURCE, "scripts", "stack.sh"))
FAKE_MODEL = os.path.join(SOURCE, "tests", "fakemodel", "fake_model.py")
# The model catalogue the agents get (AGENT_MODELS_FILE), as scripts/run.sh
# --offline gives it: the providers of the offline configuration only.
MODELS_FILE = os.path.join(SOURCE, "tests", "fakemodel", "models.json")
OPENCODE = os.path.join(SOURCE, "node_modules", ".bin", "opencode")
MODEL = "scripted/scripted-model"
ENDED = ("succeeded", "failed", "timed_out", "cancelled")


def script_prompt(steps, text="scripted job"):
    """A prompt that makes the fake model play these steps (see fake_model.py)."""
    return "%s\n```script\n%s\n```\n" % (text, json.dumps(steps))


# A job's lease in the tests: short enough that a lost worker's job comes
# back soon, long enough that a worker slowed by the test files running
# beside it (a disk filled at full speed, an agent starting) still renews
# it in time. test_faults and test_recovery, which wait for leases to run
# out, set 8.
JOB_LEASE_S = "15"


# Sandbox uid leases: one folder for every service of the run (they share
# this host's uids, also beside a test's own stack: PrivateStack), inside
# the project's test stack rather than the default under /run.
UID_LOCK_DIR = os.path.join(os.environ.get("STACK_DIR") or tempfile.gettempdir(), "agent-uids")


def give_catalogue(home):
    """Puts MODELS_FILE where the worker puts AGENT_MODELS_FILE in an agent's
    HOME (worker/attempt.c), for opencode runs outside the service (the
    benchmarks' bare runs) configured as the service's are."""
    d = os.path.join(home, ".cache", "opencode")
    os.makedirs(d, exist_ok=True)
    shutil.copyfile(MODELS_FILE, os.path.join(d, "models.json"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout, interval=0.2, what="condition"):
    """Polls pred() until it returns a true value; fails the test after timeout."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("timed out after %ss waiting for %s (last: %r)" % (timeout, what, last))


def processes_mentioning(text):
    """Pids whose command line contains text (e.g. a job id: the agent's
    bwrap command line binds the job's workspace path)."""
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            pids.append(int(pid))
    return pids


class PrivateStack:
    """A PostgreSQL and RabbitMQ of one test file's own (scripts/stack.sh in
    a fresh folder, on free ports), for the tests that stop and restart
    their servers (run("pg-stop") ...): while it is in use, DATABASE_URL,
    AMQP_URL and STACK_DIR point at it, so every Service uses it, and the
    files that share scripts/test.sh's stack run on beside it. Only a
    private stack can be stopped from a test."""

    NAMES = ("DATABASE_URL", "AMQP_URL", "STACK_DIR")

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="oc-stack-")
        os.chmod(self.dir, 0o711)    # the postgres user reaches its folder
        self.saved = {k: os.environ.get(k) for k in self.NAMES}
        self.env = dict(os.environ, STACK_DIR=self.dir)
        for k in ("PG_PORT", "AMQP_PORT", "AMQP_DIST_PORT", "EPMD_PORT"):
            self.env.pop(k, None)
        try:
            self.run("start")
            urls = dict(re.findall(r"export (DATABASE_URL|AMQP_URL)=(\S+)", self.run("env")))
            if len(urls) != 2:
                raise RuntimeError("stack.sh env printed %r" % urls)
        except BaseException:
            self.close()
            raise
        os.environ.update(urls)
        os.environ["STACK_DIR"] = self.dir

    def run(self, cmd):
        """scripts/stack.sh CMD on this stack (pg-stop, pg-start, mq-stop,
        mq-start, ...); its output."""
        r = subprocess.run(["bash", STACK_SH, cmd], env=self.env, capture_output=True,
                           text=True, timeout=300)
        if r.returncode != 0:
            raise RuntimeError("stack.sh %s failed:\n%s" % (cmd, r.stderr[-3000:]))
        return r.stdout

    def close(self):
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if os.path.exists(os.path.join(self.dir, "ports")):
            subprocess.run(["bash", STACK_SH, "stop"], env=self.env, capture_output=True,
                           timeout=300)
        shutil.rmtree(self.dir, ignore_errors=True)


def _db_parts():
    u = urllib.parse.urlparse(os.environ["DATABASE_URL"])
    return u


def admin_sql(sql, dbname="postgres"):
    """SQL as the cluster's superuser over the stack's unix socket."""
    u = _db_parts()
    sock = os.path.join(os.environ["STACK_DIR"], "pg", "run")
    out = subprocess.run(
        ["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
         "-h", sock, "-p", str(u.port), "-d", dbname, "-c", sql],
        check=True, capture_output=True, text=True, timeout=60)
    return out.stdout


def record_response(method, path, resp):
    """Opt-in: with OC_RECORD_RESPONSES set, appends one JSON line
    {method, path, status, content_type, body} per response to that file,
    so tests/e2e/test_openapi.py can check the suite's live responses
    against api/openapi.json. body is the text, or null when not UTF-8."""
    out = os.environ.get("OC_RECORD_RESPONSES")
    if not out:
        return
    try:
        body = resp.body.decode("utf-8")
    except UnicodeDecodeError:
        body = None
    line = json.dumps({"method": method, "path": path, "status": resp.status,
                       "content_type": resp.headers.get("Content-Type"), "body": body})
    with open(out, "a") as f:
        f.write(line + "\n")


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<%d %r>" % (self.status, self.body[:300])


class Service:
    """One isolated deployment: api + workers + janitor on fresh state."""

    def __init__(self, name, workers=1, janitor=False, env=None, api=True):
        self.name = name
        self.tmp = tempfile.mkdtemp(prefix="oc-%s-" % name)
        self.data_dir = os.path.join(self.tmp, "data")
        self.db_name = "t_%s_%s" % (name.replace("-", "_"), uuid.uuid4().hex[:8])
        self.queue = "oc.test.%s.%s" % (name, uuid.uuid4().hex[:8])
        self.api_key = "test-key-" + uuid.uuid4().hex
        self.port = free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        self.procs = {}
        self.logs = {}
        self.extra_env = dict(env or {})
        try:
            self._start(workers, janitor, api)
        except BaseException:
            self.close(check=False)
            raise

    def _start(self, workers, janitor, api):
        u = _db_parts()
        admin_sql("CREATE DATABASE %s OWNER %s" % (self.db_name, u.username))
        self.database_url = urllib.parse.urlunparse(u._replace(path="/" + self.db_name))
        self._start_fake_model()
        if api:
            self.start_api()
        for i in range(workers):
            self.start_worker("worker%d" % i)
        if janitor:
            self.start_janitor("janitor")

    # ---- processes -------------------------------------------------------

    def env(self, **more):
        e = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": self.tmp,
            "ENV_FILE": os.path.join(self.tmp, "no.env"),
            "DATABASE_URL": self.database_url,
            "AMQP_URL": os.environ["AMQP_URL"],
            "AMQP_QUEUE": self.queue,
            "DATA_DIR": self.data_dir,
            "API_KEY": self.api_key,
            "API_LISTEN": "127.0.0.1:%d" % self.port,
            "OPENCODE_BIN": OPENCODE,
            "AGENT_CONFIG_FILE": self.agent_config,
            "AGENT_MODELS_FILE": MODELS_FILE,
            "DEFAULT_MODEL": MODEL,
            "JOB_LEASE_S": JOB_LEASE_S,
            "JANITOR_INTERVAL_S": "1",
            "WORKER_GRACE_S": "5",
            "LOG_LEVEL": "debug",
            "AGENT_UID_LOCK_DIR": UID_LOCK_DIR,
        }
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
            if k in os.environ:
                e[k] = os.environ[k]
        e.update(self.extra_env)
        e.update(more)
        return {k: v for k, v in e.items() if v is not None}

    def _spawn(self, key, argv, env):
        log = open(os.path.join(self.tmp, key + ".log"), "ab")
        self.logs[key] = log.name
        p = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, cwd=self.tmp)
        log.close()
        self.procs[key] = p
        return p

    def _start_fake_model(self):
        port_file = os.path.join(self.tmp, "model.port")
        self._spawn("model", [sys.executable, FAKE_MODEL, "--port", "0", "--port-file", port_file,
                              "--log", os.path.join(self.tmp, "model-requests.log")],
                    dict(os.environ))
        wait_for(lambda: os.path.exists(port_file), 20, what="fake model port file")
        with open(port_file) as f:
            self.model_port = int(f.read().strip())
        # The same configuration as offline mode of scripts/run.sh.
        base = "http://127.0.0.1:%d/v1" % self.model_port
        config = subprocess.run(
            ["bash", os.path.join(SOURCE, "scripts", "offline-agent-config.sh"), base],
            check=True, capture_output=True, text=True, timeout=30).stdout
        self.agent_config = os.path.join(self.tmp, "agent-config.json")
        with open(self.agent_config, "w") as f:
            f.write(config)

    def start_api(self, **env):
        """Starts the api on self.port. Test files run in parallel, so the
        free port picked may be taken before the api binds it: then the api
        is started again on another one (a few times)."""
        for _ in range(3):
            log = os.path.join(self.tmp, "api.log")
            start = os.path.getsize(log) if os.path.exists(log) else 0
            p = self._spawn("api", [os.path.join(BUILD, "opencode-api")], self.env(**env))
            if wait_for(lambda: self._health(p, start, retry=True), 60,
                        what="api /health") == "port taken":
                self.port = free_port()
                self.base = "http://127.0.0.1:%d" % self.port
                continue
            return p
        raise AssertionError("api could not bind a port:\n%s" % self.log_tail("api"))

    def _health(self, p, start=0, key="api", retry=False):
        """True once the api started as key answers /health; with retry,
        "port taken" when it exited because its port was in use. Until it
        logged api.started (in its log after offset start), whatever else
        holds the port would answer: not asked."""
        with open(self.logs[key], errors="replace") as f:
            f.seek(start)
            log = f.read()
        if p.poll() is not None:
            if retry and ("Address already in use" in log or "cannot bind" in log):
                return "port taken"
            raise AssertionError("api exited with %s:\n%s" % (p.returncode, log[-4000:]))
        if "api.started" not in log:
            return False
        try:
            return self.request("GET", "/health", key=None, record=False).status == 200
        except OSError:
            return False

    def start_worker(self, key="worker0", **env):
        return self._spawn(key, [os.path.join(BUILD, "opencode-worker")],
                           self.env(WORKER_ID=key, **env))

    def start_janitor(self, key="janitor", **env):
        return self._spawn(key, [os.path.join(BUILD, "opencode-janitor")], self.env(**env))

    def run_program(self, argv, **env):
        return subprocess.run(argv, env=self.env(**env), capture_output=True, text=True,
                              timeout=120, cwd=self.tmp)

    def create_key(self, name):
        """`opencode-api keys create NAME`: (key id, key, webhook secret),
        read from what it prints once."""
        r = self.run_program([os.path.join(BUILD, "opencode-api"), "keys", "create", name])
        if r.returncode != 0:
            raise AssertionError("keys create %s: %s" % (name, r.stderr))
        found = [re.search(pattern, r.stdout, re.M).group(1) for pattern in (
            r"^id:\s+(key_[0-9a-f]{16})$", r"^key: (ock_[0-9a-f]{64})$",
            r"^webhook_secret: (whsec_[A-Za-z0-9+/=]+)$")]
        return tuple(found)

    def stop(self, key, sig=signal.SIGTERM, timeout=60):
        p = self.procs.get(key)
        if p is None or p.poll() is not None:
            return p.returncode if p else None
        p.send_signal(sig)
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise AssertionError("%s did not stop within %ss" % (key, timeout))

    def close(self, check=True):
        for key in list(self.procs):
            p = self.procs[key]
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for key, p in self.procs.items():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        sanitizer = []
        for key, path in self.logs.items():
            with open(path, errors="replace") as f:
                text = f.read()
            if "ERROR: AddressSanitizer" in text or "runtime error:" in text or \
               "ERROR: LeakSanitizer" in text:
                sanitizer.append("%s:\n%s" % (key, text[-4000:]))
        try:
            admin_sql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % self.db_name)
        except subprocess.SubprocessError:
            pass
        if sanitizer and check:
            raise AssertionError("sanitizer reports:\n" + "\n".join(sanitizer))
        if os.environ.get("OC_KEEP_TMP") is None:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def log_tail(self, key, n=4000):
        path = self.logs.get(key)
        if not path or not os.path.exists(path):
            return ""
        with open(path, errors="replace") as f:
            return f.read()[-n:]

    def log_lines(self, key, pattern):
        """The lines of process key's log that match the regex pattern."""
        path = self.logs.get(key)
        if not path or not os.path.exists(path):
            return []
        rx = re.compile(pattern)
        with open(path, errors="replace") as f:
            return [line.rstrip("\n") for line in f if rx.search(line)]

    def all_logs(self):
        return "\n".join("==== %s ====\n%s" % (k, self.log_tail(k)) for k in self.logs)

    # ---- HTTP ----------------------------------------------------------

    def ready(self, timeout=10):
        """GET /ready (no key)."""
        return self.request("GET", "/ready", key=None, timeout=timeout)

    def request(self, method, path, body=None, key="default", headers=None, raw=None,
                timeout=30, record=True):
        """One request to the api. record=False for start-up probes: until
        the api has bound its port, whatever else holds that port answers,
        and such an answer says nothing about the api's conformance."""
        h = {}
        if key == "default":
            key = self.api_key
        if key is not None:
            h["X-API-Key"] = key
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            resp = Response(r.status, dict(r.getheaders()), r.read())
        finally:
            c.close()
        if record:
            record_response(method, path, resp)
        return resp

    def create_session(self, files, ttl=None, key="default", **extra):
        body = {"files": [{"path": p, "content": c} for p, c in files.items()]}
        if ttl is not None:
            body["ttl_seconds"] = ttl
        body.update(extra)
        r = self.request("POST", "/session", body, key=key)
        if r.status != 200:
            raise AssertionError("create session: %r" % r)
        return r.json()

    def submit(self, session_id, prompt, key="default", **fields):
        body = {"prompt": prompt}
        body.update(fields)
        r = self.request("POST", "/job?session_id=" + session_id, body, key=key)
        if r.status != 200:
            raise AssertionError("submit job: %r" % r)
        return r.json()

    def job(self, job_id, key="default"):
        r = self.request("GET", "/job/status?job_id=" + job_id, key=key)
        if r.status != 200:
            raise AssertionError("job status: %r" % r)
        return r.json()

    def wait_job(self, job_id, timeout=120, states=ENDED, key="default"):
        """The job's status once it is in one of states. Waiting for ended
        states uses the long-poll (?wait=), as a client would: the answer
        comes when the job ends, not at the next poll (and a 429, when a
        test filled the stream caps, falls back to a plain read)."""
        longpoll = set(states) <= set(ENDED)
        deadline = time.monotonic() + timeout

        def done():
            left = int(deadline - time.monotonic())
            if longpoll and left >= 1:
                r = self.request("GET", "/job/status?wait=%d&job_id=%s" % (min(left, 20), job_id),
                                 key=key, timeout=left + 30)
                if r.status not in (200, 429):
                    raise AssertionError("job status: %r" % r)
                j = r.json() if r.status == 200 else self.job(job_id, key=key)
            else:
                j = self.job(job_id, key=key)
            return j if j["status"] in states else None
        try:
            return wait_for(done, timeout, 0.3, "job %s to reach %s" % (job_id, states))
        except AssertionError:
            sys.stderr.write(self.all_logs())
            raise

    def download(self, session_id, path, job_id=None, key="default"):
        q = "/download?session_id=%s&file_path=%s" % (session_id, urllib.parse.quote(path, safe=""))
        if job_id:
            q += "&job_id=" + job_id
        return self.request("GET", q, key=key)

    # ---- database and disk ----------------------------------------------

    def sql(self, query):
        """Rows of query as lists of strings (psql -At, tab-separated).
        The password goes through the environment, never onto psql's
        command line where ps would show it."""
        u = urllib.parse.urlparse(self.database_url)
        env = dict(os.environ, PGHOST=u.hostname, PGPORT=str(u.port), PGUSER=u.username,
                   PGPASSWORD=urllib.parse.unquote(u.password or ""),
                   PGDATABASE=self.db_name)
        out = subprocess.run(["psql", "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                              "-c", query],
                             check=True, capture_output=True, text=True, timeout=60, env=env)
        return [line.split("\t") for line in out.stdout.splitlines() if line != ""]

    def scalar(self, query):
        rows = self.sql(query)
        return rows[0][0] if rows else None

    def session_dir(self, sid):
        return os.path.join(self.data_dir, "sessions", sid)

    def workspace(self, sid, jid):
        """The folder the agent of a job works in: the live attempt's own
        (attempts/<job>-<lease token>/work) while the job runs, else the
        job's published outputs (README, "Files on disk")."""
        token = self.scalar("SELECT lease_token FROM jobs WHERE id = '%s'" % jid)
        if token:
            return os.path.join(self.session_dir(sid), "attempts", "%s-%s" % (jid, token), "work")
        return os.path.join(self.session_dir(sid), "jobs", jid)

    def disk_sessions(self):
        root = os.path.join(self.data_dir, "sessions")
        return sorted(os.listdir(root)) if os.path.isdir(root) else []


class ServiceTest(unittest.TestCase):
    """A TestCase whose class shares one Service (set SERVICE_ARGS)."""

    SERVICE_ARGS = {}
    svc = None

    @classmethod
    def setUpClass(cls):
        cls.svc = None
        cls.svc = Service(cls.__name__.lower(), **cls.SERVICE_ARGS)

    @classmethod
    def tearDownClass(cls):
        if cls.svc is not None:
            cls.svc.close()

    def counts(self):
        """Rows and folders that a refused request must not change."""
        s = self.svc
        return (s.scalar("SELECT count(*) FROM sessions"), s.scalar("SELECT count(*) FROM jobs"),
                s.scalar("SELECT count(*) FROM session_files"), tuple(s.disk_sessions()))

    # The stable error code of each status that has only one (README,
    # "API reference"); 400, 409 and 503 have several.
    CODE_OF_STATUS = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
                      413: "body_too_large", 422: "validation_error", 500: "internal_error"}

    def assertError(self, r, status, contains=None, code=None):
        """A JSON error {"detail", "code"}; code, when given, must match."""
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.headers.get("Content-Type"), "application/json", r)
        body = r.json()
        detail = body.get("detail")
        self.assertIsInstance(detail, str, r)
        self.assertRegex(body.get("code") or "", r"^[a-z_]+$", r)
        expected = code or self.CODE_OF_STATUS.get(status)
        if expected:
            self.assertEqual(body["code"], expected, r)
        if contains:
            self.assertIn(contains.lower(), detail.lower(), r)
        return detail


def main():
    unittest.main(verbosity=2)
