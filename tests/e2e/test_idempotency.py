"""Idempotency-Key on POST /session and POST /job.

No agent runs here (workers=0). What is checked: replays are the stored
answer byte for byte (with Idempotent-Replayed: true) and create nothing;
another body is 422; a duplicate while the first request is in flight is
409 (the first is held inside its handler by a row lock taken through
psql on its session); keys of different API keys are independent; entries
expire after IDEMPOTENCY_TTL_S and the janitor deletes them; a bad header
is 400 with nothing created.
"""

import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

SESSION_BODY = {"files": [{"path": "a.txt", "content": "hello"}], "ttl_seconds": 600}


class IdempotencyTest(harness.ServiceTest):
    SERVICE_ARGS = {"workers": 0}

    def new_key(self, name):
        return self.svc.create_key(name)[1]

    def post(self, path, body, idem, key="default", raw=None):
        h = {"Idempotency-Key": idem} if idem is not None else {}
        if raw is not None:
            h["Content-Type"] = "application/json"
            return self.svc.request("POST", path, raw=raw, headers=h, key=key)
        return self.svc.request("POST", path, body, headers=h, key=key)

    def idem_rows(self):
        return int(self.svc.scalar("SELECT count(*) FROM idempotency_keys"))

    def test_session_replay_is_byte_exact(self):
        s = self.svc
        before = int(s.scalar("SELECT count(*) FROM sessions"))
        r1 = self.post("/session", SESSION_BODY, "sess-replay-1")
        self.assertEqual(r1.status, 200, r1)
        self.assertNotIn("Idempotent-Replayed", r1.headers)
        r2 = self.post("/session", SESSION_BODY, "sess-replay-1")
        self.assertEqual(r2.status, 200, r2)
        self.assertEqual(r2.body, r1.body)
        self.assertEqual(r2.headers.get("Idempotent-Replayed"), "true")
        self.assertEqual(r2.headers.get("Content-Type"), "application/json")
        sid = r1.json()["session_id"]
        self.assertEqual(int(s.scalar("SELECT count(*) FROM sessions")), before + 1)
        self.assertEqual(s.scalar("SELECT count(*) FROM sessions WHERE id = '%s'" % sid), "1")
        self.assertEqual(s.disk_sessions().count(sid), 1)
        row = s.sql("SELECT method, path, status, completed_at IS NOT NULL,"
                    " convert_from(body, 'UTF8') FROM idempotency_keys"
                    " WHERE idem_key = 'sess-replay-1'")
        self.assertEqual(row, [["POST", "/session", "200", "t", r1.body.decode()]])
        # Another key value is another request.
        r3 = self.post("/session", SESSION_BODY, "sess-replay-2")
        self.assertNotEqual(r3.json()["session_id"], sid)

    def test_job_replay_same_id_one_row(self):
        s = self.svc
        sid = s.create_session({"a.txt": "x"})["session_id"]
        path = "/job?session_id=" + sid
        r1 = self.post(path, {"prompt": "do it"}, "job-1")
        self.assertEqual(r1.status, 200, r1)
        for _ in range(3):
            r = self.post(path, {"prompt": "do it"}, "job-1")
            self.assertEqual((r.status, r.body), (200, r1.body))
            self.assertEqual(r.headers.get("Idempotent-Replayed"), "true")
        self.assertEqual(s.scalar("SELECT count(*) FROM jobs WHERE session_id = '%s'" % sid),
                         "1")
        # The scope holds the query: the same key on another session is new.
        sid2 = s.create_session({"a.txt": "x"})["session_id"]
        r2 = self.post("/job?session_id=" + sid2, {"prompt": "do it"}, "job-1")
        self.assertEqual(r2.status, 200, r2)
        self.assertNotEqual(r2.json()["job_id"], r1.json()["job_id"])
        self.assertNotIn("Idempotent-Replayed", r2.headers)

    def test_different_body_is_422(self):
        s = self.svc
        r1 = self.post("/session", SESSION_BODY, "reuse-1")
        self.assertEqual(r1.status, 200, r1)
        before = self.counts()
        other = dict(SESSION_BODY, ttl_seconds=601)
        r = self.post("/session", other, "reuse-1")
        self.assertError(r, 422, code="idempotency_key_reused")
        # The same JSON with other bytes (spacing) is another body too.
        raw = json.dumps(SESSION_BODY, indent=2).encode()
        self.assertError(self.post("/session", None, "reuse-1", raw=raw), 422,
                         code="idempotency_key_reused")
        self.assertEqual(self.counts(), before)
        sid = s.create_session({"a.txt": "x"})["session_id"]
        path = "/job?session_id=" + sid
        self.assertEqual(self.post(path, {"prompt": "a"}, "reuse-2").status, 200)
        before = self.counts()
        self.assertError(self.post(path, {"prompt": "b"}, "reuse-2"), 422,
                         code="idempotency_key_reused")
        self.assertEqual(self.counts(), before)

    def test_client_errors_are_replayed(self):
        s = self.svc
        sid = s.create_session({"a.txt": "x"})["session_id"]
        path = "/job?session_id=" + sid
        r1 = self.post(path, {"prompt": ""}, "bad-job")
        self.assertError(r1, 422, "prompt")
        r2 = self.post(path, {"prompt": ""}, "bad-job")
        self.assertEqual((r2.status, r2.body), (422, r1.body))
        self.assertEqual(r2.headers.get("Idempotent-Replayed"), "true")
        self.assertEqual(s.scalar("SELECT count(*) FROM jobs WHERE session_id = '%s'" % sid),
                         "0")

    def test_other_api_key_is_independent(self):
        s = self.svc
        other = self.new_key("idem-other")
        r1 = self.post("/session", SESSION_BODY, "shared-key")
        r2 = self.post("/session", SESSION_BODY, "shared-key", key=other)
        self.assertEqual((r1.status, r2.status), (200, 200))
        self.assertNotIn("Idempotent-Replayed", r2.headers)
        self.assertNotEqual(r1.json()["session_id"], r2.json()["session_id"])
        self.assertEqual(s.scalar("SELECT count(DISTINCT key_id) FROM idempotency_keys"
                                  " WHERE idem_key = 'shared-key'"), "2")
        # A different body under the other API key is no reuse either.
        r3 = self.post("/session", dict(SESSION_BODY, ttl_seconds=7), "shared-key2")
        r4 = self.post("/session", SESSION_BODY, "shared-key2", key=other)
        self.assertEqual((r3.status, r4.status), (200, 200))

    def test_in_flight_duplicate_is_409(self):
        s = self.svc
        sid = s.create_session({"a.txt": "x"})["session_id"]
        path = "/job?session_id=" + sid
        # Hold the session row: POST /job waits for it inside its handler,
        # after the key was reserved.
        locker = threading.Thread(target=s.sql, args=(
            "BEGIN; SELECT 1 FROM sessions WHERE id = '%s' FOR UPDATE;"
            " SELECT pg_sleep(4); COMMIT;" % sid,))
        locker.start()
        harness.wait_for(lambda: s.scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%%pg_sleep(4)%%'"
            " AND pid <> pg_backend_pid()") == "1", 10, what="the lock to be held")
        first = {}
        t = threading.Thread(target=lambda: first.update(
            r=self.post(path, {"prompt": "slow"}, "inflight")))
        t.start()
        harness.wait_for(lambda: s.scalar(
            "SELECT count(*) FROM idempotency_keys WHERE idem_key = 'inflight'"
            " AND completed_at IS NULL") == "1", 10, what="the first request in flight")
        before = s.scalar("SELECT count(*) FROM jobs")
        dup = self.post(path, {"prompt": "slow"}, "inflight")
        self.assertError(dup, 409, code="idempotency_in_flight")
        self.assertEqual(s.scalar("SELECT count(*) FROM jobs"), before)
        t.join(30)
        locker.join(30)
        self.assertEqual(first["r"].status, 200, first["r"])
        again = self.post(path, {"prompt": "slow"}, "inflight")
        self.assertEqual((again.status, again.body), (200, first["r"].body))
        self.assertEqual(s.scalar("SELECT count(*) FROM jobs WHERE session_id = '%s'" % sid),
                         "1")

    def test_abandoned_in_flight_entry_is_taken_over(self):
        s = self.svc
        s.sql("INSERT INTO idempotency_keys (key_id, method, path, idem_key, body_sha256,"
              " created_at) VALUES ('bootstrap', 'POST', '/session', 'crashed', '%s',"
              " now() - interval '10 minutes')" % ("0" * 64))
        r = self.post("/session", SESSION_BODY, "crashed")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(s.scalar("SELECT status FROM idempotency_keys"
                                  " WHERE idem_key = 'crashed'"), "200")

    def test_invalid_header_is_400(self):
        before = self.counts()
        rows = self.idem_rows()
        for bad in ("", "x" * 256, "caf\u00e9", "a\x01b", "tab\there", "a\x7fb"):
            r = self.svc.request("POST", "/session", SESSION_BODY,
                                 headers={"Idempotency-Key": bad})
            # CivetWeb itself refuses some control characters in a header
            # ("Malformed message"); every other value is ours to refuse.
            detail = self.assertError(r, 400, code="bad_request")
            if detail != "Malformed message":
                self.assertIn("Idempotency-Key", detail, (bad, r))
            else:
                self.assertIn(bad, ("a\x01b", "a\x7fb", "tab\there"))
        self.assertEqual(self.counts(), before)
        self.assertEqual(self.idem_rows(), rows)
        # 255 printable characters are fine.
        r = self.post("/session", SESSION_BODY, "~" * 255)
        self.assertEqual(r.status, 200, r)

    def test_without_header_nothing_is_stored(self):
        rows = self.idem_rows()
        r1 = self.post("/session", SESSION_BODY, None)
        r2 = self.post("/session", SESSION_BODY, None)
        self.assertNotEqual(r1.json()["session_id"], r2.json()["session_id"])
        self.assertEqual(self.idem_rows(), rows)


class IdempotencyExpiryTest(harness.ServiceTest):
    SERVICE_ARGS = {"workers": 0, "janitor": True, "env": {"IDEMPOTENCY_TTL_S": "2"}}

    def test_expiry_and_janitor(self):
        s = self.svc
        r1 = s.request("POST", "/session", SESSION_BODY, headers={"Idempotency-Key": "exp"})
        r2 = s.request("POST", "/session", SESSION_BODY, headers={"Idempotency-Key": "exp"})
        self.assertEqual(r2.body, r1.body)
        time.sleep(2.5)
        r3 = s.request("POST", "/session", SESSION_BODY, headers={"Idempotency-Key": "exp"})
        self.assertEqual(r3.status, 200, r3)
        self.assertNotIn("Idempotent-Replayed", r3.headers)
        self.assertNotEqual(r3.json()["session_id"], r1.json()["session_id"])
        # Past the window the janitor deletes the entry.
        harness.wait_for(lambda: s.scalar("SELECT count(*) FROM idempotency_keys") == "0",
                         20, what="the janitor to delete expired entries")


if __name__ == "__main__":
    harness.main()
