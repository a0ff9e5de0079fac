"""What changed (README, "What changed") with the real agent.

The real api, worker and opencode, driven by the scripted model:
  - a job that edits one file, adds one and deletes one shows exactly that
    in each output's `change` and in `deleted_files`, an untouched file is
    `unchanged`, and GET /job/diff shows it git style (headers and hunks);
  - the deleted file is gone from the session's current files: the next job
    does not have it, and its own changes and diff are empty;
  - a binary file the agent changes shows as "Binary files ... differ";
  - GET /job/diff answers 404 for an unknown job and another key's, 409
    while the job runs, 422 without job_id.
"""

import base64
import os
import re
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import script_prompt  # noqa: E402

ALL_BYTES = bytes(range(256))
ODD = '"q" \u00fc.txt'


class ChangesTest(harness.ServiceTest):
    SERVICE_ARGS = {"workers": 1}

    def run_job(self, sid, steps, text="scripted job"):
        job = self.svc.wait_job(self.svc.submit(sid, script_prompt(steps, text))["job_id"])
        self.assertEqual(job["status"], "succeeded", job)
        return job

    def diff(self, job_id, key="default"):
        return self.svc.request("GET", "/job/diff?job_id=" + job_id, key=key)

    def test_edit_add_delete(self):
        s = self.svc
        sid = s.create_session({"keep.txt": "keep\n", "edit.txt": "one\ntwo\nthree\n",
                                "gone.txt": "bye\n"})["session_id"]
        job = self.run_job(sid, [
            {"edit": {"filePath": "edit.txt", "oldString": "two", "newString": "TWO"}},
            {"write": {"filePath": "new.txt", "content": "fresh\n"}},
            {"delete": "gone.txt"},
            {"text": "changed"}])
        changes = {f["path"]: f["change"] for f in job["output_files"]}
        self.assertEqual(changes, {"keep.txt": "unchanged", "edit.txt": "modified",
                                   "new.txt": "added"})
        self.assertEqual(job["deleted_files"], ["gone.txt"])

        r = self.diff(job["job_id"])
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.headers.get("Content-Type", "").startswith("text/x-diff"), r.headers)
        text = r.body.decode()
        heads = re.findall(r"^diff --git (\S+) (\S+)$", text, re.M)
        self.assertEqual(sorted(heads), [("a/edit.txt", "b/edit.txt"),
                                         ("a/gone.txt", "b/gone.txt"),
                                         ("a/new.txt", "b/new.txt")])
        self.assertIn("--- a/edit.txt\n+++ b/edit.txt\n@@ -1,3 +1,3 @@\n one\n-two\n+TWO\n"
                      " three\n", text)
        self.assertIn("diff --git a/new.txt b/new.txt\nnew file mode 100644\n", text)
        self.assertIn("--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1 @@\n+fresh\n", text)
        self.assertIn("diff --git a/gone.txt b/gone.txt\ndeleted file mode 100644\n", text)
        self.assertIn("--- a/gone.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n", text)
        self.assertNotIn("keep.txt", text)
        self.assertEqual(r.headers.get("X-Diff-Truncated"), "false")

        # The deletion is part of the session's current files.
        res = s.request("GET", "/session/results?session_id=" + sid).json()
        self.assertEqual(sorted(f["path"] for f in res["output_files"]),
                         ["edit.txt", "keep.txt", "new.txt"])
        self.assertEqual({f["path"]: f["change"] for f in res["output_files"]}, changes)
        nxt = self.run_job(sid, [{"read": {"filePath": "gone.txt"}}, {"text": "looked"}])
        self.assertEqual(sorted(f["path"] for f in nxt["output_files"]),
                         ["edit.txt", "keep.txt", "new.txt"])
        self.assertEqual({f["change"] for f in nxt["output_files"]}, {"unchanged"})
        self.assertEqual(nxt["deleted_files"], [])
        r = self.diff(nxt["job_id"])
        self.assertEqual((r.status, r.body), (200, b""))
        # The stored rows say the same (migration 012).
        self.assertEqual(s.scalar("SELECT array_to_string(deleted_files, ',') FROM jobs"
                                  " WHERE id = '%s'" % job["job_id"]), "gone.txt")

    def test_binary_change(self):
        s = self.svc
        r = s.request("POST", "/session", {"files": [
            {"path": "data.bin", "content_base64": base64.b64encode(ALL_BYTES).decode()},
            {"path": "same.bin", "content_base64": base64.b64encode(ALL_BYTES).decode()}]})
        self.assertEqual(r.status, 200, r)
        sid = r.json()["session_id"]
        job = self.run_job(sid, [
            {"bash": {"command": "printf 'XY' >> data.bin", "description": "append"}},
            {"write": {"filePath": ODD, "content": "odd\n"}},
            {"text": "appended"}])
        changes = {f["path"]: f["change"] for f in job["output_files"]}
        self.assertEqual(changes, {"data.bin": "modified", "same.bin": "unchanged",
                                   ODD: "added"})
        self.assertEqual(job["deleted_files"], [])
        text = self.diff(job["job_id"]).body.decode()
        self.assertIn("diff --git a/data.bin b/data.bin\n", text)
        self.assertIn("Binary files a/data.bin and b/data.bin differ\n", text)
        self.assertNotIn("same.bin", text)
        # A name git must quote (it begins with '"') is git's quoted name.
        self.assertIn('diff --git "a/\\"q\\" \\303\\274.txt" "b/\\"q\\" \\303\\274.txt"\n'
                      "new file mode 100644\n", text)
        self.assertIn("+odd\n", text)

    def test_diff_errors(self):
        s = self.svc
        self.assertEqual(s.request("GET", "/job/diff").status, 422)
        r = self.diff("0" * 32)
        self.assertEqual((r.status, r.json()["code"]), (404, "not_found"))
        sid = s.create_session({"a.txt": "a\n"})["session_id"]
        jid = s.submit(sid, script_prompt([{"sleep": 4}, {"text": "slow"}]))["job_id"]
        s.wait_job(jid, states=("running",))
        r = self.diff(jid)
        self.assertEqual((r.status, r.json()["code"]), (409, "conflict"))
        s.wait_job(jid)
        self.assertEqual(self.diff(jid).status, 200)
        other = s.create_key("other")[1]
        r = self.diff(jid, key=other)
        self.assertEqual((r.status, r.json()["code"]), (404, "not_found"))


if __name__ == "__main__":
    harness.main()
