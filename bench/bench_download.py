#!/usr/bin/env python3
"""bench_download.py - GET /download throughput and memory, against a plain
file-to-socket copy measured in the same run.

Starts the real api with the e2e harness (tests/e2e/harness.py) on the
private stack of scripts/bench.sh, creates a session holding one ASCII file
of BENCH_DOWNLOAD_MIB MiB (default 20: the session limit is 25 MiB), then
restarts the api so that its peak RSS no longer includes the 20 MiB upload.

  api       BENCH_DOWNLOADS (default 10) downloads of the file through
            GET /download with http.client on one keep-alive connection,
            after one untimed download whose bytes are checked
  baseline  the same client and connection handling against a minimal
            HTTP server in a separate Python process that reads the same
            file from disk in 64 KiB chunks and sendall()s it over loopback

Reported:
  download.time_ratio            api time / baseline time, medians of the
                                 timed downloads (lower is better; the
                                 ratio of the best times is printed too,
                                 but on a shared machine it is noisy)
  download.peak_rss_growth_ratio growth of the api's VmHWM over the timed
                                 downloads / file size: the body must be
                                 streamed, not held (64 KiB buffer)
  download.small_file_ms         median time of 20 downloads of a 1-byte
                                 file (information: a fixed cost per
                                 request; about 40 ms means the response
                                 waited for a delayed ACK: Nagle's
                                 algorithm, TCP_NODELAY off)

Prints "RESULT <name> <value> <target>" lines for scripts/bench.sh. No
absolute timing is asserted; exits non-zero only if the benchmark itself
fails (a download short or wrong).

Environment: DATABASE_URL, AMQP_URL, STACK_DIR (the stack), OC_BUILD_DIR
(where opencode-api is), BENCH_DOWNLOAD_MIB, BENCH_DOWNLOADS.
"""

import hashlib
import http.client
import multiprocessing
import os
import socket
import sys
import time
import urllib.parse

SOURCE = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(SOURCE, "tests", "e2e"))
import harness  # noqa: E402

CHUNK = 64 * 1024


def env_int(name, default, lo, hi):
    v = os.environ.get(name, "")
    if v == "":
        return default
    if not v.isdigit() or not lo <= int(v) <= hi:
        sys.exit("bench_download: %s must be a number from %d to %d" % (name, lo, hi))
    return int(v)


def make_content(size):
    """size bytes of varied ASCII text lines."""
    lines = []
    n = 0
    i = 0
    while n < 1024 * 1024:
        line = "%08d: the quick brown fox jumps over the lazy dog %s\n" % (i, "x" * (i % 37))
        lines.append(line)
        n += len(line)
        i += 1
    block = "".join(lines)
    reps = size // len(block) + 1
    return (block * reps)[:size]


def proc_status_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError("no %s in /proc/%d/status" % (field, pid))


def fetch(conn, path, headers, expect_size, digest=None):
    """One GET on conn, body read in CHUNK pieces. Returns seconds."""
    buf = bytearray(CHUNK)
    mv = memoryview(buf)
    t0 = time.perf_counter()
    conn.request("GET", path, headers=headers)
    r = conn.getresponse()
    if r.status != 200:
        raise RuntimeError("GET %s: %d %r" % (path, r.status, r.read()[:300]))
    total = 0
    while True:
        n = r.readinto(mv)
        if not n:
            break
        total += n
        if digest is not None:
            digest.update(mv[:n])
    t1 = time.perf_counter()
    if total != expect_size:
        raise RuntimeError("GET %s: %d bytes, expected %d" % (path, total, expect_size))
    return t1 - t0


# ---- baseline server --------------------------------------------------------

