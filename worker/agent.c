/*
 * agent.c - see agent.h.
 *
 * Everything the child needs (argument list, environment, open files) is
 * prepared before fork(): the worker has several threads, and after fork()
 * in a threaded process the child may only call async-signal-safe
 * functions until execve(). No malloc, no stdio, no logging in the child.
 */
#include "agent.h"

#include "log.h"
#include "timefmt.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
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
        size_t cap = a->cap ? a->cap * 2 : 64;
        char **v = realloc(a->v, cap * sizeof(*v));
        if (v == NULL)
            return -ENOMEM;
        a->v = v;
        a->cap = cap;
    }
    /* execve() takes char *const[]; the strings are never written. */
    a->v[a->n++] = (char *)s;
    a->v[a->n] = NULL;
    return 0;
}

/* Takes ownership of s (freed with the list, also on failure). */
static int agent_argv_push_owned(struct agent_argv *a, char *s)
{
    if (s == NULL)
        return -ENOMEM;
    if (a->nown + 1 > a->capown) {
        size_t cap = a->capown ? a->capown * 2 : 16;
        char **own = realloc(a->own, cap * sizeof(*own));
        if (own == NULL) {
            free(s);
            return -ENOMEM;
        }
        a->own = own;
        a->capown = cap;
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
    char *s = malloc(la + lb + 1);
    if (s == NULL)
        return NULL;
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
                rc = agent_argv_push_owned(a, strdup(target));
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

static int agent_build_bwrap_argv(const struct agent_spec *spec, struct agent_argv *a)
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
 *   reads from fd AGENT_ARGS_FD (--args), see agent_env_args_fd(). */
    static const char *const head[] = {
        "bwrap", "--die-with-parent", "--unshare-all", "--share-net",
        "--new-session", "--cap-drop", "ALL", "--clearenv",
        "--ro-bind", "/usr", "/usr",
    };
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof(head) / sizeof(head[0]); i++)
        rc = agent_argv_push(a, head[i]);
    if (rc == 0)
        rc = agent_push_root_links(a);
    for (size_t i = 0; rc == 0 && i < sizeof(agent_etc_binds) / sizeof(agent_etc_binds[0]); i++)
        rc = agent_argv_push3(a, "--ro-bind-try", agent_etc_binds[i], agent_etc_binds[i]);
    if (rc == 0)
        rc = agent_argv_push3(a, "--proc", "/proc", NULL);
    if (rc == 0)
        rc = agent_argv_push3(a, "--dev", "/dev", NULL);
    if (rc == 0)
        rc = agent_argv_push3(a, "--tmpfs", "/tmp", NULL);
    if (rc == 0)
        rc = agent_argv_push3(a, "--ro-bind", spec->opencode_bin, AGENT_SB_BIN);
    if (rc == 0)
        rc = agent_argv_push3(a, "--bind", spec->workspace, AGENT_SB_WORKSPACE);
    if (rc == 0)
        rc = agent_argv_push3(a, "--bind", spec->home, AGENT_SB_HOME);
    if (rc == 0)
        rc = agent_argv_push3(a, "--chdir", AGENT_SB_WORKSPACE, NULL);
    if (rc == 0)
        rc = agent_argv_push3(a, "--args", AGENT_ARGS_FD_STR, NULL);
    if (rc == 0)
        rc = agent_argv_push3(a, "--", AGENT_SB_BIN, "run");
    if (rc == 0)
        rc = agent_argv_push3(a, "-m", spec->model, NULL);
    if (rc == 0)
        rc = agent_argv_push3(a, "--format", "json", NULL);
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

struct agent_child {
    const char *exec_path;
    char *const *argv;
    char *const *envp;
    const char *chdir_to;     /* NULL: keep cwd (bwrap does --chdir) */
    pid_t parent;
    int fd_in, fd_out, fd_err;/* all >= 3 */
    int fd_report;            /* >= 3, O_CLOEXEC: errno on failure */
    int fd_args;              /* >= 10 or -1: becomes AGENT_ARGS_FD for bwrap */
    unsigned max_fd;          /* close loop bound when close_range fails */
};

/* Tells the parent why the child could not exec, then exits. */
static void agent_child_fail(const struct agent_child *c, int err)
{
    ssize_t w = write(c->fd_report, &err, sizeof(err));
    (void)w;
    _exit(127);
}

static void agent_child(const struct agent_child *c)
{
    /* Own process group, so one kill(-pgid) reaches everything the
     * agent starts (unless it deliberately leaves the group). */
    if (setpgid(0, 0) != 0)
        agent_child_fail(c, errno);

    /* Die with the worker. PDEATHSIG fires when the forking THREAD exits;
     * agent_run() blocks in that thread until the agent is gone, so that
     * is the same here. If the parent died before prctl(), getppid()
     * already shows the new parent and nobody would kill us. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
        agent_child_fail(c, errno);
    if (getppid() != c->parent)
        _exit(127);

    if (dup2(c->fd_in, STDIN_FILENO) < 0 || dup2(c->fd_out, STDOUT_FILENO) < 0 ||
        dup2(c->fd_err, STDERR_FILENO) < 0)
        agent_child_fail(c, errno);

    /* Keep the report pipe at fd 3 (close-on-exec) and close everything
     * else the worker had open: sockets to the database and broker,
     * other jobs' files. */
    int rfd = 3;
    if (c->fd_report != rfd && dup2(c->fd_report, rfd) < 0)
        agent_child_fail(c, errno);
    struct agent_child c2 = *c;
    c2.fd_report = rfd;
    if (fcntl(rfd, F_SETFD, FD_CLOEXEC) != 0)
        agent_child_fail(&c2, errno);
    /* bwrap's --args fd stays open across execve(). */
    unsigned first_closed = 4;
    if (c->fd_args >= 0) {
        if (dup2(c->fd_args, AGENT_ARGS_FD) < 0 || fcntl(AGENT_ARGS_FD, F_SETFD, 0) != 0)
            agent_child_fail(&c2, errno);
        first_closed = AGENT_ARGS_FD + 1;
    }
#ifdef SYS_close_range
    if (syscall(SYS_close_range, first_closed, ~0U, 0U) != 0)
#endif
    {
        for (unsigned fd = first_closed; fd < c->max_fd; fd++)
            close((int)fd);
    }

    if (c->chdir_to != NULL && chdir(c->chdir_to) != 0)
        agent_child_fail(&c2, errno);

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
        agent_child_fail(&c2, errno);

    execve(c->exec_path, c->argv, c->envp);
    agent_child_fail(&c2, errno);
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
static int agent_wait(pid_t pid, int64_t deadline, agent_tick_fn tick, void *tick_arg,
                      enum agent_end *end)
{
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0 && errno != ENOSYS)
        log_warn("agent.pidfd", "pid=%d errno=%d fallback=waitpid", (int)pid, errno);
    int64_t next_tick = time_mono_ms() + AGENT_TICK_MS;
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
            next_tick = now + AGENT_TICK_MS;
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

static int agent_check_spec(const struct agent_spec *spec)
{
    if (spec == NULL || spec->opencode_bin == NULL || spec->opencode_bin[0] != '/' ||
        spec->workspace == NULL || spec->workspace[0] != '/' ||
        spec->home == NULL || spec->home[0] != '/' ||
        spec->model == NULL || spec->model[0] == '\0' ||
        spec->prompt_path == NULL || spec->stdout_path == NULL ||
        spec->stderr_path == NULL || spec->env == NULL || spec->timeout_s <= 0 ||
        (spec->bwrap_bin != NULL && spec->bwrap_bin[0] != '/'))
        return -EINVAL;
    return 0;
}

int agent_run(const struct agent_spec *spec, agent_tick_fn tick, void *tick_arg,
              struct agent_result *out)
{
    struct agent_argv args = { 0 };
    int fd_in = -1, fd_out = -1, fd_err = -1, fd_args = -1, pipefd[2] = { -1, -1 };
    int rc = agent_check_spec(spec);
    if (rc != 0 || out == NULL)
        return rc != 0 ? rc : -EINVAL;
    const int sandboxed = spec->bwrap_bin != NULL;

    rc = sandboxed ? agent_build_bwrap_argv(spec, &args) : agent_build_plain_argv(spec, &args);
    if (rc != 0)
        goto out;
    if (sandboxed) {
        fd_args = agent_env_args_fd(spec->env);
        if (fd_args < 0) {
            rc = fd_args;
            goto out;
        }
    }

    static char bwrap_path[] = AGENT_BWRAP_PATH;
    char *const bwrap_env[] = { bwrap_path, NULL };
    struct rlimit rl;
    unsigned max_fd = 65536;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur < max_fd)
        max_fd = (unsigned)rl.rlim_cur;

    /* O_NOFOLLOW: these live next to folders the agent writes to; a
     * planted symlink must not redirect them. */
    fd_in = agent_open_high(spec->prompt_path, O_RDONLY | O_NOFOLLOW, 0);
    if (fd_in < 0) {
        rc = fd_in;
        goto out;
    }
    fd_out = agent_open_high(spec->stdout_path,
                            O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600);
    if (fd_out < 0) {
        rc = fd_out;
        goto out;
    }
    fd_err = agent_open_high(spec->stderr_path,
                            O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600);
    if (fd_err < 0) {
        rc = fd_err;
        goto out;
    }
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        rc = -errno;
        goto out;
    }
    rc = agent_move_high(&pipefd[1]);
    if (rc != 0)
        goto out;

    struct agent_child child = {
        .exec_path = sandboxed ? spec->bwrap_bin : spec->opencode_bin,
        .argv = args.v,
        .envp = sandboxed ? bwrap_env : spec->env,
        .chdir_to = sandboxed ? NULL : spec->workspace,
        .parent = getpid(),
        .fd_in = fd_in, .fd_out = fd_out, .fd_err = fd_err,
        .fd_report = pipefd[1],
        .fd_args = fd_args,
        .max_fd = max_fd,
    };

    /* Block every signal across fork() so no handler of the worker runs
     * in the child before it has reset the dispositions. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int64_t started = time_mono_ms();
    pid_t pid = fork();
    if (pid == 0)
        agent_child(&child);        /* does not return */
    int fork_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        rc = -fork_errno;
        goto out;
    }
    /* Also from this side, so a kill(-pid) right away cannot miss; fails
     * harmlessly (EACCES) once the child has exec'd. */
    (void)setpgid(pid, pid);
    agent_close(&pipefd[1]);
    agent_close(&fd_args);
    agent_close(&fd_in);
    agent_close(&fd_out);
    agent_close(&fd_err);

    /* EOF: execve() succeeded (the pipe is close-on-exec). */
    int child_err = 0;
    ssize_t got;
    do {
        got = read(pipefd[0], &child_err, sizeof(child_err));
    } while (got < 0 && errno == EINTR);
    agent_close(&pipefd[0]);
    if (got > 0) {
        int st;
        (void)agent_reap(pid, &st);
        rc = got == (ssize_t)sizeof(child_err) && child_err > 0 ? -child_err : -EIO;
        log_warn("agent.start_failed", "sandbox=%s errno=%d", sandboxed ? "yes" : "no",
                 -rc);
        goto out;
    }

    log_info("agent.start", "pid=%d sandbox=%s timeout_s=%d", (int)pid,
             sandboxed ? "yes" : "no", spec->timeout_s);

    enum agent_end end = AGENT_EXITED;
    rc = agent_wait(pid, started + (int64_t)spec->timeout_s * 1000, tick, tick_arg, &end);
    if (rc != 0) {
        /* The pid may already name another process: killing is unsafe. */
        log_error("agent.wait", "pid=%d errno=%d", (int)pid, -rc);
        goto out;
    }
    /* Whether it exited or not: kill the group before reaping, while the
     * pid (a zombie at worst) still names our child. After a normal exit
     * this removes what the agent's shell left running in background. */
    agent_kill_all(pid);
    int status = 0;
    rc = agent_reap(pid, &status);
    if (rc != 0) {
        log_error("agent.reap", "pid=%d errno=%d", (int)pid, -rc);
        goto out;
    }

    out->end = end;
    out->exit_code = -1;
    out->signal = 0;
    if (end == AGENT_EXITED) {
        if (WIFEXITED(status)) {
            out->exit_code = WEXITSTATUS(status);
        } else {
            out->end = AGENT_SIGNALED;
            out->signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
        }
    }
    static const char *const end_names[] = { "exited", "signaled", "timed_out", "stopped" };
    log_info("agent.end", "pid=%d sandbox=%s end=%s exit_code=%d signal=%d duration_ms=%lld",
             (int)pid, sandboxed ? "yes" : "no", end_names[out->end], out->exit_code,
             out->signal, (long long)(time_mono_ms() - started));

out:
    agent_close(&fd_in);
    agent_close(&fd_out);
    agent_close(&fd_err);
    agent_close(&fd_args);
    agent_close(&pipefd[0]);
    agent_close(&pipefd[1]);
    agent_argv_free(&args);
    return rc;
}
