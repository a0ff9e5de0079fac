"""Black-box tests of every endpoint of opencode-api and of its bad inputs.

No agent ever runs here: every Service has workers=0, so a job stays
"queued". What is checked for each request: the status, the JSON body, the
rows in PostgreSQL (svc.sql) and the files under DATA_DIR (svc.session_dir).

Classes:
  SeedApiTest     default limits; the seed's cURL examples, sent unchanged,
                  plus auth, downloads, deletion, jobs, results, tenants
  LimitsApiTest   small limits (MAX_FILES 5, MAX_SESSION_BYTES 1000,
                  MAX_BODY_BYTES 4096, MAX_PROMPT_BYTES 2048): every refused
                  input of POST /session and POST /job, with nothing written
  QueueApiTest    the first job of a session is announced on RabbitMQ once
  OutboxApiTest   with the broker unreachable, the announcement waits in
                  job_outbox (the row is only observable when nobody relays it)
"""

import datetime
import hashlib
import json
import os
import re
import socket
import stat
import struct
import sys
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

API_BIN = os.path.join(harness.BUILD, "opencode-api")
ISO_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")
HEX32_RE = re.compile(r"^[0-9a-f]{32}$")
UTC = datetime.timezone.utc

# The body of the seed's cURL example 1, byte for byte as `curl -d '...'`
# sends it (the shell keeps \n as the two characters backslash and n).
SEED_CREATE_BODY = r'''{
    "files": [
      {"path": "README.md", "content": "# My Project\n"},
      {"path": "src/math_utils.py", "content": "def add(a,b):\n    return a+b\n"}
    ],
    "ttl_seconds": 3600
  }'''
SEED_FILES = [("README.md", b"# My Project\n"),
              ("src/math_utils.py", b"def add(a,b):\n    return a+b\n")]
SEED_PROMPT_BODY = '{"prompt": "Add a subtract function to src/math_utils.py"}'
SEED_PROMPT_MODEL_BODY = ('{"prompt": "Add a subtract function to src/math_utils.py", '
                          '"model": "openai/gpt-4"}')


# GET /download's Content-Type by extension (api/routes_download.c).
DOWNLOAD_TYPES = {
    "txt": "text/plain; charset=utf-8", "md": "text/plain; charset=utf-8",
    "json": "application/json", "html": "text/html; charset=utf-8",
    "htm": "text/html; charset=utf-8", "css": "text/css; charset=utf-8",
    "js": "text/javascript; charset=utf-8", "png": "image/png", "jpg": "image/jpeg",
    "jpeg": "image/jpeg", "gif": "image/gif", "svg": "image/svg+xml",
    "pdf": "application/pdf", "zip": "application/zip", "gz": "application/gzip",
    "tgz": "application/gzip", "tar": "application/x-tar",
}


def parse_iso(s):
    if "." not in s:
        s = s[:-1] + ".0Z"
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def curl(svc, method, path, data=None, json_type=False, key="default"):
    """What `curl -sS -H "X-API-Key: ..." [-H "Content-Type: ..."] [-X M] [-d D]` sends."""
    headers = {"User-Agent": "curl/8.5.0", "Accept": "*/*"}
    if json_type:
        headers["Content-Type"] = "application/json"
    return svc.request(method, path, raw=data.encode() if data is not None else None,
                       headers=headers, key=key)


def random_id():
    return uuid.uuid4().hex


# ---- a minimal AMQP 0-9-1 client (standard library only) -----------------

