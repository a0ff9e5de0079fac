/*
 * agent.c - see agent.h.
 *
 * Everything the child needs (argument list, environment, open files) is
 * prepared before fork(): the worker has several threads, and after fork()
 * in a threaded process the child may only call async-signal-safe
 * functions until execve(). No malloc, no stdio, no logging in the child.
 */
#include "agent.h"
#include "gateway.h"

#include "log.h"
#include "sandbox.h"
#include "timefmt.h"
#include "xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Where things appear inside the sandbox. */
/* opencode's error events can be generic ("UnknownError: Unexpected server
 * error"); its error log names the cause (ProviderModelNotFoundError...),
 * so stderr gets the errors for the job's error message. */
#define AGENT_LOG_ARGS "--print-logs", "--log-level", "ERROR"

#define AGENT_SB_BIN       "/opt/opencode/bin/opencode"
#define AGENT_SB_WORKSPACE "/workspace"
#define AGENT_SB_HOME      "/home/agent"

/* bwrap itself gets only this: never the worker's environment, which
 * holds the database and broker credentials. */
#define AGENT_BWRAP_PATH   "PATH=/usr/bin:/bin"

/* How often tick() runs and the wait loop wakes up. */
#define AGENT_TICK_MS      1000
/* Sleep between waitpid() polls when pidfd_open() is unavailable. */
#define AGENT_POLL_MS      50

/* Top-level names that are symlinks into /usr on merged-usr systems
 * (Debian 12) and real folders on older ones: recreated in the sandbox
 * the way the host has them, so the dynamic loader and /bin/sh resolve. */
static const char *const agent_root_links[] = {
    "bin", "sbin", "lib", "lib32", "lib64", "libx32",
};

/* Read-only files and folders from /etc that name resolution and TLS
 * need; --ro-bind-try skips the ones a host does not have. */
static const char *const agent_etc_binds[] = {
    "/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf",
    "/etc/host.conf", "/etc/gai.conf", "/etc/ssl", "/etc/ca-certificates",
    "/etc/pki", "/etc/localtime",
};

/* ------------------------------------------------------------------ */
/* Argument lists built before fork                                    */
/* ------------------------------------------------------------------ */

/* A NULL-terminated argv plus the strings this module allocated for it. */
struct agent_argv {
    char  **v;        /* borrowed or owned strings; v[n] == NULL */
    size_t  n, cap;
    char  **own;      /* strings to free */
    size_t  nown, capown;
};

static void agent_argv_free(struct agent_argv *a)
{
    for (size_t i = 0; i < a->nown; i++)
        free(a->own[i]);
    free(a->own);
    free(a->v);
    memset(a, 0, sizeof(*a));
}

static int agent_argv_push(struct agent_argv *a, const char *s)
{
    if (a->n + 2 > a->cap) {
        a->cap = a->cap ? a->cap * 2 : 64;
        a->v = xrealloc(a->v, a->cap * sizeof(*a->v));
    }
    /* execve() takes char *const[]; the strings are never written. */
    a->v[a->n++] = (char *)s;
    a->v[a->n] = NULL;
    return 0;
}

/* Takes ownership of s (freed with the list). */
static int agent_argv_push_owned(struct agent_argv *a, char *s)
{
    if (a->nown + 1 > a->capown) {
        a->capown = a->capown ? a->capown * 2 : 16;
        a->own = xrealloc(a->own, a->capown * sizeof(*a->own));
    }
    a->own[a->nown++] = s;
    return agent_argv_push(a, s);
}

static int agent_argv_push3(struct agent_argv *a, const char *x, const char *y,
                            const char *z)
{
    int rc = agent_argv_push(a, x);
    if (rc == 0)
        rc = agent_argv_push(a, y);
    if (rc == 0 && z != NULL)
        rc = agent_argv_push(a, z);
    return rc;
}

static char *agent_concat(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = xmalloc(la + lb + 1);
    memcpy(s, a, la);
    memcpy(s + la, b, lb + 1);
    return s;
}

/* Recreates /bin, /lib, ... as the host has them: a symlink becomes the
 * same symlink, a real folder a read-only bind, a missing one nothing. */
