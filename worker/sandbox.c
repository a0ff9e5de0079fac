/* sandbox.c - see sandbox.h. */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sched.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "timefmt.h"
#include "watchdog.h"

/* ------------------------------------------------------------------ */
/* Child side (async-signal-safe only)                                 */
/* ------------------------------------------------------------------ */

void sandbox_stage_opts(struct sandbox_child *c, long tmp_mb)
{
    snprintf(c->stage_opts, sizeof(c->stage_opts), "mode=1777,size=%ldm",
             tmp_mb > 0 ? tmp_mb : 1);
}

int sandbox_stage_paths(const char *work, const char *home, const char *bin,
                        struct sandbox_stage *st)
{
    int a = snprintf(st->work, sizeof(st->work), "%s%s", SANDBOX_STAGE_WORK, work);
    int b = snprintf(st->home, sizeof(st->home), "%s%s", SANDBOX_STAGE_HOME, home);
    int c = snprintf(st->bin, sizeof(st->bin), "%s%s", SANDBOX_STAGE_BIN, bin);
    if (a < 0 || b < 0 || c < 0 || (size_t)a >= sizeof(st->work) ||
        (size_t)b >= sizeof(st->home) || (size_t)c >= sizeof(st->bin))
        return -ENAMETOOLONG;
    memcpy(st->gw, SANDBOX_STAGE_GW, sizeof(SANDBOX_STAGE_GW));
    return 0;
}

/* mkdir -p of target's parent folders (0755), on the stage's tmpfs. */
static int sandbox_mkdir_parents(const char *target)
{
    char buf[PATH_MAX];
    size_t n = strlen(target);
    if (n >= sizeof(buf))
        return ENAMETOOLONG;
    memcpy(buf, target, n + 1);
    for (size_t i = 1; i < n; i++) {
        if (buf[i] != '/')
            continue;
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return errno;
        buf[i] = '/';
    }
    return 0;
}

/* Bind-mounts the folder or file open at fd onto target (created). */
static int sandbox_bind_fd(const char *fdpath, const char *target, int is_dir)
{
    int rc = sandbox_mkdir_parents(target);
    if (rc != 0)
        return rc;
    if (is_dir) {
        if (mkdir(target, 0755) != 0)
            return errno;
    } else {
        int fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
        if (fd < 0)
            return errno;
        close(fd);
    }
    /* A /proc/self/fd link is followed to the open file itself: no path
     * lookup, so the worker's private folders above it do not matter. */
    if (mount(fdpath, target, NULL, MS_BIND, NULL) != 0)
        return errno;
    return 0;
}

/* "/proc/self/fd/N" into buf (at least 32 bytes), without stdio. */
static const char *sandbox_fd_path(int fd, char *buf)
{
    static const char pre[] = "/proc/self/fd/";
    char digits[16];
    int n = 0;
    do {
        digits[n++] = (char)('0' + fd % 10);
        fd /= 10;
    } while (fd > 0 && n < (int)sizeof(digits));
    memcpy(buf, pre, sizeof(pre) - 1);
    for (int i = 0; i < n; i++)
        buf[sizeof(pre) - 1 + i] = digits[n - 1 - i];
    buf[sizeof(pre) - 1 + n] = '\0';
    return buf;
}

/* Opens path (as root, in the child's new mount namespace: a bind
 * source must be a mount of the caller's namespace) at fd number at. */
static int sandbox_open_at(const char *path, int flags, int at)
{
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0)
        return errno;
    if (fd != at) {
        if (dup3(fd, at, O_CLOEXEC) < 0)
            return errno;
        close(fd);
    }
    return 0;
}

/* The stage: a private mount namespace, a tmpfs over /tmp, the three
 * binds. Nothing of it is visible outside the child. The sources are
 * opened before the tmpfs hides what lies below /tmp. */
