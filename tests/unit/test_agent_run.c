/*
 * test_agent_run.c - unit tests for worker/agent.c.
 *
 * A small shell script stands in for the opencode binary. Each test runs
 * it unsandboxed and, when bubblewrap works on this machine, under bwrap
 * too (AGENT_TEST_BWRAP overrides /usr/bin/bwrap; "none" skips).
 *
 * The test makes itself a child subreaper, so processes the fake agent
 * leaves behind are re-parented to it and can be reaped and counted here
 * instead of lingering as zombies of PID 1.
 */
#include "agent.h"
#include "check.h"
#include "uidlease.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* CHECK, naming the mode (plain or bwrap) on failure. */
#define ASSERT(cond)                                                          \
    do {                                                                      \
        int f_ = check_failed;                                                \
        CHECK(cond);                                                          \
        if (check_failed != f_)                                               \
            fprintf(stderr, "  (mode: %s)\n", cur_mode);                      \
    } while (0)

static const char *cur_mode = "-";

/* Per-run folders below one temporary root. */
static char root[256];
static char ws[300], home[300], bin[300], prompt[300], outp[300], errp[300];
static char secret_dir[300], secret_file[320];
static const char *bwrap;           /* NULL when sandboxed runs are skipped */

/* ---- helpers ---------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void write_file(const char *path, const char *data, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        perror(path);
        exit(2);
    }
    size_t len = strlen(data);
    if (write(fd, data, len) != (ssize_t)len) {
        perror(path);
        exit(2);
    }
    close(fd);
    if (chmod(path, mode) != 0) {
        perror(path);
        exit(2);
    }
}

/* Whole file as a NUL-terminated string (empty when missing). Caller frees. */
static char *read_file(const char *path)
{
    char *buf = calloc(1, 1);
    size_t len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return buf;
    for (;;) {
        char tmp[4096];
        ssize_t n = read(fd, tmp, sizeof(tmp));
        if (n <= 0)
            break;
        char *nb = realloc(buf, len + (size_t)n + 1);
        if (nb == NULL)
            abort();
        buf = nb;
        memcpy(buf + len, tmp, (size_t)n);
        len += (size_t)n;
        buf[len] = '\0';
    }
    close(fd);
    return buf;
}