static int agent_push_root_links(struct agent_argv *a)
{
    for (size_t i = 0; i < sizeof(agent_root_links) / sizeof(agent_root_links[0]); i++) {
        char *path = agent_concat("/", agent_root_links[i]);
        if (path == NULL)
            return -ENOMEM;
        struct stat st;
        int rc = 0;
        if (lstat(path, &st) != 0) {
            free(path);
            continue;
        }
        if (S_ISLNK(st.st_mode)) {
            char target[PATH_MAX];
            ssize_t len = readlink(path, target, sizeof(target) - 1);
            if (len <= 0) {
                free(path);
                continue;
            }
            target[len] = '\0';
            rc = agent_argv_push(a, "--symlink");
            if (rc == 0)
                rc = agent_argv_push_owned(a, xstrdup(target));
            if (rc == 0)
                rc = agent_argv_push_owned(a, path);
            else
                free(path);
        } else if (S_ISDIR(st.st_mode)) {
            rc = agent_argv_push3(a, "--ro-bind", path, NULL);
            if (rc == 0)
                rc = agent_argv_push_owned(a, path);
            else
                free(path);
        } else {
            free(path);
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* The fd number bwrap reads its --setenv arguments from in the child. */
#define AGENT_ARGS_FD 4
#define AGENT_ARGS_FD_STR "4"
/* bwrap's --seccomp fd in the child. */
#define AGENT_SECCOMP_FD 5
#define AGENT_SECCOMP_FD_STR "5"

/*
 * Writes "--setenv\0NAME\0VALUE\0..." for HOME and every spec->env entry
 * into a memfd that bwrap reads with --args. On bwrap's command line the
 * values would be readable by every local user (/proc/PID/cmdline is
 * world-readable); the fd keeps provider keys and session variables
 * between the worker and the sandbox. Returns the fd (>= 10, close-on-exec)
 * or a negative errno.
 */
static int agent_env_args_fd(char *const *env)
{
    int fd = memfd_create("agent-env", MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = 0;
    FILE *f = fdopen(dup(fd), "w");
    if (f == NULL) {
        rc = -errno;
        goto fail;
    }
    fwrite("--setenv\0HOME\0" AGENT_SB_HOME, 1, sizeof("--setenv\0HOME\0" AGENT_SB_HOME),
           f);
    for (size_t i = 0; rc == 0 && env[i] != NULL; i++) {
        const char *eq = strchr(env[i], '=');
        if (eq == NULL || eq == env[i]) {
            rc = -EINVAL;
            break;
        }
        size_t nlen = (size_t)(eq - env[i]);
        /* HOME is the sandbox path, set above; the caller's value is the
         * host path of the same folder. */
        if (nlen == 4 && memcmp(env[i], "HOME", 4) == 0)
            continue;
        fwrite("--setenv", 1, sizeof("--setenv"), f);
        fwrite(env[i], 1, nlen, f);
        fputc('\0', f);
        fwrite(eq + 1, 1, strlen(eq + 1) + 1, f);
    }
    if (fclose(f) != 0 && rc == 0)
        rc = -EIO;
    if (rc != 0)
        goto fail;
    if (lseek(fd, 0, SEEK_SET) != 0) {
        rc = -errno;
        goto fail;
    }
    /* Far from 0..4, which the child dup2()s onto. */
    int hi = fcntl(fd, F_DUPFD_CLOEXEC, 10);
    if (hi < 0) {
        rc = -errno;
        goto fail;
    }
    close(fd);
    return hi;

fail:
    close(fd);
    return rc;
}

/* The limits bwrap applies: a new user namespace that cannot make more,
 * the seccomp filter, the size of /tmp (the next --tmpfs). */
static int agent_push_limits(const struct agent_limits *l, struct agent_argv *a)
{
    int rc = 0;
    if (l == NULL)
        return 0;
    if (l->disable_userns)
        rc = agent_argv_push3(a, "--unshare-user", "--disable-userns", NULL);
    if (rc == 0 && l->seccomp)
        rc = agent_argv_push3(a, "--seccomp", AGENT_SECCOMP_FD_STR, NULL);
    if (rc == 0 && l->tmp_mb > 0) {
        char size[32];
        snprintf(size, sizeof(size), "%lld", (long long)l->tmp_mb * 1024 * 1024);
        rc = agent_argv_push(a, "--size");
        if (rc == 0)
            rc = agent_argv_push_owned(a, xstrdup(size));
    }
    return rc;
}

/* The end of bwrap's options ("--"), and with a gateway socket its bind
 * and the bridge: a shell starts socat (TCP on the sandbox's loopback ->
 * the socket), waits until it listens, then execs opencode ("$@"). */
static int agent_push_bridge(const struct agent_spec *spec, const struct sandbox_stage *stage,
                             struct agent_argv *a)
{
    static const char script[] =
        GATEWAY_BRIDGE_BIN " TCP-LISTEN:" GATEWAY_BRIDGE_PORT_STR
        ",bind=127.0.0.1,reuseaddr,fork UNIX-CONNECT:" GATEWAY_SANDBOX_SOCK " & "
        "i=0; while [ $i -lt 500 ] && ! grep -qi ':" GATEWAY_BRIDGE_PORT_HEX " ' /proc/net/tcp; "
        "do sleep 0.01; i=$((i+1)); done; exec \"$@\"";
    if (spec->gateway_sock == NULL)
        return agent_argv_push(a, "--");
    int rc = agent_argv_push3(a, "--bind", spec->drop ? stage->gw : spec->gateway_sock,
                              GATEWAY_SANDBOX_SOCK);
    if (rc == 0)
        rc = agent_argv_push3(a, "--", "/bin/sh", "-c");
    if (rc == 0)
        rc = agent_argv_push(a, script);
    if (rc == 0)
        rc = agent_argv_push(a, "oc-bridge");
    return rc;
}

static int agent_build_bwrap_argv(const struct agent_spec *spec,
                                  const struct sandbox_stage *stage, struct agent_argv *a)
{
    /* --unshare-all: own user (when possible), PID, IPC, UTS, cgroup and
     *   network namespaces; --share-net gives the network back because
     *   the agent has to reach its model provider.
     * --die-with-parent: the sandbox dies with the process we fork.
     * --new-session: no access to a controlling terminal (TIOCSTI).
     * --cap-drop ALL: when the worker runs as root, bwrap otherwise keeps
     *   every capability inside, and CAP_SYS_ADMIN would let the agent
     *   remount the read-only binds writable.
     * --clearenv: the environment is exactly the --setenv list that bwrap
     *   reads from fd AGENT_ARGS_FD (--args), see agent_env_args_fd().
     * With spec->drop the sources are the stage paths (sandbox.h). */
    static const char *const head[] = {
        "bwrap", "--die-with-parent", "--unshare-all",
        "--new-session", "--cap-drop", "ALL", "--clearenv",
        "--ro-bind", "/usr", "/usr",
    };
    const int st = spec->drop;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof(head) / sizeof(head[0]); i++)
        rc = agent_argv_push(a, head[i]);
    if (rc == 0 && spec->share_net)
        rc = agent_argv_push(a, "--share-net");
    if (rc == 0)
        rc = agent_push_root_links(a);
    for (size_t i = 0; rc == 0 && i < sizeof(agent_etc_binds) / sizeof(agent_etc_binds[0]); i++)
        rc = agent_argv_push3(a, "--ro-bind-try", agent_etc_binds[i], agent_etc_binds[i]);
    if (rc == 0)
        rc = agent_argv_push3(a, "--proc", "/proc", NULL);
    if (rc == 0)
        rc = agent_argv_push3(a, "--dev", "/dev", NULL);
    if (rc == 0)
        rc = agent_push_limits(spec->limits, a);
    if (rc == 0)
        rc = agent_argv_push3(a, "--tmpfs", "/tmp", NULL);
    if (rc == 0)
        rc = agent_argv_push3(a, "--ro-bind", st ? stage->bin : spec->opencode_bin,
                              AGENT_SB_BIN);
    if (rc == 0)
        rc = agent_argv_push3(a, "--bind", st ? stage->work : spec->workspace,
                              AGENT_SB_WORKSPACE);
    if (rc == 0)
        rc = agent_argv_push3(a, "--bind", st ? stage->home : spec->home, AGENT_SB_HOME);
    if (rc == 0)
        rc = agent_argv_push3(a, "--chdir", AGENT_SB_WORKSPACE, NULL);
    if (rc == 0)
        rc = agent_argv_push3(a, "--args", AGENT_ARGS_FD_STR, NULL);
    if (rc == 0)
        rc = agent_push_bridge(spec, stage, a);
    if (rc == 0)
        rc = agent_argv_push3(a, AGENT_SB_BIN, "run", NULL);
    if (rc == 0)
        rc = agent_argv_push3(a, "-m", spec->model, NULL);
    if (rc == 0)
        rc = agent_argv_push3(a, "--format", "json", NULL);
    if (rc == 0 && spec->session != NULL)   /* the conversation (conversation.h) */
        rc = agent_argv_push3(a, "--session", spec->session, NULL);
    if (rc == 0)
        rc = agent_argv_push3(a, AGENT_LOG_ARGS);
    return rc;
}

static int agent_build_plain_argv(const struct agent_spec *spec, struct agent_argv *a)
{
    int rc = agent_argv_push3(a, "opencode", "run", "-m");
    if (rc == 0)
        rc = agent_argv_push3(a, spec->model, "--format", "json");
    if (rc == 0)
        rc = agent_argv_push3(a, AGENT_LOG_ARGS);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Child side (async-signal-safe only)                                 */
/* ------------------------------------------------------------------ */

/* Descriptors the child keeps, at fixed numbers 4..9: bwrap's --args and
 * --seccomp (open across execve), then numbers the stage uses and
 * cgroup.procs (sandbox.h; closed at execve). */
enum agent_keep {
    AGENT_KEEP_ARGS, AGENT_KEEP_SECCOMP, AGENT_KEEP_WORK, AGENT_KEEP_HOME, AGENT_KEEP_BIN,
    AGENT_KEEP_CGROUP, AGENT_KEEP_COUNT_
};
#define AGENT_KEEP_BASE AGENT_ARGS_FD

struct agent_child {
    const char *exec_path;
    char *const *argv;
    char *const *envp;
    const char *chdir_to;     /* NULL: keep cwd (bwrap does --chdir) */
    pid_t parent;
    int fd_in, fd_out, fd_err;/* all >= 3 */
    int fd_report;            /* >= 3, O_CLOEXEC: errno on failure */
    int keep[AGENT_KEEP_COUNT_]; /* >= 10 or -1 each */
    const struct sandbox_child *sb;
    int no_new_privs;
    unsigned max_fd;          /* close loop bound when close_range fails */
};

/* Tells the parent why the child could not exec, then exits. */
static void agent_child_fail(const struct agent_child *c, int err)
{
    ssize_t w = write(c->fd_report, &err, sizeof(err));
    (void)w;
    _exit(127);
}

/* stdin/out/err, the report pipe at 3 (close-on-exec), the kept fds at
 * 4..9; everything else the worker had open (sockets to the database and
 * broker, other jobs' files) is closed. c->fd_report becomes 3. */
static void agent_child_fds(struct agent_child *c)
{
    if (dup2(c->fd_in, STDIN_FILENO) < 0 || dup2(c->fd_out, STDOUT_FILENO) < 0 ||
        dup2(c->fd_err, STDERR_FILENO) < 0)
        agent_child_fail(c, errno);
    int rfd = 3;
    if (c->fd_report != rfd && dup2(c->fd_report, rfd) < 0)
        agent_child_fail(c, errno);
    c->fd_report = rfd;
    if (fcntl(rfd, F_SETFD, FD_CLOEXEC) != 0)
        agent_child_fail(c, errno);
    for (int i = 0; i < AGENT_KEEP_COUNT_; i++) {
        int target = AGENT_KEEP_BASE + i;
        if (c->keep[i] < 0) {
            close(target);
            continue;
        }
        int flags = i <= AGENT_KEEP_SECCOMP ? 0 : FD_CLOEXEC;
        if (dup2(c->keep[i], target) < 0 || fcntl(target, F_SETFD, flags) != 0)
            agent_child_fail(c, errno);
    }
    unsigned first_closed = AGENT_KEEP_BASE + AGENT_KEEP_COUNT_;
#ifdef SYS_close_range
    if (syscall(SYS_close_range, first_closed, ~0U, 0U) != 0)
#endif
    {
        for (unsigned fd = first_closed; fd < c->max_fd; fd++)
            close((int)fd);
    }
}

static void agent_child(struct agent_child *c)
{
    /* Own process group, so one kill(-pgid) reaches everything the
     * agent starts (unless it deliberately leaves the group). */
    if (setpgid(0, 0) != 0)
        agent_child_fail(c, errno);
    agent_child_fds(c);

    /* cgroup, stage, limits, then the agent's uid (sandbox.h). */
    int err = sandbox_child_confine(c->sb);
    if (err != 0)
        agent_child_fail(c, err);

    /* Die with the worker. PDEATHSIG fires when the forking THREAD exits;
     * agent_run() blocks in that thread until the agent is gone, so that
     * is the same here. Set after the uid change, which clears it. If the
     * parent died before prctl(), getppid() already shows the new parent
     * and nobody would kill us. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
        agent_child_fail(c, errno);
    if (getppid() != c->parent)
        _exit(127);

    if (c->chdir_to != NULL && chdir(c->chdir_to) != 0)
        agent_child_fail(c, errno);
    if (c->no_new_privs && (err = sandbox_child_no_new_privs()) != 0)
        agent_child_fail(c, err);

    /* execve() keeps ignored signals ignored and the mask as it is: the
     * worker ignores SIGPIPE and the parent blocked everything around
     * fork(), so reset both. */
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        sigaction(sig, &sa, NULL);   /* fails harmlessly for reserved ones */
    }
    sigset_t none;
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) != 0)
        agent_child_fail(c, errno);

    execve(c->exec_path, c->argv, c->envp);
    agent_child_fail(c, errno);
}

/* ------------------------------------------------------------------ */
/* Parent side                                                         */
/* ------------------------------------------------------------------ */

static void agent_close(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* Moves *fd above 2 (close-on-exec), so the child's dup2() onto 0..2 can
 * never overwrite a source it still needs. A worker started with a
 * closed stdin would otherwise get the prompt file as fd 0. */
static int agent_move_high(int *fd)
{
    if (*fd >= 3)
        return 0;
    int hi = fcntl(*fd, F_DUPFD_CLOEXEC, 3);
    if (hi < 0)
        return -errno;
    close(*fd);
    *fd = hi;
    return 0;
}

/* open() with O_CLOEXEC, the result above 2; a negative errno on failure. */
static int agent_open_high(const char *path, int flags, mode_t mode)
{
    int fd = open(path, flags | O_CLOEXEC, mode);
    if (fd < 0)
        return -errno;
    int rc = agent_move_high(&fd);
    if (rc != 0) {
        close(fd);
        return rc;
    }
    return fd;
}

/* Kills the agent's process group and the agent itself. The pid must not
 * have been reaped yet, so neither number can belong to someone else. */
static void agent_kill_all(pid_t pid)
{
    if (kill(-pid, SIGKILL) != 0 && errno != ESRCH)
        log_warn("agent.kill", "pid=%d target=group errno=%d", (int)pid, errno);
    /* Also the leader directly: if it never got to setpgid(), or under
     * bwrap where its PID namespace dies with it. */
    if (kill(pid, SIGKILL) != 0 && errno != ESRCH)
        log_warn("agent.kill", "pid=%d target=leader errno=%d", (int)pid, errno);
}

static int agent_reap(pid_t pid, int *status)
{
    for (;;) {
        pid_t r = waitpid(pid, status, 0);
        if (r == pid)
            return 0;
        if (r < 0 && errno != EINTR)
            return -errno;
    }
}

/* 1 if the child has exited (it stays a zombie: WNOWAIT), 0 if it still
 * runs, negative errno on failure. */
static int agent_exited(pid_t pid)
{
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0)
        return errno == EINTR ? 0 : -errno;
    return si.si_pid == pid ? 1 : 0;
}

static void agent_sleep_ms(int64_t ms)
{
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/*
 * Waits until the child exits, the deadline passes or tick() asks to stop.
 * Sets *end to AGENT_EXITED when it ended by itself (left unreaped), or to
 * AGENT_TIMED_OUT / AGENT_STOPPED when the caller has to kill it. Returns
 * 0, or a negative errno when the child cannot be waited for (ECHILD:
 * something else in the process reaped it).
 */
static int agent_wait(pid_t pid, int64_t deadline, int tick_ms, agent_tick_fn tick,
                      void *tick_arg, enum agent_end *end)
{
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0 && errno != ENOSYS)
        log_warn("agent.pidfd", "pid=%d errno=%d fallback=waitpid", (int)pid, errno);
    int64_t next_tick = time_mono_ms() + tick_ms;
    int rc = 0;

    for (;;) {
        rc = agent_exited(pid);
        if (rc < 0)
            break;
        if (rc > 0) {
            rc = 0;
            *end = AGENT_EXITED;
            break;
        }
        int64_t now = time_mono_ms();
        if (now >= deadline) {
            *end = AGENT_TIMED_OUT;
            break;
        }
        if (now >= next_tick) {
            next_tick = now + tick_ms;
            if (tick != NULL && tick(tick_arg) != 0) {
                *end = AGENT_STOPPED;
                break;
            }
        }
        int64_t wait_ms = next_tick - now;
        if (deadline - now < wait_ms)
            wait_ms = deadline - now;
        if (pidfd >= 0) {
            struct pollfd p = { .fd = pidfd, .events = POLLIN, .revents = 0 };
            /* Readable once the process has exited; EINTR just loops. */
            (void)poll(&p, 1, (int)wait_ms);
        } else {
            agent_sleep_ms(wait_ms < AGENT_POLL_MS ? wait_ms : AGENT_POLL_MS);
        }
    }
    agent_close(&pidfd);
    return rc;
}

int agent_wait_helper(pid_t pid, int tick_ms, agent_tick_fn tick, void *tick_arg, int *status)
{
    enum agent_end end = AGENT_EXITED;
    int rc = agent_wait(pid, INT64_MAX, tick_ms, tick, tick_arg, &end);
    if (rc != 0)
        return rc;
    if (end != AGENT_EXITED && kill(pid, SIGKILL) != 0 && errno != ESRCH)
        log_warn("agent.kill", "pid=%d target=helper errno=%d", (int)pid, errno);
    rc = agent_reap(pid, status);
    return rc != 0 ? rc : end != AGENT_EXITED;
}

static int agent_check_spec(const struct agent_spec *spec)
{
    if (spec == NULL || spec->opencode_bin == NULL || spec->opencode_bin[0] != '/' ||
        spec->workspace == NULL || spec->workspace[0] != '/' ||
        spec->home == NULL || spec->home[0] != '/' ||
        spec->model == NULL || spec->model[0] == '\0' ||
        spec->prompt_path == NULL || spec->stdout_path == NULL ||
        spec->stderr_path == NULL || spec->env == NULL || spec->timeout_s <= 0 ||
        (spec->bwrap_bin != NULL && spec->bwrap_bin[0] != '/') ||
        (spec->drop && spec->uid == 0) || spec->tick_ms < 0)
        return -EINVAL;
    return 0;
}

/* ------------------------------------------------------------------ */
/* One run: open files -> spawn -> wait, kill, reap -> outcome         */
/* ------------------------------------------------------------------ */

/* What the worker holds open for one run until the child has exec'd. */
struct agent_files {
    int in, out, err;         /* prompt, events, log; all >= 3 */
    int keep[AGENT_KEEP_COUNT_]; /* see enum agent_keep; -1 = none */
    int report[2];            /* the child's exec error pipe */
    char **plain_env;         /* unsandboxed with drop: env, HOME staged */
    char *plain_home;         /* its HOME=... entry */
    struct sandbox_stage *stage; /* with drop: where the child binds things */
};

static void agent_files_init(struct agent_files *f)
{
    memset(f, 0, sizeof(*f));
    f->in = f->out = f->err = f->report[0] = f->report[1] = -1;
    for (int i = 0; i < AGENT_KEEP_COUNT_; i++)
        f->keep[i] = -1;
}

static void agent_files_close(struct agent_files *f)
{
    agent_close(&f->in);
    agent_close(&f->out);
    agent_close(&f->err);
    for (int i = 0; i < AGENT_KEEP_COUNT_; i++)
        agent_close(&f->keep[i]);
    agent_close(&f->report[0]);
    agent_close(&f->report[1]);
    free(f->plain_env);
    free(f->plain_home);
    free(f->stage);
    f->plain_env = NULL;
    f->plain_home = NULL;
    f->stage = NULL;
}

/* Stores fd in *slot, or -1 and returns fd when it is a negative errno. */
static int agent_keep_fd(int *slot, int fd)
{
    *slot = fd < 0 ? -1 : fd;
    return fd < 0 ? fd : 0;
}

/* open() with O_CLOEXEC, the result at SANDBOX_FD_FIRST_FREE or above
 * (never one of the numbers the child dup2()s onto). */
static int agent_open_keep(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int hi = fcntl(fd, F_DUPFD_CLOEXEC, SANDBOX_FD_FIRST_FREE);
    int e = errno;
    close(fd);
    return hi < 0 ? -e : hi;
}

/* The descriptors of containment: the seccomp filter and cgroup.procs
 * (the stage's sources are opened by the child: sandbox.h). */
static int agent_open_confinement(const struct agent_spec *spec, struct agent_files *f)
{
    int rc = 0;
    if (spec->bwrap_bin != NULL && spec->limits != NULL && spec->limits->seccomp)
        rc = agent_keep_fd(&f->keep[AGENT_KEEP_SECCOMP], sandbox_seccomp_fd());
    if (rc == 0 && spec->cgroup_procs != NULL)
        rc = agent_keep_fd(&f->keep[AGENT_KEEP_CGROUP],
                           agent_open_keep(spec->cgroup_procs, O_WRONLY | O_NOFOLLOW));
    return rc;
}

/* spec->env with HOME replaced by the stage's (unsandboxed, with drop). */
static char **agent_staged_env(char *const *env, char *staged_home)
{
    size_t n = 0;
    while (env[n] != NULL)
        n++;
    char **out = xcalloc(n + 1, sizeof(*out));
    for (size_t i = 0; i < n; i++)
        out[i] = strncmp(env[i], "HOME=", 5) == 0 ? staged_home : env[i];
    return out;
}

/* Opens bwrap's --args memfd (sandboxed), the three files, the report
 * pipe and the containment fds. Returns 0 or a negative errno;
 * agent_files_close() either way. */
static int agent_open_files(const struct agent_spec *spec, struct agent_files *f)
{
    int rc = 0;
    if (spec->bwrap_bin != NULL)
        rc = agent_keep_fd(&f->keep[AGENT_KEEP_ARGS], agent_env_args_fd(spec->env));
    else if (spec->drop) {
        f->plain_home = agent_concat("HOME=", f->stage->home);
        f->plain_env = agent_staged_env(spec->env, f->plain_home);
    }
    /* O_NOFOLLOW: these live next to folders the agent writes to; a
     * planted symlink must not redirect them. */
    if (rc == 0)
        rc = agent_keep_fd(&f->in, agent_open_high(spec->prompt_path, O_RDONLY | O_NOFOLLOW, 0));
    if (rc == 0)
        rc = agent_keep_fd(&f->out, agent_open_high(spec->stdout_path,
                                                    O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW,
                                                    0600));
    if (rc == 0)
        rc = agent_keep_fd(&f->err, agent_open_high(spec->stderr_path,
                                                    O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW,
                                                    0600));
    if (rc == 0)
        rc = agent_open_confinement(spec, f);
    if (rc == 0 && pipe2(f->report, O_CLOEXEC) != 0) {
        f->report[0] = f->report[1] = -1;
        rc = -errno;
    }
    if (rc == 0)
        rc = agent_move_high(&f->report[1]);
    return rc;
}

/* What the child applies to itself (sandbox.h), from the spec. */
static void agent_confinement(const struct agent_spec *spec, const struct agent_files *f,
                              struct sandbox_child *sb)
{
    memset(sb, 0, sizeof(*sb));
    const struct agent_limits *l = spec->limits;
    sb->drop = spec->drop;
    sb->uid = spec->uid;
    sb->gid = spec->gid;
    sb->stage = spec->drop;
    sb->work = spec->workspace;
    sb->home = spec->home;
    sb->bin = spec->opencode_bin;
    sb->gw = spec->bwrap_bin != NULL ? spec->gateway_sock : NULL;
    sb->at = f->stage;
    sandbox_stage_opts(sb, l != NULL && l->tmp_mb > 0 ? l->tmp_mb : 64);
    sb->cgroup = f->keep[AGENT_KEEP_CGROUP] >= 0;
    if (l != NULL) {
        sb->nproc = l->nproc > 0 ? (rlim_t)l->nproc : 0;
        sb->fsize = l->fsize_mb > 0 ? (rlim_t)l->fsize_mb << 20 : 0;
        sb->nofile = l->nofile > 0 ? (rlim_t)l->nofile : 0;
        sb->nice = l->nice;
    }
}

/* The close loop's bound in the child when close_range() is missing. */
static unsigned agent_max_fd(void)
{
    struct rlimit rl;
    unsigned max_fd = 65536;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur < max_fd)
        max_fd = (unsigned)rl.rlim_cur;
    return max_fd;
}