class Amqp:
    """Just enough AMQP to count a queue's messages and peek at the oldest
    one (basic.get without ack, then basic.reject with requeue)."""

    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((u.hostname, u.port or 5672), timeout=10)
        self.buf = b""
        vhost = urllib.parse.unquote(u.path[1:]) if len(u.path) > 1 else "/"
        user = urllib.parse.unquote(u.username or "guest").encode()
        pw = urllib.parse.unquote(u.password or "guest").encode()
        self.sock.sendall(b"AMQP\x00\x00\x09\x01")
        self._expect(0, 10, 10)                                    # connection.start
        self._method(0, 10, 11, b"\x00\x00\x00\x00" + self._ss(b"PLAIN") +
                     self._ls(b"\x00" + user + b"\x00" + pw) + self._ss(b"en_US"))
        tune = self._expect(0, 10, 30)                             # connection.tune
        chmax, fmax, _hb = struct.unpack(">HIH", tune[:8])
        self._method(0, 10, 31, struct.pack(">HIH", chmax or 2047, fmax or 131072, 0))
        self._method(0, 10, 40, self._ss(vhost.encode()) + self._ss(b"") + b"\x00")
        self._expect(0, 10, 41)                                    # connection.open-ok
        self._method(1, 20, 10, self._ss(b""))
        self._expect(1, 20, 11)                                    # channel.open-ok

    @staticmethod
    def _ss(b):
        return struct.pack(">B", len(b)) + b

    @staticmethod
    def _ls(b):
        return struct.pack(">I", len(b)) + b

    def _frame(self, ftype, channel, payload):
        self.sock.sendall(struct.pack(">BHI", ftype, channel, len(payload)) + payload + b"\xce")

    def _method(self, channel, cls, meth, args):
        self._frame(1, channel, struct.pack(">HH", cls, meth) + args)

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("broker closed the connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _next_frame(self):
        while True:
            ftype, channel, size = struct.unpack(">BHI", self._read(7))
            payload = self._read(size)
            if self._read(1) != b"\xce":
                raise ConnectionError("bad AMQP frame end")
            if ftype == 8:
                continue                                           # heartbeat
            return ftype, channel, payload

    def _next_method(self):
        ftype, _channel, payload = self._next_frame()
        if ftype != 1:
            raise ConnectionError("expected a method frame, got type %d" % ftype)
        cls, meth = struct.unpack(">HH", payload[:4])
        if (cls, meth) in ((10, 50), (20, 40)):
            n = payload[6]
            raise ConnectionError("broker closed: %r" % payload[7:7 + n])
        return cls, meth, payload[4:]

    def _expect(self, _channel, cls, meth):
        c, m, args = self._next_method()
        if (c, m) != (cls, meth):
            raise ConnectionError("expected %d.%d, got %d.%d" % (cls, meth, c, m))
        return args

    def count(self, queue):
        """Messages ready in queue (passive queue.declare)."""
        self._method(1, 50, 10, struct.pack(">H", 0) + self._ss(queue.encode()) + b"\x01" +
                     b"\x00\x00\x00\x00")
        args = self._expect(1, 50, 11)
        n = args[0]
        return struct.unpack(">I", args[1 + n:5 + n])[0]

    def peek(self, queue):
        """Body of the oldest ready message, put back at once; None when empty."""
        self._method(1, 60, 70, struct.pack(">H", 0) + self._ss(queue.encode()) + b"\x00")
        c, m, args = self._next_method()
        if (c, m) == (60, 72):
            return None
        if (c, m) != (60, 71):
            raise ConnectionError("expected basic.get-ok, got %d.%d" % (c, m))
        tag = struct.unpack(">Q", args[:8])[0]
        _t, _ch, header = self._next_frame()
        size = struct.unpack(">Q", header[4:12])[0]
        body = b""
        while len(body) < size:
            _t, _ch, part = self._next_frame()
            body += part
        self._method(1, 60, 90, struct.pack(">QB", tag, 1))      # basic.reject, requeue
        return body

    def close(self):
        try:
            self._method(0, 10, 50, struct.pack(">H", 200) + self._ss(b"bye") +
                         struct.pack(">HH", 0, 0))
            self._expect(0, 10, 51)
        except (OSError, ConnectionError):
            pass
        self.sock.close()


# ---- shared checks -----------------------------------------------------------

class ApiTestBase(harness.ServiceTest):

    def post_session_raw(self, data, key="default"):
        if isinstance(data, str):
            data = data.encode()
        return self.svc.request("POST", "/session", raw=data,
                                headers={"Content-Type": "application/json"}, key=key)

    def post_job_raw(self, sid, data, key="default"):
        if isinstance(data, str):
            data = data.encode()
        return self.svc.request("POST", "/job?session_id=" + sid, raw=data,
                                headers={"Content-Type": "application/json"}, key=key)

    def session_row(self, sid):
        rows = self.svc.sql(
            "SELECT api_key_id, status, ttl_seconds, input_file_count, input_bytes,"
            " to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
            " to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
            " coalesce(current_job_id, ''), ended_at IS NOT NULL, files_removed_at IS NOT NULL"
            " FROM sessions WHERE id = '%s'" % sid)
        if not rows:
            return None
        r = rows[0]
        return {"api_key_id": r[0], "status": r[1], "ttl_seconds": int(r[2]),
                "input_file_count": int(r[3]), "input_bytes": int(r[4]), "created_at": r[5],
                "expires_at": r[6], "current_job_id": r[7] or None, "ended": r[8] == "t",
                "files_removed": r[9] == "t"}

    def session_files(self, sid):
        return [(p, int(n)) for p, n in self.svc.sql(
            "SELECT path, size_bytes FROM session_files WHERE session_id = '%s' ORDER BY path"
            % sid)]

    def disk_files(self, sid):
        """{relative path: bytes} of a session's input folder."""
        root = os.path.join(self.svc.session_dir(sid), "input")
        out = {}
        for d, _dirs, files in os.walk(root):
            for f in files:
                p = os.path.join(d, f)
                with open(p, "rb") as fh:
                    out[os.path.relpath(p, root)] = fh.read()
        return out

    def job_row(self, job_id):
        rows = self.svc.sql("SELECT session_id, status, prompt, model, timeout_s, attempt"
                            " FROM jobs WHERE id = '%s'" % job_id)
        if not rows:
            return None
        r = rows[0]
        return {"session_id": r[0], "status": r[1], "prompt": r[2], "model": r[3],
                "timeout_s": int(r[4]), "attempt": int(r[5])}

    def assertSessionCreated(self, body, files, ttl, key_id="bootstrap"):
        """files: list of (path, bytes) in request order."""
        self.assertEqual(set(body), {"session_id", "created_at", "expires_at", "input_files"},
                         body)
        sid = body["session_id"]
        self.assertRegex(sid, HEX32_RE)
        self.assertRegex(body["created_at"], ISO_RE)
        self.assertRegex(body["expires_at"], ISO_RE)
        self.assertEqual(parse_iso(body["expires_at"]) - parse_iso(body["created_at"]),
                         datetime.timedelta(seconds=ttl), body)
        self.assertEqual(body["input_files"],
                         [{"path": p, "size_bytes": len(c), "mode": "100644"}
                          for p, c in files])
        row = self.session_row(sid)
        self.assertIsNotNone(row, "no sessions row for %s" % sid)
        self.assertEqual(row["api_key_id"], key_id)
        self.assertEqual(row["status"], "active")
        self.assertEqual(row["ttl_seconds"], ttl)
        self.assertEqual(row["input_file_count"], len(files))
        self.assertEqual(row["input_bytes"], sum(len(c) for _, c in files))
        self.assertEqual(row["created_at"], body["created_at"])
        self.assertEqual(row["expires_at"], body["expires_at"])
        self.assertIsNone(row["current_job_id"])
        self.assertEqual(self.session_files(sid), sorted((p, len(c)) for p, c in files))
        self.assertEqual(self.disk_files(sid), dict(files))
        return sid

    def assertDownload(self, r, name, content):
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, content)
        # Content-Type by extension (README, "Files"; tests/e2e/test_files.py).
        dot = name.rfind(".")
        ext = name[dot + 1:].lower() if dot > 0 else ""
        self.assertEqual(r.headers.get("Content-Type"),
                         DOWNLOAD_TYPES.get(ext, "application/octet-stream"))
        self.assertEqual(r.headers.get("Content-Length"), str(len(content)))
        self.assertEqual(r.headers.get("Content-Disposition"),
                         "attachment; filename*=UTF-8''" + urllib.parse.quote(name, safe=""))

    def counts(self):
        """harness counts() in one query: each psql run pays a connection and a
        SCRAM login, which takes most of a second on a loaded machine."""
        s = self.svc
        row = s.sql("SELECT (SELECT count(*) FROM sessions), (SELECT count(*) FROM jobs),"
                    " (SELECT count(*) FROM session_files)")[0]
        return (row[0], row[1], row[2], tuple(s.disk_sessions()))

    def setUp(self):
        self._unchanged_since = None

    def tearDown(self):
        # One check per test, after all its refused requests (see assertRefused).
        if self._unchanged_since is not None:
            self.assertEqual(self.counts(), self._unchanged_since,
                             "a refused request wrote rows or folders")

    def assertRefused(self, r, status, contains=None, before=None, code=None):
        """A 4xx JSON error. With before=counts(): the test ends with the same
        counts (checked once, in tearDown, to keep the number of psql runs low;
        a test passes before only once it has stopped writing on purpose)."""
        detail = self.assertError(r, status, contains, code)
        if before is not None and self._unchanged_since is None:
            self._unchanged_since = before
        return detail


# ---- default limits: the seed's examples and every endpoint ----------------

