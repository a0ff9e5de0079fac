"""Network namespaces with only loopback up, for the browser tests
(test_cors_browser.py, test_docs_browser.py): what runs inside one (the
api, a page server, headless Chromium) reaches nothing but that
namespace's own loopback, so a browser test cannot touch the network.

Needs root (or CAP_SYS_ADMIN) and iproute2's `ip netns`; unavailable()
says why a test must skip.
"""

import os
import shutil
import subprocess
import tempfile
import urllib.parse

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def name(prefix):
    """A namespace name unique to this process."""
    return "%s%d" % (prefix, os.getpid())


def in_ns(ns, *argv):
    """argv run inside namespace ns."""
    return ["ip", "netns", "exec", ns] + list(argv)


def create(ns, need_chromium=True):
    """Creates ns with loopback up. Returns None, or why it cannot (the
    caller skips)."""
    if need_chromium and shutil.which("chromium") is None:
        return "chromium is not installed (scripts/deps.sh installs it)"
    if shutil.which("ip") is None:
        return "ip (iproute2) is not installed"
    r = subprocess.run(["ip", "netns", "add", ns], capture_output=True, text=True)
    if r.returncode != 0:
        return "cannot create a network namespace here: %s" % r.stderr.strip()
    subprocess.run(in_ns(ns, "ip", "link", "set", "lo", "up"), check=True)
    return None


def delete(ns):
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def interfaces_up(ns):
    """Names of the interfaces of ns that are up (only "lo" is expected)."""
    r = subprocess.run(in_ns(ns, "ip", "-o", "link", "show", "up"), capture_output=True,
                       text=True, check=True)
    return [line.split(":")[1].strip().split("@")[0] for line in r.stdout.splitlines()]


def chromium_dump_dom(ns, url, budget_ms=5000, timeout=120):
    """Loads url in headless Chromium inside ns with a fresh profile and
    returns the CompletedProcess (stdout: the DOM after budget_ms of
    virtual time)."""
    profile = tempfile.mkdtemp(prefix="oc-chromium-")
    try:
        return subprocess.run(in_ns(ns, "chromium", *CHROMIUM_FLAGS,
                                    "--user-data-dir=" + profile,
                                    "--virtual-time-budget=%d" % budget_ms, "--dump-dom", url),
                              capture_output=True, text=True, timeout=timeout)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def unix_socket_url(database_url):
    """DATABASE_URL through the stack's Unix socket (reachable from any
    namespace, unlike the stack's TCP port on the host's loopback), or
    None."""
    u = urllib.parse.urlparse(database_url)
    run = os.path.join(os.environ.get("STACK_DIR", ""), "pg", "run")
    if not os.path.exists(os.path.join(run, ".s.PGSQL.%d" % u.port)):
        return None
    q = urllib.parse.urlencode({"host": run, "port": u.port})
    netloc = "%s:%s@" % (u.username, u.password)
    return urllib.parse.urlunparse(u._replace(netloc=netloc, query=q))


# ------------------------------------------------ several hosts on one machine
# Used by test_multihost.py: namespaces joined by veth pairs the test makes,
# with private addresses that exist only inside those namespaces. Interfaces
# are created directly inside their namespaces (never in the caller's), so
# nothing of the machine's own network changes.

def run_in(ns, *argv):
    """Runs argv inside ns; raises CalledProcessError with its stderr."""
    return subprocess.run(in_ns(ns, *argv), check=True, capture_output=True, text=True,
                          timeout=60)


def veth(ns_a, if_a, ns_b, if_b):
    """A veth pair: if_a inside ns_a, if_b inside ns_b (both down)."""
    subprocess.run(["ip", "link", "add", "name", if_a, "netns", ns_a, "type", "veth",
                    "peer", "name", if_b, "netns", ns_b],
                   check=True, capture_output=True, text=True, timeout=60)


def bridge(ns, br, cidr, ports):
    """Bridge br inside ns holding the given interfaces of ns, with address
    cidr (e.g. 10.1.2.1/24), all up."""
    run_in(ns, "ip", "link", "add", "name", br, "type", "bridge")
    for p in ports:
        run_in(ns, "ip", "link", "set", p, "master", br)
        run_in(ns, "ip", "link", "set", p, "up")
    run_in(ns, "ip", "addr", "add", cidr, "dev", br)
    run_in(ns, "ip", "link", "set", br, "up")


def address(ns, dev, cidr):
    """Gives dev inside ns the address cidr and brings it up."""
    run_in(ns, "ip", "addr", "add", cidr, "dev", dev)
    run_in(ns, "ip", "link", "set", dev, "up")


def link(ns, dev, up):
    """Sets dev inside ns up or down (a cable plugged in or pulled)."""
    run_in(ns, "ip", "link", "set", dev, "up" if up else "down")


def ns_inode(ns):
    """Inode of ns (as /proc/PID/ns/net of its processes shows it)."""
    return os.stat("/run/netns/" + ns).st_ino


def pid_ns_inode(pid):
    """Inode of the network namespace of pid, or None when it is gone."""
    try:
        return os.stat("/proc/%d/ns/net" % pid).st_ino
    except OSError:
        return None


_CLONE_NEWNET = 0x40000000


def connect_in(ns, addr, timeout=30):
    """A TCP socket connected to addr (host, port) from inside ns.

    setns(2) of a network namespace applies to the calling thread only, and
    a socket keeps the namespace it was created in; so a short-lived thread
    enters ns and creates the socket, and the caller (in its own namespace)
    uses it."""
    import ctypes
    import socket
    import threading
    out = {}

    def work():
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open("/run/netns/" + ns, os.O_RDONLY)
            try:
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns " + ns)
            finally:
                os.close(fd)
            out["sock"] = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except BaseException as e:  # handed to the caller
            out["err"] = e
    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join()
    if "err" in out:
        raise out["err"]
    s = out["sock"]
    try:
        s.settimeout(timeout)
        s.connect(addr)
    except BaseException:
        s.close()
        raise
    return s