/* Waits for the child's execve(): EOF on the report pipe (close-on-exec)
 * means it succeeded. Otherwise reaps the child and returns the errno it
 * reported (negative). */
static int agent_await_exec(pid_t pid, int *report_fd, int sandboxed)
{
    int child_err = 0;
    ssize_t got;
    do {
        got = read(*report_fd, &child_err, sizeof(child_err));
    } while (got < 0 && errno == EINTR);
    agent_close(report_fd);
    if (got <= 0)
        return 0;
    int st;
    (void)agent_reap(pid, &st);
    int rc = got == (ssize_t)sizeof(child_err) && child_err > 0 ? -child_err : -EIO;
    log_warn("agent.start_failed", "sandbox=%s errno=%d", sandboxed ? "yes" : "no", -rc);
    return rc;
}

/*
 * Forks the agent and waits until it has exec'd. Returns 0 with *pid_out
 * (running) and *started (monotonic ms), or a negative errno with nothing
 * left running. The files the child inherited are closed on our side.
 */
static int agent_spawn(const struct agent_spec *spec, char *const *argv,
                       struct agent_files *f, pid_t *pid_out, int64_t *started)
{
    const int sandboxed = spec->bwrap_bin != NULL;
    static char bwrap_path[] = AGENT_BWRAP_PATH;
    char *const bwrap_env[] = { bwrap_path, NULL };
    struct sandbox_child sb;
    agent_confinement(spec, f, &sb);
    const char *plain_cwd = spec->drop ? f->stage->work : spec->workspace;
    struct agent_child child = {
        .exec_path = sandboxed ? spec->bwrap_bin
                               : (spec->drop ? f->stage->bin : spec->opencode_bin),
        .argv = argv,
        .envp = sandboxed ? bwrap_env : (f->plain_env ? f->plain_env : spec->env),
        .chdir_to = sandboxed ? NULL : plain_cwd,
        .parent = getpid(),
        .fd_in = f->in, .fd_out = f->out, .fd_err = f->err,
        .fd_report = f->report[1],
        .sb = &sb,
        .no_new_privs = spec->drop,
        .max_fd = agent_max_fd(),
    };
    memcpy(child.keep, f->keep, sizeof(child.keep));