def serve_files(listener, files):
    """Keep-alive HTTP/1.1 server: GET /NAME answers with the file files[NAME].
    The headers go out with the first chunk, in one send."""
    while True:
        conn, _ = listener.accept()
        with conn:
            pending = b""
            while True:
                while b"\r\n\r\n" not in pending:
                    data = conn.recv(4096)
                    if not data:
                        break
                    pending += data
                if b"\r\n\r\n" not in pending:
                    break  # client closed
                request, pending = pending.split(b"\r\n\r\n", 1)
                path = files[request.split(b" ")[1].decode().lstrip("/")]
                head = ("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                        "Content-Length: %d\r\n\r\n" % os.path.getsize(path)).encode()
                with open(path, "rb") as f:
                    while True:
                        chunk = f.read(CHUNK)
                        if not chunk:
                            break
                        conn.sendall(head + chunk)
                        head = b""
                if head:
                    conn.sendall(head)  # an empty file


def run_downloads(port, path, headers, size, count, expect_sha):
    """One checked download, then count timed ones, on one connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        h = hashlib.sha256()
        fetch(conn, path, headers, size, h)
        if h.hexdigest() != expect_sha:
            raise RuntimeError("GET %s: the bytes differ from the file" % path)
        return [fetch(conn, path, headers, size) for _ in range(count)]
    finally:
        conn.close()


def small_latency(port, path, headers, count=20):
    """Median seconds of count downloads of a 1-byte file, one connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        t = sorted(fetch(conn, path, headers, 1) for _ in range(count))
        return t[len(t) // 2]
    finally:
        conn.close()


def main():
    mib = env_int("BENCH_DOWNLOAD_MIB", 20, 1, 24)
    count = env_int("BENCH_DOWNLOADS", 10, 1, 100)
    size = mib * 1024 * 1024
    content = make_content(size)
    sha = hashlib.sha256(content.encode()).hexdigest()

    svc = harness.Service("bench-dl", workers=0)
    base_proc = None
    try:
        s = svc.create_session({"data/big.txt": content, "small.txt": "x"})
        sid = s["session_id"]
        del content
        on_disk = os.path.join(svc.session_dir(sid), "input", "data", "big.txt")
        if os.path.getsize(on_disk) != size:
            raise RuntimeError("the stored file has %d bytes" % os.path.getsize(on_disk))

        # A fresh api: its peak RSS then holds nothing of the upload.
        svc.stop("api")
        pid = svc.start_api().pid
        headers = {"X-API-Key": svc.api_key}
        q = "/download?session_id=%s&file_path=" % sid
        big = q + urllib.parse.quote("data/big.txt", safe="")
        # Warm the worker thread (its database connection) with a tiny file.
        conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=60)
        fetch(conn, q + "small.txt", headers, 1)
        conn.close()

        hwm0 = proc_status_kib(pid, "VmHWM")
        api_times = run_downloads(svc.port, big, headers, size, count, sha)
        hwm1 = proc_status_kib(pid, "VmHWM")
        rss1 = proc_status_kib(pid, "VmRSS")
        api_small = small_latency(svc.port, q + "small.txt", headers)

        # Baseline: a separate process, so client and server do not share
        # one interpreter lock, as with the api.
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        ctx = multiprocessing.get_context("fork")
        files = {"big": on_disk, "small": os.path.join(svc.session_dir(sid), "input", "small.txt")}
        base_proc = ctx.Process(target=serve_files, args=(listener, files), daemon=True)
        base_proc.start()
        base_port = listener.getsockname()[1]
        base_times = run_downloads(base_port, "/big", {}, size, count, sha)
        base_small = small_latency(base_port, "/small", {})
        listener.close()
    finally:
        if base_proc is not None:
            base_proc.terminate()
            base_proc.join(10)
        svc.close()

    api_best, base_best = min(api_times), min(base_times)
    api_med = sorted(api_times)[len(api_times) // 2]
    base_med = sorted(base_times)[len(base_times) // 2]
    growth = (hwm1 - hwm0) * 1024
    print("bench_download: %d MiB file, %d timed downloads each" % (mib, count))
    print("  %-9s %10s %12s %16s" % ("", "best s", "median s", "median MiB/s"))
    print("  %-9s %10.3f %12.3f %16.0f" % ("api", api_best, api_med, mib / api_med))
    print("  %-9s %10.3f %12.3f %16.0f" % ("baseline", base_best, base_med, mib / base_med))
    print("  api VmHWM %d KiB before, %d KiB after (growth %d KiB); VmRSS after %d KiB"
          % (hwm0, hwm1, hwm1 - hwm0, rss1))
    print("  1-byte file: api %.2f ms, baseline %.2f ms (median of 20)"
          % (api_small * 1e3, base_small * 1e3))
    if api_small >= 0.035:
        print("  note: ~40 ms per small response is Nagle's algorithm waiting for a delayed"
              " ACK (headers and body written separately, TCP_NODELAY off)")
    print("RESULT download.time_ratio %.3f <=1.5" % (api_med / base_med))
    print("RESULT download.time_ratio_best %.3f info" % (api_best / base_best))
    print("RESULT download.peak_rss_growth_ratio %.4f <=0.1" % (growth / size))
    print("RESULT download.small_file_ms %.2f info" % (api_small * 1e3))


if __name__ == "__main__":
    main()
