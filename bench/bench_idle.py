#!/usr/bin/env python3
"""bench_idle.py - /health and an authorized request while 500 idle or slow
connections are held open, against the same api without them.

Starts the real api with the e2e harness (tests/e2e/harness.py) on the
private stack of scripts/bench.sh, with the api's default configuration
(BENCH_IDLE_API_THREADS and BENCH_IDLE_REQUEST_TIMEOUT_MS override
API_THREADS and API_REQUEST_TIMEOUT_MS), and creates one session.

  baseline  BENCH_IDLE_REQUESTS (default 200) GET /health and as many
            GET /session/results, each on a new connection (as a load
            balancer's health check or a fresh client does)
  idle      the same requests while BENCH_IDLE_CONNECTIONS (default 500)
            connections are held open: a third connected and silent, a
            third that sent part of a request head, a third that sent the
            head of a POST /session and part of its body

Reported:
  idle.health_p99_ms      99th percentile of /health under the idle
                          connections (target <= 1000: issue 9's figure)
  idle.results_p99_ms     the same for GET /session/results (<= 1000)
  idle.health_max_ms      the slowest /health under them (info)
  idle.health_p50_ratio   p50 idle / p50 baseline (info)
  idle.health_p99_ratio   p99 idle / p99 baseline (info)
  idle.held_fraction      share of the idle connections still open when the
                          measurement ended (info; below 1 the api closed
                          some, by API_REQUEST_TIMEOUT_MS, and the figure
                          measured less than the full load)
  idle.api_rss_mib        the api's resident memory with the connections
                          held (info: the cost of the threads holding them)

A request that takes more than 10 s is counted as 10 s. Prints
"RESULT <name> <value> <target>" lines for scripts/bench.sh; exits non-zero
only if the benchmark itself fails.

Environment: DATABASE_URL, AMQP_URL, STACK_DIR (the stack), OC_BUILD_DIR
(where opencode-api is), BENCH_IDLE_CONNECTIONS, BENCH_IDLE_REQUESTS,
BENCH_IDLE_API_THREADS, BENCH_IDLE_REQUEST_TIMEOUT_MS.
"""

import os
import resource
import socket
import sys
import time

SOURCE = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(SOURCE, "tests", "e2e"))
import harness  # noqa: E402

CAP_S = 10.0


def env_int(name, default, lo, hi):
    v = os.environ.get(name, "")
    if v == "":
        return default
    if not v.isdigit() or not lo <= int(v) <= hi:
        sys.exit("bench_idle: %s must be a number from %d to %d" % (name, lo, hi))
    return int(v)


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def one_request(port, path, key):
    """Seconds for one GET on a new connection (CAP_S when it fails or is
    slower), the response read whole."""
    t0 = time.monotonic()
    head = "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" % path
    if key:
        head += "X-API-Key: %s\r\n" % key
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=CAP_S) as s:
            s.sendall((head + "\r\n").encode())
            data = b""
            while True:
                b = s.recv(65536)
                if not b:
                    break
                data += b
        if not data.startswith(b"HTTP/1.1 200"):
            return CAP_S
    except OSError:
        return CAP_S
    return min(CAP_S, time.monotonic() - t0)


def measure(svc, sid, n):
    health, results = [], []
    for _ in range(n):
        health.append(one_request(svc.port, "/health", None))
        results.append(one_request(svc.port, "/session/results?session_id=" + sid, svc.api_key))
    return health, results


def open_idle(svc, n, sid):
    socks = []
    key = svc.api_key.encode()
    for i in range(n):
        c = socket.create_connection(("127.0.0.1", svc.port), timeout=CAP_S)
        if i % 3 == 1:
            c.sendall(b"GET /session/results?session_id=" + sid.encode() +
                      b" HTTP/1.1\r\nHost: x\r\nX-API-Key: ")
        elif i % 3 == 2:
            c.sendall(b"POST /session HTTP/1.1\r\nHost: x\r\nX-API-Key: " + key +
                      b"\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
                      b"{\"files\": [")
        socks.append(c)
    return socks


def still_open(socks):
    n = 0
    for c in socks:
        c.setblocking(False)
        try:
            c.recv(1, socket.MSG_PEEK)      # data (a 400) or b"" (closed): not held
        except BlockingIOError:
            n += 1
        except OSError:
            pass
    return n


def rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def main():
    nconn = env_int("BENCH_IDLE_CONNECTIONS", 500, 1, 5000)
    nreq = env_int("BENCH_IDLE_REQUESTS", 200, 10, 100000)
    env = {}
    if os.environ.get("BENCH_IDLE_API_THREADS"):
        env["API_THREADS"] = str(env_int("BENCH_IDLE_API_THREADS", 0, 2, 1024))
    if os.environ.get("BENCH_IDLE_REQUEST_TIMEOUT_MS"):
        env["API_REQUEST_TIMEOUT_MS"] = str(env_int("BENCH_IDLE_REQUEST_TIMEOUT_MS", 0, 100,
                                                    600000))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < min(hard, nconn + 256):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, nconn + 256), hard))
    # info: the harness waits for the api's api.started line (an info line)
    # before it trusts /health.
    svc = harness.Service("bench-idle", workers=0, env=dict(env, LOG_LEVEL="info"))
    try:
        sid = svc.create_session({"a.txt": "hello\n"})["session_id"]
        measure(svc, sid, 10)                               # warm-up
        base_h, base_r = measure(svc, sid, nreq)
        socks = open_idle(svc, nconn, sid)
        try:
            time.sleep(0.5)
            rss = rss_mib(svc.procs["api"].pid)
            idle_h, idle_r = measure(svc, sid, nreq)
            held = still_open(socks) / float(nconn)
        finally:
            for c in socks:
                c.close()
    finally:
        svc.close()
    print("baseline /health  p50 %.2f ms  p99 %.2f ms  max %.2f ms" %
          (pct(base_h, 50) * 1e3, pct(base_h, 99) * 1e3, max(base_h) * 1e3))
    print("idle     /health  p50 %.2f ms  p99 %.2f ms  max %.2f ms  (%d connections held)" %
          (pct(idle_h, 50) * 1e3, pct(idle_h, 99) * 1e3, max(idle_h) * 1e3, nconn))
    print("baseline /session/results  p50 %.2f ms  p99 %.2f ms" %
          (pct(base_r, 50) * 1e3, pct(base_r, 99) * 1e3))
    print("idle     /session/results  p50 %.2f ms  p99 %.2f ms  max %.2f ms" %
          (pct(idle_r, 50) * 1e3, pct(idle_r, 99) * 1e3, max(idle_r) * 1e3))
    print("RESULT idle.health_p99_ms %.2f <=1000" % (pct(idle_h, 99) * 1e3))
    print("RESULT idle.results_p99_ms %.2f <=1000" % (pct(idle_r, 99) * 1e3))
    print("RESULT idle.health_max_ms %.2f info" % (max(idle_h) * 1e3))
    print("RESULT idle.health_p50_ratio %.3f info" % (pct(idle_h, 50) / pct(base_h, 50)))
    print("RESULT idle.health_p99_ratio %.3f info" % (pct(idle_h, 99) / pct(base_h, 99)))
    print("RESULT idle.held_fraction %.3f info" % held)
    print("RESULT idle.api_rss_mib %.1f info" % rss)
    return 0


if __name__ == "__main__":
    sys.exit(main())
