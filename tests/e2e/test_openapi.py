"""The OpenAPI document (api/openapi.json, served at GET /openapi.json)
cannot drift from the service:

- it validates against the official OpenAPI 3.1 JSON Schema, vendored in
  tests/openapi/ (python3-jsonschema, Draft 2020-12);
- its operations are exactly the rows of api_routes[] (api/dispatch.c),
  public exactly where the row needs no key; every error code of
  api/errcode.c is in it under its status, every job error code of
  common/joberr.c in JobErrorCode; its examples validate;
- live responses conform: a real Service (one worker, the scripted model)
  is driven through every endpoint and many error cases, and each response
  is checked against what the document gives for its (path, method,
  status): the status must be documented, the Content-Type must match,
  and a JSON body must validate (response schemas say
  additionalProperties: false, so an undeclared field fails). With
  OC_RECORD_RESPONSES naming an existing file of JSON lines (recorded by
  tests/e2e/harness.py while other e2e files ran), those are checked too.
"""

import json
import os
import re
import sys
import unittest
import urllib.parse
import warnings

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import script_prompt, wait_for  # noqa: E402

# Debian 12's python3-jsonschema (4.10) resolves $refs with RefResolver;
# newer releases deprecate it (for the referencing library) but keep it.
warnings.filterwarnings("ignore", message=".*RefResolver", category=DeprecationWarning)
try:
    import jsonschema
    from jsonschema import Draft202012Validator, RefResolver
except ImportError:  # pragma: no cover
    jsonschema = None

SOURCE = harness.SOURCE
API_BIN = os.path.join(harness.BUILD, "opencode-api")
with open(os.path.join(SOURCE, "api", "openapi.json")) as _f:
    DOC = json.load(_f)
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def read(*parts):
    with open(os.path.join(SOURCE, *parts)) as f:
        return f.read()


def route_rows():
    """(method, path, needs_key) of each row of api_routes[]."""
    text = read("api", "dispatch.c")
    table = text[text.index("api_routes[] = {"):]
    table = table[:table.index("};")]
    return [(m, p, k == "1") for m, p, k in
            re.findall(r'\{\s*"([A-Z]+)",\s*"([^"]+)",\s*([01])(?:\s*\|\s*API_IDEMPOTENT)?,'
                          r'\s*\w+\s*\}', table)]


def doc_operations():
    return {(m.upper(), p): op for p, item in DOC["paths"].items()
            for m, op in item.items() if m in METHODS}