class SeedApiTest(ApiTestBase):
    SERVICE_ARGS = {"workers": 0}

    def new_session(self, files=None, ttl=None, key="default", **extra):
        files = files or {"README.md": "hello\n", "src/a.py": "print(1)\n"}
        return self.svc.create_session(files, ttl=ttl, key=key, **extra)["session_id"]

    # -- health, auth, routing -------------------------------------------

    def test_health_without_key(self):
        for key in (None, "wrong-key"):
            r = self.svc.request("GET", "/health", key=key)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.headers.get("Content-Type"), "application/json")
            self.assertEqual(r.json(), {"status": "healthy"})

    def test_every_other_endpoint_needs_a_valid_key(self):
        s = self.svc
        sid = self.new_session()
        job_id = s.submit(sid, "keep me queued")["job_id"]
        body = {"files": [{"path": "x.txt", "content": "x"}]}
        calls = [
            ("POST", "/session", body),
            ("DELETE", "/session?session_id=" + sid, None),
            ("GET", "/session/results?session_id=" + sid, None),
            ("POST", "/job?session_id=" + sid, {"prompt": "not allowed"}),
            ("GET", "/job/status?job_id=" + job_id, None),
            ("GET", "/download?session_id=%s&file_path=README.md" % sid, None),
            # no parameters at all: auth comes before validation
            ("POST", "/job", {"prompt": "x"}),
            ("GET", "/job/status", None),
            ("GET", "/download", None),
            ("GET", "/session/results", None),
        ]
        before = self.counts()
        jobs_before = s.sql("SELECT id, status FROM jobs ORDER BY id")
        for key in (None, "", "wrong-key", s.api_key + "x", s.api_key[:-1], s.api_key.upper()):
            for method, path, b in calls:
                with self.subTest(key=key, method=method, path=path):
                    r = s.request(method, path, b, key=key)
                    self.assertRefused(r, 401, "api key", before)
        self.assertEqual(s.sql("SELECT id, status FROM jobs ORDER BY id"), jobs_before)
        self.assertEqual(self.session_row(sid)["status"], "active")
        self.assertTrue(os.path.isdir(s.session_dir(sid)))

    def test_wrong_method_is_405_json(self):
        cases = [("PUT", "/session", "POST, DELETE, GET"),
                 ("PATCH", "/session", "POST, DELETE, GET"), ("PUT", "/job", "POST"),
                 ("GET", "/job", "POST"), ("DELETE", "/job", "POST"),
                 ("POST", "/job/status", "GET"), ("DELETE", "/job/status", "GET"),
                 ("POST", "/session/results", "GET"), ("DELETE", "/download", "GET"),
                 ("POST", "/download", "GET"), ("POST", "/health", "GET"),
                 ("DELETE", "/health", "GET")]
        before = self.counts()
        for method, path, allow in cases:
            for key in ("default", None):
                with self.subTest(method=method, path=path, key=key):
                    r = self.svc.request(method, path, key=key)
                    self.assertRefused(r, 405, "method not allowed", before)
                    self.assertEqual(r.headers.get("Allow"), allow)

    def test_unknown_paths_are_404_json(self):
        before = self.counts()
        for path in ("/nope", "/sessionX", "/session/", "/sessionsX", "/session/resultsX",
                     "/jobs", "/job/statusX", "/job/status/x", "/health/x", "/healthz",
                     "/downloads", "/"):
            for key in ("default", None):
                with self.subTest(path=path, key=key):
                    r = self.svc.request("GET", path, key=key)
                    self.assertRefused(r, 404, None, before)

    # -- the seed's cURL examples, unchanged ----------------------------------

    def test_seed_curl_examples_1_to_6(self):
        s = self.svc
        # 1. Create a session
        r = curl(s, "POST", "/session", SEED_CREATE_BODY, json_type=True)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("Content-Type"), "application/json")
        sid = self.assertSessionCreated(r.json(), SEED_FILES, 3600)

        # 2. Run a job (default model), and one with a specific model
        r = curl(s, "POST", "/job?session_id=" + sid, SEED_PROMPT_BODY, json_type=True)
        self.assertEqual(r.status, 200, r)
        job1 = r.json()
        self.assertEqual(set(job1), {"job_id", "session_id", "status", "created_at"})
        self.assertRegex(job1["job_id"], HEX32_RE)
        self.assertEqual(job1["session_id"], sid)
        self.assertEqual(job1["status"], "queued")
        self.assertRegex(job1["created_at"], ISO_RE)
        r = curl(s, "POST", "/job?session_id=" + sid, SEED_PROMPT_MODEL_BODY, json_type=True)
        self.assertEqual(r.status, 200, r)
        job2 = r.json()
        self.assertNotEqual(job1["job_id"], job2["job_id"])
        self.assertEqual(self.job_row(job1["job_id"]),
                         {"session_id": sid, "status": "queued",
                          "prompt": "Add a subtract function to src/math_utils.py",
                          "model": harness.MODEL, "timeout_s": 600, "attempt": 0})
        self.assertEqual(self.job_row(job2["job_id"])["model"], "openai/gpt-4")

        # 3. Poll status
        r = curl(s, "GET", "/job/status?job_id=" + job1["job_id"])
        self.assertEqual(r.status, 200, r)
        st = r.json()
        for field in ("job_id", "session_id", "status", "error", "prompt", "created_at",
                      "started_at", "finished_at", "output_files"):
            self.assertIn(field, st)
        self.assertEqual(st["job_id"], job1["job_id"])
        self.assertEqual(st["status"], "queued")
        self.assertEqual(st["created_at"], job1["created_at"])

        # 4. List results: nothing has run yet
        r = curl(s, "GET", "/session/results?session_id=" + sid)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"session_id": sid, "latest_job_id": None,
                                    "output_files": [], "result": None, "result_json": None})

        # 5. Download a file: the input file, right after upload
        r = curl(s, "GET", "/download?session_id=%s&file_path=README.md" % sid)
        self.assertDownload(r, "README.md", b"# My Project\n")

        # 6. Delete the session
        r = curl(s, "DELETE", "/session?session_id=" + sid)
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.body, b"")
        self.assertFalse(os.path.exists(s.session_dir(sid)))
        row = self.session_row(sid)
        self.assertEqual(row["status"], "deleted")
        self.assertTrue(row["ended"])
        self.assertTrue(row["files_removed"])
        # The queued jobs will never run.
        for j in (job1, job2):
            self.assertEqual(self.job_row(j["job_id"])["status"], "cancelled")

    # -- POST /session ---------------------------------------------------------

    def test_create_session_default_ttl(self):
        r = self.svc.request("POST", "/session",
                             {"files": [{"path": "a.txt", "content": "a"}]})
        self.assertEqual(r.status, 200, r)
        self.assertSessionCreated(r.json(), [("a.txt", b"a")], 3600)
        # null means "not given"
        r = self.svc.request("POST", "/session",
                             {"files": [{"path": "a.txt", "content": "a"}], "ttl_seconds": None})
        self.assertEqual(r.status, 200, r)
        self.assertSessionCreated(r.json(), [("a.txt", b"a")], 3600)

    def test_create_session_limits_of_ttl_accepted(self):
        for ttl in (1, 7 * 24 * 3600):
            with self.subTest(ttl=ttl):
                r = self.svc.request("POST", "/session", {
                    "files": [{"path": "a.txt", "content": "a"}], "ttl_seconds": ttl})
                self.assertEqual(r.status, 200, r)
                self.assertSessionCreated(r.json(), [("a.txt", b"a")], ttl)

    def test_create_session_without_files_is_allowed(self):
        r = self.svc.request("POST", "/session", {"files": []})
        self.assertEqual(r.status, 200, r)
        sid = self.assertSessionCreated(r.json(), [], 3600)
        self.assertTrue(os.path.isdir(os.path.join(self.svc.session_dir(sid), "input")))

    def test_unicode_paths_and_content_round_trip(self):
        files = [("docs/résumé/日本語.md", "héllo wörld ✓ 🎉\n"),
                 ("emoji/🎉 party.txt", "\u4e2d\u6587\r\n\ttab"),
                 ("plain.txt", "")]
        expect = [(p, c.encode()) for p, c in files]
        body = {"files": [{"path": p, "content": c} for p, c in files]}
        # \uXXXX escapes (with surrogate pairs) and raw UTF-8 both work.
        for raw in (json.dumps(body).encode(), json.dumps(body, ensure_ascii=False).encode()):
            with self.subTest(ascii=raw.isascii()):
                r = self.post_session_raw(raw)
                self.assertEqual(r.status, 200, r)
                sid = self.assertSessionCreated(r.json(), expect, 3600)
                for p, c in expect:
                    self.assertDownload(self.svc.download(sid, p), p.rsplit("/", 1)[-1], c)

    def test_env_is_accepted_and_never_shown(self):
        s = self.svc
        secret = "tok-" + random_id()
        env = {"MY_SERVICE_TOKEN": secret, "OTHER_SETTING": "plain"}
        r = s.request("POST", "/session",
                      {"files": [{"path": "a.txt", "content": "a"}], "env": env})
        self.assertEqual(r.status, 200, r)
        self.assertNotIn(secret.encode(), r.body)
        sid = self.assertSessionCreated(r.json(), [("a.txt", b"a")], 3600)
        # It reached the session folder, readable by the service only.
        env_file = os.path.join(s.session_dir(sid), "env.json")
        with open(env_file) as f:
            self.assertEqual(json.load(f), env)
        self.assertEqual(stat.S_IMODE(os.stat(env_file).st_mode), 0o600)
        # It is not an input file: not listed, not downloadable.
        r = s.download(sid, "env.json")
        self.assertRefused(r, 404)
        r = s.download(sid, "../env.json")
        self.assertRefused(r, 400)
        job = s.submit(sid, "use the token")
        for r in (s.request("GET", "/job/status?job_id=" + job["job_id"]),
                  s.request("GET", "/session/results?session_id=" + sid)):
            self.assertEqual(r.status, 200, r)
            self.assertNotIn(secret.encode(), r.body)
        dump = s.sql("SELECT row_to_json(x)::text FROM sessions x UNION ALL "
                     "SELECT row_to_json(x)::text FROM jobs x UNION ALL "
                     "SELECT row_to_json(x)::text FROM session_files x")
        self.assertNotIn(secret, json.dumps(dump))
        self.assertNotIn(secret, s.all_logs())

    def test_env_reserved_names_refused_without_echoing_value(self):
        for name in ("API_KEY", "LD_PRELOAD", "DATABASE_URL", "PATH", "AMQP_URL", "HOME",
                     "NODE_OPTIONS", "PGPASSWORD", "OPENCODE_CONFIG"):
            with self.subTest(name=name):
                secret = "value-" + random_id()
                before = self.counts()
                r = self.svc.request("POST", "/session", {
                    "files": [{"path": "a.txt", "content": "a"}], "env": {name: secret}})
                detail = self.assertRefused(r, 422, "reserved", before)
                self.assertIn(name, detail)
                self.assertNotIn(secret.encode(), r.body)

    # -- GET /download ------------------------------------------------------

    def test_download_input_files(self):
        s = self.svc
        r = curl(s, "POST", "/session", SEED_CREATE_BODY, json_type=True)
        sid = r.json()["session_id"]
        for path, content in SEED_FILES:
            with self.subTest(path=path):
                self.assertDownload(s.download(sid, path), path.rsplit("/", 1)[-1], content)
        # the path may also be sent unencoded, as curl users write it
        r = s.request("GET", "/download?session_id=%s&file_path=src/math_utils.py" % sid)
        self.assertDownload(r, "math_utils.py", SEED_FILES[1][1])
        before = self.counts()
        q = "/download?session_id=%s&file_path=%s"
        cases = [
            (q % (sid, "missing.txt"), 404, "not found"),
            (q % (sid, "src/missing.py"), 404, "not found"),
            (q % (sid, "src"), 404, "not found"),                  # a folder
            (q % (sid, "README.md/x"), 404, "not found"),
            (q % (sid, "../README.md"), 400, "invalid file path"),
            (q % (sid, "src/../README.md"), 400, "invalid file path"),
            (q % (sid, "/etc/passwd"), 400, "invalid file path"),
            (q % (sid, "%2Fetc%2Fpasswd"), 400, "invalid file path"),
            (q % (sid, "src//math_utils.py"), 400, "invalid file path"),
            (q % (sid, "src%5Cmath_utils.py"), 400, "invalid file path"),
            (q % (sid, "a%0Ab"), 400, "invalid file path"),
            (q % (sid, ""), 400, "invalid file path"),
            (q % (sid, "x" * 1100), 400, "invalid file path"),
            ("/download?session_id=" + sid, 422, "file_path"),
            ("/download?file_path=README.md", 422, "session_id"),
            ("/download", 422, "session_id"),
            (q % (random_id(), "README.md"), 404, "session not found"),
            (q % (sid.upper(), "README.md"), 404, "session not found"),
            (q % (sid[:-1], "README.md"), 404, "session not found"),
            (q % ("not-a-session", "README.md"), 404, "session not found"),
            (q % (sid, "README.md") + "&job_id=" + random_id(), 404, "job not found"),
            (q % (sid, "README.md") + "&job_id=nope", 404, "job not found"),
        ]
        for path, status, contains in cases:
            with self.subTest(path=path[:120]):
                self.assertRefused(s.request("GET", path), status, contains, before)

    # -- DELETE /session ------------------------------------------------------

    def test_delete_session(self):
        s = self.svc
        sid = self.new_session()
        job_id = s.submit(sid, "queued, never run")["job_id"]
        r = s.request("DELETE", "/session?session_id=" + sid)
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.body, b"")
        self.assertFalse(os.path.exists(s.session_dir(sid)))
        row = self.session_row(sid)
        self.assertEqual(row["status"], "deleted")
        self.assertTrue(row["ended"])
        self.assertTrue(row["files_removed"])
        # The queued job was cancelled, and its history stays readable.
        st = s.job(job_id)
        self.assertEqual(st["status"], "cancelled")
        self.assertEqual(st["error_code"], "cancelled")
        self.assertIsInstance(st["error"], str)
        self.assertIsNotNone(st["finished_at"])
        before = self.counts()
        for method, path, body in (
                ("GET", "/session/results?session_id=" + sid, None),
                ("GET", "/download?session_id=%s&file_path=README.md" % sid, None),
                ("DELETE", "/session?session_id=" + sid, None),
                ("POST", "/job?session_id=" + sid, {"prompt": "too late"})):
            with self.subTest(method=method, path=path):
                self.assertRefused(s.request(method, path, body), 404, "session not found",
                                   before)

    def test_delete_bad_session_ids(self):
        before = self.counts()
        for q, status in (("", 422), ("?session_id=" + random_id(), 404),
                          ("?session_id=xyz", 404), ("?session_id=", 404),
                          ("?session_id=" + "a" * 64, 404)):
            with self.subTest(q=q):
                self.assertRefused(self.svc.request("DELETE", "/session" + q), status, None,
                                   before)

    # -- expiry -----------------------------------------------------------------

    def test_expired_session_is_404_before_any_janitor(self):
        s = self.svc
        r = s.request("POST", "/session",
                      {"files": [{"path": "a.txt", "content": "a"}], "ttl_seconds": 1})
        self.assertEqual(r.status, 200, r)
        sid = r.json()["session_id"]
        time.sleep(1.5)
        before = self.counts()
        for method, path, body in (
                ("GET", "/session/results?session_id=" + sid, None),
                ("GET", "/download?session_id=%s&file_path=a.txt" % sid, None),
                ("POST", "/job?session_id=" + sid, {"prompt": "too late"}),
                ("DELETE", "/session?session_id=" + sid, None)):
            with self.subTest(method=method):
                self.assertRefused(s.request(method, path, body), 404, "session not found",
                                   before)
        # No janitor runs in this service: the 404 comes from expires_at alone.
        self.assertEqual(self.session_row(sid)["status"], "active")
        self.assertTrue(os.path.isdir(s.session_dir(sid)))

    # -- POST /job and GET /job/status ----------------------------------------

    def test_submit_job_defaults_and_session_extension(self):
        s = self.svc
        sid = self.new_session(ttl=120)
        expires_before = self.session_row(sid)["expires_at"]
        r = s.request("POST", "/job?session_id=" + sid, {"prompt": "do it"})
        self.assertEqual(r.status, 200, r)
        job = r.json()
        self.assertEqual(set(job), {"job_id", "session_id", "status", "created_at"})
        self.assertEqual((job["session_id"], job["status"]), (sid, "queued"))
        self.assertRegex(job["job_id"], HEX32_RE)
        self.assertRegex(job["created_at"], ISO_RE)
        self.assertEqual(self.job_row(job["job_id"]),
                         {"session_id": sid, "status": "queued", "prompt": "do it",
                          "model": harness.MODEL, "timeout_s": 600, "attempt": 0})
        # expires_at moved to (submission time + ttl), in the job's transaction.
        row = self.session_row(sid)
        self.assertGreater(parse_iso(row["expires_at"]), parse_iso(expires_before))
        self.assertEqual(parse_iso(row["expires_at"]) - parse_iso(job["created_at"]),
                         datetime.timedelta(seconds=120))

    def test_submit_job_with_model_and_timeout(self):
        s = self.svc
        sid = self.new_session()
        for model, timeout in (("openai/gpt-4", 1), ("openrouter/moonshotai/kimi-k2", 1800),
                               ("anthropic/claude-3-5-sonnet-latest", 30)):
            with self.subTest(model=model):
                job = s.submit(sid, "p", model=model, timeout_s=timeout)
                row = self.job_row(job["job_id"])
                self.assertEqual((row["model"], row["timeout_s"]), (model, timeout))
                st = s.job(job["job_id"])
                self.assertEqual((st["model"], st["timeout_s"]), (model, timeout))
        # null model / timeout mean the defaults
        job = s.submit(sid, "p", model=None, timeout_s=None)
        row = self.job_row(job["job_id"])
        self.assertEqual((row["model"], row["timeout_s"]), (harness.MODEL, 600))

    def test_submit_job_bad_session(self):
        before = self.counts()
        for q, status in (("", 422), ("?session_id=" + random_id(), 404),
                          ("?session_id=ABC", 404), ("?other=1", 422)):
            with self.subTest(q=q):
                r = self.svc.request("POST", "/job" + q, {"prompt": "x"})
                self.assertRefused(r, status, "session", before)

    def test_job_status_fields(self):
        s = self.svc
        sid = self.new_session()
        prompt = "status please \u00e9\u2713"
        job = s.submit(sid, prompt, model="openai/gpt-4", timeout_s=77)
        r = s.request("GET", "/job/status?job_id=" + job["job_id"])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("Content-Type"), "application/json")
        st = r.json()
        for field in ("job_id", "session_id", "status", "error", "prompt", "created_at",
                      "started_at", "finished_at", "output_files", "model", "timeout_s",
                      "attempt", "stdout", "result", "result_json", "usage", "cost_usd"):
            self.assertIn(field, st)
        self.assertEqual(st["job_id"], job["job_id"])
        self.assertEqual(st["session_id"], sid)
        self.assertEqual(st["status"], "queued")
        self.assertIsNone(st["error"])
        self.assertEqual(st["prompt"], prompt)
        self.assertEqual(st["created_at"], job["created_at"])
        self.assertIsNone(st["started_at"])
        self.assertIsNone(st["finished_at"])
        self.assertIsNone(st["output_files"])
        self.assertEqual(st["model"], "openai/gpt-4")
        self.assertEqual(st["timeout_s"], 77)
        self.assertEqual(st["attempt"], 0)
        for field in ("stdout", "result", "result_json", "usage", "cost_usd"):
            self.assertIsNone(st[field], field)

        before = self.counts()
        for q, status in (("", 422), ("?job_id=" + random_id(), 404),
                          ("?job_id=" + job["job_id"].upper(), 404),
                          ("?job_id=" + job["job_id"][:-1], 404), ("?job_id=", 404),
                          ("?job_id=" + sid, 404), ("?session_id=" + sid, 422)):
            with self.subTest(q=q):
                r = s.request("GET", "/job/status" + q)
                self.assertRefused(r, status, "job", before)

    # -- GET /session/results ------------------------------------------------

    def test_results_before_any_job(self):
        s = self.svc
        sid = self.new_session()
        r = s.request("GET", "/session/results?session_id=" + sid)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"session_id": sid, "latest_job_id": None, "output_files": [],
                                    "result": None, "result_json": None})
        # still so while a job is only queued
        s.submit(sid, "queued")
        r = s.request("GET", "/session/results?session_id=" + sid)
        self.assertEqual(r.json()["latest_job_id"], None)
        before = self.counts()
        for q, status in (("", 422), ("?session_id=" + random_id(), 404),
                          ("?session_id=" + sid.upper(), 404), ("?session_id=", 404),
                          ("?session_id=" + sid + "0", 404)):
            with self.subTest(q=q):
                r = s.request("GET", "/session/results" + q)
                self.assertRefused(r, status, "session", before)

    # -- keys per tenant ------------------------------------------------------

    def run_keys(self, *args):
        return self.svc.run_program([API_BIN, "keys"] + list(args))

    def create_key(self, name):
        r = self.run_keys("create", name)
        self.assertEqual(r.returncode, 0, r.stderr)
        m = re.search(r"^key: (ock_[0-9a-f]{64})$", r.stdout, re.M)
        self.assertIsNotNone(m, r.stdout)
        key = m.group(1)
        m = re.search(r"^id:\s+(key_[0-9a-f]{16})$", r.stdout, re.M)
        self.assertIsNotNone(m, r.stdout)
        self.assertEqual(r.stdout.count(key), 1, "the key is printed exactly once")
        self.assertNotIn(key, r.stderr)
        return m.group(1), key

    def test_tenant_keys(self):
        s = self.svc
        kid, key_b = self.create_key("tenant-b")

        # The new key works, and owns what it creates.
        sid_b = self.new_session({"b.txt": "from b"}, key=key_b)
        self.assertEqual(self.session_row(sid_b)["api_key_id"], kid)
        job_b = s.submit(sid_b, "b's job", key=key_b)["job_id"]
        self.assertEqual(s.job(job_b, key=key_b)["session_id"], sid_b)

        # A (bootstrap key) and B cannot see each other's sessions or jobs.
        sid_a = self.new_session({"a.txt": "from a"})
        job_a = s.submit(sid_a, "a's job")["job_id"]
        before = self.counts()
        for owner_sid, owner_job, other in ((sid_a, job_a, key_b), (sid_b, job_b, s.api_key)):
            for method, path, body, what in (
                    ("GET", "/session/results?session_id=" + owner_sid, None, "session"),
                    ("GET", "/download?session_id=%s&file_path=a.txt" % owner_sid, None,
                     "session"),
                    ("GET", "/download?session_id=%s&file_path=b.txt" % owner_sid, None,
                     "session"),
                    ("POST", "/job?session_id=" + owner_sid, {"prompt": "steal"}, "session"),
                    ("DELETE", "/session?session_id=" + owner_sid, None, "session"),
                    ("GET", "/job/status?job_id=" + owner_job, None, "job")):
                with self.subTest(method=method, path=path):
                    self.assertRefused(s.request(method, path, body, key=other), 404, what,
                                       before)
        self.assertEqual(self.session_row(sid_a)["status"], "active")
        self.assertEqual(self.session_row(sid_b)["status"], "active")
        self.assertEqual(s.job(job_a)["status"], "queued")
        self.assertEqual(s.job(job_b, key=key_b)["status"], "queued")

        # keys list: ids and names, never a key
        r = self.run_keys("list")
        self.assertEqual(r.returncode, 0, r.stderr)
        listed = json.loads(r.stdout)
        self.assertNotIn(key_b, r.stdout)
        self.assertNotIn(key_b[4:], r.stdout)
        mine = [k for k in listed if k["id"] == kid]
        self.assertEqual(len(mine), 1, listed)
        self.assertEqual(mine[0]["name"], "tenant-b")
        self.assertIsNone(mine[0]["revoked_at"])
        self.assertRegex(mine[0]["created_at"], ISO_RE)
        self.assertEqual(set(mine[0]), {"id", "name", "created_at", "revoked_at"})

        # Only the SHA-256 of the key is stored.
        rows = s.sql("SELECT id, octet_length(key_sha256), encode(key_sha256, 'hex')"
                     " FROM api_keys ORDER BY id")
        self.assertIn([kid, "32", hashlib.sha256(key_b.encode()).hexdigest()], rows)
        for row in rows:
            self.assertEqual(row[1], "32")
        dump = json.dumps(s.sql("SELECT row_to_json(k)::text FROM api_keys k"))
        self.assertNotIn(key_b, dump)
        self.assertNotIn(key_b[4:], dump)
        self.assertNotIn(key_b, s.all_logs())

        # Revoked: 401 within 5 s (the api caches a key it has seen for
        # KEY_CACHE_TTL_MS, 2 s), then for everything it owned too.
        r = self.run_keys("revoke", kid)
        self.assertEqual(r.returncode, 0, r.stderr)
        t0 = time.time()
        harness.wait_for(lambda: s.request("GET", "/session/results?session_id=" + sid_b,
                                           key=key_b).status == 401, 10, 0.1,
                         "the revoked key to be refused")
        self.assertLess(time.time() - t0, 5 + 1)
        before = self.counts()
        for method, path in (("GET", "/session/results?session_id=" + sid_b),
                             ("GET", "/job/status?job_id=" + job_b),
                             ("GET", "/download?session_id=%s&file_path=b.txt" % sid_b)):
            with self.subTest(revoked=path):
                self.assertRefused(s.request(method, path, key=key_b), 401, "api key", before)
        r = s.request("POST", "/session", {"files": []}, key=key_b)
        self.assertRefused(r, 401, "api key", before)
        listed = json.loads(self.run_keys("list").stdout)
        self.assertRegex([k for k in listed if k["id"] == kid][0]["revoked_at"], ISO_RE)
        self.assertNotEqual(self.run_keys("revoke", kid).returncode, 0)
        self.assertNotEqual(self.run_keys("revoke", "key_0000000000000000").returncode, 0)
        # The bootstrap key is unaffected.
        self.assertEqual(s.request("GET", "/session/results?session_id=" + sid_a).status, 200)


