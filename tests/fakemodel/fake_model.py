#!/usr/bin/env python3
"""Scripted OpenAI-compatible model server for tests and offline demos.

It lets the REAL opencode agent run deterministically: the test writes a
script into the job prompt and this server answers each chat completion with
the next scripted step (a tool call or the final text).

Run:
    python3 tests/fakemodel/fake_model.py --port 0 --port-file /tmp/fm.port \
        [--host 127.0.0.1] [--log /tmp/fm.log] [--dump-dir DIR]

opencode config (env OPENCODE_CONFIG_CONTENT), then `-m scripted/scripted-model`:
    {"provider": {"scripted": {"npm": "@ai-sdk/openai-compatible",
        "options": {"baseURL": "http://127.0.0.1:PORT/v1", "apiKey": "x"},
        "models": {"scripted-model": {"name": "scripted-model"}}}}}
Built-in names can be pointed here too (checked with opencode 1.18.33), e.g.
"openai": {same npm/options, "models": {"gpt-4": {"name": "gpt-4",
"status": "active", "limit": {"context": 200000, "output": 8192},
"cost": {"input": 0, "output": 0}}}}. Without "status": "active" a model
the catalogue marks deprecated (gpt-4) is "not found"; without "limit" the
catalogue's small context (gpt-4: 8k) makes opencode compact the session
after every answer, for ever.

Script format: in the job prompt, a fenced block

    ```script
    [ {"write": {"filePath": "a.txt", "content": "hi\\n"}},
      {"edit": {"filePath": "a.txt", "oldString": "hi", "newString": "ho"}},
      {"read": {"filePath": "a.txt"}},
      {"bash": {"command": "ls", "description": "list"}},
      {"delete": "old.txt"},
      {"sleep": 2},
      {"http_error": 500},
      {"expect_history": "text of an earlier prompt or answer"},
      {"expect_no_history": "text no earlier message may hold"},
      {"long_text": 100000},
      {"text": "all done"} ]
    ```

The script is read from the job prompt: the LAST user message of the
conversation (with `opencode run --session` the history holds earlier
jobs' prompts too). Each tool step is one assistant round (one request).
"sleep" delays the current answer and does not use a round. "text" / "long_text" end the job,
"http_error" answers every further request with that HTTP status.
"expect_history" checks the conversation (does not use a round): when no
user or assistant message BEFORE the job prompt (earlier jobs of the
session, continued) contains the text, the answer is the text
"HISTORY MISSING: <text>" and the job ends there; else the script goes on.
"expect_no_history" is its converse: "HISTORY UNEXPECTED: <text>" when an
earlier message holds the text. (Tip: a non-ASCII character in the text
keeps it from matching the JSON-escaped script of an earlier prompt, so
only an earlier answer can match.)
When the
steps run out the answer is the text "done". Relative paths in
write/edit/read/delete are made absolute with the working directory that
opencode states in its system prompt.

Requests without tools (session title, compaction summary) get the text
"Scripted job". Without a script: "add a(n) NAME function to PATH" reads
PATH, appends a small Python function NAME, then summarises; any other
prompt gets a short text reply quoting the prompt.

Endpoints: POST /v1/chat/completions (SSE when "stream": true, JSON
otherwise), GET /v1/models, GET /health. Python 3 standard library only.

Usage: like real providers, a JSON answer always carries "usage"
{prompt_tokens, completion_tokens, total_tokens}; a stream only when the
request asked "stream_options": {"include_usage": true}, as a last chunk
with empty "choices" before [DONE]. Each answer logs a line
"USAGE prompt_tokens=N completion_tokens=M reported=yes|no".
"""

import argparse
import json
import os
import re
import shlex
import signal
import sys
import tempfile
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL_IDS = ["scripted-model", "claude-3-5-sonnet-latest", "gpt-4"]
TOOL_KINDS = ("write", "edit", "read", "bash")
MAX_BODY = 64 * 1024 * 1024
LONG_TEXT_CHUNK = 64