static int sandbox_child_stage(const struct sandbox_child *c)
{
    if (unshare(CLONE_NEWNS) != 0)
        return errno;
    if (mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        return errno;
    const int dir = O_PATH | O_DIRECTORY | O_NOFOLLOW;
    char path[32];
    int rc = sandbox_open_at(c->work, dir, SANDBOX_FD_WORK);
    if (rc == 0)
        rc = sandbox_open_at(c->home, dir, SANDBOX_FD_HOME);
    /* The binary is the operator's: its symlinks are followed. */
    if (rc == 0)
        rc = sandbox_open_at(c->bin, O_PATH, SANDBOX_FD_BIN);
    /* The gateway's socket (a file of the worker's, 0666): any free
     * number above the fixed ones, closed once bound. */
    int gfd = -1;
    if (rc == 0 && c->gw != NULL) {
        int fd = open(c->gw, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        gfd = fd < 0 ? -1 : fcntl(fd, F_DUPFD_CLOEXEC, SANDBOX_FD_FIRST_FREE);
        if (gfd < 0)
            rc = errno;
        if (fd >= 0)
            close(fd);
    }
    if (rc != 0)
        return rc;
    if (mount("agent-stage", SANDBOX_STAGE, "tmpfs", MS_NOSUID | MS_NODEV, c->stage_opts) != 0)
        return errno;
    rc = sandbox_bind_fd("/proc/self/fd/6", c->at->work, 1);
    if (rc == 0)
        rc = sandbox_bind_fd("/proc/self/fd/7", c->at->home, 1);
    if (rc == 0)
        rc = sandbox_bind_fd("/proc/self/fd/8", c->at->bin, 0);
    if (rc == 0 && gfd >= 0)
        rc = sandbox_bind_fd(sandbox_fd_path(gfd, path), c->at->gw, 0);
    if (gfd >= 0)
        close(gfd);
    return rc;
}

static int sandbox_child_rlimits(const struct sandbox_child *c)
{
    const struct { int res; rlim_t v; } lims[] = {
        { RLIMIT_NPROC, c->nproc }, { RLIMIT_FSIZE, c->fsize }, { RLIMIT_NOFILE, c->nofile },
    };
    for (size_t i = 0; i < sizeof(lims) / sizeof(lims[0]); i++) {
        if (lims[i].v == 0)
            continue;
        struct rlimit rl = { lims[i].v, lims[i].v };
        if (setrlimit(lims[i].res, &rl) != 0)
            return errno;
    }
    struct rlimit core = { 0, 0 };
    if (setrlimit(RLIMIT_CORE, &core) != 0)
        return errno;
    if (c->nice != 0 && setpriority(PRIO_PROCESS, 0, c->nice) != 0)
        return errno;
    return 0;
}

/* Raw system calls: they change only this (single) thread, with no
 * library state to synchronise, which is what fork()'s child may do. */
static int sandbox_child_drop(const struct sandbox_child *c)
{
    if (syscall(SYS_setgroups, 0, NULL) != 0)
        return errno;
    if (syscall(SYS_setresgid, c->gid, c->gid, c->gid) != 0)
        return errno;
    if (syscall(SYS_setresuid, c->uid, c->uid, c->uid) != 0)
        return errno;
    return 0;
}

int sandbox_child_confine(const struct sandbox_child *c)
{
    int rc = 0;
    /* Into the job's cgroup first, so everything after is charged there. */
    if (c->cgroup && write(SANDBOX_FD_CGROUP, "0\n", 2) != 2)
        return errno ? errno : EIO;
    if (c->stage && (rc = sandbox_child_stage(c)) != 0)
        return rc;
    if ((rc = sandbox_child_rlimits(c)) != 0)
        return rc;
    if (c->drop && (rc = sandbox_child_drop(c)) != 0)
        return rc;
    return 0;
}

int sandbox_child_no_new_privs(void)
{
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ? errno : 0;
}

/* ------------------------------------------------------------------ */
/* Seccomp                                                              */
/* ------------------------------------------------------------------ */

/* Denied with EPERM: reading or changing other processes, the kernel's
 * keyrings, mounts, eBPF, page-fault and perf interfaces, modules, kexec,
 * reboot, swap and process accounting. */
static const char *const sandbox_denied[] = {
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "keyctl", "add_key",
    "request_key", "mount", "umount2", "pivot_root", "fsopen", "fsconfig", "fsmount",
    "fspick", "move_mount", "open_tree", "mount_setattr", "bpf", "userfaultfd",
    "perf_event_open", "init_module", "finit_module", "delete_module", "kexec_load",
    "kexec_file_load", "reboot", "swapon", "swapoff", "acct", "open_by_handle_at",
    "name_to_handle_at", "quotactl", "syslog", "lookup_dcookie", "uselib",
};

static int sandbox_seccomp_rules(scmp_filter_ctx ctx)
{
    for (size_t i = 0; i < sizeof(sandbox_denied) / sizeof(sandbox_denied[0]); i++) {
        int nr = seccomp_syscall_resolve_name(sandbox_denied[i]);
        if (nr == __NR_SCMP_ERROR)
            continue;        /* not on this architecture */
        int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
        if (rc != 0)
            return rc;
    }
    /* New user namespaces (bwrap --disable-userns does it too, where it
     * can): the flags are the first argument of both calls. clone3()
     * passes them in memory that a filter cannot read; bwrap's
     * --disable-userns covers it. */
    int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(unshare), 1,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER));
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER));
    return rc;
}

