"""Binary files and file edits with the real agent (README, "Files").

The real api, worker and opencode, driven by the scripted model:
  - a binary file (all 256 byte values) uploaded with content_base64
    round-trips byte-exactly through a job that leaves it alone, /download
    of the job's outputs and /download/archive of the job;
  - files added, replaced and deleted with PUT/DELETE /session/files after
    a succeeded job are what the next job starts from (it sees the new
    content and no longer the deleted file), and GET /session/results
    shows them next to the latest succeeded job's result.
"""

import base64
import hashlib
import io
import os
import sys
import tarfile
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import script_prompt  # noqa: E402

ALL_BYTES = bytes(range(256))


class FilesAgentTest(harness.ServiceTest):
    SERVICE_ARGS = {"workers": 1}

    def run_job(self, sid, steps, text="scripted job"):
        job = self.svc.wait_job(self.svc.submit(sid, script_prompt(steps, text))["job_id"])
        self.assertEqual(job["status"], "succeeded", job)
        return job

    def archive(self, sid, job_id=None):
        q = "/download/archive?session_id=" + sid + ("&job_id=" + job_id if job_id else "")
        r = self.svc.request("GET", q)
        self.assertEqual(r.status, 200, r)
        with tarfile.open(fileobj=io.BytesIO(r.body), mode="r:gz") as tar:
            return {m.name: (tar.extractfile(m).read(), m.mode & 0o777) for m in tar.getmembers()}

    def test_binary_file_survives_a_job(self):
        s = self.svc
        r = s.request("POST", "/session", {"files": [
            {"path": "assets/all.bin", "content_base64": base64.b64encode(ALL_BYTES).decode()},
            {"path": "README.md", "content": "# hi\n"}]})
        self.assertEqual(r.status, 200, r)
        sid = r.json()["session_id"]
        job = self.run_job(sid, [{"write": {"filePath": "NOTES.md", "content": "note\n"}},
                                 {"text": "wrote a note"}])
        files = {f["path"]: f for f in job["output_files"]}
        self.assertEqual(files["assets/all.bin"]["size_bytes"], 256)
        self.assertEqual(files["assets/all.bin"]["sha256"], hashlib.sha256(ALL_BYTES).hexdigest())
        d = s.download(sid, "assets/all.bin", job_id=job["job_id"])
        self.assertEqual((d.status, d.body), (200, ALL_BYTES))
        self.assertEqual(d.headers.get("Content-Length"), "256")
        got = self.archive(sid, job["job_id"])
        self.assertEqual(sorted(got), ["NOTES.md", "README.md", "assets/all.bin"])
        self.assertEqual(got["assets/all.bin"][0], ALL_BYTES)
        self.assertEqual(self.archive(sid), got)     # the job's outputs are current

    def test_next_job_starts_from_edited_files(self):
        s = self.svc
        sid = s.create_session({"keep.txt": "keep\n", "gone.txt": "bye\n"})["session_id"]
        first = self.run_job(sid, [{"write": {"filePath": "made.txt", "content": "made\n"}},
                                   {"text": "first done"}])
        r = s.request("PUT", "/session/files?session_id=" + sid, {"files": [
            {"path": "keep.txt", "content": "kept and changed\n"},
            {"path": "new.bin", "content_base64": base64.b64encode(ALL_BYTES).decode()}]})
        self.assertEqual(r.status, 200, r)
        r = s.request("DELETE", "/session/files?session_id=%s&file_path=%s"
                      % (sid, urllib.parse.quote("gone.txt")))
        self.assertEqual(r.status, 200, r)
        res = s.request("GET", "/session/results?session_id=" + sid).json()
        self.assertEqual(res["latest_job_id"], first["job_id"])
        self.assertEqual(res["result"], "first done")
        self.assertEqual(sorted(f["path"] for f in res["output_files"]),
                         ["keep.txt", "made.txt", "new.bin"])
        # The first job's own outputs are untouched.
        self.assertEqual(s.download(sid, "gone.txt", job_id=first["job_id"]).body, b"bye\n")
        self.assertEqual(s.download(sid, "gone.txt").status, 404)

        second = self.run_job(sid, [
            {"bash": {"command": "ls > listing.txt; cat keep.txt > seen.txt; "
                                 "sha256sum new.bin >> seen.txt", "description": "look"}},
            {"text": "second done"}])
        out = {f["path"] for f in second["output_files"]}
        self.assertEqual(out, {"keep.txt", "made.txt", "new.bin", "listing.txt", "seen.txt"})
        listing = s.download(sid, "listing.txt").body.decode().split()
        self.assertNotIn("gone.txt", listing)
        seen = s.download(sid, "seen.txt").body.decode()
        self.assertIn("kept and changed\n", seen)
        self.assertIn(hashlib.sha256(ALL_BYTES).hexdigest(), seen)
        res = s.request("GET", "/session/results?session_id=" + sid).json()
        self.assertEqual(res["latest_job_id"], second["job_id"])


if __name__ == "__main__":
    harness.main()
