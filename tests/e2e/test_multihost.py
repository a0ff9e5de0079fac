"""Several hosts, shown (issue 13, item 7): workers on separate "hosts",
each in a network namespace of its own with its own address, reaching
PostgreSQL and RabbitMQ by address and sharing DATA_DIR; one host is cut
off mid-job (link down) and the job is re-run by the other host after the
lease, without ever running twice at once, and the cut-off host's late
outcome (if any) is fenced out when its link returns.

Network built by the test (every address exists only inside namespaces it
creates; nothing is sent anywhere but there and to loopback):

    namespace "db"  (mhdb<pid>): bridge br0 10.<a>.<b>.1/24, with
        PostgreSQL and RabbitMQ (scripts/stack.sh, STACK_LISTEN_ADDR),
        the scripted model server (tests/fakemodel/fake_model.py), the api
        (on the namespace's loopback) and the janitor
    namespace "host w1" (mhw1<pid>): eth0 10.<a>.<b>.11/24 --veth-- br0
    namespace "host w2" (mhw2<pid>): eth0 10.<a>.<b>.12/24 --veth-- br0

DATA_DIR is one folder of this machine, seen by both worker hosts as an NFS
mount would show it. The test talks to the api through a socket created
inside the db namespace (netns.connect_in) and to PostgreSQL through its
Unix socket (a file, reachable from any namespace).

Needs root, iproute2, bubblewrap, PostgreSQL and rabbitmq-server; skips
with the reason otherwise. Run:
    OC_BUILD_DIR=build OC_SOURCE_DIR=. python3 tests/e2e/test_multihost.py
"""

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import netns  # noqa: E402
from harness import script_prompt, wait_for  # noqa: E402

