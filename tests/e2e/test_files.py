"""Binary files, archives and file edits (README, "Files"), black-box.

No agent runs here (workers=0: a submitted job stays queued). What is
checked: byte-exact round trips of binary content (content_base64 ->
/download -> /download/archive), a session created from a .tar.gz, the
refusal of every bad upload with nothing written (no row, no folder),
PUT/DELETE /session/files and their 409 while a job is queued, and the
Content-Type of /download by extension.
"""

import base64
import io
import os
import stat
import sys
import tarfile
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

ALL_BYTES = bytes(range(256))


def make_targz(members):
    """A .tar.gz from (TarInfo fields, data) pairs: each member is a dict
    with name and optionally type, data, mode, linkname, size."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for m in members:
            ti = tarfile.TarInfo(m["name"])
            ti.type = m.get("type", tarfile.REGTYPE)
            ti.mode = m.get("mode", 0o644)
            ti.linkname = m.get("linkname", "")
            data = m.get("data", b"")
            if ti.type == tarfile.REGTYPE:
                ti.size = m.get("size", len(data))
                fileobj = m.get("fileobj") or io.BytesIO(data)
                tar.addfile(ti, fileobj)
            else:
                tar.addfile(ti)
    return buf.getvalue()


class ZeroStream(io.RawIOBase):
    """n zero bytes, without holding them in memory."""

    def __init__(self, n):
        self.left = n

    def readable(self):
        return True

    def readinto(self, b):
        k = min(len(b), self.left)
        b[:k] = bytes(k)
        self.left -= k
        return k


class FilesTest(harness.ServiceTest):
    SERVICE_ARGS = {"workers": 0}

    # ---- helpers ---------------------------------------------------------

    def assertError(self, r, status, contains=None, code=None):
        """harness.ServiceTest.assertError, allowing digits in a code
        (invalid_base64)."""
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.headers.get("Content-Type"), "application/json", r)
        body = r.json()
        self.assertIsInstance(body.get("detail"), str, r)
        self.assertRegex(body.get("code") or "", r"^[a-z][a-z0-9_]*$", r)
        expected = code or self.CODE_OF_STATUS.get(status)
        if expected:
            self.assertEqual(body["code"], expected, r)
        if contains:
            self.assertIn(contains.lower(), body["detail"].lower(), r)
        return body["detail"]

    def post_archive(self, data, query="", key="default"):
        return self.svc.request("POST", "/session" + query, raw=data, key=key,
                                headers={"Content-Type": "application/gzip"})

    def archive(self, sid, job_id=None):
        q = "/download/archive?session_id=" + sid
        if job_id:
            q += "&job_id=" + job_id
        r = self.svc.request("GET", q)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("Content-Type"), "application/gzip")
        self.assertEqual(r.headers.get("Content-Disposition"),
                         'attachment; filename="%s.tar.gz"' % sid)
        out = {}
        with tarfile.open(fileobj=io.BytesIO(r.body), mode="r:gz") as tar:
            for m in tar.getmembers():
                self.assertTrue(m.isreg(), m.name)
                out[m.name] = (tar.extractfile(m).read(), m.mode)
        return out

    def put_files(self, sid, files):
        return self.svc.request("PUT", "/session/files?session_id=" + sid, {"files": files})

    def delete_file(self, sid, path):
        return self.svc.request("DELETE", "/session/files?session_id=%s&file_path=%s"
                                % (sid, urllib.parse.quote(path, safe="")))

    def results_files(self, sid):
        r = self.svc.request("GET", "/session/results?session_id=" + sid)
        self.assertEqual(r.status, 200, r)
        return {f["path"]: f["size_bytes"] for f in r.json()["output_files"]}

    # ---- binary content --------------------------------------------------

    def test_binary_file_round_trips_byte_exactly(self):
        s = self.svc
        body = {"files": [{"path": "data/all.bin",
                           "content_base64": base64.b64encode(ALL_BYTES).decode()},
                          {"path": "note.txt", "content": "hello\n"}]}
        r = s.request("POST", "/session", body)
        self.assertEqual(r.status, 200, r)
        sid = r.json()["session_id"]
        sizes = {f["path"]: f["size_bytes"] for f in r.json()["input_files"]}
        self.assertEqual(sizes, {"data/all.bin": 256, "note.txt": 6})
        self.assertEqual(s.scalar("SELECT input_bytes FROM sessions WHERE id = '%s'" % sid),
                         "262")
        with open(os.path.join(s.session_dir(sid), "input", "data", "all.bin"), "rb") as f:
            self.assertEqual(f.read(), ALL_BYTES)
        d = s.download(sid, "data/all.bin")
        self.assertEqual(d.status, 200, d)
        self.assertEqual(d.body, ALL_BYTES)
        self.assertEqual(d.headers.get("Content-Length"), "256")
        self.assertEqual(d.headers.get("Content-Type"), "application/octet-stream")
        members = self.archive(sid)
        self.assertEqual(set(members), {"data/all.bin", "note.txt"})
        self.assertEqual(members["data/all.bin"][0], ALL_BYTES)
        self.assertEqual(members["note.txt"][0], b"hello\n")
        self.assertEqual(members["data/all.bin"][1] & 0o777, 0o644)

    def test_content_type_by_extension(self):
        s = self.svc
        names = {"a.txt": "text/plain; charset=utf-8", "b.md": "text/plain; charset=utf-8",
                 "c.json": "application/json", "d.html": "text/html; charset=utf-8",
                 "e.css": "text/css; charset=utf-8", "f.js": "text/javascript; charset=utf-8",
                 "g.png": "image/png", "h.JPG": "image/jpeg", "i.gif": "image/gif",
                 "j.svg": "image/svg+xml", "k.pdf": "application/pdf",
                 "l.zip": "application/zip", "m.gz": "application/gzip",
                 "n.tar": "application/x-tar", "Makefile": "application/octet-stream",
                 "o.weird": "application/octet-stream"}
        sid = s.create_session({n: "x" for n in names})["session_id"]
        for name, ctype in names.items():
            d = s.download(sid, name)
            self.assertEqual(d.status, 200, d)
            self.assertEqual(d.headers.get("Content-Type"), ctype, name)
            self.assertEqual(d.headers.get("Content-Length"), "1", name)
            self.assertEqual(d.headers.get("X-Content-Type-Options"), "nosniff")

    # ---- bad JSON uploads --------------------------------------------------

    def test_bad_content_fields_write_nothing(self):
        s = self.svc
        cases = [
            ({"path": "both.txt", "content": "a", "content_base64": "YQ=="}, 400, "bad_request",
             "both.txt"),
            ({"path": "neither.txt"}, 400, "bad_request", "neither.txt"),
            ({"path": "pad.bin", "content_base64": "YQ="}, 400, "invalid_base64", "pad.bin"),
            ({"path": "bits.bin", "content_base64": "YR=="}, 400, "invalid_base64", None),
            ({"path": "ws.bin", "content_base64": "YWJj\nZA=="}, 400, "invalid_base64", None),
            ({"path": "sp.bin", "content_base64": " YQ=="}, 400, "invalid_base64", None),
            ({"path": "alpha.bin", "content_base64": "YW*j"}, 400, "invalid_base64", None),
            ({"path": "url.bin", "content_base64": "-_8="}, 400, "invalid_base64", None),
            ({"path": "mid.bin", "content_base64": "YQ==YQ=="}, 400, "invalid_base64", None),
            ({"path": "num.bin", "content_base64": 5}, 422, "validation_error", None),
        ]
        before = self.counts()
        for entry, status, code, named in cases:
            body = {"files": [{"path": "ok.txt", "content": "fine"}, entry]}
            r = s.request("POST", "/session", body)
            detail = self.assertError(r, status, code=code)
            if named:
                self.assertIn(named, detail)
            self.assertEqual(self.counts(), before, entry)

    def test_base64_limit_counts_decoded_bytes(self):
        # 1000 decoded bytes are 1336 base64 characters: under a limit of
        # 1200 decoded bytes, over it when counted encoded.
        svc = harness.Service("files_limits", workers=0, env={"MAX_SESSION_BYTES": "1200"})
        try:
            ok = svc.request("POST", "/session", {"files": [{
                "path": "a.bin", "content_base64": base64.b64encode(bytes(1000)).decode()}]})
            self.assertEqual(ok.status, 200, ok)
            big = svc.request("POST", "/session", {"files": [{
                "path": "a.bin", "content_base64": base64.b64encode(bytes(1201)).decode()}]})
            self.assertError(big, 400, code="session_too_large")
        finally:
            svc.close()

    # ---- archives ------------------------------------------------------------

    def test_session_from_targz_matches_source(self):
        s = self.svc
        src = {"README.md": (b"# hi\n", 0o644), "src/run.sh": (b"#!/bin/sh\necho ok\n", 0o755),
               "src/deep/x.bin": (ALL_BYTES, 0o600), "empty.txt": (b"", 0o644)}
        members = [{"name": "./", "type": tarfile.DIRTYPE}, {"name": "src", "type": tarfile.DIRTYPE}]
        members += [{"name": n, "data": d, "mode": m} for n, (d, m) in src.items()]
        r = self.post_archive(make_targz(members), "?ttl_seconds=600")
        self.assertEqual(r.status, 200, r)
        sid = r.json()["session_id"]
        self.assertEqual({f["path"]: (f["size_bytes"], f["mode"]) for f in r.json()["input_files"]},
                         {n: (len(d), "100755" if m & 0o111 else "100644")
                          for n, (d, m) in src.items()})
        ttl = s.scalar("SELECT ttl_seconds FROM sessions WHERE id = '%s'" % sid)
        self.assertEqual(ttl, "600")
        modes = dict(s.sql("SELECT path, mode FROM session_files WHERE session_id = '%s'" % sid))
        self.assertEqual(modes, {"README.md": "33188", "src/run.sh": "33261",
                                 "src/deep/x.bin": "33188", "empty.txt": "33188"})
        on_disk = os.stat(os.path.join(s.session_dir(sid), "input", "src", "run.sh")).st_mode
        self.assertEqual(stat.S_IMODE(on_disk), 0o700)
        for name, (data, _) in src.items():
            d = s.download(sid, name)
            self.assertEqual((d.status, d.body), (200, data), name)
        got = self.archive(sid)
        self.assertEqual({n: v[0] for n, v in got.items()}, {n: d for n, (d, m) in src.items()})
        self.assertEqual(got["src/run.sh"][1] & 0o777, 0o755)
        self.assertEqual(got["README.md"][1] & 0o777, 0o644)

    def test_bad_archives_write_nothing(self):
        ok = {"name": "ok.txt", "data": b"ok"}
        cases = {
            "symlink": ([ok, {"name": "link", "type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}],
                        "invalid_archive", "link"),
            "hardlink": ([ok, {"name": "hard", "type": tarfile.LNKTYPE, "linkname": "ok.txt"}],
                         "invalid_archive", "hard"),
            "chardev": ([ok, {"name": "null", "type": tarfile.CHRTYPE}], "invalid_archive", "null"),
            "fifo": ([ok, {"name": "pipe", "type": tarfile.FIFOTYPE}], "invalid_archive", "pipe"),
            "dotdot": ([ok, {"name": "../evil.txt", "data": b"x"}], "invalid_archive",
                       "../evil.txt"),
            "dotdot_inner": ([ok, {"name": "a/../../evil.txt", "data": b"x"}],
                             "invalid_archive", "evil.txt"),
            "absolute": ([ok, {"name": "/tmp/evil.txt", "data": b"x"}], "invalid_archive",
                         "/tmp/evil.txt"),
            "duplicate": ([ok, {"name": "ok.txt", "data": b"again"}], "invalid_archive",
                          "ok.txt"),
            "too_many": ([{"name": "f%03d.txt" % i, "data": b"x"} for i in range(201)],
                         "too_many_files", None),
            "bomb": ([{"name": "zeros.bin", "size": 26 * 1024 * 1024 + 1,
                       "fileobj": ZeroStream(26 * 1024 * 1024 + 1)}],
                     "session_too_large", "zeros.bin"),
        }
        before = self.counts()
        for what, (members, code, named) in cases.items():
            data = make_targz(members)
            if what == "bomb":
                self.assertLess(len(data), 100 * 1024)     # small upload, huge content
            r = self.post_archive(data)
            detail = self.assertError(r, 400, code=code)
            if named:
                self.assertIn(named, detail, what)
            self.assertEqual(self.counts(), before, what)
        for junk in (b"not an archive at all", b"\x1f\x8b\x08\x00garbage"):
            r = self.post_archive(junk)
            self.assertError(r, 400, code="invalid_archive")
            self.assertEqual(self.counts(), before)
        r = self.post_archive(make_targz([ok]), "?ttl_seconds=0")
        self.assertError(r, 422, code="validation_error")
        self.assertEqual(self.counts(), before)

    def test_bomb_refused_while_streaming(self):
        # Many members, each under the limit: only the running total of
        # decompressed bytes passes MAX_SESSION_BYTES, part-way through.
        svc = harness.Service("files_bomb", workers=0, env={"MAX_SESSION_BYTES": "100000"})
        try:
            members = [{"name": "z%02d.bin" % i, "size": 30000, "fileobj": ZeroStream(30000)}
                       for i in range(20)]
            r = svc.request("POST", "/session", raw=make_targz(members),
                            headers={"Content-Type": "application/gzip"})
            detail = self.assertError(r, 400, code="session_too_large")
            self.assertIn("z03.bin", detail)
            self.assertEqual(svc.scalar("SELECT count(*) FROM sessions"), "0")
            self.assertEqual(svc.disk_sessions(), [])
        finally:
            svc.close()

    # ---- PUT and DELETE /session/files ----------------------------------------

    def test_put_and_delete_change_results_download_and_archive(self):
        s = self.svc
        sid = s.create_session({"a.txt": "alpha\n", "b.txt": "beta\n"})["session_id"]
        self.assertEqual(self.results_files(sid), {})     # before any job or edit
        r = self.put_files(sid, [{"path": "b.txt", "content": "BETA!\n"},
                                 {"path": "bin/all.bin",
                                  "content_base64": base64.b64encode(ALL_BYTES).decode()}])
        self.assertEqual(r.status, 200, r)
        want = {"a.txt": 6, "b.txt": 6, "bin/all.bin": 256}
        self.assertEqual({f["path"]: f["size_bytes"] for f in r.json()["output_files"]}, want)
        self.assertEqual(self.results_files(sid), want)
        self.assertEqual(s.download(sid, "b.txt").body, b"BETA!\n")
        self.assertEqual(s.download(sid, "bin/all.bin").body, ALL_BYTES)
        row = s.sql("SELECT input_file_count, input_bytes FROM sessions WHERE id = '%s'" % sid)
        self.assertEqual(row, [["3", "268"]])

        r = self.delete_file(sid, "a.txt")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.results_files(sid), {"b.txt": 6, "bin/all.bin": 256})
        self.assertEqual(s.download(sid, "a.txt").status, 404)
        self.assertFalse(os.path.exists(os.path.join(s.session_dir(sid), "input", "a.txt")))
        self.assertEqual(set(self.archive(sid)), {"b.txt", "bin/all.bin"})
        row = s.sql("SELECT input_file_count, input_bytes FROM sessions WHERE id = '%s'" % sid)
        self.assertEqual(row, [["2", "262"]])
        self.assertEqual(sorted(os.listdir(s.session_dir(sid))), ["input"])   # no staging left

        self.assertError(self.delete_file(sid, "a.txt"), 404, code="not_found")
        self.assertError(self.delete_file(sid, "bin"), 404, code="not_found")
        self.assertError(self.delete_file(sid, "../x"), 400, code="invalid_path")
        self.assertError(self.put_files(sid, [{"path": "b.txt/c", "content": "x"}]), 400,
                         code="invalid_path")
        self.assertError(self.put_files(sid, [{"path": "x", "content_base64": "!"}]), 400,
                         code="invalid_base64")
        self.assertError(self.put_files(sid, []), 422, code="validation_error")
        self.assertEqual(self.results_files(sid), {"b.txt": 6, "bin/all.bin": 256})

    def test_edits_answer_409_while_a_job_is_queued(self):
        s = self.svc
        sid = s.create_session({"a.txt": "alpha\n"})["session_id"]
        s.submit(sid, "do something")        # no worker: stays queued
        r = self.put_files(sid, [{"path": "a.txt", "content": "changed"}])
        self.assertError(r, 409, code="session_busy")
        self.assertError(self.delete_file(sid, "a.txt"), 409, code="session_busy")
        self.assertEqual(s.download(sid, "a.txt").body, b"alpha\n")
        self.assertEqual(s.sql("SELECT path, size_bytes FROM session_files "
                               "WHERE session_id = '%s'" % sid), [["a.txt", "6"]])

    def test_edits_of_unknown_session_are_404(self):
        s = self.svc
        other = "0" * 32
        self.assertError(self.put_files(other, [{"path": "a", "content": "x"}]), 404)
        self.assertError(self.delete_file(other, "a"), 404)
        r = s.request("GET", "/download/archive?session_id=" + other)
        self.assertError(r, 404)

    def test_edits_respect_session_limits(self):
        svc = harness.Service("files_edit_limits", workers=0, env={"MAX_FILES": "2"})
        try:
            sid = svc.create_session({"a.txt": "a", "b.txt": "b"})["session_id"]
            r = svc.request("PUT", "/session/files?session_id=" + sid,
                            {"files": [{"path": "c.txt", "content": "c"}]})
            self.assertError(r, 400, code="too_many_files")
            self.assertEqual(svc.scalar("SELECT input_file_count FROM sessions"), "2")
            self.assertEqual(sorted(os.listdir(os.path.join(svc.session_dir(sid), "input"))),
                             ["a.txt", "b.txt"])
        finally:
            svc.close()


if __name__ == "__main__":
    harness.main()