# ---- small limits: every bad input, nothing written ------------------------

LIMITS = {"MAX_FILES": "5", "MAX_SESSION_BYTES": "1000", "MAX_BODY_BYTES": "4096",
          "MAX_PROMPT_BYTES": "2048"}


class LimitsApiTest(ApiTestBase):
    SERVICE_ARGS = {"workers": 0, "env": LIMITS}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.sid = cls.svc.create_session({"a.txt": "a"})["session_id"]

    def f(self, path="a.txt", content="x"):
        return {"path": path, "content": content}

    def test_bad_session_bodies(self):
        f = self.f
        J = json.dumps
        cases = [
            # (name, raw body, status, words the detail must contain)
            ("malformed JSON", '{"files": [', 400, "not valid json"),
            ("trailing garbage", '{"files": []} x', 400, "not valid json"),
            ("empty body", "", 400, "empty"),
            ("not an object (array)", "[1, 2]", 422, "json object"),
            ("not an object (string)", '"files"', 422, "json object"),
            ("not an object (null)", "null", 422, "json object"),
            ("files missing", "{}", 422, "files"),
            ("files null", '{"files": null}', 422, "files"),
            ("files not an array", J({"files": f()}), 422, "files"),
            ("files a string", J({"files": "a.txt"}), 422, "files"),
            ("item without path", J({"files": [{"content": "x"}]}), 422, "files[0]"),
            # Neither content nor content_base64: 400 bad_request naming the
            # file (README, "Files").
            ("item without content", J({"files": [{"path": "a"}]}), 400, "files[0] (a)"),
            ("second item without content", J({"files": [f(), {"path": "b"}]}), 400,
             "files[1] (b)"),
            ("content not a string", J({"files": [f(content=5)]}), 422, "files[0]"),
            ("content null", J({"files": [f(content=None)]}), 422, "files[0]"),
            ("path not a string", J({"files": [f(path=["a"])]}), 422, "files[0]"),
            ("item not an object", J({"files": ["a.txt"]}), 422, "files[0]"),
            ("path empty", J({"files": [f(path="")]}), 400, "empty"),
            ("path absolute", J({"files": [f(path="/etc/passwd")]}), 400, "relative"),
            ("path ../x", J({"files": [f(path="../x")]}), 400, '".."'),
            ("path a/../b", J({"files": [f(path="a/../b")]}), 400, '".."'),
            ("path ./a", J({"files": [f(path="./a")]}), 400, '"."'),
            ("path trailing ..", J({"files": [f(path="a/..")]}), 400, '".."'),
            ("path a//b", J({"files": [f(path="a//b")]}), 400, "empty components"),
            ("path trailing slash", J({"files": [f(path="a/")]}), 400, "empty components"),
            ("path backslash", J({"files": [f(path="a\\b")]}), 400, "backslash"),
            ("path \\u0000", '{"files": [{"path": "a\\u0000b", "content": "x"}]}', 400,
             "\\u0000"),
            ("content \\u0000", '{"files": [{"path": "a", "content": "x\\u0000y"}]}', 400,
             "\\u0000"),
            ("path newline", J({"files": [f(path="a\nb")]}), 400, "control characters"),
            ("path tab", J({"files": [f(path="a\tb")]}), 400, "control characters"),
            ("path DEL", J({"files": [f(path="a\x7fb")]}), 400, "control characters"),
            ("path invalid UTF-8", b'{"files": [{"path": "a\xffb", "content": "x"}]}', 400,
             "utf-8"),
            ("path truncated UTF-8", b'{"files": [{"path": "a\xc3", "content": "x"}]}', 400,
             "utf-8"),
            ("path lone surrogate", '{"files": [{"path": "a\\ud800", "content": "x"}]}', 400,
             None),
            ("path too long", J({"files": [f(path="d/" * 520 + "x")]}), 400, "too long"),
            ("path component too long", J({"files": [f(path="x" * 256)]}), 400, "255"),
            ("duplicate paths", J({"files": [f("a/b"), f("c"), f("a/b")]}), 400,
             "appears twice"),
            ("file and folder", J({"files": [f("a"), f("a/b")]}), 400, "also a file"),
            ("folder and file", J({"files": [f("x/y/z"), f("x/y")]}), 400, "also a file"),
            ("too many files", J({"files": [f("f%d" % i) for i in range(6)]}), 400,
             "max file count of 5"),
            ("too many bytes", J({"files": [f("a", "x" * 600), f("b", "y" * 401)]}), 400,
             "max session size of 1000"),
            ("too many bytes in UTF-8", J({"files": [f("a", "\u00e9" * 501)]}), 400,
             "max session size"),
            ("ttl 0", J({"files": [f()], "ttl_seconds": 0}), 422, "ttl_seconds"),
            ("ttl -5", J({"files": [f()], "ttl_seconds": -5}), 422, "ttl_seconds"),
            ("ttl 1.5", J({"files": [f()], "ttl_seconds": 1.5}), 422, "ttl_seconds"),
            ("ttl string", J({"files": [f()], "ttl_seconds": "60"}), 422, "ttl_seconds"),
            ("ttl true", J({"files": [f()], "ttl_seconds": True}), 422, "ttl_seconds"),
            ("ttl over max", J({"files": [f()], "ttl_seconds": 7 * 24 * 3600 + 1}), 422,
             "ttl_seconds"),
            ("ttl 1e999", '{"files": [], "ttl_seconds": 1e999}', 422, "ttl_seconds"),
            ("env not an object", J({"files": [f()], "env": ["A=b"]}), 422, "env"),
            ("env value not a string", J({"files": [f()], "env": {"MY_VAR": 5}}), 422,
             "MY_VAR"),
            ("env value null", J({"files": [f()], "env": {"MY_VAR": None}}), 422, "MY_VAR"),
            ("env value object", J({"files": [f()], "env": {"MY_VAR": {"a": "b"}}}), 422,
             "MY_VAR"),
            ("env bad name", J({"files": [f()], "env": {"1BAD": "x"}}), 422, "names"),
            ("env name with =", J({"files": [f()], "env": {"A=B": "x"}}), 422, "names"),
            ("env name empty", J({"files": [f()], "env": {"": "x"}}), 422, "names"),
            ("env too many", J({"files": [], "env": {"V%d" % i: "" for i in range(65)}}), 422,
             "env"),
        ]
        before = self.counts()
        for name, body, status, contains in cases:
            with self.subTest(name):
                r = self.post_session_raw(body)
                self.assertRefused(r, status, contains, before)

    def test_reserved_env_names_refused_value_not_echoed(self):
        before = self.counts()
        for name in ("API_KEY", "LD_PRELOAD", "DATABASE_URL", "PATH", "LD_LIBRARY_PATH",
                     "AMQP_URL", "BASH_ENV"):
            with self.subTest(name=name):
                secret = "sekrit-" + random_id()
                r = self.svc.request("POST", "/session",
                                     {"files": [self.f()], "env": {"OK_NAME": "fine",
                                                                   name: secret}})
                detail = self.assertRefused(r, 422, "reserved", before)
                self.assertIn(name, detail)
                self.assertNotIn(secret.encode(), r.body)
                self.assertNotIn(secret, self.svc.log_tail("api", 100000))

    def test_limits_themselves_are_accepted(self):
        r = self.svc.request("POST", "/session", {"files": [self.f("f%d" % i) for i in range(5)]})
        self.assertEqual(r.status, 200, r)
        self.assertSessionCreated(r.json(), [("f%d" % i, b"x") for i in range(5)], 3600)
        files = [("a", b"x" * 600), ("b", b"y" * 400)]
        r = self.svc.request("POST", "/session", {
            "files": [{"path": p, "content": c.decode()} for p, c in files]})
        self.assertEqual(r.status, 200, r)
        self.assertSessionCreated(r.json(), files, 3600)
        path = "/".join(["d" * 204] * 5)           # 1024 bytes, the longest allowed
        self.assertEqual(len(path), 1024)
        r = self.svc.request("POST", "/session", {"files": [self.f(path)]})
        self.assertEqual(r.status, 200, r)
        self.assertSessionCreated(r.json(), [(path, b"x")], 3600)

    def test_body_over_limit_is_413_from_content_length(self):
        """Content-Length over MAX_BODY_BYTES: refused before the body is read."""
        before = self.counts()
        s = socket.create_connection(("127.0.0.1", self.svc.port), timeout=10)
        try:
            s.sendall(("POST /session HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: %s\r\n"
                       "Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
                       % self.svc.api_key).encode() + b'{"files": [')
            t0 = time.time()
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            m = re.search(rb"\r\nContent-Length: (\d+)", head)
            while m and len(body) < int(m.group(1)):
                chunk = s.recv(65536)
                if not chunk:
                    break
                body += chunk
            elapsed = time.time() - t0
        finally:
            s.close()
        self.assertLess(elapsed, 3, "413 must not wait for the rest of the body")
        self.assertTrue(head.startswith(b"HTTP/1.1 413 "), head)
        self.assertIn(b"\r\nContent-Type: application/json", head)
        self.assertIn("4096", json.loads(body)["detail"])
        self.assertEqual(self.counts(), before)
        # the same through http.client, with the whole body sent
        r = self.post_session_raw(json.dumps({"files": [self.f("a", "x" * 900)],
                                              "pad": "p" * 4000}))
        self.assertRefused(r, 413, "4096", before)

    def test_error_codes_name_the_problem(self):
        """Each refusal carries the stable code README lists for it."""
        J = json.dumps
        f = self.f
        before = self.counts()
        cases = [
            ("malformed JSON", '{"files": [', 400, "invalid_json"),
            ("duplicate key", '{"files": [], "files": []}', 400, "invalid_json"),
            ("bad path", J({"files": [f(path="../x")]}), 400, "invalid_path"),
            ("too many files", J({"files": [f(path="f%d" % i) for i in range(6)]}), 400,
             "too_many_files"),
            ("too large", J({"files": [f("a", "x" * 600), f("b", "y" * 600)]}), 400,
             "session_too_large"),
            ("missing field", J({}), 422, "validation_error"),
            ("body over MAX_BODY_BYTES", J({"files": [], "pad": "p" * 5000}), 413,
             "body_too_large"),
        ]
        for name, raw, status, code in cases:
            with self.subTest(name):
                self.assertRefused(self.post_session_raw(raw), status, None, before, code)
        s = self.svc
        self.assertRefused(s.request("GET", "/job/status?job_id=" + "0" * 32), 404, None,
                           before, "not_found")
        self.assertRefused(s.request("GET", "/nowhere"), 404, None, before, "not_found")
        self.assertRefused(s.request("GET", "/job"), 405, None, before, "method_not_allowed")
        self.assertRefused(s.request("GET", "/job/status", key="wrong-key-0123456789"), 401,
                           None, before, "unauthorized")
        self.assertRefused(s.request("GET", "/job/status"), 422, None, before,
                           "validation_error")

    def test_bad_job_bodies(self):
        J = json.dumps
        cases = [
            ("malformed JSON", '{"prompt": ', 400, "not valid json"),
            ("empty body", "", 400, "empty"),
            ("not an object", '["prompt"]', 422, "json object"),
            ("null body", "null", 422, "json object"),
            ("prompt missing", J({}), 422, "prompt"),
            ("prompt missing, model given", J({"model": "a/b"}), 422, "prompt"),
            ("prompt empty", J({"prompt": ""}), 422, "prompt"),
            ("prompt whitespace", J({"prompt": " \t\r\n "}), 422, "prompt"),
            ("prompt null", J({"prompt": None}), 422, "prompt"),
            ("prompt number", J({"prompt": 42}), 422, "prompt"),
            ("prompt array", J({"prompt": ["do it"]}), 422, "prompt"),
            ("prompt object", J({"prompt": {"text": "do it"}}), 422, "prompt"),
            ("prompt too long", J({"prompt": "p" * 2049}), 422, "2048"),
            ("prompt \\u0000", '{"prompt": "a\\u0000b"}', 400, "\\u0000"),
            ("prompt invalid UTF-8", b'{"prompt": "a\xffb"}', 422, "utf-8"),
            ("model without slash", J({"prompt": "p", "model": "gpt-4"}), 422, "model"),
            ("model with space", J({"prompt": "p", "model": "openai/gpt 4"}), 422, "model"),
            ("model leading slash", J({"prompt": "p", "model": "/gpt-4"}), 422, "model"),
            ("model trailing slash", J({"prompt": "p", "model": "openai/"}), 422, "model"),
            ("model empty", J({"prompt": "p", "model": ""}), 422, "model"),
            ("model newline", J({"prompt": "p", "model": "openai/gpt-4\n"}), 422, "model"),
            ("model not a string", J({"prompt": "p", "model": 4}), 422, "model"),
            ("model array", J({"prompt": "p", "model": ["a/b"]}), 422, "model"),
            ("model non-ASCII", J({"prompt": "p", "model": "openai/g\u00e9pt"}), 422, "model"),
            ("model too long", J({"prompt": "p", "model": "a/" + "b" * 199}), 422, "model"),
            ("timeout_s 0", J({"prompt": "p", "timeout_s": 0}), 422, "timeout_s"),
            ("timeout_s -1", J({"prompt": "p", "timeout_s": -1}), 422, "timeout_s"),
            ("timeout_s 1801", J({"prompt": "p", "timeout_s": 1801}), 422, "timeout_s"),
            ("timeout_s 1.5", J({"prompt": "p", "timeout_s": 1.5}), 422, "timeout_s"),
            ("timeout_s string", J({"prompt": "p", "timeout_s": "10"}), 422, "timeout_s"),
            ("timeout_s true", J({"prompt": "p", "timeout_s": True}), 422, "timeout_s"),
            ("timeout_s 1e999", '{"prompt": "p", "timeout_s": 1e999}', 422, "timeout_s"),
        ]
        before = self.counts()
        expires = self.session_row(self.sid)["expires_at"]
        for name, body, status, contains in cases:
            with self.subTest(name):
                r = self.post_job_raw(self.sid, body)
                self.assertRefused(r, status, contains, before)
        # A refused job does not extend the session either.
        self.assertEqual(self.session_row(self.sid)["expires_at"], expires)

    def test_job_limits_themselves_are_accepted(self):
        sid = self.svc.create_session({"b.txt": "b"})["session_id"]
        for fields in ({"prompt": "p" * 2048}, {"prompt": "p", "timeout_s": 1800},
                       {"prompt": "p", "timeout_s": 1}, {"prompt": "p", "model": "a/" + "b" * 198},
                       {"prompt": "p", "timeout_s": 60.0}):
            with self.subTest(fields=str(fields)[:60]):
                job = self.svc.submit(sid, **fields)
                row = self.job_row(job["job_id"])
                self.assertEqual(row["prompt"], fields["prompt"])
                self.assertEqual(row["timeout_s"], int(fields.get("timeout_s", 600)))