/* 1 if text holds line as a whole line. */
static int has_line(const char *text, const char *line)
{
    size_t ll = strlen(line);
    const char *p = strstr(text, line);
    while (p != NULL) {
        if ((p == text || p[-1] == '\n') && (p[ll] == '\n' || p[ll] == '\0'))
            return 1;
        p = strstr(p + 1, line);
    }
    return 0;
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_rf(const char *path)
{
    (void)nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* Fresh workspace, home and files for one run; the fake agent is script. */
static void setup_run(const char *script)
{
    rm_rf(ws);
    rm_rf(home);
    if (mkdir(ws, 0700) != 0 || mkdir(home, 0700) != 0) {
        perror("mkdir");
        exit(2);
    }
    write_file(bin, script, 0755);
    write_file(prompt, "the prompt\nsecond line\n", 0600);
    /* Longer than anything the agent prints: truncation is checked. */
    write_file(outp, "OLD CONTENT OLD CONTENT OLD CONTENT OLD CONTENT OLD CONTENT\n"
                     "OLD CONTENT OLD CONTENT OLD CONTENT OLD CONTENT OLD CONTENT\n", 0644);
    unlink(errp);
}

static char *test_env[] = {
    "PATH=/usr/bin:/bin",
    "LANG=C.UTF-8",
    "OPENCODE_DISABLE_MODELS_FETCH=1",
    "SPACES=a b  c",
    "EQUALS=x=y=z",
    "EMPTY=",
    NULL, /* HOME=<home>, filled in main() */
    NULL,
};

static struct agent_spec make_spec(int sandboxed, int timeout_s)
{
    struct agent_spec s = {
        .opencode_bin = bin,
        .bwrap_bin = sandboxed ? bwrap : NULL,
        .workspace = ws,
        .home = home,
        .model = "test/model",
        .prompt_path = prompt,
        .stdout_path = outp,
        .stderr_path = errp,
        .env = test_env,
        .timeout_s = timeout_s,
    };
    return s;
}

/* Reaps whatever was re-parented to us; returns how many. */
static int reap_orphans(void)
{
    int n = 0;
    while (waitpid(-1, NULL, WNOHANG) > 0)
        n++;
    return n;
}

/* 1 when pid is gone (reaped here or not running), within wait_ms. */
static int pid_gone(pid_t pid, int wait_ms)
{
    int64_t end = now_ms() + wait_ms;
    for (;;) {
        reap_orphans();
        if (kill(pid, 0) != 0 && errno == ESRCH)
            return 1;
        if (now_ms() >= end)
            return 0;
        usleep(20 * 1000);
    }
}

/* Number of live (non-zombie) processes whose command line holds marker. */
static int count_cmdline(const char *marker)
{
    int n = 0;
    DIR *d = opendir("/proc");
    if (d == NULL)
        return -1;
    for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char path[300];
        snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        char buf[4096];
        ssize_t len = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (len <= 0)
            continue;
        for (ssize_t i = 0; i < len; i++)
            if (buf[i] == '\0')
                buf[i] = ' ';
        buf[len] = '\0';
        if (strstr(buf, marker) != NULL)
            n++;
    }
    closedir(d);
    return n;
}

static int marker_gone(const char *marker, int wait_ms)
{
    int64_t end = now_ms() + wait_ms;
    for (;;) {
        reap_orphans();
        if (count_cmdline(marker) == 0)
            return 1;
        if (now_ms() >= end)
            return 0;
        usleep(20 * 1000);
    }
}

/* ---- tests ------------------------------------------------------------ */

static void test_exit_code(int sb)
{
    setup_run("#!/bin/sh\nexit 7\n");
    struct agent_spec s = make_spec(sb, 30);
    struct agent_result r;
    ASSERT(agent_run(&s, NULL, NULL, &r) == 0);
    ASSERT(r.end == AGENT_EXITED);
    ASSERT(r.exit_code == 7);
    ASSERT(r.signal == 0);

    setup_run("#!/bin/sh\nexit 0\n");
    ASSERT(agent_run(&s, NULL, NULL, &r) == 0);
    ASSERT(r.end == AGENT_EXITED && r.exit_code == 0);

    /* Killed by a signal nobody here sent. */
    setup_run("#!/bin/sh\nkill -SEGV $$\nsleep 5\n");
    ASSERT(agent_run(&s, NULL, NULL, &r) == 0);
    if (sb) {
        /* bwrap reports its child's death by signal as an exit status. */
        ASSERT(r.end == AGENT_EXITED && r.exit_code != 0);
    } else {
        ASSERT(r.end == AGENT_SIGNALED && r.signal == SIGSEGV && r.exit_code == -1);
    }
}

/* stdin is the prompt, stdout/stderr land in their files (0600,
 * truncated), argv is "run -m MODEL --format json" plus the log flags, cwd the
 * workspace. */
static void test_stdio(int sb)
{
    setup_run("#!/bin/sh\ncat\necho \"args:$*\"\necho \"cwd:$(pwd)\" >&2\necho err-line >&2\n");
    struct agent_spec s = make_spec(sb, 30);
    struct agent_result r;
    /* With the worker's stdin closed, the prompt file would open as fd 0:
     * it must still arrive on the agent's stdin. */
    int saved_in = dup(STDIN_FILENO);
    close(STDIN_FILENO);
    ASSERT(agent_run(&s, NULL, NULL, &r) == 0);
    dup2(saved_in, STDIN_FILENO);
    close(saved_in);
    ASSERT(r.end == AGENT_EXITED && r.exit_code == 0);
    char *o = read_file(outp), *e = read_file(errp);
    ASSERT(strcmp(o, "the prompt\nsecond line\nargs:run -m test/model --format json --print-logs --log-level ERROR\n") == 0);
    char want[400];
    snprintf(want, sizeof(want), "cwd:%s\nerr-line\n", sb ? "/workspace" : ws);
    ASSERT(strcmp(e, want) == 0);
    struct stat st;
    ASSERT(stat(errp, &st) == 0 && (st.st_mode & 0777) == 0600);
    free(o);
    free(e);
}

/* The environment is exactly spec->env (under bwrap with HOME mapped
 * into the sandbox, plus the PWD that bwrap's --chdir sets): read from
 * /proc/$$/environ, which is what execve() handed the shell. */
static void test_env_exact(int sb)
{
    setup_run("#!/bin/sh\ntr '\\0' '\\n' < /proc/$$/environ\n");
    struct agent_spec s = make_spec(sb, 30);
    struct agent_result r;
    ASSERT(agent_run(&s, NULL, NULL, &r) == 0);
    ASSERT(r.end == AGENT_EXITED && r.exit_code == 0);
    char *o = read_file(outp);

    size_t nlines = 0;
    for (const char *p = o; *p; p++)
        if (*p == '\n')
            nlines++;
    size_t want_n = 0;
    for (size_t i = 0; test_env[i] != NULL; i++) {
        want_n++;
        if (sb && strncmp(test_env[i], "HOME=", 5) == 0) {
            ASSERT(has_line(o, "HOME=/home/agent"));
            continue;
        }
        if (!has_line(o, test_env[i])) {
            fprintf(stderr, "  missing: %s\n", test_env[i]);
            ASSERT(0);
        }
    }
    /* bwrap --chdir exports PWD=/workspace: the cwd, nothing secret. */
    if (sb && has_line(o, "PWD=/workspace"))
        want_n++;
    ASSERT(nlines == want_n);
    ASSERT(strstr(o, "AGENT_TEST_WORKER_SECRET") == NULL);
    if (nlines != want_n)
        fprintf(stderr, "  environment seen:\n%s", o);
    free(o);
}

/* Other descriptors are closed; ignored and blocked signals are reset. */
static void test_fds_and_signals(int sb)
{
    /* The mask is read with shell builtins only: while the shell waits for
     * a child it may block SIGCHLD itself, which is not what we inherit. */
    setup_run("#!/bin/sh\n[ -e /proc/$$/fd/42 ] && echo fd42=open || echo fd42=closed\n"
              "while read -r k v; do case $k in SigIgn:|SigBlk:) printf '%s\\t%s\\n' "
              "\"$k\" \"$v\";; esac; done < /proc/$$/status\n");
    int fd = open("/dev/null", O_RDONLY);    /* deliberately inheritable */
    ASSERT(fd >= 0 && dup2(fd, 42) == 42);
    signal(SIGUSR1, SIG_IGN);
    sigset_t blk, old;
    sigemptyset(&blk);
    sigaddset(&blk, SIGUSR2);
    sigprocmask(SIG_BLOCK, &blk, &old);

    struct agent_spec s = make_spec(sb, 30);
    struct agent_result r;
    ASSERT(agent_run(&s, NULL, NULL, &r) == 0);

    sigprocmask(SIG_SETMASK, &old, NULL);
    signal(SIGUSR1, SIG_DFL);
    close(42);
    close(fd);
    char *o = read_file(outp);
    ASSERT(has_line(o, "fd42=closed"));
    ASSERT(has_line(o, "SigBlk:\t0000000000000000"));
    ASSERT(has_line(o, "SigIgn:\t0000000000000000"));
    free(o);
}

/* At the timeout the whole group dies, including a grandchild that
 * ignores SIGTERM. */
static void test_timeout(int sb)
{
    char script[1024];
    char marker[64];
    snprintf(marker, sizeof(marker), "1000.%d%d", (int)getpid(), sb);
    snprintf(script, sizeof(script),
             "#!/bin/sh\n"
             "sh -c 'trap \"\" TERM; exec sleep %s' &\n"
             "echo $! > \"$HOME/gc.pid\"\n"
             "trap '' TERM\n"
             "sleep %s\n", marker, marker);
    setup_run(script);
    struct agent_spec s = make_spec(sb, 2);
    struct agent_result r;
    int64_t t0 = now_ms();
    ASSERT(agent_run(&s, NULL, NULL, &r) == 0);
    int64_t took = now_ms() - t0;
    ASSERT(r.end == AGENT_TIMED_OUT);
    ASSERT(r.exit_code == -1 && r.signal == 0);
    ASSERT(took >= 1900 && took < 6000);

    if (!sb) {
        char path[400];
        snprintf(path, sizeof(path), "%s/gc.pid", home);
        char *p = read_file(path);
        long gc = strtol(p, NULL, 10);
        free(p);
        ASSERT(gc > 1);
        if (gc > 1)
            ASSERT(pid_gone((pid_t)gc, 3000));
    }
    ASSERT(marker_gone(marker, 3000));
}

/* A normal exit still removes what the agent left running. */
static void test_stragglers(int sb)
{
    char script[1024];
    char marker[64];
    snprintf(marker, sizeof(marker), "1001.%d%d", (int)getpid(), sb);
    snprintf(script, sizeof(script),
             "#!/bin/sh\n"
             "sh -c 'trap \"\" TERM; exec sleep %s' &\n"
             "echo $! > \"$HOME/gc.pid\"\n"
             "exit 3\n", marker);
    setup_run(script);
    struct agent_spec s = make_spec(sb, 30);
    struct agent_result r;
    ASSERT(agent_run(&s, NULL, NULL, &r) == 0);
    ASSERT(r.end == AGENT_EXITED && r.exit_code == 3);
    if (!sb) {
        char path[400];
        snprintf(path, sizeof(path), "%s/gc.pid", home);
        char *p = read_file(path);
        long gc = strtol(p, NULL, 10);
        free(p);
        ASSERT(gc > 1);
        if (gc > 1)
            ASSERT(pid_gone((pid_t)gc, 3000));
    }
    ASSERT(marker_gone(marker, 3000));
}

struct tick_state {
    int calls;
    int stop_at;
};

static int tick_fn(void *arg)
{
    struct tick_state *t = arg;
    t->calls++;
    return t->calls >= t->stop_at;
}

static void test_tick_stop(int sb)
{
    char script[256];
    char marker[64];
    snprintf(marker, sizeof(marker), "1002.%d%d", (int)getpid(), sb);
    snprintf(script, sizeof(script), "#!/bin/sh\nsleep %s\n", marker);
    setup_run(script);
    struct agent_spec s = make_spec(sb, 60);
    struct agent_result r;
    struct tick_state t = { 0, 2 };
    int64_t t0 = now_ms();
    ASSERT(agent_run(&s, tick_fn, &t, &r) == 0);
    int64_t took = now_ms() - t0;
    ASSERT(r.end == AGENT_STOPPED);
    ASSERT(r.exit_code == -1);
    ASSERT(t.calls == 2);
    ASSERT(took >= 1500 && took < 5000);
    ASSERT(marker_gone(marker, 3000));
}

/* A helper child (git for a job's diff): its exit status comes back, tick
 * runs while it works (the job's lease is renewed there), and a tick that
 * asks to stop kills and reaps it. */
static pid_t spawn_sh(const char *cmd)
{
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void test_wait_helper(void)
{
    cur_mode = "helper";
    struct tick_state t = { 0, 1000 };
    int st = -1;
    ASSERT(agent_wait_helper(spawn_sh("exit 3"), 50, tick_fn, &t, &st) == 0);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 3);

    t = (struct tick_state){ 0, 1000 };
    ASSERT(agent_wait_helper(spawn_sh("sleep 0.6"), 50, tick_fn, &t, &st) == 0);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ASSERT(t.calls >= 3);                    /* ticks while it works */

    t = (struct tick_state){ 0, 2 };
    pid_t pid = spawn_sh("exec sleep 60");
    int64_t t0 = now_ms();
    ASSERT(agent_wait_helper(pid, 50, tick_fn, &t, &st) == 1);
    ASSERT(now_ms() - t0 < 10000);
    ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    ASSERT(t.calls == 2);
    ASSERT(kill(pid, 0) != 0 && errno == ESRCH);   /* reaped */
}

/* Bad input is refused before anything starts. */
static void test_start_errors(void)
{
    setup_run("#!/bin/sh\nexit 0\n");
    struct agent_result r;
    struct agent_spec s = make_spec(0, 30);
    s.timeout_s = 0;
    ASSERT(agent_run(&s, NULL, NULL, &r) == -EINVAL);
    s = make_spec(0, 30);
    s.workspace = "relative";
    ASSERT(agent_run(&s, NULL, NULL, &r) == -EINVAL);
    s = make_spec(0, 30);
    ASSERT(agent_run(&s, NULL, NULL, NULL) == -EINVAL);
    ASSERT(agent_run(NULL, NULL, NULL, &r) == -EINVAL);

    s = make_spec(0, 30);
    s.prompt_path = "/nonexistent/prompt";
    ASSERT(agent_run(&s, NULL, NULL, &r) == -ENOENT);

    s = make_spec(0, 30);
    s.opencode_bin = "/nonexistent/opencode";
    ASSERT(agent_run(&s, NULL, NULL, &r) == -ENOENT);
    ASSERT(reap_orphans() == 0);        /* the failed child was reaped */

    /* A symlink in place of the output file is not followed. */
    char link[400], target[400];
    snprintf(link, sizeof(link), "%s/link.out", root);
    snprintf(target, sizeof(target), "%s/target.out", root);
    unlink(link);
    ASSERT(symlink(target, link) == 0);
    s = make_spec(0, 30);
    s.stdout_path = link;
    ASSERT(agent_run(&s, NULL, NULL, &r) == -ELOOP);
    struct stat st;
    ASSERT(stat(target, &st) != 0);
    unlink(link);

    s = make_spec(0, 30);
    s.workspace = "/nonexistent/ws";
    ASSERT(agent_run(&s, NULL, NULL, &r) == -ENOENT);

    char *bad_env[] = { "PATH=/bin", "NOEQUALS", NULL };
    s = make_spec(1, 30);
    s.bwrap_bin = "/usr/bin/bwrap";
    s.env = bad_env;
    ASSERT(agent_run(&s, NULL, NULL, &r) == -EINVAL);

}

/* bwrap cannot bind a missing binary: it exits non-zero (indistinguishable
 * from the agent failing, which is why the worker logs stderr). */
static void test_start_errors_bwrap(void)
{
    setup_run("#!/bin/sh\nexit 0\n");
    struct agent_result r;
    struct agent_spec s = make_spec(1, 30);
    s.opencode_bin = "/nonexistent/opencode";
    ASSERT(agent_run(&s, NULL, NULL, &r) == 0);
    ASSERT(r.end == AGENT_EXITED && r.exit_code != 0);
}

/* Under bwrap: no secret outside the workspace, no writes outside the
 * workspace and home, its own PID namespace, no capabilities. */
static void test_sandbox_isolation(void)
{
    char script[4096];
    char tmp_probe[128];
    snprintf(tmp_probe, sizeof(tmp_probe), "/tmp/agent_run_probe_%d", (int)getpid());
    unlink(tmp_probe);
    snprintf(script, sizeof(script),
             "#!/bin/sh\n"
             "if cat '%s' 2>/dev/null; then echo secret=visible; else echo secret=hidden; fi\n"
             "if ls '%s' >/dev/null 2>&1; then echo secretdir=visible; else echo secretdir=hidden; fi\n"
             "if (echo x > '%s/new') 2>/dev/null; then echo secretwrite=ok; else echo secretwrite=fail; fi\n"
             "if (echo x > /usr/.agent_run_probe) 2>/dev/null; then echo usr=writable; else echo usr=ro; fi\n"
             "if (: >> /etc/hosts) 2>/dev/null; then echo etc=writable; else echo etc=ro; fi\n"
             "if (echo x > '%s') 2>/dev/null; then echo tmp=ok; else echo tmp=fail; fi\n"
             "echo ok > /workspace/w.txt && echo ws=ok\n"
             "echo ok > \"$HOME/h.txt\" && echo home=ok\n"
             "echo procs=$(ls /proc | grep -c '^[0-9]')\n"
             "grep '^CapEff:' /proc/self/status\n"
             "[ -e '%s' ] && echo worker_root=visible || echo worker_root=hidden\n",
             secret_file, secret_dir, secret_dir, tmp_probe, root);
    setup_run(script);
    struct agent_spec s = make_spec(1, 30);
    struct agent_result r;
    ASSERT(agent_run(&s, NULL, NULL, &r) == 0);
    ASSERT(r.end == AGENT_EXITED && r.exit_code == 0);
    char *o = read_file(outp);
    ASSERT(has_line(o, "secret=hidden"));
    ASSERT(strstr(o, "TOP SECRET") == NULL);
    ASSERT(has_line(o, "secretdir=hidden"));
    ASSERT(has_line(o, "secretwrite=fail"));
    ASSERT(has_line(o, "usr=ro"));
    ASSERT(has_line(o, "etc=ro"));
    ASSERT(has_line(o, "tmp=ok"));      /* its private tmpfs */
    ASSERT(has_line(o, "ws=ok"));
    ASSERT(has_line(o, "home=ok"));
    ASSERT(has_line(o, "CapEff:\t0000000000000000"));
    ASSERT(has_line(o, "worker_root=hidden"));
    const char *pl = strstr(o, "procs=");
    long procs = pl ? strtol(pl + 6, NULL, 10) : -1;
    ASSERT(procs >= 1 && procs <= 10);
    if (!has_line(o, "secret=hidden") || procs > 10)
        fprintf(stderr, "  sandbox output:\n%s", o);
    free(o);

    /* Nothing landed on the host outside the workspace and home. */
    char path[512];
    struct stat st;
    snprintf(path, sizeof(path), "%s/new", secret_dir);
    ASSERT(stat(path, &st) != 0);
    ASSERT(stat(tmp_probe, &st) != 0);
    ASSERT(stat("/usr/.agent_run_probe", &st) != 0);
    unlink("/usr/.agent_run_probe");
    unlink(tmp_probe);
    snprintf(path, sizeof(path), "%s/w.txt", ws);
    ASSERT(stat(path, &st) == 0);
    snprintf(path, sizeof(path), "%s/h.txt", home);
    ASSERT(stat(path, &st) == 0);
}

/* Unsandboxed, the same script does see the secret: the test above
 * measures the sandbox, not a broken script. */
static void test_unsandboxed_sees_secret(void)
{
    char script[1024];
    snprintf(script, sizeof(script), "#!/bin/sh\ncat '%s'\n", secret_file);
    setup_run(script);
    struct agent_spec s = make_spec(0, 30);
    struct agent_result r;
    ASSERT(agent_run(&s, NULL, NULL, &r) == 0);
    char *o = read_file(outp);
    ASSERT(strstr(o, "TOP SECRET") != NULL);
    free(o);
}

/* ---- containment: own uid, rlimits, seccomp (root only) -------------- */

static char lock_dir[300], cg_procs[300];

/* Python inside the sandbox calls the raw system calls and prints
 * "name=<errno>" (0: it worked). */
static const char confined_probe[] =
    "import ctypes, os\n"
    "l = ctypes.CDLL(None, use_errno=True)\n"
    "def call(name, *a):\n"
    "    ctypes.set_errno(0)\n"
    "    r = l.syscall(*a)\n"
    "    print('%s=%d' % (name, ctypes.get_errno() if r == -1 else 0))\n"
    "call('ptrace', 101, 0, 0, 0, 0)\n"
    "call('keyctl', 250, 0, -3, 0)\n"
    "call('mount', 165, b'none', b'/tmp', b'tmpfs', 0, 0)\n"
    "call('bpf', 321, 0, 0, 0)\n"
    "call('unshare_user', 272, 0x10000000)\n";

static void test_confined(int sb, uid_t uid)
{
    char script[4096], probe_path[400];
    snprintf(probe_path, sizeof(probe_path), "%s/probe.py", ws);
    snprintf(script, sizeof(script),
             "#!/bin/bash\n"
             "echo uid=$(id -u) gid=$(id -g) groups=$(id -G)\n"
             "echo nproc=$(ulimit -u) nofile=$(ulimit -n) fsize=$(ulimit -f) core=$(ulimit -c)\n"
             "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status\n"
             "echo nice=$(cut -d' ' -f19 /proc/self/stat)\n"
             "echo x > \"$HOME/h.txt\" && echo home=ok\n"
             "echo x > w.txt && echo ws=ok\n"
             "head -c 3000000 /dev/zero > /tmp/big 2>/dev/null && echo tmpbig=ok || echo tmpbig=fail\n"
             "python3 probe.py\n"
             "sleep 1000.%d%d &\n"
             "exit 0\n", (int)getpid(), sb);
    setup_run(script);
    write_file(probe_path, confined_probe, 0644);
    if (chown(ws, uid, uid) != 0 || chown(home, uid, uid) != 0 || chown(probe_path, uid, uid) != 0)
        perror("chown");
    write_file(cg_procs, "", 0644);
    struct agent_limits lim = { .nproc = 300, .fsize_mb = 5, .nofile = 200, .nice = 7,
                                .tmp_mb = 2, .seccomp = 1, .disable_userns = 1 };
    struct agent_spec s = make_spec(sb, 30);
    s.drop = 1;
    s.uid = uid;
    s.gid = uid;
    s.limits = &lim;
    s.cgroup_procs = cg_procs;
    struct agent_result r;
    int failed_before = check_failed;
    ASSERT(agent_run(&s, NULL, NULL, &r) == 0);
    ASSERT(r.end == AGENT_EXITED && r.exit_code == 0);
    char *o = read_file(outp);
    char want[64];
    snprintf(want, sizeof(want), "uid=%u gid=%u groups=%u", (unsigned)uid, (unsigned)uid,
             (unsigned)uid);
    ASSERT(has_line(o, want));
    ASSERT(has_line(o, "nproc=300 nofile=200 fsize=5120 core=0"));
    ASSERT(has_line(o, "NoNewPrivs:\t1"));
    ASSERT(has_line(o, "nice=7"));
    ASSERT(has_line(o, "home=ok") && has_line(o, "ws=ok"));
    ASSERT(has_line(o, "tmpbig=fail"));         /* 2 MiB: the stage or bwrap --size */
    if (sb) {
        ASSERT(has_line(o, "ptrace=1"));
        ASSERT(has_line(o, "Seccomp:\t2"));
        ASSERT(has_line(o, "keyctl=1"));
        ASSERT(has_line(o, "bpf=1"));
        ASSERT(has_line(o, "unshare_user=1"));
    }
    ASSERT(strstr(o, "mount=0") == NULL);
    if (check_failed != failed_before)
        fprintf(stderr, "  confined output:\n%s\n  log:\n%s", o, read_file(errp));
    free(o);
    /* Its files are the uid's; it moved itself into the "cgroup". */
    char path[400];
    struct stat st;
    snprintf(path, sizeof(path), "%s/w.txt", ws);
    ASSERT(stat(path, &st) == 0 && st.st_uid == uid);
    char *cg = read_file(cg_procs);
    ASSERT(strcmp(cg, "0\n") == 0);
    free(cg);
    /* The background sleep was killed with the uid. */
    snprintf(want, sizeof(want), "1000.%d%d", (int)getpid(), sb);
    ASSERT(marker_gone(want, 3000));
}

static void test_containment(void)
{
    if (geteuid() != 0) {
        fprintf(stderr, "not root: containment tests SKIPPED\n");
        return;
    }
    snprintf(lock_dir, sizeof(lock_dir), "%s/uids", root);
    snprintf(cg_procs, sizeof(cg_procs), "%s/cgroup.procs", root);
    struct uid_lease l = UID_LEASE_NONE;
    ASSERT(uidlease_acquire(lock_dir, 61000, 61099, &l) == 0);
    cur_mode = "plain+uid";
    test_confined(0, l.uid);
    if (bwrap != NULL) {
        cur_mode = "bwrap+uid";
        test_confined(1, l.uid);
    }
    uidlease_release(&l);
}

/* bwrap works here (user namespaces may be unavailable in a container). */
static int bwrap_works(const char *path)
{
    if (access(path, X_OK) != 0)
        return 0;
    pid_t pid = fork();
    if (pid < 0)
        return 0;
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 1);
            dup2(null, 2);
        }
        char *const argv[] = { (char *)path, "--unshare-all", "--die-with-parent",
                               "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin",
                               "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
                               "--proc", "/proc", "--", "/usr/bin/true", NULL };
        char *const envp[] = { NULL };
        execve(path, argv, envp);
        _exit(127);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid)
        return 0;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static void run_all(int sb)
{
    cur_mode = sb ? "bwrap" : "plain";
    test_exit_code(sb);
    test_stdio(sb);
    test_env_exact(sb);
    test_fds_and_signals(sb);
    test_timeout(sb);
    test_stragglers(sb);
    test_tick_stop(sb);
}

