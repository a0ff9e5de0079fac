#!/usr/bin/env python3
"""Job overhead: one job through the service against a bare `opencode run`.

Same prompt (the seed's example 2 on its two files), same scripted model
server (tests/fakemodel/fake_model.py), same model, runs alternating
bare / service in one process. Bare: `opencode run -m scripted/scripted-model
--format json` with a fresh HOME in a temporary folder, prompt on stdin,
the environment the worker gives the agent (offline provider config,
OPENCODE_DISABLE_MODELS_FETCH, OPENCODE_DISABLE_AUTOUPDATE), no sandbox.
Service: POST /job, polled every 20 ms; the job's started_at/finished_at
and the worker's agent.start/agent.end lines split the time.

Needs what tests/e2e needs (DATABASE_URL, AMQP_URL, STACK_DIR, OC_BUILD_DIR,
OC_SOURCE_DIR: a private stack from scripts/stack.sh). Usage:

    python3 bench/bench_job.py [-n 5]

Prints the breakdown and `RESULT job_overhead_ratio <ratio> 1.05`
(median service / median bare; the target is <= 1.05).
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
import harness  # noqa: E402

PROMPT = "Add a subtract function to src/math_utils.py"
FILES = {"README.md": "# My Project\n",
         "src/math_utils.py": "def add(a,b):\n    return a+b\n"}


# What the worker writes into each fresh agent HOME (worker/attempt.c,
# attempt_seed_home()) so that opencode does not npm-install
# @opencode-ai/plugin into it on start.
SEED = {".config/opencode/package.json": '{"dependencies":{"@opencode-ai/plugin":"*"}}\n',
        ".config/opencode/package-lock.json":
        '{"lockfileVersion":3,"packages":{"":{"dependencies":{"@opencode-ai/plugin":"*"}}}}\n'}


def bare_run(svc, root, seeded=False):
    """One bare run: fresh HOME and workspace below root (with seeded, the
    HOME the worker prepares, still unsandboxed). Returns seconds."""
    tmp = tempfile.mkdtemp(prefix="bare-", dir=root)
    home, ws = os.path.join(tmp, "home"), os.path.join(tmp, "ws")
    os.makedirs(home)
    harness.give_catalogue(home)  # the same catalogue the service's agents get
    if seeded:
        os.makedirs(os.path.join(home, ".config", "opencode", "node_modules"))
        for path, content in SEED.items():
            with open(os.path.join(home, path), "w") as fh:
                fh.write(content)
    for path, content in FILES.items():
        p = os.path.join(ws, path)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as fh:
            fh.write(content)
    with open(svc.agent_config) as fh:
        config = fh.read()
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8",
           "TERM": "dumb", "OPENCODE_CONFIG_CONTENT": config,
           "OPENCODE_DISABLE_MODELS_FETCH": "1", "OPENCODE_DISABLE_AUTOUPDATE": "1"}
    t0 = time.monotonic()
    p = subprocess.run([harness.OPENCODE, "run", "-m", harness.MODEL, "--format", "json"],
                       input=PROMPT.encode(), env=env, cwd=ws, capture_output=True,
                       timeout=300)
    dt = time.monotonic() - t0
    with open(os.path.join(ws, "src", "math_utils.py")) as fh:
        ok = "def subtract" in fh.read()
    if p.returncode != 0 or not ok:
        raise SystemExit("bare run failed (exit %d): %s" % (p.returncode, p.stderr[-2000:]))
    shutil.rmtree(tmp, ignore_errors=True)
    return dt


def ts(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def agent_durations(svc, seen):
    """duration_ms of agent.end lines not yet seen, in order."""
    with open(svc.logs["worker0"], errors="replace") as fh:
        lines = [ln for ln in fh if "agent.end" in ln]
    out = []
    for ln in lines[seen:]:
        m = re.search(r"duration_ms=(\d+)", ln)
        if m:
            out.append(int(m.group(1)) / 1000.0)
    return out, len(lines)


def service_run(svc, seen):
    """One job. Returns (submit->terminal s, started->finished s, agent s, seen)."""
    sid = svc.create_session(FILES)["session_id"]
    t0 = time.monotonic()
    jid = svc.submit(sid, PROMPT, model=harness.MODEL)["job_id"]
    j = svc.wait_job(jid, timeout=300)  # the long-poll: no polling load
    dt = time.monotonic() - t0
    if j["status"] != "succeeded":
        raise SystemExit("job %s: %s" % (j["status"], json.dumps(j)[:2000]))
    run_s = ts(j["finished_at"]) - ts(j["started_at"])
    ds, seen = agent_durations(svc, seen)
    svc.request("DELETE", "/session?session_id=" + sid)
    return dt, run_s, (ds[-1] if ds else float("nan")), seen


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=5, help="runs of each kind (median)")
    ap.add_argument("--warmup", type=int, default=1, help="unmeasured runs of each kind")
    ap.add_argument("--seeded", action="store_true",
                    help="also time a bare run with the worker's seeded HOME (no sandbox): "
                         "separates the sandbox's cost from opencode's first-start work")
    args = ap.parse_args()
    svc = harness.Service("bench-job", env={"LOG_LEVEL": "info"})
    root = tempfile.mkdtemp(prefix="bench-job-")
    bare, seeded, total, run, agent = [], [], [], [], []
    seen = 0
    try:
        for i in range(args.warmup + args.n):
            b = bare_run(svc, root)
            bs = bare_run(svc, root, True) if args.seeded else float("nan")
            t, rs, a, seen = service_run(svc, seen)
            print("run %d%s: bare %.3f s  bare seeded %.3f s  service %.3f s "
                  "(job %.3f, agent %.3f)"
                  % (i + 1, " (warm-up)" if i < args.warmup else "", b, bs, t, rs, a),
                  flush=True)
            if i >= args.warmup:
                bare.append(b)
                seeded.append(bs)
                total.append(t)
                run.append(rs)
                agent.append(a)
    finally:
        svc.close(check=False)
        shutil.rmtree(root, ignore_errors=True)
    mb, mt, mr, ma = (statistics.median(x) for x in (bare, total, run, agent))
    print("median of %d: bare opencode run %.3f s" % (args.n, mb))
    print("  service submit -> terminal   %.3f s" % mt)
    print("    queue + claim + record      %.3f s" % (mt - mr))
    print("    job started -> finished     %.3f s" % mr)
    print("      prepare/collect/publish   %.3f s" % (mr - ma))
    print("      agent start -> end        %.3f s  (%+.3f s vs bare)" % (ma, ma - mb))
    if args.seeded:
        ms = statistics.median(seeded)
        print("  bare with the worker's HOME    %.3f s  (first-start npm install: %+.3f s; "
              "sandbox, uid, limits: %+.3f s)" % (ms, mb - ms, ma - ms))
    print("RESULT job_overhead_ratio %.3f 1.05" % (mt / mb))


if __name__ == "__main__":
    main()