# ---- the announcement of a queued job ---------------------------------------
#
# Decision: POST /job writes the job and (for a session with no unfinished
# job) one job_outbox row in one transaction; the api's relay publishes the
# row to RabbitMQ and deletes it, usually within milliseconds. So with a
# reachable broker the row is checked to be *gone*, and the queue is checked
# to hold exactly one message whose body is the job id (QueueApiTest). The
# row itself is checked with the broker unreachable, where nothing relays it
# (OutboxApiTest).

class QueueApiTest(ApiTestBase):
    SERVICE_ARGS = {"workers": 0}

    def queue(self, fn):
        mq = Amqp(os.environ["AMQP_URL"])
        try:
            return fn(mq)
        finally:
            mq.close()

    def outbox(self):
        return int(self.svc.scalar("SELECT count(*) FROM job_outbox"))

    def test_first_job_is_published_once(self):
        s = self.svc
        q = s.queue
        harness.wait_for(lambda: "relay.broker_connected" in s.log_tail("api", 100000), 20,
                         what="the relay's broker connection")
        self.assertEqual(self.queue(lambda mq: mq.count(q)), 0)
        sid = s.create_session({"a.txt": "a"})["session_id"]
        job1 = s.submit(sid, "first")["job_id"]
        harness.wait_for(lambda: self.outbox() == 0, 20, what="the relay to empty job_outbox")
        harness.wait_for(lambda: self.queue(lambda mq: mq.count(q)) == 1, 10,
                         what="one message in the queue")
        self.assertEqual(self.queue(lambda mq: mq.peek(q)), job1.encode())
        self.assertIn("job=" + job1, s.log_tail("api", 100000))
        # A second job of the same session waits for the first: no message.
        job2 = s.submit(sid, "second")["job_id"]
        time.sleep(1.5)              # longer than the relay's poll interval
        self.assertEqual(self.outbox(), 0)
        self.assertEqual(self.queue(lambda mq: mq.count(q)), 1)
        self.assertEqual(s.job(job2)["status"], "queued")
        # The first job of another session is announced at once.
        sid2 = s.create_session({"b.txt": "b"})["session_id"]
        s.submit(sid2, "other session")
        harness.wait_for(lambda: self.queue(lambda mq: mq.count(q)) == 2, 10,
                         what="two messages in the queue")
        self.assertEqual(self.queue(lambda mq: mq.peek(q)), job1.encode())


class OutboxApiTest(ApiTestBase):
    # Nothing listens on port 1: the relay cannot publish.
    SERVICE_ARGS = {"workers": 0, "env": {"AMQP_URL": "amqp://nobody:nothing@127.0.0.1:1/%2f"}}

    def test_job_is_queued_in_the_outbox_while_the_broker_is_down(self):
        s = self.svc
        sid = s.create_session({"a.txt": "a"})["session_id"]
        job1 = s.submit(sid, "first")["job_id"]
        job2 = s.submit(sid, "second")["job_id"]
        time.sleep(1.5)
        self.assertEqual(s.sql("SELECT job_id FROM job_outbox ORDER BY id"), [[job1]])
        self.assertEqual(s.job(job1)["status"], "queued")
        self.assertEqual(s.job(job2)["status"], "queued")
        sid2 = s.create_session({"b.txt": "b"})["session_id"]
        job3 = s.submit(sid2, "other session")["job_id"]
        self.assertEqual(s.sql("SELECT job_id FROM job_outbox ORDER BY id"), [[job1], [job3]])


if __name__ == "__main__":
    harness.main()
