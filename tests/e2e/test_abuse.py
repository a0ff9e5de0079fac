"""HTTP under abuse and per-key quotas (issue 9, points 7 and 8), against
the real api over loopback.

  * 500 idle or slow connections (nothing sent, a partial request head, a
    body that never comes) held open while /health and an authorized
    request answer; the api closes them after API_REQUEST_TIMEOUT_MS.
    The bound here is a generous 5 s; bench/bench_idle.py measures the
    tight figure (1 s).
  * Content-Length with Transfer-Encoding: 400 and the connection closed.
  * Duplicate query parameters: 400 duplicate_parameter on every endpoint
    that takes one, nothing written.
  * Quotas (active sessions, queued jobs, stored bytes): 429
    quota_exceeded naming the quota, with Retry-After; nothing written;
    other keys unaffected; "opencode-api keys set" changes a key's quota.
  * Log lines stay one line whatever quotes, newlines or bytes a client
    puts in what gets logged; session files and folders are private.
"""

import hashlib
import json
import os
import resource
import socket
import stat
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

API_BIN = os.path.join(harness.BUILD, "opencode-api")
IDLE_CONNECTIONS = 500
REQUEST_TIMEOUT_MS = 8000
BOUND_S = 5.0
BOOTSTRAP_QUOTA = "max_active_sessions=1000"
ENV = {
    # Set here so the test holds whatever the defaults are; 500 idle
    # connections need more server threads than that (see README, Security).
    "API_THREADS": "1024",
    # Long enough that a thread starved api could not hide behind the
    # timeout (health would wait for it: > BOUND_S), short enough to wait
    # for the idle connections to be closed.
    "API_REQUEST_TIMEOUT_MS": str(REQUEST_TIMEOUT_MS),
    "KEY_MAX_ACTIVE_SESSIONS": "3",
    "KEY_MAX_QUEUED_JOBS": "2",
    "KEY_MAX_STORED_MB": "1",
}


