#!/usr/bin/env python3
"""bench_janitor.py - how fast the janitor purges 10 000 expired sessions.

Starts the real api with the e2e harness (tests/e2e/harness.py) on the
private stack of scripts/bench.sh (the api only migrates the database; no
worker runs), then makes BENCH_JANITOR_SESSIONS (default 10 000) sessions
directly: rows in SQL (sessions past expires_at, one session_files row
each) and folders on disk (input/a.txt, input/src/b.py, env.json and one
published job folder with an output file), as POST /session and a job
would leave them. Then runs `opencode-janitor --once` with the default
JANITOR_BATCH and JANITOR_BUDGET_S, again while a pass reports
budget_spent=1, until every session is expired and its folder gone.

Reported:
  janitor.purge_time_ratio  total janitor time / 10 s (target <= 1: issue
                            13's "10 000 expired sessions in 10 s")
  janitor.purge_s           total wall time of the passes, process start
                            to exit (info)
  janitor.purge_rate_per_s  sessions purged per second (info)
  janitor.passes            passes it took (info)
  janitor.vs_rm_rf_ratio    total janitor time / `rm -rf` of an identical
                            tree of 10 000 folders made in the same run
                            (info: how much the database adds to the
                            file system's own cost; removing files is
                            the floor on a slow disk)

Prints "RESULT <name> <value> <target>" lines for scripts/bench.sh; exits
non-zero only if the benchmark itself fails (or leaves sessions behind).

Environment: DATABASE_URL, AMQP_URL, STACK_DIR (the stack), OC_BUILD_DIR
(where the programs are), BENCH_JANITOR_SESSIONS.
"""

import os
import re
import subprocess
import sys
import time
import uuid

SOURCE = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(SOURCE, "tests", "e2e"))
import harness  # noqa: E402

TARGET_S = 10.0


def env_int(name, default, lo, hi):
    v = os.environ.get(name, "")
    if v == "":
        return default
    if not v.isdigit() or not lo <= int(v) <= hi:
        sys.exit("bench_janitor: %s must be a number from %d to %d" % (name, lo, hi))
    return int(v)


def make_sessions(svc, n):
    """n expired sessions: rows in SQL, folders on disk. Returns the SQL
    that selects their ids."""
    tag = uuid.uuid4().hex[:8]
    sel = "SELECT md5('%s' || g) FROM generate_series(1, %d) g" % (tag, n)
    rows = svc.sql(
        "INSERT INTO sessions (id, api_key_id, ttl_seconds, expires_at, input_file_count,"
        " input_bytes) SELECT md5('%s' || g), 'bootstrap', 60,"
        " now() - interval '1 minute', 2, 10 FROM generate_series(1, %d) g RETURNING id"
        % (tag, n))
    svc.sql("INSERT INTO session_files (session_id, path, size_bytes)"
            " SELECT id, 'a.txt', 5 FROM sessions WHERE id IN (%s)" % sel)
    for (sid,) in rows:
        root = svc.session_dir(sid)
        os.makedirs(os.path.join(root, "input", "src"))
        job = os.path.join(root, "jobs", sid)
        os.makedirs(job)
        for path in ("input/a.txt", "input/src/b.py", "env.json",
                     "jobs/%s/out.txt" % sid):
            with open(os.path.join(root, path), "w") as f:
                f.write("hello")
    return sel


def rm_rf_baseline(tmp, n):
    """Seconds `rm -rf` takes on n folders shaped like make_sessions'."""
    root = os.path.join(tmp, "rm-baseline")
    for i in range(n):
        d = os.path.join(root, "%032x" % i)
        os.makedirs(os.path.join(d, "input", "src"))
        os.makedirs(os.path.join(d, "jobs", "j"))
        for path in ("input/a.txt", "input/src/b.py", "env.json", "jobs/j/out.txt"):
            with open(os.path.join(d, path), "w") as f:
                f.write("hello")
    os.sync()
    t = time.perf_counter()
    subprocess.run(["rm", "-rf", "--", root], check=True)
    return time.perf_counter() - t


def pending(svc, sel):
    return int(svc.scalar("SELECT count(*) FROM sessions WHERE id IN (%s)"
                          " AND (status = 'active' OR files_removed_at IS NULL)" % sel))


def main():
    n = env_int("BENCH_JANITOR_SESSIONS", 10000, 1, 1000000)
    svc = harness.Service("bench-janitor", workers=0, janitor=False)
    try:
        t0 = time.perf_counter()
        sel = make_sessions(svc, n)
        sys.stderr.write("bench_janitor: made %d sessions in %.1f s\n"
                         % (n, time.perf_counter() - t0))
        # The page cache holds the new folders either way; sync so the
        # janitor does not pay for writing them back.
        os.sync()
        janitor = os.path.join(harness.BUILD, "opencode-janitor")
        total = 0.0
        passes = 0
        while passes < 100:
            t = time.perf_counter()
            r = svc.run_program([janitor, "--once"], LOG_LEVEL="info")
            total += time.perf_counter() - t
            passes += 1
            out = r.stdout + r.stderr
            if r.returncode != 0:
                raise RuntimeError("janitor failed:\n" + out[-4000:])
            line = re.search(r"janitor\.pass .*", out)
            sys.stderr.write("bench_janitor: %s\n" % (line.group(0) if line else out[-2000:]))
            if line is None or "budget_spent=1" not in line.group(0):
                break
        left = pending(svc, sel)
        on_disk = len(svc.disk_sessions())
        if left or on_disk:
            raise RuntimeError("%d sessions not purged, %d folders left" % (left, on_disk))
        base = rm_rf_baseline(svc.tmp, n)
    finally:
        svc.close()
    print("RESULT janitor.purge_time_ratio %.3f <=1" % (total / TARGET_S))
    print("RESULT janitor.purge_s %.2f info" % total)
    print("RESULT janitor.purge_rate_per_s %.0f info" % (n / total))
    print("RESULT janitor.passes %d info" % passes)
    print("RESULT janitor.vs_rm_rf_ratio %.3f info" % (total / base))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (RuntimeError, OSError, subprocess.SubprocessError, AssertionError) as e:
        sys.exit("bench_janitor: %s" % e)