SCRIPT_RE = re.compile(r"^[ \t]*```script[ \t]*\r?\n(.*?)^[ \t]*```", re.M | re.S)
# Which user message holds the job prompt: opencode sends the whole session
# history, so with --session the current job is the LAST user message.
FROM_LAST_USER = True
DEMO_RE = re.compile(r"add an? (\w+) function to (\S+)", re.I)
# opencode 1.18 system prompt: "  Working directory: /path" inside <env>.
WORKDIR_RE = re.compile(r"^[ \t]*Working directory:[ \t]*(\S.*?)[ \t]*$", re.M)

DEMO_FUNCS = {
    "add": "a + b",
    "subtract": "a - b",
    "sub": "a - b",
    "multiply": "a * b",
    "mul": "a * b",
    "divide": "a / b",
    "div": "a / b",
    "power": "a ** b",
    "pow": "a ** b",
    "modulo": "a % b",
    "mod": "a % b",
    "max": "a if a >= b else b",
    "min": "a if a <= b else b",
}

_log_lock = threading.Lock()
_log_file = None
_dump_dir = None
_dump_seq = [0]


_auth_log_path = None


def record_credentials(headers):
    """With --log FILE: the credential headers of each chat request, one
    JSON line in FILE.auth (tests check what the provider received)."""
    if _auth_log_path is None:
        return
    rec = {k: headers.get(k) for k in ("Authorization", "x-api-key", "api-key",
                                       "x-goog-api-key") if headers.get(k) is not None}
    with _log_lock:
        try:
            with open(_auth_log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
        except OSError:
            pass


def log(msg):
    line = "%s %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
                        + ".%03dZ" % (int(time.time() * 1000) % 1000), msg)
    with _log_lock:
        try:
            out = _log_file if _log_file is not None else sys.stderr
            out.write(line)
            out.flush()
        except Exception:
            pass


def dump_request(body):
    if not _dump_dir:
        return
    with _log_lock:
        _dump_seq[0] += 1
        n = _dump_seq[0]
    try:
        with open(os.path.join(_dump_dir, "req-%04d.json" % n), "w") as f:
            json.dump(body, f, indent=1)
    except Exception:
        pass


# --------------------------------------------------------------- messages