def read_response(sock):
    """One response from sock: (status, headers dict (lower-case names), body),
    or None when the server closed without answering."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        b = sock.recv(65536)
        if not b:
            return None if not raw else (0, {}, raw)
        raw += b
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.decode("latin-1").lower()] = v.strip().decode("latin-1")
    n = int(headers.get("content-length", "0"))
    while len(body) < n:
        b = sock.recv(65536)
        if not b:
            break
        body += b
    return status, headers, body


def closed_by_peer(sock, timeout):
    """True when the server closes sock within timeout (after any answer)."""
    sock.settimeout(timeout)
    try:
        while True:
            b = sock.recv(65536)
            if not b:
                return True
    except socket.timeout:
        return False
    except OSError:
        return True


class AbuseTest(harness.ServiceTest):
    SERVICE_ARGS = {"workers": 0, "env": ENV}

    @classmethod
    def setUpClass(cls):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = min(hard, 4096)
        if soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        super().setUpClass()
        # The bootstrap key serves the tests that are not about quotas.
        r = cls.svc.run_program([API_BIN, "keys", "set", "bootstrap", BOOTSTRAP_QUOTA])
        assert r.returncode == 0, r.stderr

    # ---- helpers -------------------------------------------------------------

    def counts(self):
        """Rows and folders a refused request must not change (one psql run).
        Not job_outbox: the relay and the janitor's republishing move its rows
        on their own (a refused POST /job shows in the jobs count)."""
        s = self.svc
        row = s.sql("SELECT (SELECT count(*) FROM sessions), (SELECT count(*) FROM jobs),"
                    " (SELECT count(*) FROM session_files)")[0]
        return tuple(row) + (tuple(s.disk_sessions()),)

    def new_key(self, name):
        return self.svc.create_key(name)[:2]

    def keys_set(self, *args):
        return self.svc.run_program([API_BIN, "keys", "set"] + list(args))

    def session(self, key="default", content="x"):
        return self.svc.create_session({"a.txt": content}, key=key)["session_id"]

    def assertQuota(self, r, quota, retry_after):
        self.assertError(r, 429, quota, code="quota_exceeded")
        self.assertEqual(r.json()["quota"], quota, r)
        self.assertIsInstance(r.json()["limit"], int, r)
        self.assertEqual(r.headers.get("Retry-After"), str(retry_after), r.headers)

    def connect(self):
        return socket.create_connection(("127.0.0.1", self.svc.port), timeout=10)

    # ---- 500 idle and slow connections ---------------------------------------

    def open_idle(self, n, sid):
        """n connections that hold a server thread each: a third send
        nothing, a third a partial request head, a third a POST /session
        whose body never comes."""
        key = self.svc.api_key.encode()
        socks = []
        for i in range(n):
            c = self.connect()
            if i % 3 == 1:
                c.sendall(b"GET /session/results?session_id=" + sid.encode() +
                          b" HTTP/1.1\r\nHost: x\r\nX-API-Key: ")
            elif i % 3 == 2:
                c.sendall(b"POST /session HTTP/1.1\r\nHost: x\r\nX-API-Key: " + key +
                          b"\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
                          b"{\"files\": [")
            socks.append(c)
        return socks

    def timed(self, method, path, key):
        t0 = time.monotonic()
        r = self.svc.request(method, path, key=key, timeout=BOUND_S + 5)
        return r, time.monotonic() - t0

    def test_idle_connections_do_not_starve_requests(self):
        s = self.svc
        sid = self.session()
        t_open = time.monotonic()
        socks = self.open_idle(IDLE_CONNECTIONS, sid)
        try:
            for _ in range(3):
                r, took = self.timed("GET", "/health", None)
                self.assertEqual(r.status, 200, r)
                self.assertLess(took, BOUND_S, "/health took %.2fs" % took)
                r, took = self.timed("GET", "/session/results?session_id=" + sid, "default")
                self.assertEqual(r.status, 200, r)
                self.assertLess(took, BOUND_S, "/session/results took %.2fs" % took)
            # Still inside the request timeout: the connections were held
            # all along, so this measured requests beside them.
            self.assertLess(time.monotonic() - t_open, REQUEST_TIMEOUT_MS / 1000.0,
                            "opening the connections took too long to prove anything")
            # The api closes each one once the request timeout has passed
            # (a partial head or body gets a 400 first).
            deadline = t_open + REQUEST_TIMEOUT_MS / 1000.0 * 2 + 10
            open_ones = [i for i, c in enumerate(socks)
                         if not closed_by_peer(c, max(0.1, deadline - time.monotonic()))]
            self.assertEqual(open_ones, [], "connections left open by the api")
        finally:
            for c in socks:
                c.close()
        self.assertEqual(s.request("GET", "/health", key=None).status, 200)

    # ---- request framing -----------------------------------------------------

    def test_content_length_with_transfer_encoding_is_refused_and_closed(self):
        before = self.counts()
        key = self.svc.api_key.encode()
        body = b'{"files": [{"path": "a.txt", "content": "x"}]}'
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        cases = (
            ("POST /session", b"POST /session HTTP/1.1\r\nHost: x\r\nX-API-Key: " + key +
             b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n" % len(chunked) + chunked),
            ("TE before CL", b"POST /session HTTP/1.1\r\nHost: x\r\nX-API-Key: " + key +
             b"\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n" + chunked),
            ("GET /health", b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            ("two Content-Lengths", b"POST /session HTTP/1.1\r\nHost: x\r\nX-API-Key: " + key +
             b"\r\nContent-Length: %d\r\nContent-Length: %d\r\n\r\n" % (len(body), len(body))
             + body),
        )
        for what, raw in cases:
            with self.subTest(what):
                c = self.connect()
                try:
                    # keep-alive (HTTP/1.1, no Connection: close): the api must close
                    c.sendall(raw)
                    r = read_response(c)
                    self.assertIsNotNone(r, "closed without an answer")
                    status, headers, rbody = r
                    self.assertEqual(status, 400, rbody)
                    self.assertEqual(headers.get("content-type"), "application/json")
                    self.assertEqual(json.loads(rbody)["code"], "bad_request")
                    self.assertEqual(headers.get("connection", "").lower(), "close", headers)
                    self.assertTrue(closed_by_peer(c, 5), "connection left open")
                finally:
                    c.close()
        self.assertEqual(self.counts(), before)
        # the same request, framed once, is fine
        r = self.svc.request("POST", "/session", raw=body,
                             headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 200, r)
        self.svc.request("DELETE", "/session?session_id=" + r.json()["session_id"])

    # ---- duplicate query parameters ------------------------------------------

    def test_duplicate_query_parameters_are_refused(self):
        s = self.svc
        sid = self.session()
        job = s.submit(sid, "a job")["job_id"]
        before = self.counts()
        dup = "/download?session_id=%s&file_path=a.txt&job_id=%s&job_id=%s" % (sid, job, job)
        cases = (
            ("GET", "/job/status?job_id=%s&job_id=%s" % (job, "0" * 32), "job_id"),
            ("GET", "/job/status?job_id=%s&job_id=%s" % (job, job), "job_id"),
            ("GET", "/session/results?session_id=%s&session_id=%s" % (sid, sid), "session_id"),
            ("GET", "/session/results?session_id=%s&SESSION_ID=%s" % (sid, sid), "session_id"),
            ("GET", "/session/results?session_id=%s&session%%5Fid=%s" % (sid, sid),
             "session_id"),
            ("DELETE", "/session?session_id=%s&session_id=%s" % (sid, "f" * 32), "session_id"),
            ("POST", "/job?session_id=%s&session_id=%s" % (sid, sid), "session_id"),
            ("GET", "/download?session_id=%s&file_path=a.txt&file_path=b.txt" % sid, "file_path"),
            ("GET", dup, "job_id"),
            ("GET", "/health?x=1&x=2", "x"),
        )
        for method, path, name in cases:
            with self.subTest(method=method, path=path):
                body = {"prompt": "dup"} if method == "POST" else None
                r = s.request(method, path, body)
                self.assertError(r, 400, name, code="duplicate_parameter")
        self.assertEqual(self.counts(), before)
        # distinct names, and repeated ones across path and body, are fine
        self.assertEqual(s.request("GET", "/session/results?session_id=%s&x=1&y=1" % sid).status,
                         200)
        self.assertEqual(s.request("DELETE", "/session?session_id=" + sid).status, 204)

    # ---- quotas --------------------------------------------------------------

    def test_active_sessions_quota(self):
        s = self.svc
        kid, key = self.new_key("sessions-quota")
        other_id, other = self.new_key("sessions-other")
        sids = [self.session(key) for _ in range(3)]
        before = self.counts()
        r = s.request("POST", "/session", {"files": [{"path": "a.txt", "content": "x"}]}, key=key)
        self.assertQuota(r, "max_active_sessions", 60)
        self.assertEqual(self.counts(), before)
        # another key is not affected
        self.session(other)
        # deleting one frees its place
        self.assertEqual(s.request("DELETE", "/session?session_id=" + sids[0], key=key).status,
                         204)
        self.session(key)
        # keys set raises the key's quota, "default" gives the environment's back
        r = self.keys_set(kid, "max_active_sessions=4")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("max_active_sessions=4", r.stdout)
        self.assertEqual(s.scalar("SELECT max_active_sessions FROM api_keys WHERE id = '%s'"
                                  % kid), "4")
        self.session(key)
        r = s.request("POST", "/session", {"files": [{"path": "a.txt", "content": "x"}]}, key=key)
        self.assertQuota(r, "max_active_sessions", 60)
        self.assertEqual(r.json()["limit"], 4)
        r = self.keys_set(kid, "max_active_sessions=default")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("max_active_sessions=default", r.stdout)
        self.assertEqual(s.scalar("SELECT max_active_sessions IS NULL FROM api_keys "
                                  "WHERE id = '%s'" % kid), "t")

    def test_expired_sessions_do_not_count(self):
        # No janitor runs here: a session past its expiry stays 'active' in
        # the table (and in key_usage's counters), yet frees its place and
        # its bytes at once.
        s = self.svc
        kid, key = self.new_key("expired-quota")
        r = self.keys_set(kid, "max_active_sessions=2", "max_stored_bytes=1000")
        self.assertEqual(r.returncode, 0, r.stderr)
        first = self.session(key, "a" * 500)
        self.session(key, "b" * 400)
        body = {"files": [{"path": "c.txt", "content": "c" * 100}]}
        self.assertQuota(s.request("POST", "/session", body, key=key), "max_active_sessions", 60)
        s.sql("UPDATE sessions SET expires_at = now() - interval '1 s' WHERE id = '%s'" % first)
        self.assertEqual(s.scalar("SELECT active_sessions FROM key_usage WHERE key_id = '%s'"
                                  % kid), "2")
        self.assertEqual(s.request("POST", "/session", body, key=key).status, 200)
        # 1000 bytes counted, 500 of them expired: 500 more fit only once
        # the expired session is subtracted, 501 do not fit even then.
        self.assertQuota(s.request("POST", "/session", body, key=key), "max_active_sessions", 60)
        self.assertEqual(self.keys_set(kid, "max_active_sessions=3").returncode, 0)
        big = {"files": [{"path": "d.txt", "content": "d" * 501}]}
        self.assertQuota(s.request("POST", "/session", big, key=key), "max_stored_bytes", 60)
        self.assertEqual(s.request("POST", "/session", {"files": [
            {"path": "d.txt", "content": "d" * 500}]}, key=key).status, 200)

    def test_queued_jobs_quota(self):
        s = self.svc
        kid, key = self.new_key("jobs-quota")
        _, other = self.new_key("jobs-other")
        sid = self.session(key)
        sid2 = self.session(key)
        s.submit(sid, "one", key=key)
        s.submit(sid2, "two", key=key)
        before = self.counts()
        r = s.request("POST", "/job?session_id=" + sid, {"prompt": "three"}, key=key)
        self.assertQuota(r, "max_queued_jobs", 5)
        self.assertEqual(r.json()["limit"], 2)
        self.assertEqual(self.counts(), before)
        s.submit(self.session(other), "other key", key=other)
        self.assertEqual(self.keys_set(kid, "max_queued_jobs=3").returncode, 0)
        s.submit(sid, "three", key=key)
        r = s.request("POST", "/job?session_id=" + sid, {"prompt": "four"}, key=key)
        self.assertQuota(r, "max_queued_jobs", 5)
        # 0 stops a key from queueing anything
        self.assertEqual(self.keys_set(kid, "max_queued_jobs=0").returncode, 0)
        r = s.request("POST", "/job?session_id=" + sid2, {"prompt": "five"}, key=key)
        self.assertQuota(r, "max_queued_jobs", 5)

    def test_stored_bytes_quota(self):
        s = self.svc
        kid, key = self.new_key("bytes-quota")
        _, other = self.new_key("bytes-other")
        r = self.keys_set(kid, "max_stored_bytes=1000", "max_active_sessions=10")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.session(key, "a" * 600)
        before = self.counts()
        r = s.request("POST", "/session", {"files": [{"path": "b.txt", "content": "b" * 401}]},
                      key=key)
        self.assertQuota(r, "max_stored_bytes", 60)
        self.assertEqual(r.json()["limit"], 1000)
        self.assertEqual(self.counts(), before)
        self.session(key, "b" * 400)               # exactly the limit
        self.session(other, "c" * 900)
        # the environment's default (KEY_MAX_STORED_MB=1) applies to others
        r = s.request("POST", "/session",
                      {"files": [{"path": "big.txt", "content": "d" * (1024 * 1024)}]}, key=other)
        self.assertQuota(r, "max_stored_bytes", 60)
        self.assertEqual(r.json()["limit"], 1024 * 1024)

    def test_file_edits_count_against_stored_bytes(self):
        # PUT /session/files may not grow a key past max_stored_bytes (what
        # POST /session may not either); shrinking is always allowed, and
        # a key at its session count may still edit.
        s = self.svc
        kid, key = self.new_key("edit-quota")
        r = self.keys_set(kid, "max_stored_bytes=1000", "max_active_sessions=1")
        self.assertEqual(r.returncode, 0, r.stderr)
        sid = self.session(key, "a" * 600)
        put = "/session/files?session_id=" + sid
        before = self.counts()
        r = s.request("PUT", put, {"files": [{"path": "b.txt", "content": "b" * 401}]}, key=key)
        self.assertQuota(r, "max_stored_bytes", 60)
        self.assertEqual(r.json()["limit"], 1000)
        self.assertEqual(self.counts(), before)
        self.assertEqual(s.scalar("SELECT input_bytes FROM sessions WHERE id = '%s'" % sid),
                         "600")
        r = s.request("PUT", put, {"files": [{"path": "b.txt", "content": "b" * 400}]}, key=key)
        self.assertEqual(r.status, 200, r)
        # replacing a.txt by a larger one: 600 -> 601 goes over
        r = s.request("PUT", put, {"files": [{"path": "a.txt", "content": "a" * 601}]}, key=key)
        self.assertQuota(r, "max_stored_bytes", 60)
        r = s.request("DELETE", put + "&file_path=b.txt", key=key)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(s.scalar("SELECT stored_bytes FROM key_usage WHERE key_id = '%s'"
                                  % kid), "600")
        r = s.request("PUT", put, {"files": [{"path": "a.txt", "content": "a" * 10}]}, key=key)
        self.assertEqual(r.status, 200, r)

    def test_keys_set_refuses_bad_input_and_covers_bootstrap(self):
        s = self.svc
        kid, _ = self.new_key("set-errors")
        for args, code in (((kid, "max_active_sessions"), 2), ((kid, "nonsense=1"), 2),
                           ((kid, "max_queued_jobs=-1"), 2), ((kid, "max_queued_jobs=1x"), 2),
                           (("key_0000000000000000", "max_queued_jobs=1"), 1),
                           ((kid,), 2)):
            with self.subTest(args=args):
                r = self.keys_set(*args)
                self.assertEqual(r.returncode, code, (r.stdout, r.stderr))
        self.assertEqual(s.sql("SELECT max_active_sessions, max_queued_jobs, max_stored_bytes "
                               "FROM api_keys WHERE id = '%s'" % kid), [["", "", ""]])
        # The bootstrap key has a row: its hash matches no key, API_KEY included.
        row = s.sql("SELECT octet_length(key_sha256), encode(key_sha256, 'hex'), revoked_at "
                    "FROM api_keys WHERE id = 'bootstrap'")
        self.assertEqual(len(row), 1, row)
        self.assertEqual(row[0][0], "32")
        self.assertNotEqual(row[0][1], hashlib.sha256(s.api_key.encode()).hexdigest())
        r = s.run_program([API_BIN, "keys", "revoke", "bootstrap"])
        self.assertEqual(r.returncode, 1, r.stdout)
        # ... and its quotas are set like any key's.
        self.assertEqual(self.keys_set("bootstrap", "max_active_sessions=0").returncode, 0)
        try:
            r = s.request("POST", "/session", {"files": [{"path": "a.txt", "content": "x"}]})
            self.assertQuota(r, "max_active_sessions", 60)
            self.assertEqual(r.json()["limit"], 0)
        finally:
            r = self.keys_set("bootstrap", BOOTSTRAP_QUOTA)
            self.assertEqual(r.returncode, 0, r.stderr)
        self.session()

    # ---- logs and files ------------------------------------------------------

    def test_log_lines_escape_client_text(self):
        s = self.svc
        marker = "m%s" % os.getpid()
        r = s.request("GET", "/%s%%22%%20a%%3D%%22b%%0Aforged%%3Dyes%%0D%%5C%%FF" % marker,
                      key=None)
        self.assertEqual(r.status, 404, r)
        sid = self.session()
        model = 'x/%s"q=\\"' % marker
        s.submit(sid, "quoted model", model=model)
        log = s.log_tail("api", 10 ** 7)
        lines = [line for line in log.splitlines() if marker in line]
        self.assertEqual(len(lines), 2, lines)
        self.assertFalse([line for line in log.splitlines() if line.startswith("forged")])
        # (CivetWeb turns the decoded backslash into a slash)
        self.assertIn('path="/%s\\" a=\\"b\\nforged=yes\\r/\\xff"' % marker, lines[0])
        self.assertIn('model="x/%s\\"q=\\\\\\""' % marker, lines[1])

    def test_session_files_are_private(self):
        s = self.svc
        sid = s.create_session({"a.txt": "x", "src/deep/b.py": "y"},
                               env={"TOKEN": "secret"})["session_id"]
        root = s.session_dir(sid)
        modes = {}
        for dirpath, dirs, files in os.walk(root):
            for name in dirs + files:
                p = os.path.join(dirpath, name)
                modes[os.path.relpath(p, root)] = stat.S_IMODE(os.lstat(p).st_mode)
        modes["."] = stat.S_IMODE(os.lstat(root).st_mode)
        modes[".."] = stat.S_IMODE(os.lstat(os.path.dirname(root)).st_mode)
        for rel, mode in modes.items():
            p = os.path.join(root, rel)
            want = 0o700 if os.path.isdir(p) else 0o600
            self.assertEqual(mode, want, "%s is %o" % (rel, mode))
        self.assertGreaterEqual(len(modes), 6, modes)


if __name__ == "__main__":
    harness.main()