LEASE_S = 6
TERMINAL = ("succeeded", "failed", "timed_out", "cancelled")
# A subnet that exists only inside this run's namespaces (the pid keeps
# concurrent runs apart, though their namespaces are separate anyway).
NET = "10.%d.%d" % (200 + os.getpid() % 50, (os.getpid() // 50) % 250)
DB_ADDR = NET + ".1"
HOST_ADDR = {"w1": NET + ".11", "w2": NET + ".12"}


def bash(cmd):
    return {"bash": {"command": cmd, "description": "run " + cmd.split()[0]}}


# Marker named after the attempt's own moment, then a long sleep in which
# the partition happens, then the final file.
SCRIPT = [
    bash("date +%s%N > run-$(date +%s%N).txt"),
    bash("sleep 25"),
    {"write": {"filePath": "final.txt", "content": "final\n"}},
    {"text": "done"},
]

LOG_TIME = re.compile(r"^(\S+)")


def why_not():
    """None, or why this machine cannot run the test."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth pairs, servers run as their users)"
    for prog in ("ip", "rabbitmq-server", "bwrap", "psql"):
        if shutil.which(prog) is None and not os.path.exists("/usr/sbin/" + prog):
            return "%s is not installed" % prog
    if not os.path.isdir("/usr/lib/postgresql"):
        return "the PostgreSQL server is not installed (scripts/deps.sh)"
    for prog in ("opencode-api", "opencode-worker", "opencode-janitor"):
        if not os.access(os.path.join(harness.BUILD, prog), os.X_OK):
            return "%s is not built in %s" % (prog, harness.BUILD)
    return None


def harness_read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError as e:
        return "(%s)" % e.strerror


class NsHTTPConnection(http.client.HTTPConnection):
    """HTTP to an address inside a namespace."""

    def __init__(self, ns, *a, **kw):
        self.ns = ns
        super().__init__(*a, **kw)

    def connect(self):
        self.sock = netns.connect_in(self.ns, (self.host, self.port), self.timeout)


class MultiHostService(harness.Service):
    """harness.Service whose programs run inside namespaces: the api, the
    janitor and the model server in the db namespace, workers in theirs."""

    def __init__(self, name, db_ns, pg_socket_dir, **kw):
        self.db_ns = db_ns
        self.pg_socket_dir = pg_socket_dir
        super().__init__(name, workers=0, janitor=False, api=False, **kw)

    def _start_fake_model(self):
        port_file = os.path.join(self.tmp, "model.port")
        self._spawn("model", netns.in_ns(self.db_ns, sys.executable, harness.FAKE_MODEL,
                                         "--host", DB_ADDR, "--port", "0",
                                         "--port-file", port_file,
                                         "--log", os.path.join(self.tmp, "model-requests.log")),
                    dict(os.environ))
        wait_for(lambda: os.path.exists(port_file), 30, what="fake model port file")
        with open(port_file) as f:
            self.model_port = int(f.read().strip())
        # The agents run on the worker hosts: they reach the model by the
        # db namespace's address, as a real deployment reaches its provider.
        base = "http://%s:%d/v1" % (DB_ADDR, self.model_port)
        config = subprocess.run(
            ["bash", os.path.join(harness.SOURCE, "scripts", "offline-agent-config.sh"), base],
            check=True, capture_output=True, text=True, timeout=30).stdout
        self.agent_config = os.path.join(self.tmp, "agent-config.json")
        with open(self.agent_config, "w") as f:
            f.write(config)

    def spawn_in(self, ns, key, program, **env):
        return self._spawn(key, netns.in_ns(ns, os.path.join(harness.BUILD, program)),
                           self.env(**env))

    def start_api_in_db(self):
        p = self.spawn_in(self.db_ns, "api", "opencode-api")
        wait_for(lambda: self._health(p), 90, what="api /health")
        return p

    def request(self, method, path, body=None, key="default", headers=None, raw=None,
                timeout=30, record=True):
        """As harness.Service.request, from the database host's namespace
        (nothing recorded: these answers come through a namespace)."""
        del record
        h = {}
        if key == "default":
            key = self.api_key
        if key is not None:
            h["X-API-Key"] = key
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        c = NsHTTPConnection(self.db_ns, "127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            return harness.Response(r.status, dict(r.getheaders()), r.read())
        finally:
            c.close()

    def sql(self, query):
        u = urllib.parse.urlparse(self.database_url)
        env = dict(os.environ, PGHOST=self.pg_socket_dir, PGPORT=str(u.port),
                   PGUSER=u.username, PGPASSWORD=urllib.parse.unquote(u.password or ""),
                   PGDATABASE=self.db_name)
        out = subprocess.run(["psql", "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                              "-c", query],
                             check=True, capture_output=True, text=True, timeout=60, env=env)
        return [line.split("\t") for line in out.stdout.splitlines() if line != ""]


class Sampler(threading.Thread):
    """Samples, every 50 ms, which namespaces hold live processes whose
    command line names the job (the agent's bwrap binds the attempt's
    folder, named after the job), to show it never ran on two hosts at
    once."""

    def __init__(self, jid, inodes):
        super().__init__(daemon=True)
        self.jid, self.inodes = jid, inodes   # inode -> host name
        self.stop_ev = threading.Event()
        self.overlaps = []
        self.seen = {}                        # host -> (first, last) time seen

    def run(self):
        while not self.stop_ev.is_set():
            now = time.time()
            hosts = set()
            for pid in harness.processes_mentioning(self.jid):
                host = self.inodes.get(netns.pid_ns_inode(pid))
                if host:
                    hosts.add(host)
            for h in hosts:
                first, _ = self.seen.get(h, (now, now))
                self.seen[h] = (first, now)
            if len(hosts) > 1:
                self.overlaps.append((now, sorted(hosts)))
            time.sleep(0.05)

    def stop(self):
        self.stop_ev.set()
        self.join(10)


class Partition(unittest.TestCase):
    def setUp(self):
        reason = why_not()
        if reason:
            raise unittest.SkipTest("multi-host test: " + reason)
        self.tmp = tempfile.mkdtemp(prefix="oc-multihost-")
        os.chmod(self.tmp, 0o711)
        self.stack_dir = os.path.join(self.tmp, "stack")
        self.namespaces = []
        self.svc = None
        self.sampler = None
        self.saved_env = {k: os.environ.get(k) for k in ("DATABASE_URL", "AMQP_URL",
                                                         "STACK_DIR", "STACK_SH")}
        self.addCleanup(self.cleanup)
        self.db = netns.name("mhdb")
        self.hosts = {"w1": netns.name("mhw1"), "w2": netns.name("mhw2")}
        for ns in [self.db] + list(self.hosts.values()):
            err = netns.create(ns, need_chromium=False)
            if err:
                raise unittest.SkipTest("multi-host test: " + err)
            self.namespaces.append(ns)
        try:
            for w, ns in self.hosts.items():
                netns.veth(ns, "eth0", self.db, "v" + w)
                netns.address(ns, "eth0", HOST_ADDR[w] + "/24")
            netns.bridge(self.db, "br0", DB_ADDR + "/24", ["v" + w for w in self.hosts])
        except subprocess.CalledProcessError as e:
            raise unittest.SkipTest("multi-host test: cannot build veth links here: %s"
                                    % (e.stderr or e).strip())
        # A private PostgreSQL and RabbitMQ inside the db namespace,
        # listening on its bridge address (the shared test stack listens on
        # loopback only).
        env = dict(os.environ, STACK_DIR=self.stack_dir, STACK_LISTEN_ADDR=DB_ADDR)
        for k in ("PG_PORT", "AMQP_PORT", "AMQP_DIST_PORT", "EPMD_PORT"):
            env.pop(k, None)
        self.stack_env = env
        r = subprocess.run(netns.in_ns(self.db, "bash", harness.STACK_SH, "start"), env=env,
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            if "RabbitMQ" in r.stderr or "PostgreSQL" in r.stderr:
                raise unittest.SkipTest("multi-host test: cannot start the servers: "
                                        + r.stderr.strip()[-1500:])
            self.fail("stack start failed:\n" + r.stderr)
        out = subprocess.run(["bash", harness.STACK_SH, "env"], env=env, check=True,
                             capture_output=True, text=True, timeout=60).stdout
        urls = dict(re.findall(r"export (\w+)=(\S+)", out))
        self.assertIn("@%s:" % DB_ADDR, urls["DATABASE_URL"])
        # Extra libpq settings for every program (e.g. "tcp_user_timeout=1500&
        # connect_timeout=2"), to try a deployment-level mitigation; unset
        # by default, so the test exercises the service as configured.
        extra = os.environ.get("OC_MULTIHOST_PG_OPTIONS")
        if extra:
            urls["DATABASE_URL"] += ("&" if "?" in urls["DATABASE_URL"] else "?") + extra
        os.environ.update(DATABASE_URL=urls["DATABASE_URL"], AMQP_URL=urls["AMQP_URL"],
                          STACK_DIR=self.stack_dir)

        self.svc = MultiHostService(
            "multihost", self.db, os.path.join(self.stack_dir, "pg", "run"),
            env={
                "JOB_LEASE_S": str(LEASE_S),
                "JANITOR_INTERVAL_S": "1",
                # One slot per host: a slot cancels its consumer while it
                # works, so the cut-off host holds no consumer the broker
                # could hand the re-queued job to (an idle consumer on a
                # dead link keeps a delivery until the broker's heartbeat
                # notices the link is gone, which is a different test).
                "WORKER_CONCURRENCY": "1",
                # Both "hosts" are this machine and share its uids, so
                # they share one lock folder of uid leases with every
                # service of the run, or two sandboxes could run as the
                # same uid. (On real hosts it is host-local, README
                # "Scaling workers".)
                "AGENT_UID_LOCK_DIR": harness.UID_LOCK_DIR,
            })
        self.svc.start_api_in_db()
        self.svc.spawn_in(self.db, "janitor", "opencode-janitor")
        for w, ns in self.hosts.items():
            self.svc.spawn_in(ns, w, "opencode-worker", WORKER_ID=w)
        for w in self.hosts:
            wait_for(lambda: self.svc.log_lines(w, r"worker\.started"), 60, 0.2,
                     "worker %s to start" % w)

    def cleanup(self):
        if self.sampler is not None:
            self.sampler.stop()
        if self.svc is not None:
            if os.environ.get("OC_MULTIHOST_SHOW_LOGS"):
                sys.stderr.write(self.svc.all_logs())
            try:
                self.svc.close(check=False)
            except Exception as e:  # noqa: BLE001 - cleanup goes on
                sys.stderr.write("closing the service: %r\n" % e)
        if os.path.exists(os.path.join(self.stack_dir, "ports")):
            subprocess.run(netns.in_ns(self.db, "bash", harness.STACK_SH, "stop")
                           if self.db in self.namespaces else
                           ["bash", harness.STACK_SH, "stop"],
                           env=self.stack_env, capture_output=True, timeout=300)
        # Whatever still runs inside our namespaces (it could only be ours).
        inodes = {netns.ns_inode(ns) for ns in self.namespaces
                  if os.path.exists("/run/netns/" + ns)}
        for pid in [int(p) for p in os.listdir("/proc") if p.isdigit()]:
            if netns.pid_ns_inode(pid) in inodes:
                try:
                    os.kill(pid, 9)
                except OSError:
                    pass
        for ns in self.namespaces:
            netns.delete(ns)
        for k, v in self.saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if os.environ.get("OC_KEEP_TMP") is None:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def in_host(self, host, pids):
        inode = netns.ns_inode(self.hosts[host])
        return [p for p in pids if netns.pid_ns_inode(p) == inode]

    def check_no_overlap(self, a, b, jid):
        if self.sampler.overlaps:
            raise AssertionError(
                "the job ran on two hosts at once: host %s still ran its agent when host %s "
                "started the re-run (first seen together at %.1f s after the cut); seen per "
                "host: %r\n%s" % (a, b, self.sampler.overlaps[0][0] - self.t_cut,
                                   self.sampler.seen, self.diagnose(a, jid)))

    def diagnose(self, a, jid):
        """Where host A's worker threads wait, and the logs of the two
        workers, for a failure message."""
        s = self.svc
        lines = ["host %s worker threads (kernel wait channel):" % a]
        pid = s.procs[a].pid
        try:
            for t in sorted(os.listdir("/proc/%d/task" % pid), key=int):
                wchan = harness_read("/proc/%d/task/%s/wchan" % (pid, t))
                lines.append("  %s %s %s" % (t, harness_read("/proc/%d/task/%s/comm"
                                                             % (pid, t)).strip(), wchan))
        except OSError as e:
            lines.append("  (%s)" % e)
        lines.append("processes of the job on host %s: %r"
                     % (a, self.in_host(a, harness.processes_mentioning(jid))))
        for w in self.hosts:
            lines.append("==== %s ====\n%s" % (w, s.log_tail(w, 3000)))
        return "\n".join(lines)

    def log_time(self, line):
        return LOG_TIME.match(line).group(1)

    def test_partitioned_host_job_rerun_elsewhere_and_fenced(self):
        s = self.svc
        sid = s.create_session({"a.txt": "input\n"}, ttl=3600)["session_id"]
        jid = s.submit(sid, script_prompt(SCRIPT), timeout_s=300)["job_id"]

        def marker_written():
            j = s.job(jid)
            if j["status"] in TERMINAL:
                raise AssertionError("job ended too early: %r\n%s" % (j, s.all_logs()))
            try:
                names = os.listdir(s.workspace(sid, jid))
            except OSError:
                return None
            return names if any(n.startswith("run-") for n in names) else None
        names = wait_for(marker_written, 120, 0.1, "the first attempt's marker")
        first_marker = [n for n in names if n.startswith("run-")]
        row = s.sql("SELECT status, attempt, worker_id FROM jobs WHERE id = '%s'" % jid)[0]
        self.assertEqual(row[:2], ["running", "1"], row)
        a = row[2]
        self.assertIn(a, self.hosts)
        b = [w for w in self.hosts if w != a][0]
        # The agent runs on host A, in A's namespace.
        self.assertTrue(self.in_host(a, harness.processes_mentioning(jid)),
                        "the agent of the job should run in %s's namespace" % a)

        inodes = {netns.ns_inode(ns): w for w, ns in self.hosts.items()}
        self.sampler = Sampler(jid, inodes)
        self.sampler.start()

        # Pull A's cable.
        t_cut = self.t_cut = time.time()
        netns.link(self.hosts[a], "eth0", False)
        link_restored = False
        try:
            # A must stop its agent once a lease has passed without
            # renewal; B must not start before that. Fails at once when the
            # sampler sees the job on both hosts.
            def a_gave_up():
                self.check_no_overlap(a, b, jid)
                return s.log_lines(a, r"job\.lease_expired job=%s" % jid)
            try:
                expired = wait_for(a_gave_up, 90, 0.1, "host %s to give the job up" % a)
            except AssertionError as e:
                if not str(e).startswith("timed out"):
                    raise
                raise AssertionError("%s\n%s" % (e, self.diagnose(a, jid))) from None
            t_expired = time.time()
            wait_for(lambda: not self.in_host(a, harness.processes_mentioning(jid)), 30, 0.1,
                     "no process of the job left on host %s" % a)
            t_gone = time.time()
            self.check_no_overlap(a, b, jid)
            # The janitor (in the db namespace) re-queues it after the
            # lease; host B claims it.
            wait_for(lambda: s.log_lines(b, r"job\.started job=%s" % jid), 120, 0.2,
                     "host %s to start the job" % b)
            row = s.sql("SELECT status, attempt, worker_id FROM jobs WHERE id = '%s'" % jid)[0]
            self.assertEqual(row, ["running", "2", b])
            # Plug the cable back while B still runs the job: A reconnects
            # and whatever it has left of its attempt must be fenced out.
            netns.link(self.hosts[a], "eth0", True)
            link_restored = True
            job = s.wait_job(jid, timeout=120)
        finally:
            if not link_restored:
                netns.link(self.hosts[a], "eth0", True)
        self.assertEqual((job["status"], job["attempt"], job["result"]),
                         ("succeeded", 2, "done"), job)
        self.assertEqual(s.scalar("SELECT worker_id FROM jobs WHERE id = '%s'" % jid), b)
        self.assertTrue(s.log_lines("janitor", r"janitor\.job_requeued job=%s" % jid),
                        s.log_tail("janitor"))
        # Within a lease of the cut (plus renewal interval and sampling).
        self.assertLess(t_expired - t_cut, LEASE_S + LEASE_S / 3 + 8, expired)

        # A is back on the network and keeps serving: wait until it has
        # reached the database again (its next renewal or poll), then give
        # a late outcome time to show up.
        self.assertIsNone(s.procs[a].poll(), s.log_tail(a))
        time.sleep(LEASE_S)
        self.sampler.stop()

        # Never on two hosts at once.
        self.assertEqual(self.sampler.overlaps, [], self.sampler.seen)
        self.assertIn(a, self.sampler.seen)
        self.assertIn(b, self.sampler.seen)
        self.assertLess(self.sampler.seen[a][1], self.sampler.seen[b][0], self.sampler.seen)
        # The same from the workers' own logs: A's agent ended (after it
        # gave the job up) before B's attempt started.
        with open(s.logs[a], errors="replace") as f:
            a_log = f.read().splitlines()
        i = next(i for i, line in enumerate(a_log)
                 if re.search(r"job\.lease_expired job=%s" % jid, line))
        a_end = next((line for line in a_log[i:] if "agent.end" in line), None)
        self.assertIsNotNone(a_end, "\n".join(a_log[i:]))
        b_start = s.log_lines(b, r"job\.started job=%s" % jid)
        self.assertEqual(len(b_start), 1, b_start)
        self.assertLessEqual(self.log_time(a_end), self.log_time(b_start[0]),
                             (a_end, b_start))
        self.assertLessEqual(t_gone, time.time())

        # Fenced: one outcome, from B; none from A.
        self.assertEqual(s.log_lines(a, r"job\.finished job=%s" % jid), [], s.log_tail(a))
        self.assertEqual(len(s.log_lines(b, r"job\.finished job=%s" % jid)), 1)
        self.assertEqual(s.sql("SELECT status, attempt, worker_id, lease_token IS NULL "
                               "FROM jobs WHERE id = '%s'" % jid), [["succeeded", "2", b, "t"]])
        # The outputs are B's attempt's: one marker, not A's.
        files = sorted(f["path"] for f in job["output_files"] or [])
        markers = [f for f in files if f.startswith("run-")]
        self.assertEqual(len(markers), 1, files)
        self.assertNotEqual(markers, first_marker, "host %s's file was kept" % a)
        self.assertEqual(sorted(set(files) - set(markers)), ["a.txt", "final.txt"])
        self.assertEqual(sorted(r[0] for r in s.sql(
            "SELECT path FROM job_files WHERE job_id = '%s'" % jid)), files)
        self.assertEqual(s.download(sid, "final.txt").body, b"final\n")
        self.assertEqual(s.download(sid, markers[0]).status, 200)
        self.assertEqual(s.scalar("SELECT count(*) FROM jobs WHERE status IN "
                                  "('queued', 'running')"), "0")
        # Both hosts still run.
        for w in self.hosts:
            self.assertIsNone(s.procs[w].poll(), s.log_tail(w))


if __name__ == "__main__":
    unittest.main(verbosity=2)
