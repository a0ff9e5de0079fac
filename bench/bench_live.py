#!/usr/bin/env python3
"""bench_live.py - the tight figures of live jobs (issue: live jobs), on the
real api, worker, PostgreSQL and opencode with the scripted model, started
with the e2e harness on the private stack of scripts/bench.sh.

  cancel     a job writes a file, then sleeps 300 s in the model; from
             POST /job/cancel to its final `cancelled` event on an open
             stream (the lease is 600 s, so only the cancel path counts)
  long-poll  GET /job/status?wait=60 on a job that ends by itself: from the
             job's finished_at (PostgreSQL's clock, the same host) to the
             answer's arrival
  event      GET /job/events open on the same job meanwhile: from its
             finished_at to the arrival of the terminal status event
  streams    BENCH_LIVE_STREAMS (1000) event streams spread over 50 queued
             jobs of an api without workers: /health latency while they
             are open, against the same api before they were opened, and
             the api's resident memory per open stream

Reported ("RESULT <name> <value> <target>" lines for scripts/bench.sh):
  live.cancel_max_s               slowest of BENCH_LIVE_RUNS cancels (<= 2)
  live.longpoll_after_end_ms      slowest long-poll answer after the end (<= 100)
  live.event_after_end_ms         slowest terminal event after the end (<= 100)
  live.streams_health_p99_ms      /health p99 with the streams open (<= 1000)
  live.streams_health_p99_ratio   that p99 / p99 without them (info)
  live.rss_per_stream_kib         api RSS growth / open streams (<= 64)

Environment: DATABASE_URL, AMQP_URL, STACK_DIR, OC_BUILD_DIR, OC_SOURCE_DIR,
BENCH_LIVE_STREAMS, BENCH_LIVE_RUNS.
"""

import datetime
import http.client
import os
import socket
import sys
import threading
import time

SOURCE = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(SOURCE, "tests", "e2e"))
import harness  # noqa: E402
from harness import script_prompt  # noqa: E402


def env_int(name, default, lo, hi):
    v = os.environ.get(name, "")
    if v == "":
        return default
    if not v.isdigit() or not lo <= int(v) <= hi:
        sys.exit("bench_live: %s must be a number from %d to %d" % (name, lo, hi))
    return int(v)


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def stream(port, key, job_id):
    c = socket.create_connection(("127.0.0.1", port), timeout=120)
    c.sendall(("GET /job/events?job_id=%s HTTP/1.1\r\nHost: b\r\nX-API-Key: %s\r\n\r\n"
               % (job_id, key)).encode())
    return c


def read_until(c, needle):
    buf = b""
    while needle not in buf:
        chunk = c.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


def cancel_once(svc):
    sid = svc.create_session({"a.txt": "x\n"})["session_id"]
    jid = svc.submit(sid, script_prompt([
        {"write": {"filePath": "b.txt", "content": "y\n"}}, {"sleep": 300}, {"text": "never"}]))[
        "job_id"]
    c = stream(svc.port, svc.api_key, jid)
    read_until(c, b"event: tool")
    t0 = time.monotonic()
    r = svc.request("POST", "/job/cancel?job_id=" + jid)
    if r.status != 202:
        sys.exit("bench_live: cancel answered %r" % r)
    body = read_until(c, b'"status":"cancelled"')
    took = time.monotonic() - t0
    c.close()
    if b'"status":"cancelled"' not in body:
        sys.exit("bench_live: the stream ended without the cancelled event")
    return took


def longpoll_once(svc):
    """(long-poll answer, terminal event) arrival after the job's end, ms."""
    sid = svc.create_session({"a.txt": "x\n"})["session_id"]
    jid = svc.submit(sid, script_prompt([{"sleep": 2}, {"text": "done"}]))["job_id"]
    events = stream(svc.port, svc.api_key, jid)
    read_until(events, b"event: status")
    seen = {}

    def watch():
        seen["ok"] = b'"status":"succeeded"' in read_until(events, b'"status":"succeeded"')
        seen["at"] = time.time()

    watcher = threading.Thread(target=watch)
    watcher.start()
    c = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=120)
    c.request("GET", "/job/status?job_id=%s&wait=60" % jid, headers={"X-API-Key": svc.api_key})
    r = c.getresponse()
    r.read()
    arrived = time.time()
    c.close()
    watcher.join(120)
    events.close()
    end = svc.scalar("SELECT extract(epoch FROM finished_at) FROM jobs WHERE id = '%s'" % jid)
    if end is None:
        sys.exit("bench_live: the long-poll answered before the job ended")
    if not seen.get("ok"):
        sys.exit("bench_live: the event stream ended without the succeeded event")
    return (arrived - float(end)) * 1000.0, (seen["at"] - float(end)) * 1000.0


def health_ms(port, n):
    out = []
    for _ in range(n):
        t0 = time.monotonic()
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("GET", "/health")
        c.getresponse().read()
        c.close()
        out.append((time.monotonic() - t0) * 1000.0)
    return out


def streams_figures(n):
    svc = harness.Service("benchstreams", workers=0, env={
        "API_THREADS": str(n + 200), "API_MAX_STREAMS": str(n + 100),
        "API_MAX_STREAMS_PER_KEY": str(n + 100), "API_DB_POOL": "8"})
    try:
        jobs = []
        for _ in range(50):
            sid = svc.create_session({"a.txt": "x\n"})["session_id"]
            jobs.append(svc.submit(sid, "stays queued")["job_id"])
        base = health_ms(svc.port, 200)
        pid = svc.procs["api"].pid
        rss0 = rss_kib(pid)
        socks = [stream(svc.port, svc.api_key, jobs[i % 50]) for i in range(n)]
        for c in socks:
            read_until(c, b"event: status")
        rss1 = rss_kib(pid)
        under = health_ms(svc.port, 200)
        for c in socks:
            c.close()
        return pct(under, 99), pct(under, 99) / max(pct(base, 99), 0.001), (rss1 - rss0) / n
    finally:
        svc.close(check=False)


def main():
    nstreams = env_int("BENCH_LIVE_STREAMS", 1000, 1, 3000)
    runs = env_int("BENCH_LIVE_RUNS", 3, 1, 50)
    svc = harness.Service("benchlive", workers=1, env={
        "JOB_LEASE_S": "600", "WORKER_CONCURRENCY": "2", "LOG_LEVEL": "info"})
    try:
        cancels = [cancel_once(svc) for _ in range(runs)]
        polls, events = zip(*[longpoll_once(svc) for _ in range(runs)])
    finally:
        svc.close(check=False)
    p99, ratio, per_stream = streams_figures(nstreams)
    print("cancel: %s s; long-poll after end: %s ms; event after end: %s ms" % (
        ", ".join("%.2f" % c for c in cancels), ", ".join("%.1f" % p for p in polls),
        ", ".join("%.1f" % e for e in events)))
    print("RESULT live.cancel_max_s %.2f <=2" % max(cancels))
    print("RESULT live.longpoll_after_end_ms %.1f <=100" % max(polls))
    print("RESULT live.event_after_end_ms %.1f <=100" % max(events))
    print("RESULT live.streams_health_p99_ms %.1f <=1000" % p99)
    print("RESULT live.streams_health_p99_ratio %.2f info" % ratio)
    print("RESULT live.rss_per_stream_kib %.1f <=64" % per_stream)
    print("(%s streams, at %s)" % (nstreams, datetime.datetime.utcnow().isoformat()))


if __name__ == "__main__":
    main()