int main(void)
{
    /* Orphans of the fake agent come to us (see the top comment). */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
        perror("PR_SET_CHILD_SUBREAPER");
    /* Must never reach the agent: the environment is spec->env only. */
    setenv("AGENT_TEST_WORKER_SECRET", "hunter2", 1);

    snprintf(root, sizeof(root), "/tmp/test_agent_run.XXXXXX");
    if (mkdtemp(root) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    snprintf(ws, sizeof(ws), "%s/ws", root);
    snprintf(home, sizeof(home), "%s/home", root);
    snprintf(bin, sizeof(bin), "%s/opencode", root);
    snprintf(prompt, sizeof(prompt), "%s/prompt.txt", root);
    snprintf(outp, sizeof(outp), "%s/stdout.jsonl", root);
    snprintf(errp, sizeof(errp), "%s/stderr.log", root);
    snprintf(secret_dir, sizeof(secret_dir), "%s/secret", root);
    snprintf(secret_file, sizeof(secret_file), "%s/secret.txt", secret_dir);
    if (mkdir(secret_dir, 0700) != 0) {
        perror("mkdir");
        return 2;
    }
    write_file(secret_file, "TOP SECRET\n", 0600);

    static char home_env[320];
    snprintf(home_env, sizeof(home_env), "HOME=%s", home);
    test_env[6] = home_env;

    /* First, while no other child of ours exists: reap_orphans() there
     * must find nothing. */
    cur_mode = "plain";
    test_start_errors();

    const char *bw = getenv("AGENT_TEST_BWRAP");
    if (bw == NULL)
        bw = "/usr/bin/bwrap";
    if (strcmp(bw, "none") != 0 && bwrap_works(bw))
        bwrap = bw;
    else
        fprintf(stderr, "bwrap not usable here: sandboxed tests SKIPPED\n");

    test_unsandboxed_sees_secret();
    run_all(0);
    if (bwrap != NULL) {
        run_all(1);
        cur_mode = "bwrap";
        test_start_errors_bwrap();
        test_sandbox_isolation();
    }
    test_containment();
    test_wait_helper();
    reap_orphans();
    rm_rf(root);
    return check_report();
}
