#!/usr/bin/env python3
"""bench_api.py - issue 14's table: this service against its references,
all measured in this run.

Starts the real api and one worker with the e2e harness (scripted model,
tests/fakemodel/fake_model.py, through scripts/offline-agent-config.sh),
and `opencode serve` with a fresh HOME and the same provider config. Then:

  job           submit -> terminal of the seed's example 2 (prompt "Add a
                subtract function to src/math_utils.py", openai/gpt-4, on
                example 1's files; waited for with the long-poll
                GET /job/status?wait=) vs bare `opencode run` of the same
                prompt and model in a copy of the files, fresh HOME (with
                the agents' model catalogue only) each run
                (median of BENCH_JOB_RUNS, 3)
  status        GET /job/status of a finished job vs opencode serve's
                GET /session/status and this api's /health, same client
                (bench_http, BENCH_HTTP_CONNS keep-alive connections,
                BENCH_HTTP_S seconds each)
  session       POST /session with 2 small files vs opencode serve
                POST /session, and vs the filesystem: the same folders and
                files (session, input/, input/src/, two files) made
                directly by as many threads, next to DATA_DIR (what the
                disk allows at best)
  rss           the api's VmRSS while 64 / 256 connections read the status
  cpu           CPU seconds per job: result_json.resources.cpu_s, and the
                worker's own + its children's CPU (/proc/<pid>/stat)
  long-poll     measured by bench/bench_live.py, janitor by
  janitor       bench/bench_janitor.py: the table reads their RESULT lines
                from the files named by --results

Prints RESULT lines for scripts/bench.sh, then a markdown table; with
--figures FILE it saves the figures instead of printing the table, and
--table FILE [--results OUT...] prints the table of figures saved so.
Environment: DATABASE_URL, AMQP_URL, STACK_DIR, OC_BUILD_DIR, BENCH_HTTP
(the bench_http binary), BENCH_JOB_RUNS, BENCH_HTTP_CONNS (8),
BENCH_HTTP_S (4).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

SOURCE = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(SOURCE, "tests", "e2e"))
import harness  # noqa: E402

PROMPT = "Add a subtract function to src/math_utils.py"
MODEL = "openai/gpt-4"
FILES = {  # the seed's example 1
    "README.md": "# Test Project\nThis is a test.",
    "src/math_utils.py": "def add(a, b):\n    return a + b",
}
TWO_SMALL = {"files": [{"path": "a.txt", "content": "hello\n"},
                       {"path": "src/b.py", "content": "print(1)\n"}]}


def env_int(name, default):
    v = os.environ.get(name, "")
    return int(v) if v.isdigit() and int(v) > 0 else default


def load(port, method, path, conns, secs, headers="", body_file=None):
    """req/s of bench_http against 127.0.0.1:port."""
    argv = [os.environ["BENCH_HTTP"], "127.0.0.1", str(port), method, path, str(conns),
            str(secs), headers]
    if body_file:
        argv.append(body_file)
    warm = argv[:6] + ["1"] + argv[7:]  # one second first: caches, JIT, pools
    subprocess.run(warm, check=True, capture_output=True, timeout=60)
    out = subprocess.run(argv, check=True, capture_output=True, text=True,
                         timeout=secs + 60).stdout
    f = dict(kv.split("=", 1) for kv in out.split())
    if int(f["errors"]) > 0 or "other:0" not in f["statuses"]:
        sys.stderr.write("bench_api: %s %s: %s" % (method, path, out))
    return float(f["rps"])


def proc_cpu_s(pid):
    """utime + stime + cutime + cstime of pid, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def run_job(svc):
    """(submit -> terminal seconds, cpu_s, worker cpu s) of one example-2 job."""
    sid = svc.create_session(FILES)["session_id"]
    worker = svc.procs["worker0"].pid
    cpu0 = proc_cpu_s(worker)
    t0 = time.monotonic()
    jid = svc.submit(sid, PROMPT, model=MODEL)["job_id"]
    st = svc.wait_job(jid, timeout=300)  # the long-poll: no polling load
    took = time.monotonic() - t0
    time.sleep(0.2)  # the worker reaps and accounts its children
    if st["status"] != "succeeded":
        sys.exit("bench_api: job %s: %s %s" % (jid, st["status"], st.get("error")))
    res = (st.get("result_json") or {}).get("resources") or {}
    return took, res.get("cpu_s"), proc_cpu_s(worker) - cpu0, jid