def content_text(content):
    """Text of a message content: a string or a list of {type:text} parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for p in content:
            if isinstance(p, str):
                parts.append(p)
            elif isinstance(p, dict) and isinstance(p.get("text"), str):
                parts.append(p["text"])
        return "\n".join(parts)
    return ""


def analyse(messages):
    """Return (prompt, rounds, tool_results, workdir).

    prompt: text of the job prompt (the last user message, see
    FROM_LAST_USER); rounds: number of assistant messages with tool_calls
    after it; tool_results: texts of the tool messages after it; workdir:
    from the system prompt, or None.
    """
    first = None
    for i, m in enumerate(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            first = i
            if not FROM_LAST_USER:
                break
    prompt = content_text(messages[first].get("content")) if first is not None else ""
    rounds = 0
    tool_results = []
    if first is not None:
        for m in messages[first + 1:]:
            if not isinstance(m, dict):
                continue
            if m.get("role") == "assistant" and m.get("tool_calls"):
                rounds += 1
            elif m.get("role") == "tool":
                tool_results.append(content_text(m.get("content")))
    workdir = None
    for m in messages:
        if isinstance(m, dict) and m.get("role") == "system":
            mt = WORKDIR_RE.search(content_text(m.get("content")))
            if mt:
                workdir = mt.group(1)
                break
    return prompt, rounds, tool_results, workdir


def abspath(path, workdir):
    if not isinstance(path, str) or not path or path.startswith("/") or not workdir:
        return path
    while path.startswith("./"):
        path = path[2:]
    return workdir.rstrip("/") + "/" + path


# --------------------------------------------------------------- actions
# An action is a dict: {"kind": "tool", "name", "args"} or
# {"kind": "text", "text"} or {"kind": "error", "code"}; plus "sleep" (s)
# and "desc" for the log.

def tool_action(name, args, desc):
    return {"kind": "tool", "name": name, "args": args, "desc": desc}


def text_action(text, desc):
    return {"kind": "text", "text": text, "desc": desc}


def long_text(n):
    base = ("The scripted model streams this long answer in many small chunks "
            "so that tests can check large outputs. ")
    if n <= 0:
        return ""
    return (base * (n // len(base) + 1))[:n]


def step_to_action(step, workdir, index):
    """Convert one tool/terminal script step into an action (no sleeps)."""
    if not isinstance(step, dict) or len(step) != 1:
        return text_action("script error: step %d must be an object with one key: %s"
                           % (index, json.dumps(step)[:200]), "script error")
    kind, val = next(iter(step.items()))
    if kind in TOOL_KINDS:
        if not isinstance(val, dict):
            return text_action("script error: step %d: %s needs an object" % (index, kind),
                               "script error")
        args = dict(val)
        if kind in ("write", "edit", "read") and "filePath" in args:
            args["filePath"] = abspath(args["filePath"], workdir)
        target = args.get("filePath", args.get("command", ""))
        return tool_action(kind, args, "step %d %s %s" % (index, kind, str(target)[:120]))
    if kind == "delete":
        if isinstance(val, dict):
            val = val.get("filePath")
        if not isinstance(val, str) or not val:
            return text_action("script error: step %d: delete needs a path" % index,
                               "script error")
        path = abspath(val, workdir)
        return tool_action("bash", {"command": "rm -f -- " + shlex.quote(path),
                                    "description": "Delete " + val},
                           "step %d delete %s" % (index, path))
    if kind == "text":
        return text_action(str(val), "step %d text" % index)
    if kind == "long_text":
        try:
            n = int(val)
        except (TypeError, ValueError):
            n = 0
        a = text_action(long_text(n), "step %d long_text %d" % (index, n))
        a["chunk"] = LONG_TEXT_CHUNK
        return a
    if kind == "http_error":
        try:
            code = int(val)
        except (TypeError, ValueError):
            code = 500
        if code < 400 or code > 599:
            code = 500
        return {"kind": "error", "code": code, "desc": "step %d http_error %d" % (index, code)}
    return text_action("script error: step %d: unknown step kind %r" % (index, kind),
                       "script error")


HISTORY_MISSING = "HISTORY MISSING: "
HISTORY_UNEXPECTED = "HISTORY UNEXPECTED: "
# The steps that check the conversation sent: whether the text must be
# seen in it, the marker answered when it is wrong, and how it is wrong.
HISTORY_STEPS = {"expect_history": (True, HISTORY_MISSING, "missing"),
                 "expect_no_history": (False, HISTORY_UNEXPECTED, "present")}


def history_texts(messages):
    """Texts of the user and assistant messages before the job prompt (the
    last user message)."""
    last = None
    for i, m in enumerate(messages or []):
        if isinstance(m, dict) and m.get("role") == "user":
            last = i
    out = []
    for m in (messages or [])[:last or 0]:
        if isinstance(m, dict) and m.get("role") in ("user", "assistant"):
            out.append(content_text(m.get("content")))
    return out


def script_action(steps, rounds, workdir, history=()):
    """Walk the script: skip the tool steps already done, sum the sleeps
    that come before the step to emit now. expect_history steps are
    checked against history (see history_texts)."""
    consumed = 0
    sleep = 0.0
    for i, step in enumerate(steps):
        kind = next(iter(step)) if isinstance(step, dict) and len(step) == 1 else None
        if kind in HISTORY_STEPS:
            should_see, marker, wrong = HISTORY_STEPS[kind]
            want = str(step[kind])
            if any(want in h for h in history) != should_see:
                action = text_action(marker + want, "step %d %s: %s" % (i, kind, wrong))
                action["sleep"] = sleep
                return action
            continue
        if isinstance(step, dict) and len(step) == 1 and "sleep" in step:
            if consumed == rounds:
                try:
                    sleep += max(0.0, float(step["sleep"]))
                except (TypeError, ValueError):
                    pass
            continue
        kind = next(iter(step)) if isinstance(step, dict) and len(step) == 1 else None
        if kind in TOOL_KINDS or kind == "delete":
            if consumed < rounds:
                consumed += 1
                continue
        action = step_to_action(step, workdir, i)
        action["sleep"] = sleep
        return action
    action = text_action("done", "script exhausted (round %d): done" % rounds)
    action["sleep"] = sleep
    return action


def demo_action(prompt, rounds, tool_results, workdir):
    m = DEMO_RE.search(prompt)
    if not m:
        short = " ".join(prompt.split())[:80]
        return text_action('This is the scripted offline model. You asked: "%s"' % short,
                           "default reply")
    name = m.group(1)
    rel = m.group(2).rstrip(".,;:!?)\"'`")
    path = abspath(rel, workdir)
    body = DEMO_FUNCS.get(name.lower())
    if body is None:
        func = "def %s(a, b):\n    raise NotImplementedError(%r)\n" % (name, name)
    else:
        func = "def %s(a, b):\n    return %s\n" % (name, body)
    if rounds == 0:
        return tool_action("read", {"filePath": path}, "demo read %s" % path)
    if rounds == 1:
        content = parse_read_output(tool_results[-1] if tool_results else "")
        if content is None or content.strip() == "":
            return tool_action("write", {"filePath": path, "content": func},
                               "demo write %s" % path)
        lines = content.rstrip("\n").split("\n")
        # oldString must be unique: use as many trailing lines as needed.
        k = 1
        while k < len(lines):
            tail = "\n".join(lines[-k:])
            if content.count(tail) == 1 and tail.strip():
                break
            k += 1
        tail = "\n".join(lines[-k:])
        if content.count(tail) != 1:
            return tool_action("write", {"filePath": path,
                                         "content": content.rstrip("\n") + "\n\n\n" + func},
                               "demo write %s" % path)
        return tool_action("edit", {"filePath": path, "oldString": tail,
                                    "newString": tail + "\n\n\n" + func.rstrip("\n")},
                           "demo edit %s" % path)
    return text_action("I added a `%s(a, b)` function to %s." % (name, rel), "demo summary")


READ_LINE_RE = re.compile(r"^\s*(\d+)(?:\||: ?|\t)(.*)$")


def parse_read_output(out):
    """File content from opencode's read tool output, or None if the file
    does not exist. The tool prints numbered lines inside <content> (or
    <file>) tags."""
    if not isinstance(out, str):
        return None
    low = out.lower()
    if "not found" in low or "no such file" in low or "does not exist" in low:
        return None
    mt = re.search(r"<(content|file)>\n?(.*?)\n?</\1>", out, re.S)
    inner = mt.group(2) if mt else out
    lines = []
    for line in inner.split("\n"):
        lm = READ_LINE_RE.match(line)
        if lm:
            lines.append(lm.group(2))
    if not lines:
        return ""
    return "\n".join(lines) + "\n"


def choose_action(body):
    messages = body.get("messages")
    prompt, rounds, tool_results, workdir = analyse(messages)
    if not body.get("tools"):
        return text_action("Scripted job", "title request (no tools)")
    m = SCRIPT_RE.search(prompt)
    if m:
        try:
            steps = json.loads(m.group(1))
        except ValueError as e:
            return text_action("script error: invalid JSON: %s" % e, "script error")
        if not isinstance(steps, list):
            return text_action("script error: the script must be a JSON array",
                               "script error")
        return script_action(steps, rounds, workdir, history_texts(messages))
    return demo_action(prompt, rounds, tool_results, workdir)


# --------------------------------------------------------------- HTTP

def new_id(prefix):
    return prefix + uuid.uuid4().hex[:24]


def estimate_tokens(n_chars):
    return max(1, n_chars // 4)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-model/1"

    def log_message(self, fmt, *args):  # silence default access log
        pass

    # -- helpers
    def send_json(self, code, obj, close=False):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def send_error_json(self, code, message, etype="invalid_request_error"):
        self.send_json(code, {"error": {"message": message, "type": etype,
                                        "param": None, "code": code}})

    def send_error(self, code, message=None, explain=None):
        """Errors raised by http.server itself (bad request line, ...): JSON too."""
        self.close_connection = True
        try:
            self.send_error_json(code, message or "bad request")
        except Exception:
            pass

    # -- routes
    def do_GET(self):
        try:
            path = self.path.split("?", 1)[0].rstrip("/") or "/"
            if path in ("/health", "/v1/health"):
                self.send_json(200, {"status": "ok"})
            elif path in ("/v1/models", "/models"):
                self.send_json(200, {"object": "list", "data": [
                    {"id": i, "object": "model", "created": 0, "owned_by": "fake-model"}
                    for i in MODEL_IDS]})
            else:
                self.send_error_json(404, "not found: %s" % path, "not_found_error")
        except Exception:
            log("GET error: %s" % traceback.format_exc().replace("\n", " | "))

    def do_POST(self):
        try:
            self.handle_post()
        except (BrokenPipeError, ConnectionResetError):
            log("client went away")
            self.close_connection = True
        except Exception:
            log("POST error: %s" % traceback.format_exc().replace("\n", " | "))
            self.close_connection = True
            try:
                self.send_error_json(500, "internal error in fake model", "server_error")
            except Exception:
                pass

    def do_PUT(self):
        self.send_error_json(405, "method not allowed")

    do_DELETE = do_PATCH = do_PUT

    def handle_post(self):
        path = self.path.split("?", 1)[0].rstrip("/")
        raw = self.read_body()
        if raw is None:
            self.close_connection = True
            self.send_error_json(400, "bad or too large request body")
            return
        if path not in ("/v1/chat/completions", "/chat/completions"):
            self.send_error_json(404, "not found: %s" % path, "not_found_error")
            return
        try:
            body = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            log("400 malformed JSON: %s" % e)
            self.send_error_json(400, "malformed JSON body: %s" % e)
            return
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) \
                or not body["messages"]:
            log("400 request without messages")
            self.send_error_json(400, "body must be an object with a non-empty 'messages' list")
            return
        dump_request(body)
        record_credentials(self.headers)
        if body.get("tools") is not None and not isinstance(body.get("tools"), list):
            self.send_error_json(400, "'tools' must be a list")
            return
        action = choose_action(body)
        stream = bool(body.get("stream"))
        model = str(body.get("model") or "scripted-model")
        sleep = action.get("sleep") or 0.0
        log("POST %s model=%s stream=%s msgs=%d -> %s%s" % (
            path, model, stream, len(body["messages"]), action["desc"],
            (" (after sleep %gs)" % sleep) if sleep else ""))
        if sleep:
            time.sleep(sleep)
        if action["kind"] == "error":
            code = action["code"]
            etype = "rate_limit_error" if code == 429 else (
                "server_error" if code >= 500 else "invalid_request_error")
            self.send_json(code, {"error": {
                "message": "scripted HTTP error %d" % code, "type": etype,
                "param": None, "code": code}})
            return
        prompt_tokens = estimate_tokens(len(raw))
        if action["kind"] == "tool":
            out_len = len(json.dumps(action["args"]))
        else:
            out_len = len(action["text"])
        usage = {"prompt_tokens": prompt_tokens,
                 "completion_tokens": estimate_tokens(out_len),
                 "total_tokens": prompt_tokens + estimate_tokens(out_len)}
        # Usage as real providers report it: always in a JSON answer; in a
        # stream only when asked (stream_options.include_usage), as a last
        # chunk of its own. Logged so tests can compare what was reported.
        opts = body.get("stream_options")
        reported = not stream or (isinstance(opts, dict) and bool(opts.get("include_usage")))
        log("USAGE prompt_tokens=%d completion_tokens=%d reported=%s" % (
            usage["prompt_tokens"], usage["completion_tokens"],
            "yes" if reported else "no"))
        if stream:
            self.answer_stream(model, action, usage if reported else None)
        else:
            self.answer_json(model, action, usage)

    def read_body(self):
        """The request body (Content-Length or chunked), or None if bad."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts, total = [], 0
            while True:
                line = self.rfile.readline(1024)
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    return None
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                total += size
                if total > MAX_BODY:
                    return None
                parts.append(self.rfile.read(size))
                self.rfile.readline(1024)
        try:
            length = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            return None
        if length < 0 or length > MAX_BODY:
            return None
        return self.rfile.read(length) if length else b""

    def answer_json(self, model, action, usage):
        msg = {"role": "assistant", "content": None}
        if action["kind"] == "tool":
            msg["tool_calls"] = [{"id": new_id("call_"), "type": "function", "function": {
                "name": action["name"], "arguments": json.dumps(action["args"])}}]
            finish = "tool_calls"
        else:
            msg["content"] = action["text"]
            finish = "stop"
        self.send_json(200, {
            "id": new_id("chatcmpl-"), "object": "chat.completion",
            "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": msg, "finish_reason": finish}],
            "usage": usage})

    def answer_stream(self, model, action, usage):
        cid = new_id("chatcmpl-")
        created = int(time.time())
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(delta, finish=None, **extra):
            obj = {"id": cid, "object": "chat.completion.chunk", "created": created,
                   "model": model,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            obj.update(extra)
            return "data: " + json.dumps(obj) + "\n\n"

        events = [chunk({"role": "assistant", "content": ""})]
        if action["kind"] == "tool":
            events.append(chunk({"tool_calls": [{
                "index": 0, "id": new_id("call_"), "type": "function",
                "function": {"name": action["name"],
                             "arguments": json.dumps(action["args"])}}]}))
            finish = "tool_calls"
        else:
            text = action["text"]
            size = action.get("chunk") or max(1, len(text))
            for i in range(0, len(text), size):
                events.append(chunk({"content": text[i:i + size]}))
            finish = "stop"
        events.append(chunk({}, finish))
        if usage is not None:
            events.append("data: " + json.dumps({
                "id": cid, "object": "chat.completion.chunk", "created": created,
                "model": model, "choices": [], "usage": usage}) + "\n\n")
        events.append("data: [DONE]\n\n")
        # Send in batches so that long texts go out as many writes.
        batch = []
        for ev in events:
            batch.append(ev)
            if len(batch) >= 64:
                self.write_chunk("".join(batch))
                batch = []
        if batch:
            self.write_chunk("".join(batch))
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def write_chunk(self, s):
        data = s.encode()
        self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")
        self.wfile.flush()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


def write_port_file(path, port):
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".port-", dir=d)
    try:
        with os.fdopen(fd, "w") as f:
            f.write("%d\n" % port)
        os.rename(tmp, path)
    except Exception:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def main(argv=None):
    global _log_file, _dump_dir
    ap = argparse.ArgumentParser(description="Scripted OpenAI-compatible model server")
    ap.add_argument("--port", type=int, default=0, help="port, 0 = pick a free one")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ap.add_argument("--port-file", help="write the chosen port here (atomically)")
    ap.add_argument("--log", help="append one line per request here (default stderr)")
    ap.add_argument("--dump-dir", help="save every chat request body here (debugging)")
    args = ap.parse_args(argv)
    if args.log:
        _log_file = open(args.log, "a", buffering=1)
        globals()["_auth_log_path"] = args.log + ".auth"
    if args.dump_dir:
        os.makedirs(args.dump_dir, exist_ok=True)
        _dump_dir = args.dump_dir
    server = Server((args.host, args.port), Handler)
    port = server.server_address[1]

    def on_signal(signum, frame):
        log("signal %d: shutting down" % signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.port_file:
        write_port_file(args.port_file, port)
    log("fake model listening on %s:%d" % (args.host, port))
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        log("fake model stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