def resolve(obj):
    while isinstance(obj, dict) and "$ref" in obj:
        node = DOC
        for part in obj["$ref"][2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        obj = node
    return obj


def validator(schema):
    return Draft202012Validator(schema, resolver=RefResolver.from_schema(DOC))


def schema_errors(schema, value):
    return ["%s at %s" % (e.message, "/".join(map(str, e.absolute_path)))
            for e in validator(schema).iter_errors(value)]


def expected_response(method, path, status):
    """The document's response object for this exchange, or a reason why
    there is none. Unknown paths and wrong methods are answered by the
    dispatcher (components/responses NotFound and MethodNotAllowed), a
    CORS preflight with an empty 204."""
    item = DOC["paths"].get(path)
    if item is None:
        return (DOC["components"]["responses"]["NotFound"], None) if status == 404 else \
            (None, "%s %s: unknown path answered %d, not 404" % (method, path, status))
    op = item.get("get" if method == "HEAD" else method.lower())
    if op is None:
        if method == "OPTIONS" and status == 204:
            return {"description": "CORS preflight"}, None
        return (DOC["components"]["responses"]["MethodNotAllowed"], None) if status == 405 else \
            (None, "%s %s: undocumented method answered %d, not 405" % (method, path, status))
    r = op["responses"].get(str(status))
    if r is None:
        return None, "%s %s: status %d is not documented (%s)" % (
            method, path, status, ", ".join(sorted(op["responses"])))
    return resolve(r), None


def conformance_problems(method, target, status, content_type, body):
    """What is wrong with one response against the document ([] if nothing).
    body: the body as text (None when not UTF-8)."""
    path = urllib.parse.unquote(urllib.parse.urlsplit(target).path)
    resp, why = expected_response(method, path, status)
    if resp is None:
        return ["%s [%s, %s: %r]" % (why, target[:200], content_type, (body or "")[:200])]
    content = resp.get("content") or {}
    where = "%s %s -> %d" % (method, target[:200], status)
    if not content or method == "HEAD":
        return ["%s: expected no body, got %r" % (where, body[:200])] \
            if body and method != "HEAD" else []
    ctype = (content_type or "").split(";")[0].strip()
    if ctype not in content:
        return ["%s: Content-Type %r not documented (%s)" % (where, content_type, list(content))]
    # A downloaded file is the tenant's bytes, whatever its extension says.
    if ctype != "application/json" or path == "/download":
        return []
    try:
        value = json.loads(body)
    except (TypeError, ValueError) as e:
        return ["%s: body is not JSON (%s): %r" % (where, e, (body or "")[:200])]
    return ["%s: %s" % (where, e) for e in schema_errors(content[ctype]["schema"], value)]


@unittest.skipIf(jsonschema is None, "python3-jsonschema is not installed (scripts/deps.sh)")
class Document(unittest.TestCase):
    def test_validates_against_the_openapi_31_schema(self):
        schema = json.loads(read("tests", "openapi", "schema.json"))
        self.assertEqual(schema["$id"], "https://spec.openapis.org/oas/3.1/schema/2022-10-07")
        Draft202012Validator.check_schema(schema)
        errors = ["%s at %s" % (e.message, "/".join(map(str, e.absolute_path)))
                  for e in Draft202012Validator(schema).iter_errors(DOC)]
        self.assertEqual(errors, [])
        self.assertEqual(DOC["openapi"], "3.1.0")

    def test_every_route_is_documented_and_nothing_else(self):
        rows = route_rows()
        self.assertGreaterEqual(len(rows), 10)
        gets = {p for m, p, _ in rows if m == "GET"}
        for m, p, _ in rows:
            if m == "HEAD":
                self.assertIn(p, gets, "HEAD %s without GET" % p)
        routes = {(m, p): k for m, p, k in rows if m != "HEAD"}
        ops = doc_operations()
        self.assertEqual(sorted(routes), sorted(ops))
        for key, needs_key in routes.items():
            security = ops[key].get("security", DOC["security"])
            self.assertEqual(bool(security), needs_key, key)
            if needs_key:
                self.assertEqual(security, [{"ApiKey": []}], key)
                self.assertIn("401", ops[key]["responses"], key)
        scheme = DOC["components"]["securitySchemes"]["ApiKey"]
        self.assertEqual((scheme["type"], scheme["in"], scheme["name"]),
                         ("apiKey", "header", "X-API-Key"))

    def test_every_error_code_is_documented_under_its_status(self):
        table = re.findall(r'\[(ERR_\w+)\]\s*=\s*\{\s*(\d+),\s*"([a-z][a-z0-9_]*)"\s*\}',
                           read("api", "errcode.c"))
        self.assertGreaterEqual(len(table), 19)
        text = json.dumps(DOC)
        codes = DOC["components"]["schemas"]["ErrorCode"]["enum"]
        by_status = {}
        for item in DOC["paths"].values():
            for op in item.values():
                for st, r in op["responses"].items():
                    c = resolve(r).get("content", {}).get("application/json")
                    code = c and resolve(c["schema"]).get("properties", {}).get("code")
                    if code:
                        by_status.setdefault(int(st), set()).update(
                            code.get("enum") or [code.get("const")])
        # The dispatcher's own answers (unknown path, wrong method) are
        # components/responses, under no operation.
        for name, st in (("NotFound", 404), ("MethodNotAllowed", 405)):
            c = DOC["components"]["responses"][name]["content"]["application/json"]
            by_status.setdefault(st, set()).update(resolve(c["schema"])["properties"]["code"]["enum"])
        for _, status, name in table:
            self.assertIn('"%s"' % name, text)
            self.assertIn(name, codes)
            self.assertIn(name, by_status.get(int(status), set()), "%s under %s" % (name, status))
        self.assertEqual(sorted(codes), sorted(n for _, _, n in table))

    def test_every_job_error_code_is_documented(self):
        names = re.findall(r'\[JOBERR_\w+\]\s*=\s*"([a-z_]+)"', read("common", "joberr.c"))
        self.assertGreaterEqual(len(names), 9)
        enum = DOC["components"]["schemas"]["JobErrorCode"]["enum"]
        self.assertEqual(sorted(names), sorted(e for e in enum if e is not None))

    def test_examples_validate(self):
        n = 0
        for (m, p), op in doc_operations().items():
            contents = [resolve(op.get("requestBody", {})).get("content", {})]
            contents += [resolve(r).get("content", {}) for r in op["responses"].values()]
            for content in contents:
                for media in content.values():
                    examples = [media["example"]] if "example" in media else []
                    examples += [e["value"] for e in media.get("examples", {}).values()]
                    for ex in examples:
                        n += 1
                        self.assertEqual(schema_errors(media["schema"], ex), [], (m, p, ex))
        self.assertGreaterEqual(n, 8)

    def test_response_objects_are_closed(self):
        """Every object schema a response can carry says additionalProperties:
        false, so a field the API adds without documenting it fails."""
        open_ = []

        def walk(s, where):
            s = resolve(s)
            if isinstance(s, dict):
                if s.get("type") in ("object", ["object", "null"]) and "properties" in s and \
                        s.get("additionalProperties") is not False:
                    open_.append(where)
                for k, v in s.items():
                    if isinstance(v, (dict, list)) and k != "examples":
                        walk(v, where + "/" + k)
            elif isinstance(s, list):
                for i, v in enumerate(s):
                    walk(v, "%s/%d" % (where, i))
        for (m, p), op in doc_operations().items():
            for st, r in op["responses"].items():
                for ct, media in resolve(r).get("content", {}).items():
                    walk(media["schema"], "%s %s %s" % (m, p, st))
        self.assertEqual(open_, [])


SEED_FILES = {"README.md": "# My Project\n",
              "src/math_utils.py": "def add(a,b):\n    return a+b\n"}
EDIT = script_prompt([
    {"read": {"filePath": "src/math_utils.py"}},
    {"edit": {"filePath": "src/math_utils.py", "oldString": "    return a+b\n",
              "newString": "    return a+b\n\ndef subtract(a, b):\n    return a - b\n"}},
    {"text": "Added a subtract function."}], "Add a subtract function to src/math_utils.py")


@unittest.skipIf(jsonschema is None, "python3-jsonschema is not installed (scripts/deps.sh)")
class Live(harness.ServiceTest):
    SERVICE_ARGS = {"workers": 1, "janitor": True,
                    "env": {"MAX_FILES": "8", "MAX_SESSION_BYTES": "4096",
                            "MAX_BODY_BYTES": "65536", "SESSION_KEEP_JOBS": "1",
                            "WORKER_CONCURRENCY": "2"}}

    seen = []

    def call(self, method, path, body=None, key="default", **kw):
        r = self.svc.request(method, path, body, key=key, **kw)
        try:
            text = r.body.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        problems = conformance_problems(method, path, r.status, r.headers.get("Content-Type"),
                                        text)
        self.assertEqual(problems, [])
        self.seen.append((method, urllib.parse.urlsplit(path).path, r.status))
        return r

    def test_1_public_endpoints(self):
        r = self.call("GET", "/openapi.json", key=None)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers.get("Content-Type"), "application/json")
        self.assertEqual(r.json(), DOC)
        r = self.call("GET", "/docs", key=None)
        self.assertEqual(r.status, 200)
        self.assertTrue(r.headers["Content-Type"].startswith("text/html"), r.headers)
        csp = r.headers.get("Content-Security-Policy", "")
        self.assertIn("default-src 'none'", csp)
        self.assertIn("connect-src 'self'", csp)
        self.assertNotRegex(r.body.decode(), r'<(script|link|img)[^>]+(src|href)=|@import|url\(')
        # /ready may answer 503 not_ready until the relay's broker
        # connection is up: both answers are checked.
        for m in ("GET", "HEAD"):
            self.assertEqual(self.call(m, "/health", key=None).status, 200)
            wait_for(lambda: self.call(m, "/ready", key=None).status == 200, 30,
                     what="%s /ready" % m)
        # Public endpoints ignore a bad key.
        self.assertEqual(self.call("GET", "/openapi.json", key="nope").status, 200)

    def test_2_errors(self):
        s = self.svc
        sid = s.create_session({"a.txt": "a"})["session_id"]
        zero = "0" * 32
        cases = [
            ("POST", "/session", {"files": []}, None, 401),
            ("GET", "/job/status?job_id=" + zero, None, "wrong-key", 401),
            ("GET", "/nope", None, "default", 404),
            ("GET", "/job/status?job_id=xyz", None, "default", 404),
            ("GET", "/job/status?job_id=" + zero, None, "default", 404),
            ("GET", "/session/results?session_id=" + zero, None, "default", 404),
            ("DELETE", "/session?session_id=" + zero, None, "default", 404),
            ("POST", "/job?session_id=" + zero, {"prompt": "x"}, "default", 404),
            ("GET", "/download?session_id=%s&file_path=missing.txt" % sid, None, "default", 404),
            ("GET", "/download?session_id=%s&file_path=a.txt&job_id=%s" % (sid, zero), None,
             "default", 404),
            ("PUT", "/session", None, "default", 405),
            ("POST", "/health", None, None, 405),
            ("DELETE", "/job", None, "default", 405),
            ("POST", "/openapi.json", None, None, 405),
            ("GET", "/job/status?job_id=a&job_id=b", None, "default", 400),
            ("POST", "/session", {"files": [{"path": "../x", "content": "x"}]}, "default", 400),
            ("POST", "/session", {"files": [{"path": "f%d" % i, "content": "x"}
                                            for i in range(9)]}, "default", 400),
            ("POST", "/session", {"files": [{"path": "big", "content": "x" * 5000}]},
             "default", 400),
            ("GET", "/download?session_id=%s&file_path=../a" % sid, None, "default", 400),
            ("POST", "/session", {}, "default", 422),
            ("POST", "/session", {"files": [], "ttl_seconds": 0}, "default", 422),
            ("POST", "/session", {"files": [], "env": {"PATH": "/x"}}, "default", 422),
            ("POST", "/job?session_id=" + sid, {}, "default", 422),
            ("POST", "/job?session_id=" + sid, {"prompt": "x", "timeout_s": 0}, "default", 422),
            ("POST", "/job", {"prompt": "x"}, "default", 422),
            ("GET", "/job/status", None, "default", 422),
            ("GET", "/job/diff", None, "default", 422),
            ("GET", "/job/diff?job_id=" + zero, None, "default", 404),
            ("GET", "/download?session_id=" + sid, None, "default", 422),
            ("GET", "/session?session_id=" + sid, None, "default", 200),
            ("GET", "/session?session_id=" + zero, None, "default", 404),
            ("GET", "/session/jobs?session_id=%s&limit=2" % sid, None, "default", 200),
            ("GET", "/session/jobs?session_id=%s&limit=0" % sid, None, "default", 422),
            ("GET", "/session/jobs?session_id=" + zero, None, "default", 404),
            ("GET", "/sessions?limit=5", None, "default", 200),
            ("GET", "/sessions?after=" + zero, None, "default", 422),
        ]
        for method, path, body, key, status in cases:
            with self.subTest(method=method, path=path[:80], status=status):
                self.assertEqual(self.call(method, path, body, key=key).status, status)
        r = self.call("POST", "/session", raw=b'{"files": [', headers={
            "Content-Type": "application/json"})
        self.assertEqual((r.status, r.json()["code"]), (400, "invalid_json"))
        r = self.call("POST", "/session", raw=b"x" * 70000)
        self.assertEqual((r.status, r.json()["code"]), (413, "body_too_large"))
        r = self.call("PUT", "/session")
        self.assertEqual(r.headers.get("Allow"), "POST, DELETE, GET")
        # Idempotency-Key: a replay (same bytes), another body (422), a bad key (400).
        body = {"files": [{"path": "i.txt", "content": "i"}]}
        first = self.call("POST", "/session", body, headers={"Idempotency-Key": "oa-1"})
        again = self.call("POST", "/session", body, headers={"Idempotency-Key": "oa-1"})
        self.assertEqual((again.body, again.headers.get("Idempotent-Replayed")),
                         (first.body, "true"))
        r = self.call("POST", "/session", {"files": []}, headers={"Idempotency-Key": "oa-1"})
        self.assertEqual((r.status, r.json()["code"]), (422, "idempotency_key_reused"))
        r = self.call("POST", "/session", body, headers={"Idempotency-Key": "x" * 256})
        self.assertEqual(r.status, 400)

    def test_3_quota(self):
        s = self.svc
        kid, key, _ = s.create_key("openapi-quota")
        r = s.run_program([API_BIN, "keys", "set", kid, "max_active_sessions=0"])
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.call("POST", "/session", {"files": [{"path": "a", "content": "a"}]}, key=key)
        self.assertEqual(r.status, 429)
        self.assertEqual(r.json()["quota"], "max_active_sessions")
        self.assertTrue(r.headers.get("Retry-After", "").isdigit(), r.headers)

    def test_4_seed_flow_and_job_states(self):
        r = self.call("POST", "/session", {"files": [{"path": p, "content": c}
                                                     for p, c in SEED_FILES.items()],
                                           "ttl_seconds": 3600, "env": {"MY_TOKEN": "t"}})
        self.assertEqual(r.status, 200)
        sid = r.json()["session_id"]
        self.assertEqual(self.call("GET", "/session/results?session_id=" + sid).json()
                         ["latest_job_id"], None)
        self.assertEqual(self.call("GET", "/download?session_id=%s&file_path=README.md"
                                   % sid).status, 200)
        first = self.call("POST", "/job?session_id=" + sid, {"prompt": EDIT}).json()
        queued = self.call("GET", "/job/status?job_id=" + first["job_id"]).json()
        self.assertIn(queued["status"], ("queued", "running"))
        job = self.wait(first["job_id"])
        self.assertEqual(job["status"], "succeeded", job)
        self.assertIsNotNone(job["output_files"])
        self.call("GET", "/session/results?session_id=" + sid)
        url = job["output_files"][0]["download_url"]
        self.assertEqual(self.call("GET", url).status, 200)
        diff = self.call("GET", "/job/diff?job_id=" + first["job_id"])
        self.assertEqual(diff.status, 200)
        self.assertIn("diff --git a/", diff.body.decode())

        # The finished job's events replay in full and end with its final
        # status; a long-poll of an ended job answers at once.
        ev = self.call("GET", "/job/events?job_id=" + first["job_id"])
        self.assertIn("event: status", ev.body.decode())
        self.call("GET", "/job/status?job_id=%s&wait=5" % first["job_id"])

        # A failing job (unknown model), then a job that outlives its
        # timeout (the model answers 500 and opencode retries); cancelling
        # the ended one is 409 job_ended.
        fail = self.call("POST", "/job?session_id=" + sid,
                         {"prompt": "hello", "model": "nosuch/model"}).json()
        job = self.wait(fail["job_id"])
        self.assertEqual((job["status"], job["error_code"]), ("failed", "agent_failed"), job)
        slow = self.call("POST", "/job?session_id=" + sid, {
            "prompt": script_prompt([{"http_error": 500}], "slow"), "timeout_s": 8}).json()
        wait_for(lambda: self.call("GET", "/job/status?job_id=" + slow["job_id"]).json()
                 ["status"] != "queued", 60, what="slow job to start")
        r = self.call("GET", "/job/diff?job_id=" + slow["job_id"])
        self.assertEqual((r.status, r.json()["code"]), (409, "conflict"))
        r = self.call("POST", "/job/cancel?job_id=" + fail["job_id"])
        self.assertEqual((r.status, r.json()["code"]), (409, "job_ended"))
        waiting = self.call("POST", "/job?session_id=" + sid, {"prompt": "never runs"}).json()
        r = self.call("POST", "/job/cancel?job_id=" + waiting["job_id"])
        self.assertEqual((r.status, r.json()["status"]), (202, "cancelled"))
        job = self.wait(slow["job_id"])
        self.assertEqual((job["status"], job["error_code"]), ("timed_out", "timeout"), job)

        # SESSION_KEEP_JOBS=1: the janitor prunes the failed job's outputs
        # (the timed-out one is the newest ended, the first the current).
        wait_for(lambda: self.call("GET", "/download?session_id=%s&file_path=src/math_utils.py"
                                   "&job_id=%s" % (sid, fail["job_id"])).status == 410,
                 60, what="410 job_pruned")
        self.assertEqual(self.call("DELETE", "/session?session_id=" + sid).status, 204)
        self.assertEqual(self.call("GET", "/session/results?session_id=" + sid).status, 404)

    def wait(self, job_id):
        done = ("succeeded", "failed", "timed_out", "cancelled")
        try:
            return wait_for(lambda: (lambda j: j if j["status"] in done else None)(
                self.call("GET", "/job/status?job_id=" + job_id).json()), 150, 0.5,
                what="job %s" % job_id)
        except AssertionError:
            sys.stderr.write(self.svc.all_logs())
            raise

    def test_4b_files(self):
        """Binary files, archives and file edits (README, "Files")."""
        import base64
        import io
        import tarfile
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            ti = tarfile.TarInfo("run.sh")
            ti.size, ti.mode = 3, 0o755
            tar.addfile(ti, io.BytesIO(b"ls\n"))
        r = self.call("POST", "/session?ttl_seconds=600", raw=buf.getvalue(),
                      headers={"Content-Type": "application/gzip"})
        self.assertEqual(r.status, 200, r)
        sid = r.json()["session_id"]
        r = self.call("POST", "/session", raw=b"not gzip",
                      headers={"Content-Type": "application/gzip"})
        self.assertEqual(r.status, 400, r)
        r = self.call("PUT", "/session/files?session_id=" + sid, {"files": [
            {"path": "b.bin", "content_base64": base64.b64encode(b"\x00\xff").decode()}]})
        self.assertEqual(r.status, 200, r)
        r = self.call("PUT", "/session/files?session_id=" + sid,
                      {"files": [{"path": "c.bin", "content_base64": "%%"}]})
        self.assertEqual(r.status, 400, r)
        self.assertEqual(self.call("DELETE", "/session/files?session_id=%s&file_path=run.sh"
                                   % sid).status, 200)
        self.assertEqual(self.call("DELETE", "/session/files?session_id=%s&file_path=run.sh"
                                   % sid).status, 404)
        r = self.call("GET", "/download/archive?session_id=" + sid)
        self.assertEqual(r.status, 200, r)
        with tarfile.open(fileobj=io.BytesIO(r.body), mode="r:gz") as tar:
            self.assertEqual(tar.getnames(), ["b.bin"])
        self.assertEqual(self.call("GET", "/download/archive").status, 422)

    def test_5_every_operation_was_exercised(self):
        seen = {(m, p) for m, p, _ in self.seen}
        missing = [k for k in doc_operations() if k not in seen]
        self.assertEqual(missing, [])
        statuses = {st for _, _, st in self.seen}
        for st in (200, 204, 400, 401, 404, 405, 409, 410, 413, 422, 429):
            self.assertIn(st, statuses)

    def test_6_recorded_responses(self):
        path = os.environ.get("OC_RECORD_RESPONSES")
        if not path or not os.path.exists(path):
            self.skipTest("OC_RECORD_RESPONSES names no recorded file")
        problems, n = [], 0
        with open(path) as f:
            for line in f:
                if not line.strip():
                    continue
                rec = json.loads(line)
                n += 1
                problems += conformance_problems(rec["method"], rec["path"], rec["status"],
                                                 rec.get("content_type"), rec.get("body"))
        sys.stderr.write("checked %d recorded responses\n" % n)
        self.assertEqual(problems[:50], [])


if __name__ == "__main__":
    harness.main()
