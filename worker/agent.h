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
 */
#ifndef OC_AGENT_H
#define OC_AGENT_H

struct agent_spec {
    const char *opencode_bin;   /* absolute path of the opencode executable */
    const char *bwrap_bin;      /* absolute path of bwrap; NULL = unsandboxed */
    const char *workspace;      /* absolute folder, becomes the agent's cwd */
    const char *home;           /* absolute folder, the agent's HOME */
    const char *model;          /* provider/model for -m */
    const char *prompt_path;    /* file fed to the agent's stdin */
    const char *stdout_path;    /* created/truncated: opencode's JSON events */
    const char *stderr_path;    /* created/truncated: opencode's logs */
    char *const *env;           /* NULL-terminated NAME=value list: the agent's
                                   entire environment */
    int timeout_s;              /* wall clock, > 0 */
};

enum agent_end {
    AGENT_EXITED,               /* exited by itself: see exit_code */
    AGENT_SIGNALED,             /* killed by a signal it did not get from us */
    AGENT_TIMED_OUT,            /* we killed it at timeout_s */
    AGENT_STOPPED,              /* we killed it because tick asked to */
};

struct agent_result {
    enum agent_end end;
    int exit_code;              /* AGENT_EXITED: status; else -1 */
    int signal;                 /* AGENT_SIGNALED: the signal; else 0 */
};

/* Called about once a second while the agent runs. Returning non-zero
 * kills the agent (lease lost, worker shutting down) -> AGENT_STOPPED. */
typedef int (*agent_tick_fn)(void *arg);

/*
 * Starts the agent and waits for it to end. Returns 0 with *out filled, or
 * a negative errno when it could not be started (nothing is left running
 * in that case). Every process of the agent is gone when this returns.
 */
int agent_run(const struct agent_spec *spec, agent_tick_fn tick, void *tick_arg,
              struct agent_result *out);

#endif
