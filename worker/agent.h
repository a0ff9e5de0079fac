/*
 * agent.h - runs one opencode process for a job, sandboxed, with a
 * wall-clock timeout.
 *
 * The agent is untrusted: it executes shell commands a language model
 * chose. Under bubblewrap it sees only its workspace (read-write, at
 * /workspace), its HOME (read-write), a private /tmp, read-only system
 * folders and the opencode binary; it has its own PID namespace, and its
 * environment is exactly spec->env. Without a sandbox (operator opt-out)
 * it still gets only spec->env, but can read whatever the worker's user
 * can.
 *
 * The agent runs in its own process group and receives SIGKILL if the
 * worker dies (PR_SET_PDEATHSIG, and bwrap's --die-with-parent), so a
 * killed worker leaves no agent behind.
 *
 * The sandbox (bwrap 0.8 on Debian 12): --unshare-all (--share-net only
 * with spec->share_net: otherwise loopback is its only network, and the
 * job's gateway socket its only way out, see gateway.h)
 * --new-session --cap-drop ALL --clearenv, /usr and the host's /bin, /lib...
 * links read-only, the /etc files DNS and TLS need read-only, its own
 * /proc, /dev and /tmp, the binary at /opt/opencode/bin/opencode,
 * workspace at /workspace, home at /home/agent, cwd /workspace. bwrap
 * itself runs with PATH only. Besides spec->env the agent sees
 * HOME=/home/agent and the PWD=/workspace that bwrap's --chdir sets.
 * With spec->limits: --unshare-user --disable-userns (no user namespaces
 * inside), --seccomp (sandbox.h's filter) and --size for /tmp; with
 * spec->drop, bwrap itself runs as the job's uid (an unprivileged user
 * namespace), so nothing inside is ever host root. Unsandboxed, drop,
 * rlimits and the bounded /tmp still apply, the seccomp filter does not.
 *
 * Processes that outlive their parent (bwrap's init inside the sandbox,
 * whatever the agent left running) are killed but re-parented to PID 1
 * (or a subreaper) to be reaped: in a container, PID 1 must reap
 * (compose `init: true`, tini), or zombies pile up.
 */
#ifndef OC_AGENT_H
#define OC_AGENT_H

#include <sys/types.h>

/*
 * Containment beyond the namespaces (see sandbox.h). All optional: a
 * zeroed struct (or spec->limits NULL) changes nothing.
 */
struct agent_limits {
    long nproc;                 /* RLIMIT_NPROC: processes+threads of the
                                   agent's uid (meaningful with spec->drop) */
    long fsize_mb;              /* RLIMIT_FSIZE: largest file written */
    long nofile;                /* RLIMIT_NOFILE */
    int  nice;                  /* niceness (0: unchanged) */
    long tmp_mb;                /* size of the agent's /tmp (bwrap --size) */
    int  seccomp;               /* bwrap --seccomp: the filter of sandbox.h */
    int  disable_userns;        /* bwrap --unshare-user --disable-userns */
};

struct agent_spec {
    const char *opencode_bin;   /* absolute path of the opencode executable */
    const char *bwrap_bin;      /* absolute path of bwrap; NULL = unsandboxed */
    const char *workspace;      /* absolute folder, becomes the agent's cwd */
    const char *home;           /* absolute folder, the agent's HOME */
    const char *model;          /* provider/model for -m */
    /* The three files are opened by the worker before the agent starts,
     * without following a symlink in their last component; keep them out
     * of the workspace and home, which the agent controls. */
    const char *prompt_path;    /* file fed to the agent's stdin */
    const char *stdout_path;    /* created/truncated 0600: opencode's JSON events */
    const char *stderr_path;    /* created/truncated 0600: opencode's logs */
    char *const *env;           /* NULL-terminated NAME=value list: the agent's
                                   entire environment (unsandboxed it must
                                   hold HOME=<home>; sandboxed HOME is
                                   replaced by /home/agent) */
    const char *session;        /* opencode session to continue (`run --session`,
                                   sandboxed only: conversation.h), or NULL */
    int timeout_s;              /* wall clock, > 0 */
    int tick_ms;                /* how often tick runs; 0 = 1000 */
    /* The agent's own uid (worker running as root, uid leased by the
     * caller: uidlease.h). The child hands it the workspace, HOME and
     * binary through a private mount namespace (sandbox.h), sets the
     * limits, then drops to uid:gid (no supplementary groups,
     * PR_SET_NO_NEW_PRIVS) before exec'ing bwrap or the agent; at the
     * end every process of uid is killed. Unsandboxed, the agent's HOME
     * and cwd are then the stage's paths (sandbox_stage_paths(); HOME
     * is replaced in env). */
    int drop;
    uid_t uid;
    gid_t gid;
    const struct agent_limits *limits;  /* NULL: none */
    const char *cgroup_procs;   /* a job cgroup's cgroup.procs the agent
                                   moves into before exec (cgroup.h), or NULL */
    /* Sandboxed only. share_net: the host's network (bwrap --share-net,
     * AGENT_EGRESS=open); otherwise a network namespace of its own with
     * loopback only. gateway_sock: the job's gateway socket (gateway.h),
     * bound at GATEWAY_SANDBOX_SOCK and bridged by socat to
     * 127.0.0.1:GATEWAY_BRIDGE_PORT inside before opencode starts; NULL:
     * none. */
    int share_net;
    const char *gateway_sock;
};

enum agent_end {
    AGENT_EXITED,               /* exited by itself: see exit_code (under
                                   bwrap, 128+N when killed by signal N, and
                                   1 when bwrap itself failed: see stderr) */
    AGENT_SIGNALED,             /* killed by a signal it did not get from us */
    AGENT_TIMED_OUT,            /* we killed it at timeout_s */
    AGENT_STOPPED,              /* we killed it because tick asked to */
};

struct agent_result {
    enum agent_end end;
    int exit_code;              /* AGENT_EXITED: status; else -1 */
    int signal;                 /* AGENT_SIGNALED: the signal; else 0 */
};

/* Called every spec->tick_ms while the agent runs. Returning non-zero
 * kills the agent (lease lost, worker shutting down) -> AGENT_STOPPED. */
typedef int (*agent_tick_fn)(void *arg);

/*
 * Starts the agent and waits for it to end. Returns 0 with *out filled, or
 * a negative errno when it could not be started (nothing is left running
 * in that case): -EINVAL for a bad spec (relative paths, timeout_s <= 0,
 * an env entry without '='), -ENOENT/-EACCES/-ELOOP/... from opening the
 * three files, exec'ing the binary (or bwrap) or entering the workspace.
 * Every process of the agent's process group (and, under bwrap, of its
 * PID namespace; with spec->drop, every process of spec->uid) has been
 * sent SIGKILL when this returns, also after a normal exit (unsandboxed
 * without drop, a process that left the group with setsid() escapes
 * this). Blocks the calling thread; tick runs on it.
 */
int agent_run(const struct agent_spec *spec, agent_tick_fn tick, void *tick_arg,
              struct agent_result *out);

/*
 * Waits for a helper child of the worker (not the agent: no group, no
 * sandbox), calling tick(tick_arg) every tick_ms meanwhile. When tick
 * returns non-zero, the child is sent SIGKILL. The child is reaped either
 * way. Returns 0 with its wait *status when it ended by itself, 1 when
 * tick stopped it, or a negative errno. Blocks; tick runs on this thread.
 */
int agent_wait_helper(pid_t pid, int tick_ms, agent_tick_fn tick, void *tick_arg, int *status);

#endif