    /* Block every signal across fork() so no handler of the worker runs
     * in the child before it has reset the dispositions. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    *started = time_mono_ms();
    pid_t pid = fork();
    if (pid == 0)
        agent_child(&child);        /* does not return */
    int fork_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0)
        return -fork_errno;
    /* Also from this side, so a kill(-pid) right away cannot miss; fails
     * harmlessly (EACCES) once the child has exec'd. */
    (void)setpgid(pid, pid);
    agent_close(&f->report[1]);
    for (int i = 0; i < AGENT_KEEP_COUNT_; i++)
        agent_close(&f->keep[i]);
    agent_close(&f->in);
    agent_close(&f->out);
    agent_close(&f->err);

    int rc = agent_await_exec(pid, &f->report[0], sandboxed);
    if (rc != 0)
        return rc;
    log_info("agent.start", "pid=%d sandbox=%s timeout_s=%d", (int)pid,
             sandboxed ? "yes" : "no", spec->timeout_s);
    *pid_out = pid;
    return 0;
}

/*
 * Waits for the agent to end (killing it at the deadline or when tick
 * asks), kills what is left of its group and reaps it. Returns 0 with
 * *end and the wait *status, or a negative errno.
 */
static int agent_finish(const struct agent_spec *spec, pid_t pid, int64_t deadline,
                        agent_tick_fn tick, void *tick_arg, enum agent_end *end, int *status)
{
    int tick_ms = spec->tick_ms > 0 ? spec->tick_ms : AGENT_TICK_MS;
    int rc = agent_wait(pid, deadline, tick_ms, tick, tick_arg, end);
    if (rc != 0) {
        /* The pid may already name another process: killing is unsafe. */
        log_error("agent.wait", "pid=%d errno=%d", (int)pid, -rc);
        return rc;
    }
    /* Whether it exited or not: kill the group before reaping, while the
     * pid (a zombie at worst) still names our child. After a normal exit
     * this removes what the agent's shell left running in background. */
    agent_kill_all(pid);
    rc = agent_reap(pid, status);
    if (rc != 0)
        log_error("agent.reap", "pid=%d errno=%d", (int)pid, -rc);
    /* Then whatever else runs as the agent's uid: what left the group or
     * the sandbox's PID namespace. */
    if (spec->drop)
        (void)sandbox_kill_uid(spec->uid);
    return rc;
}