int sandbox_seccomp_fd(void)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (ctx == NULL)
        return -ENOMEM;
    int fd = -1;
    int rc = sandbox_seccomp_rules(ctx);
    if (rc == 0) {
        fd = memfd_create("agent-seccomp", MFD_CLOEXEC);
        rc = fd < 0 ? -errno : seccomp_export_bpf(ctx, fd);
    }
    if (rc == 0 && lseek(fd, 0, SEEK_SET) != 0)
        rc = -errno;
    if (rc == 0) {
        int hi = fcntl(fd, F_DUPFD_CLOEXEC, SANDBOX_FD_FIRST_FREE);
        rc = hi < 0 ? -errno : 0;
        close(fd);
        fd = hi;
    }
    seccomp_release(ctx);
    if (rc != 0) {
        if (fd >= 0)
            close(fd);
        return rc < 0 ? rc : -EINVAL;
    }
    return fd;
}

int sandbox_probe_disable_userns(const char *bwrap)
{
    pid_t pid = fork();
    if (pid < 0)
        return 0;
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 1);
            dup2(null, 2);
        }
        char *const argv[] = { (char *)bwrap, "--unshare-all", "--unshare-user",
                               "--disable-userns", "--die-with-parent", "--ro-bind", "/", "/",
                               "--proc", "/proc", "--", "/bin/true", NULL };
        char *const envp[] = { "PATH=/usr/bin:/bin", NULL };
        execve(bwrap, argv, envp);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return 0;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* ------------------------------------------------------------------ */
/* Killing a uid                                                        */
/* ------------------------------------------------------------------ */

/* How long sandbox_kill_uid() waits for the processes to be gone. */
#define SANDBOX_KILL_WAIT_MS 15000

/* One kill(-1, SIGKILL) as uid, from a helper process. */
static void sandbox_kill_round(uid_t uid)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = fork();
    if (pid == 0) {
        if (syscall(SYS_setgroups, 0, NULL) != 0 ||
            syscall(SYS_setresgid, (gid_t)uid, (gid_t)uid, (gid_t)uid) != 0 ||
            syscall(SYS_setresuid, uid, uid, uid) != 0)
            _exit(1);
        /* Every process this uid may signal: its own, and no other. */
        (void)kill(-1, SIGKILL);
        _exit(0);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        log_warn("sandbox.kill_uid", "uid=%u errno=%d", (unsigned)uid, errno);
        return;
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
}

int sandbox_kill_uid(uid_t uid)
{
    if (uid == 0)
        return -EINVAL;
    /* A killed process stays in /proc until it has freed its memory,
     * which takes a while for a large one: wait for that too (the next
     * job of this uid would otherwise be charged for it). */
    const int64_t deadline = time_mono_ms() + SANDBOX_KILL_WAIT_MS;
    for (int round = 0;; round++) {
        struct wd_usage u;
        if (watchdog_scan("/proc", uid, &u) == 0 && u.procs == 0)
            return 0;
        if (time_mono_ms() > deadline)
            break;
        sandbox_kill_round(uid);
        if (round > 0) {
            struct timespec ts = { 0, 20 * 1000000L };
            nanosleep(&ts, NULL);
        }
    }
    log_warn("sandbox.kill_uid", "uid=%u reason=\"processes left after %d ms\"", (unsigned)uid,
             SANDBOX_KILL_WAIT_MS);
    return -EBUSY;
}