def bare_run(config):
    """Seconds of bare `opencode run` of the same prompt, fresh HOME."""
    tmp = tempfile.mkdtemp(prefix="oc-bare-")
    try:
        work = os.path.join(tmp, "work")
        for p, c in FILES.items():
            os.makedirs(os.path.dirname(os.path.join(work, p)), exist_ok=True)
            with open(os.path.join(work, p), "w") as f:
                f.write(c)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp,
               "OPENCODE_CONFIG_CONTENT": config}
        harness.give_catalogue(tmp)  # the same catalogue the service's agents get
        t0 = time.monotonic()
        r = subprocess.run([harness.OPENCODE, "run", "-m", MODEL, PROMPT], cwd=work, env=env,
                           capture_output=True, timeout=300)
        took = time.monotonic() - t0
        with open(os.path.join(work, "src", "math_utils.py")) as f:
            if r.returncode != 0 or "subtract" not in f.read():
                sys.exit("bench_api: bare opencode run failed: %r" % r.stderr[-2000:])
        return took
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class Serve:
    """`opencode serve` with a fresh HOME and the scripted provider."""

    def __init__(self, config):
        self.tmp = tempfile.mkdtemp(prefix="oc-serve-")
        self.port = harness.free_port()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self.tmp,
               "OPENCODE_CONFIG_CONTENT": config}
        harness.give_catalogue(self.tmp)
        self.log = open(os.path.join(self.tmp, "serve.log"), "wb")
        self.proc = subprocess.Popen([harness.OPENCODE, "serve", "--port", str(self.port),
                                      "--hostname", "127.0.0.1"], cwd=self.tmp, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        harness.wait_for(self.ready, 120, 0.3, "opencode serve")

    def ready(self):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/session/status" % self.port,
                                        timeout=5) as r:
                return r.status == 200
        except (OSError, ValueError):
            return False

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def rss_under(svc, path, headers, conns, secs):
    """The api's VmRSS (MiB) sampled while conns connections read path."""
    pid = svc.procs["api"].pid
    p = subprocess.Popen([os.environ["BENCH_HTTP"], "127.0.0.1", str(svc.port), "GET", path,
                          str(conns), str(secs), headers], stdout=subprocess.DEVNULL)
    peak = 0.0
    while p.poll() is None:
        peak = max(peak, rss_mib(pid))
        time.sleep(0.1)
    return peak


def jobs(svc, config, runs, out):
    svc_t, bare_t, cpu, wcpu = [], [], [], []
    for _ in range(runs):  # alternate, so drift hits both sides alike
        t, c, w, jid = run_job(svc)
        svc_t.append(t)
        cpu.append(c if c is not None else float("nan"))
        wcpu.append(w)
        bare_t.append(bare_run(config))
    out["job_s"], out["bare_s"] = statistics.median(svc_t), statistics.median(bare_t)
    out["cpu_s"], out["worker_cpu_s"] = statistics.median(cpu), statistics.median(wcpu)
    return jid


def fs_layouts_per_s(parent, threads, secs):
    """Session layouts per second that `threads` threads create directly
    in a fresh folder under parent: mkdir <id>, <id>/input,
    <id>/input/src, then write input/a.txt and input/src/b.py."""
    import threading
    import uuid
    root = tempfile.mkdtemp(prefix="fs-ceiling-", dir=parent)
    counts = [0] * threads
    deadline = time.monotonic() + secs

    def work(i):
        while time.monotonic() < deadline:
            d = os.path.join(root, uuid.uuid4().hex)
            os.mkdir(d, 0o700)
            os.mkdir(os.path.join(d, "input"), 0o700)
            os.mkdir(os.path.join(d, "input", "src"), 0o755)
            for rel, text in (("a.txt", "hello\n"), ("src/b.py", "print(1)\n")):
                with open(os.path.join(d, "input", rel), "w") as f:
                    f.write(text)
            counts[i] += 1
    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    took = time.monotonic() - t0
    shutil.rmtree(root, ignore_errors=True)
    return sum(counts) / took


def http_figures(svc, serve, jid, out):
    conns, secs = env_int("BENCH_HTTP_CONNS", 8), env_int("BENCH_HTTP_S", 4)
    key = "X-API-Key: " + svc.api_key
    status_path = "/job/status?job_id=" + jid
    svc.job(jid)  # cached from here on
    out["status_rps"] = load(svc.port, "GET", status_path, conns, secs, key)
    out["serve_status_rps"] = load(serve.port, "GET", "/session/status", conns, secs)
    out["health_rps"] = load(svc.port, "GET", "/health", conns, secs)
    body = os.path.join(svc.tmp, "two-small.json")
    with open(body, "w") as f:
        json.dump(TWO_SMALL, f)
    ctype = "Content-Type: application/json"
    out["session_rps"] = load(svc.port, "POST", "/session", conns, secs, key + "\n" + ctype, body)
    empty = os.path.join(svc.tmp, "empty.json")
    with open(empty, "w") as f:
        f.write("{}")
    out["serve_session_rps"] = load(serve.port, "POST", "/session", conns, secs, ctype, empty)
    out["fs_session_rps"] = fs_layouts_per_s(os.path.dirname(svc.data_dir), conns, secs)
    for n in (64, 256):
        out["rss_%d" % n] = rss_under(svc, status_path, key, n, 3)


def ratio(a, b):
    return a / b if a and b else float("nan")


def results(paths):
    """name -> value of the RESULT lines in the files at paths."""
    out = {}
    for path in paths:
        if not os.path.exists(path):
            continue
        with open(path) as f:
            for line in f:
                w = line.split()
                if len(w) >= 3 and w[0] == "RESULT":
                    out[w[1]] = w[2]
    return out


