#!/usr/bin/env python3
"""The janitor at scale (README, "The janitor"): one pass drains all that is
due in batches of JANITOR_BATCH rows, stops at JANITOR_BUDGET_S and says
so, and prunes the workspaces of old jobs of live sessions beyond
SESSION_KEEP_JOBS (their downloads answer 410 job_pruned).

Most sessions and jobs are made directly in SQL with their folders on disk
(no agent runs: fast); a few sessions go through the API. Every pass is
`opencode-janitor --once`, so the test reads exactly one janitor.pass line
per pass. Everything talks to loopback only.
"""

import os
import re
import uuid

import harness

BATCH = 7


class Ids(list):
    """Session ids, with sel: SQL that selects them (for lists too long for
    a command line)."""
    sel = None


def pass_counts(out):
    """The fields of the janitor.pass lines of out, one dict per pass."""
    passes = []
    for m in re.finditer(r"janitor\.pass (.*)", out):
        passes.append(dict(kv.split("=", 1) for kv in m.group(1).split()))
    return passes


class JanitorScaleTest(harness.ServiceTest):
    SERVICE_ARGS = {"workers": 0, "janitor": False,
                    "env": {"JANITOR_BATCH": str(BATCH), "SESSION_KEEP_JOBS": "2",
                            "JOB_RETENTION_S": "60"}}

    # ---- helpers ----------------------------------------------------------

    def janitor_once(self, **env):
        s = self.svc
        r = s.run_program([os.path.join(harness.BUILD, "opencode-janitor"), "--once"], **env)
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 0, out)
        passes = pass_counts(out)
        self.assertEqual(len(passes), 1, out)
        return passes[0], out

    def make_sessions(self, n, ended_ago=None, disk=True):
        """n sessions made in SQL: active and past expires_at, or (ended_ago
        seconds) expired long ago with their folder already gone. With disk,
        each gets a folder with a few files. Returns their ids."""
        s = self.svc
        tag = uuid.uuid4().hex[:8]
        if ended_ago is None:
            state = "'active', NULL, NULL"
        else:
            state = ("'expired', now() - interval '%d seconds', now() - interval '%d seconds'"
                     % (ended_ago, ended_ago))
        rows = s.sql(
            "INSERT INTO sessions (id, api_key_id, status, ended_at, files_removed_at,"
            " ttl_seconds, expires_at, input_file_count, input_bytes)"
            " SELECT md5('%s' || g), 'bootstrap', %s, 60, now() - interval '2 minutes', 1, 5"
            " FROM generate_series(1, %d) g RETURNING id" % (tag, state, n))
        ids = Ids(r[0] for r in rows)
        ids.sel = "SELECT md5('%s' || g) FROM generate_series(1, %d) g" % (tag, n)
        s.sql("INSERT INTO session_files (session_id, path, size_bytes)"
              " SELECT md5('%s' || g), 'a.txt', 5 FROM generate_series(1, %d) g" % (tag, n))
        if disk:
            for sid in ids:
                d = os.path.join(s.session_dir(sid), "input", "src")
                os.makedirs(d)
                for p in ("a.txt", "src/b.py"):
                    with open(os.path.join(s.session_dir(sid), "input", p), "w") as f:
                        f.write("hello")
        return ids

    def pending(self, ids):
        """How many of ids are not yet expired with their folder removed."""
        arr = ids.sel if getattr(ids, "sel", None) else ",".join("'%s'" % i for i in ids)
        return int(self.svc.scalar(
            "SELECT count(*) FROM sessions WHERE id IN (%s)"
            " AND (status = 'active' OR files_removed_at IS NULL)" % arr))

    # ---- tests ------------------------------------------------------------

    def test_1_one_pass_drains_everything_in_batches(self):
        s = self.svc
        ids = list(self.make_sessions(60))
        old = self.make_sessions(20, ended_ago=7200, disk=False)
        for _ in range(3):
            sess = s.create_session({"x.txt": "via the api"}, ttl=600)
            ids.append(sess["session_id"])
            self.assertTrue(os.path.isdir(s.session_dir(sess["session_id"])))
        arr = ",".join("'%s'" % i for i in ids)
        s.sql("UPDATE sessions SET expires_at = now() - interval '1 second'"
              " WHERE id IN (%s)" % arr)
        self.assertGreater(len(ids), 8 * BATCH)

        counts, out = self.janitor_once()
        self.assertEqual(counts["expired"], str(len(ids)), out)
        self.assertEqual(counts["removed"], str(len(ids)), out)
        self.assertEqual(counts["pruned"], str(len(old)), out)
        self.assertEqual(counts["remove_failed"], "0", out)
        self.assertEqual(counts["budget_spent"], "0", out)
        self.assertIn("duration_ms", counts)
        self.assertEqual(self.pending(ids), 0)
        for sid in ids:
            self.assertFalse(os.path.exists(s.session_dir(sid)), sid)
        arr_old = ",".join("'%s'" % i for i in old)
        self.assertEqual(s.scalar("SELECT count(*) FROM sessions WHERE id IN (%s)" % arr_old),
                         "0")
        self.assertEqual(s.scalar("SELECT count(*) FROM session_files WHERE session_id IN (%s)"
                                  % arr_old), "0")
        # An expired session answers 404, before and after the janitor.
        r = s.request("GET", "/session/results?session_id=" + ids[-1])
        self.assertError(r, 404)

    def test_2_budget_leaves_the_rest_for_the_next_pass(self):
        # One row per statement and a one-second budget: thousands of
        # sessions cannot all go in one pass.
        ids = self.make_sessions(6000, disk=False)
        counts, out = self.janitor_once(JANITOR_BATCH="1", JANITOR_BUDGET_S="1")
        self.assertEqual(counts["budget_spent"], "1", out)
        self.assertGreaterEqual(int(counts["duration_ms"]), 1000, out)
        left = self.pending(ids)
        self.assertGreater(left, 0)
        self.assertLess(left, len(ids))
        for _ in range(60):
            counts, out = self.janitor_once(JANITOR_BATCH="50", JANITOR_BUDGET_S="1")
            if self.pending(ids) == 0:
                break
        self.assertEqual(self.pending(ids), 0)
        counts, out = self.janitor_once()
        self.assertEqual(counts["budget_spent"], "0", out)
        self.assertEqual(counts["expired"], "0", out)

    def make_job(self, sid, status="succeeded", files=True, n=0):
        """A job of sid made in SQL, ended (unless queued), with its published
        folder (and manifest) when files."""
        s = self.svc
        jid = uuid.uuid4().hex
        ended = status != "queued"
        s.sql("INSERT INTO jobs (id, session_id, status, prompt, model, timeout_s, attempt,"
              " started_at, finished_at, has_outputs)"
              " VALUES ('%s', '%s', '%s', 'p', 'm', 60, %d, %s, %s, %s)"
              % (jid, sid, status, 1 if ended else 0, "now()" if ended else "NULL",
                 "now()" if ended else "NULL", "true" if files and ended else "false"))
        if files:
            d = os.path.join(s.session_dir(sid), "jobs", jid)
            os.makedirs(d)
            with open(os.path.join(d, "out.txt"), "w") as f:
                f.write("job %d" % n)
            s.sql("INSERT INTO job_files (job_id, path, size_bytes, sha256) VALUES"
                  " ('%s', 'out.txt', %d, '%s')" % (jid, len("job %d" % n), "0" * 64))
        return jid

    def test_3_old_job_workspaces_are_pruned(self):
        s = self.svc
        sid = s.create_session({"x.txt": "input"}, ttl=3600)["session_id"]
        j1 = self.make_job(sid, n=1)
        j2 = self.make_job(sid, n=2)                       # stays current
        j3 = self.make_job(sid, "failed", n=3)
        j4 = self.make_job(sid, "failed", n=4)
        j5 = self.make_job(sid, "timed_out", n=5)
        queued = self.make_job(sid, "queued", files=False)
        s.sql("UPDATE sessions SET current_job_id = '%s' WHERE id = '%s'" % (j2, sid))
        # Another live session with no more jobs than kept: untouched.
        other = s.create_session({"y.txt": "input"}, ttl=3600)["session_id"]
        k1 = self.make_job(other, n=1)
        k2 = self.make_job(other, n=2)

        counts, out = self.janitor_once()
        # Kept: the two newest ended jobs (j5, j4) and the current one (j2).
        self.assertEqual(counts["outputs_pruned"], "2", out)
        for jid in (j1, j3):
            self.assertFalse(os.path.exists(os.path.join(s.session_dir(sid), "jobs", jid)))
            self.assertIsNotNone(s.scalar(
                "SELECT outputs_pruned_at FROM jobs WHERE id = '%s'" % jid) or None)
            r = s.download(sid, "out.txt", job_id=jid)
            detail = self.assertError(r, 410, code="job_pruned")
            self.assertIn(jid, detail)
            self.assertIn("SESSION_KEEP_JOBS", detail)
            # The status still answers, with the manifest as recorded.
            j = s.job(jid)
            self.assertEqual([f["path"] for f in j["output_files"]], ["out.txt"], j)
        for n, jid in ((2, j2), (4, j4), (5, j5)):
            r = s.download(sid, "out.txt", job_id=jid)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body, b"job %d" % n)
        r = s.download(sid, "out.txt")                     # the current files
        self.assertEqual((r.status, r.body), (200, b"job 2"))
        for jid in (k1, k2):
            self.assertEqual(s.download(other, "out.txt", job_id=jid).status, 200)
        self.assertEqual(s.scalar("SELECT count(*) FROM jobs WHERE outputs_pruned_at IS NOT NULL"
                                  " AND id IN ('%s', '%s', '%s')" % (queued, k1, k2)), "0")
        # A second pass has nothing more to prune.
        counts, out = self.janitor_once()
        self.assertEqual(counts["outputs_pruned"], "0", out)
        # A job of another session, or a made-up one, is still 404.
        self.assertError(s.download(other, "out.txt", job_id=j1), 404)


if __name__ == "__main__":
    harness.main()