/* How the run ended, from agent_wait()'s verdict and the wait status. */
static void agent_outcome(enum agent_end end, int status, struct agent_result *out)
{
    out->end = end;
    out->exit_code = -1;
    out->signal = 0;
    if (end != AGENT_EXITED)
        return;
    if (WIFEXITED(status)) {
        out->exit_code = WEXITSTATUS(status);
    } else {
        out->end = AGENT_SIGNALED;
        out->signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    }
}

int agent_run(const struct agent_spec *spec, agent_tick_fn tick, void *tick_arg,
              struct agent_result *out)
{
    struct agent_argv args = { 0 };
    struct agent_files f;
    agent_files_init(&f);
    int rc = agent_check_spec(spec);
    if (rc != 0 || out == NULL)
        return rc != 0 ? rc : -EINVAL;
    const int sandboxed = spec->bwrap_bin != NULL;

    if (spec->drop) {
        f.stage = xmalloc(sizeof(*f.stage));
        rc = sandbox_stage_paths(spec->workspace, spec->home, spec->opencode_bin, f.stage);
    }
    if (rc == 0)
        rc = sandboxed ? agent_build_bwrap_argv(spec, f.stage, &args)
                       : agent_build_plain_argv(spec, &args);
    if (rc == 0)
        rc = agent_open_files(spec, &f);
    pid_t pid = -1;
    int64_t started = 0;
    if (rc == 0)
        rc = agent_spawn(spec, args.v, &f, &pid, &started);
    enum agent_end end = AGENT_EXITED;
    int status = 0;
    if (rc == 0)
        rc = agent_finish(spec, pid, started + (int64_t)spec->timeout_s * 1000, tick,
                          tick_arg, &end, &status);
    if (rc == 0) {
        agent_outcome(end, status, out);
        static const char *const end_names[] = { "exited", "signaled", "timed_out",
                                                 "stopped" };
        log_info("agent.end",
                 "pid=%d sandbox=%s end=%s exit_code=%d signal=%d duration_ms=%lld",
                 (int)pid, sandboxed ? "yes" : "no", end_names[out->end], out->exit_code,
                 out->signal, (long long)(time_mono_ms() - started));
    }
    agent_files_close(&f);
    agent_argv_free(&args);
    return rc;
}
