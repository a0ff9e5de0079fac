/*
 * sandbox.h - what confines one agent beyond bubblewrap's namespaces:
 * its own uid, rlimits and niceness, a seccomp filter, and the sweep that
 * kills every process of a leased uid.
 *
 * Who calls what:
 *   - before fork (worker thread): sandbox_seccomp_fd() builds the filter
 *     with libseccomp and exports it as BPF into a memfd that bwrap reads
 *     (--seccomp FD); the caller fills a struct sandbox_child;
 *   - in the forked child, before execve (async-signal-safe only: raw
 *     system calls, no malloc, no stdio): sandbox_child_confine();
 *   - after the agent (worker thread): sandbox_kill_uid().
 *
 * The agent's uid cannot reach its workspace by path (the attempt's
 * folders are private to the worker), and bwrap resolves its bind sources
 * by path as the caller. So the child, still root, enters a private mount
 * namespace, opens the workspace, HOME and the opencode binary there
 * (SANDBOX_FD_*), mounts a small tmpfs over /tmp (nothing propagates to
 * the host) and bind-mounts the three from those descriptors onto the
 * stage paths below; bwrap (or the unsandboxed agent) then uses those
 * paths.
 */
#ifndef OC_WORKER_SANDBOX_H
#define OC_WORKER_SANDBOX_H

#include <limits.h>
#include <sys/resource.h>
#include <sys/types.h>

/* Fixed descriptor numbers in the child (3..5 are agent.c's). */
#define SANDBOX_FD_WORK   6
#define SANDBOX_FD_HOME   7
#define SANDBOX_FD_BIN    8
#define SANDBOX_FD_CGROUP 9
#define SANDBOX_FD_FIRST_FREE 10

/* The stage, in the child's private mount namespace. */
#define SANDBOX_STAGE      "/tmp"
#define SANDBOX_STAGE_WORK "/tmp/.agent-workspace"
#define SANDBOX_STAGE_HOME "/tmp/.agent-home"
#define SANDBOX_STAGE_BIN  "/tmp/.agent-opencode"
#define SANDBOX_STAGE_GW   "/tmp/.agent-gateway.sock"

/* Where the three appear in the stage: the prefixes above followed by
 * their real absolute paths, so `ps` still shows which job's folders a
 * sandbox binds. */
struct sandbox_stage {
    char work[PATH_MAX];
    char home[PATH_MAX];
    char bin[PATH_MAX];
    char gw[PATH_MAX];       /* SANDBOX_STAGE_GW: the gateway's socket */
};

/* Fills *st. Returns 0 or -ENAMETOOLONG. */
int sandbox_stage_paths(const char *work, const char *home, const char *bin,
                        struct sandbox_stage *st);

/* Everything the child applies to itself; prepared before fork. */
struct sandbox_child {
    int    drop;             /* become uid:gid (the worker is root) */
    uid_t  uid;
    gid_t  gid;
    int    stage;            /* mount the stage (binds of work, home, bin) */
    const char *work, *home, *bin;   /* the real paths */
    const char *gw;          /* the job's gateway socket, bound at at->gw; NULL: none */
    const struct sandbox_stage *at;  /* where they are bound */
    char   stage_opts[64];   /* tmpfs options of the stage ("mode=1777,size=...") */
    int    cgroup;           /* write "0" to SANDBOX_FD_CGROUP (cgroup.procs) */
    rlim_t nproc, fsize, nofile;   /* 0: leave as is */
    int    nice;             /* 0: leave as is */
};

/* Fills c->stage_opts for a stage of tmp_mb MiB. */
void sandbox_stage_opts(struct sandbox_child *c, long tmp_mb);

/* In the child only. Returns 0, or the errno (positive) of the first
 * step that failed. */
int sandbox_child_confine(const struct sandbox_child *c);

/* In the child after sandbox_child_confine(): no new privileges (execve
 * of a setuid file no longer raises them). 0 or errno. */
int sandbox_child_no_new_privs(void);

/*
 * The seccomp filter as a BPF program in a memfd (close-on-exec, fd >=
 * SANDBOX_FD_FIRST_FREE, offset 0), for bwrap --seccomp. It answers EPERM
 * to ptrace, process_vm_readv/writev, keyctl, add_key, request_key,
 * mount and the new mount API, umount2, pivot_root, bpf, userfaultfd,
 * perf_event_open, kernel module, kexec, reboot, swap and acct calls,
 * and to unshare()/clone() asking for a new user namespace. Calls of
 * another ABI (32-bit int 0x80, x32) kill the process. Returns the fd or
 * a negative errno.
 */
int sandbox_seccomp_fd(void);

/* 1 when bwrap accepts --unshare-user --disable-userns here (not when the
 * worker itself runs nested in a user namespace that forbids it), else 0.
 * Runs bwrap once; for start-up. */
int sandbox_probe_disable_userns(const char *bwrap);

/*
 * Kills every process of uid (SIGKILL from a helper process that takes
 * the uid: kill(-1) reaches all of them, also those that left the
 * agent's process group or PID namespace), repeated until /proc shows no
 * live one (a killed process stays there until it has freed its memory).
 * Only for a leased uid: nothing else may run as it. Returns 0, or
 * -EBUSY when processes were still there after 15 s.
 */
int sandbox_kill_uid(uid_t uid);

#endif
