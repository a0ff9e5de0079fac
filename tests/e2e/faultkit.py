"""Helpers of the fault tests (test_faults.py, test_recovery.py): the
process tree of a worker and whether its processes survived, the files of a
job's workspace while it runs, log lines, and FaultTest, their base class.
"""

import os

import harness
from harness import wait_for

TERMINAL = ("succeeded", "failed", "timed_out", "cancelled")

# ---------------------------------------------------------------- processes

def _proc_table():
    """pid -> (ppid, state, starttime) of every process (from /proc/PID/stat)."""
    table = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                s = f.read()
        except OSError:
            continue
        rest = s[s.rindex(")") + 2:].split()
        table[int(d)] = (int(rest[1]), rest[0], rest[19])
    return table


def descendants(pid):
    """(pid, starttime) of every live descendant of pid."""
    table = _proc_table()
    children = {}
    for p, (ppid, _state, _start) in table.items():
        children.setdefault(ppid, []).append(p)
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if table[c][1] not in "ZX":
                out.add((c, table[c][2]))
            todo.append(c)
    return out


def alive(pid, starttime):
    """True while pid is the same process (same start time) and not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return False
    rest = s[s.rindex(")") + 2:].split()
    return rest[19] == starttime and rest[0] not in "ZX"


def procs_mentioning(text):
    """pids of live processes whose command line contains text (e.g. a
    workspace path: bwrap gets it as --bind PATH /workspace)."""
    needle = text.encode()
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmd = f.read()
            with open("/proc/%s/stat" % d) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if needle in cmd and state not in "ZX":
            found.append((int(d), cmd.replace(b"\0", b" ").decode(errors="replace")))
    return found


# ---------------------------------------------------------------- helpers

def bash(cmd):
    return {"bash": {"command": cmd, "description": "run " + cmd.split()[0]}}


def workspace(svc, sid, jid):
    return svc.workspace(sid, jid)


def ws_files(svc, sid, jid):
    try:
        return sorted(os.listdir(workspace(svc, sid, jid)))
    except OSError:
        return []


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def wait_in_workspace(svc, sid, jid, pred, timeout=240, what="agent step"):
    """Waits until pred(list of workspace names) holds while the job runs:
    the agent is up and has done its first step."""
    def check():
        j = svc.job(jid)
        if j["status"] in TERMINAL:
            raise AssertionError("job ended before the fault could be injected: %r\n%s"
                                 % (j, svc.all_logs()))
        names = ws_files(svc, sid, jid)
        return names if j["status"] == "running" and pred(names) else None
    return wait_for(check, timeout, 0.1, what)


def outputs(job):
    return sorted(f["path"] for f in job["output_files"] or [])


class FaultTest(harness.ServiceTest):
    def wait_gone(self, procs, timeout=3):
        try:
            wait_for(lambda: not [p for p in procs if alive(*p)], timeout, 0.1,
                     "agent processes to die")
        except AssertionError:
            left = [p for p in procs if alive(*p)]
            cmds = []
            for pid, _ in left:
                cmds.append("%d: %s" % (pid, read("/proc/%d/cmdline" % pid)))
            raise AssertionError("processes of the killed worker survived:\n" + "\n".join(cmds))
