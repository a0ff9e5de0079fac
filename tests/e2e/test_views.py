"""Session views: GET /session, GET /session/jobs, GET /sessions.

No agent runs here (workers=0): jobs stay "queued", which is all the views
need; a few jobs are ended through SQL to check that statuses and times
are shown as GET /job/status shows them.
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

ISO_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")
JOB_FIELDS = {"job_id", "status", "model", "created_at", "started_at", "finished_at"}


class ViewsTest(harness.ServiceTest):
    SERVICE_ARGS = {"workers": 0}

    def new_key(self, name):
        return self.svc.create_key(name)[1]

    def get(self, path, key="default"):
        return self.svc.request("GET", path, key=key)

    # ---- GET /session ----------------------------------------------------

    def test_session_view(self):
        s = self.svc
        created = s.create_session({"b.txt": "bb", "a/x.py": "print(1)\n"}, ttl=600)
        sid = created["session_id"]
        j1 = s.submit(sid, "first")["job_id"]
        j2 = s.submit(sid, "second", model="openai/gpt-4")["job_id"]
        s.sql("UPDATE jobs SET status = 'failed', started_at = now(), finished_at = now(),"
              " error = 'x' WHERE id = '%s'" % j1)
        r = self.get("/session?session_id=" + sid)
        self.assertEqual(r.status, 200, r)
        v = r.json()
        self.assertEqual(v["session_id"], sid)
        self.assertEqual(v["status"], "active")
        self.assertEqual(v["ttl_seconds"], 600)
        self.assertEqual(v["created_at"], created["created_at"])
        self.assertRegex(v["expires_at"], ISO_RE)
        self.assertEqual([(f["path"], f["size_bytes"]) for f in v["input_files"]],
                         [("a/x.py", 9), ("b.txt", 2)])
        self.assertEqual([j["job_id"] for j in v["jobs"]], [j1, j2])
        for j in v["jobs"]:
            self.assertEqual(set(j), JOB_FIELDS)
            full = s.job(j["job_id"])
            for k in JOB_FIELDS:
                self.assertEqual(j[k], full[k], k)
        self.assertEqual(v["jobs"][0]["status"], "failed")
        self.assertRegex(v["jobs"][0]["finished_at"], ISO_RE)
        self.assertEqual(v["jobs"][1]["status"], "queued")
        self.assertIsNone(v["jobs"][1]["started_at"])
        self.assertEqual(v["jobs"][1]["model"], "openai/gpt-4")

    def test_session_view_not_found(self):
        s = self.svc
        sid = s.create_session({"a.txt": "x"})["session_id"]
        other = self.new_key("views-other")
        self.assertError(self.get("/session?session_id=" + sid, key=other), 404)
        self.assertError(self.get("/session?session_id=" + "0" * 32), 404)
        self.assertError(self.get("/session?session_id=nothex"), 404)
        self.assertError(self.get("/session"), 422)
        self.assertError(self.get("/session?session_id=" + sid, key=None), 401)
        gone = s.create_session({"a.txt": "x"})["session_id"]
        self.assertEqual(s.request("DELETE", "/session?session_id=" + gone).status, 204)
        self.assertError(self.get("/session?session_id=" + gone), 404)
        exp = s.create_session({"a.txt": "x"})["session_id"]
        s.sql("UPDATE sessions SET expires_at = now() - interval '1 second'"
              " WHERE id = '%s'" % exp)
        self.assertError(self.get("/session?session_id=" + exp), 404)

    def test_allow_lists_get(self):
        r = self.svc.request("PUT", "/session")
        self.assertError(r, 405)
        self.assertIn("GET", [m.strip() for m in r.headers["Allow"].split(",")])

    # ---- GET /session/jobs -----------------------------------------------

    def test_jobs_paging(self):
        s = self.svc
        sid = s.create_session({"a.txt": "x"})["session_id"]
        jobs = [s.submit(sid, "job %d" % i)["job_id"] for i in range(45)]
        seen, after, pages = [], None, 0
        while True:
            q = "/session/jobs?session_id=%s&limit=20" % sid
            if after:
                q += "&after=" + after
            r = self.get(q)
            self.assertEqual(r.status, 200, r)
            page = r.json()
            pages += 1
            self.assertEqual(page["session_id"], sid)
            self.assertLessEqual(len(page["jobs"]), 20)
            for j in page["jobs"]:
                self.assertEqual(set(j), JOB_FIELDS)
            seen += [j["job_id"] for j in page["jobs"]]
            after = page["next_after"]
            if after is None:
                break
            self.assertEqual(after, page["jobs"][-1]["job_id"])
        self.assertEqual(pages, 3)
        self.assertEqual(seen, jobs)
        # The default limit is 20.
        self.assertEqual(len(self.get("/session/jobs?session_id=" + sid).json()["jobs"]), 20)
        # A limit that ends exactly on the last job: next_after is null.
        r = self.get("/session/jobs?session_id=%s&limit=5&after=%s" % (sid, jobs[39]))
        self.assertEqual([j["job_id"] for j in r.json()["jobs"]], jobs[40:])
        self.assertIsNone(r.json()["next_after"])

    def test_jobs_bad_input(self):
        s = self.svc
        sid = s.create_session({"a.txt": "x"})["session_id"]
        jid = s.submit(sid, "one")["job_id"]
        other_sid = s.create_session({"a.txt": "x"})["session_id"]
        other_jid = s.submit(other_sid, "other")["job_id"]
        before = self.counts()
        base = "/session/jobs?session_id=" + sid
        for bad in ("0", "101", "-1", "abc", "1.5", ""):
            self.assertError(self.get(base + "&limit=" + bad), 422, "limit")
        self.assertError(self.get(base + "&after=" + "0" * 32), 422, "after")
        self.assertError(self.get(base + "&after=xyz"), 422, "after")
        self.assertError(self.get(base + "&after=" + other_jid), 422, "after")
        self.assertError(self.get(base + "&limit=1&limit=2"), 400, code="duplicate_parameter")
        other = self.new_key("views-jobs-other")
        self.assertError(self.get(base, key=other), 404)
        self.assertError(self.get("/session/jobs?session_id=" + "0" * 32), 404)
        self.assertEqual(self.counts(), before)
        r = self.get(base + "&limit=100&after=" + jid)
        self.assertEqual(r.json(), {"session_id": sid, "jobs": [], "next_after": None})

    # ---- GET /sessions -----------------------------------------------------

    def test_sessions_only_callers(self):
        s = self.svc
        mine_key = self.new_key("views-mine")
        theirs_key = self.new_key("views-theirs")
        mine = [s.create_session({"a.txt": "x" * i}, key=mine_key)["session_id"]
                for i in range(1, 8)]
        theirs = s.create_session({"a.txt": "x"}, key=theirs_key)["session_id"]
        gone = s.create_session({"a.txt": "x"}, key=mine_key)["session_id"]
        self.assertEqual(s.request("DELETE", "/session?session_id=" + gone,
                                   key=mine_key).status, 204)
        seen, after = [], None
        while True:
            q = "/sessions?limit=3" + ("&after=" + after if after else "")
            r = self.get(q, key=mine_key)
            self.assertEqual(r.status, 200, r)
            page = r.json()
            self.assertLessEqual(len(page["sessions"]), 3)
            seen += page["sessions"]
            after = page["next_after"]
            if after is None:
                break
        self.assertEqual([x["session_id"] for x in seen], mine)
        self.assertNotIn(theirs, [x["session_id"] for x in seen])
        first = seen[0]
        self.assertEqual(first["status"], "active")
        self.assertEqual(first["input_file_count"], 1)
        self.assertEqual(first["input_bytes"], 1)
        self.assertRegex(first["created_at"], ISO_RE)
        self.assertRegex(first["expires_at"], ISO_RE)
        self.assertIsInstance(first["ttl_seconds"], int)
        r = self.get("/sessions", key=theirs_key).json()
        self.assertEqual([x["session_id"] for x in r["sessions"]], [theirs])
        self.assertIsNone(r["next_after"])

    def test_sessions_bad_input(self):
        s = self.svc
        k = self.new_key("views-bad")
        mine = s.create_session({"a.txt": "x"}, key=k)["session_id"]
        theirs = s.create_session({"a.txt": "x"})["session_id"]
        for bad in ("0", "101", "x", "-5"):
            self.assertError(self.get("/sessions?limit=" + bad, key=k), 422, "limit")
        self.assertError(self.get("/sessions?after=" + theirs, key=k), 422, "after")
        self.assertError(self.get("/sessions?after=" + "f" * 32, key=k), 422, "after")
        self.assertError(self.get("/sessions", key=None), 401)
        r = self.get("/sessions?after=" + mine, key=k)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"sessions": [], "next_after": None})


if __name__ == "__main__":
    harness.main()