def table(o, r):
    try:
        rm_s = "%.1f" % (float(r["janitor.purge_s"]) / float(r["janitor.vs_rm_rf_ratio"]))
    except (KeyError, ValueError, ZeroDivisionError):
        rm_s = "n/a"
    rows = [
        ("job, submit → terminal", "%.2f s" % o["job_s"],
         "bare `opencode run`, fresh HOME: %.2f s" % o["bare_s"],
         "%.2f×" % ratio(o["job_s"], o["bare_s"]), "≤ 1.05×"),
        ("`GET /job/status` (finished job)", "%.1fk req/s" % (o["status_rps"] / 1e3),
         "opencode serve `GET /session/status`: %.1fk; this API's `/health`: %.1fk"
         % (o["serve_status_rps"] / 1e3, o["health_rps"] / 1e3),
         "%.2f× serve, %.2f× /health" % (ratio(o["status_rps"], o["serve_status_rps"]),
                                          ratio(o["status_rps"], o["health_rps"])),
         "≥ 0.35× /health"),
        ("`POST /session` (2 small files)", "%.2fk req/s" % (o["session_rps"] / 1e3),
         "opencode serve `POST /session`: %.2fk" % (o["serve_session_rps"] / 1e3),
         "%.1f×" % ratio(o["session_rps"], o["serve_session_rps"]), "≥ 8×"),
        ("`POST /session` against its disk", "%.2fk req/s" % (o["session_rps"] / 1e3),
         "the same folders and files made directly, %s threads: %.2fk/s"
         % (env_int("BENCH_HTTP_CONNS", 8), o["fs_session_rps"] / 1e3),
         "%.2f×" % ratio(o["session_rps"], o["fs_session_rps"]), "—"),
        ("api RSS under 64 connections", "%.0f MiB" % o["rss_64"], "—", "—", "—"),
        ("api RSS under 256 connections", "%.0f MiB" % o["rss_256"], "—", "—", "—"),
        ("CPU seconds per job", "%.2f s (agent, result_json.resources.cpu_s); worker's own /proc: %.2f s"
         % (o["cpu_s"], o["worker_cpu_s"]), "—", "—", "—"),
        ("long-poll / event latency after a job ends",
         "long-poll %s ms, event %s ms (slowest)" % (r.get("live.longpoll_after_end_ms", "n/a"),
                                                     r.get("live.event_after_end_ms", "n/a")),
         "— (from the job's `finished_at`)", "—", "≤ 100 ms"),
        ("janitor purge rate", "%s sessions/s (10 000 in %s s)"
         % (r.get("janitor.purge_rate_per_s", "n/a"), r.get("janitor.purge_s", "n/a")),
         "`rm -rf` of the same folders: %s s" % rm_s,
         "%s×" % r.get("janitor.vs_rm_rf_ratio", "n/a"), "10 000 in ≤ 10 s"),
    ]
    lines = ["| figure | this service | reference in the same run | ratio | target |",
             "|---|---|---|---|---|"]
    lines += ["| %s |" % " | ".join(r) for r in rows]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", nargs="*", default=[],
                    help="files of RESULT lines the table quotes (bench_live, bench_janitor)")
    ap.add_argument("--figures", help="also save the figures (JSON) to this file")
    ap.add_argument("--table", help="only print the table of figures saved before")
    args = ap.parse_args()
    if args.table:
        with open(args.table) as f:
            print(table(json.load(f), results(args.results)))
        return
    out = {}
    svc = harness.Service("bench-api", workers=1, env={
        "LOG_LEVEL": "info", "KEY_MAX_ACTIVE_SESSIONS": "100000000",
        "KEY_MAX_STORED_MB": "100000000", "KEY_MAX_QUEUED_JOBS": "100000"})
    serve = None
    try:
        with open(svc.agent_config) as f:
            config = f.read()
        bare_run(config)  # warm the page cache for both sides
        jid = jobs(svc, config, env_int("BENCH_JOB_RUNS", 3), out)
        serve = Serve(config)
        http_figures(svc, serve, jid, out)
    finally:
        if serve is not None:
            serve.close()
        svc.close(check=False)
    print("RESULT api.job_overhead_ratio %.3f <=1.05" % ratio(out["job_s"], out["bare_s"]))
    print("RESULT api.status_vs_health %.3f >=0.35"
          % ratio(out["status_rps"], out["health_rps"]))
    print("RESULT api.status_vs_serve %.2f info" % ratio(out["status_rps"],
                                                       out["serve_status_rps"]))
    print("RESULT api.session_vs_serve %.2f >=8" % ratio(out["session_rps"],
                                                        out["serve_session_rps"]))
    print("RESULT api.session_vs_fs %.2f info" % ratio(out["session_rps"],
                                                     out["fs_session_rps"]))
    print("RESULT api.rss_64_mib %.1f info" % out["rss_64"])
    print("RESULT api.rss_256_mib %.1f info" % out["rss_256"])
    print("RESULT api.cpu_s_per_job %.2f info" % out["cpu_s"])
    if args.figures:
        with open(args.figures, "w") as f:
            json.dump(out, f)
    else:
        print()
        print(table(out, results(args.results)))


if __name__ == "__main__":
    main()
