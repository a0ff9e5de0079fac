/*
 * test_sandbox.c - unit tests for the worker's containment modules: the
 * uid leases (uidlease.c), the watchdog's /proc sums (watchdog.c), the
 * cgroup folder against a fake one of plain files (cgroup.c: no real
 * cgroup is ever touched), the seccomp export and the uid sweep
 * (sandbox.c). The parts that change uids run only as root.
 */
#include "cgroup.h"
#include "check.h"
#include "sandbox.h"
#include "testfs.h"
#include "uidlease.h"
#include "watchdog.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char root[256];

static void put(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        perror(path);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
}

static const char *get(const char *dir, const char *name)
{
    return tfs_read(tfs_path(dir, name));
}

static void test_uidlease(void)
{
    char dir[300];
    snprintf(dir, sizeof(dir), "%s/locks/deeper", root);
    struct uid_lease a = UID_LEASE_NONE, b = UID_LEASE_NONE, c = UID_LEASE_NONE;
    /* Two leases in one process and one folder: two uids. */
    CHECK(uidlease_acquire(dir, 70000, 70001, &a) == 0);
    CHECK(uidlease_acquire(dir, 70000, 70001, &b) == 0);
    CHECK(a.uid != b.uid && a.uid >= 70000 && a.uid <= 70001 && b.uid >= 70000 && b.uid <= 70001);
    /* The range is used up. */
    CHECK(uidlease_acquire(dir, 70000, 70001, &c) == -EAGAIN);
    CHECK(c.fd == -1);
    /* A released uid is leased again. */
    uid_t freed = a.uid;
    uidlease_release(&a);
    CHECK(a.fd == -1);
    CHECK(uidlease_acquire(dir, 70000, 70001, &c) == 0 && c.uid == freed);
    struct stat st;
    CHECK(stat(dir, &st) == 0 && (st.st_mode & 0777) == 0700);
    uidlease_release(&b);
    uidlease_release(&c);
    uidlease_release(&c);            /* twice is harmless */

    /* Another process holding a uid: not leased here. */
    pid_t pid = fork();
    if (pid == 0) {
        struct uid_lease l;
        _exit(uidlease_acquire(dir, 70000, 70000, &l) == 0 ? (sleep(2), 0) : 1);
    }
    usleep(300 * 1000);
    CHECK(uidlease_acquire(dir, 70000, 70000, &c) == -EAGAIN);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    /* Its lock went with it. */
    CHECK(uidlease_acquire(dir, 70000, 70000, &c) == 0 && c.uid == 70000);
    uidlease_release(&c);

    /* A folder that cannot be created: a clear error, no lease. */
    char bad[320];
    snprintf(bad, sizeof(bad), "%s/file", root);
    put(root, "file", "x");
    snprintf(bad, sizeof(bad), "%s/file/locks", root);
    CHECK(uidlease_acquire(bad, 70000, 70001, &c) == -ENOTDIR);
    CHECK(c.fd == -1);
    CHECK(uidlease_acquire(dir, 0, 5, &c) == -EINVAL);
    CHECK(uidlease_acquire(dir, 10, 5, &c) == -EINVAL);
}

/* VmRSS of pid in KiB, 0 when unreadable. */
static uint64_t proc_rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    unsigned long long kb = 0;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %llu kB", &kb) == 1)
            break;
    if (f != NULL)
        fclose(f);
    return kb;
}

/* A child that holds about mb MiB resident and burns CPU for ms. */
static pid_t spawn_hog(uid_t uid, int mb, int burn_ms)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    if (uid != 0 && (syscall(SYS_setresgid, uid, uid, uid) != 0 ||
                     syscall(SYS_setresuid, uid, uid, uid) != 0))
        _exit(1);
    /* Touched through a volatile pointer: an optimising build would
     * otherwise drop a buffer nothing reads, and no page would be resident. */
    volatile char *p = malloc((size_t)mb << 20);
    if (p == NULL)
        _exit(1);
    for (size_t i = 0; i < ((size_t)mb << 20); i += 4096)
        p[i] = 1;
    struct timespec t0, t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
    volatile unsigned long x = 0;
    do {
        for (int i = 0; i < 100000; i++)
            x += (unsigned long)i;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    } while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < burn_ms);
    pause();
    _exit(0);
}

static void test_watchdog(void)
{
    if (geteuid() != 0) {
        fprintf(stderr, "not root: watchdog uid tests SKIPPED\n");
        return;
    }
    const uid_t uid = 70100;
    struct wd_usage u;
    CHECK(watchdog_scan("/proc", uid, &u) == 0 && u.procs == 0 && u.rss_kb == 0);
    pid_t a = spawn_hog(uid, 40, 600);
    pid_t b = spawn_hog(uid, 30, 600);
    /* Each burns 600 ms of CPU time: wait (a loaded machine is slow). */
    for (int i = 0; i < 200; i++) {
        CHECK(watchdog_scan("/proc", uid, &u) == 0);
        if (u.cpu_ms >= 1150)
            break;
        usleep(50 * 1000);
    }
    CHECK(u.procs == 2 && u.tasks == 2);
    /* The sum of both children's resident memory. Each also counts the
     * pages it shares with this process since fork (more under a
     * sanitizer), so the bound above is what they report themselves. */
    uint64_t own_kb = proc_rss_kb(a) + proc_rss_kb(b);
    CHECK(u.rss_kb >= 70 * 1024 && u.rss_kb + 4096 >= own_kb && u.rss_kb <= own_kb + 4096);
    CHECK(u.cpu_ms >= 1150 && u.cpu_ms < 5000);
    if (u.rss_kb < 70 * 1024 || u.rss_kb > own_kb + 4096 || u.cpu_ms < 1150)
        fprintf(stderr, "  rss_kb=%llu own=%llu cpu_ms=%llu\n", (unsigned long long)u.rss_kb,
                (unsigned long long)own_kb, (unsigned long long)u.cpu_ms);

    char msg[256];
    struct watchdog wd = { .by_uid = 1, .uid = uid, .max_memory_mb = 64, .max_procs = 100,
                           .max_cpu_s = 100, .disk_every = 1 };
    CHECK(watchdog_check(&wd, msg, sizeof(msg)) == JOBERR_MEMORY_LIMIT);
    CHECK(strcmp(msg, "the job used more than 64 MiB of memory (JOB_MAX_MEMORY_MB)") == 0);
    wd.max_memory_mb = 1000;
    wd.max_procs = 2;
    CHECK(watchdog_check(&wd, msg, sizeof(msg)) == JOBERR_PROCESS_LIMIT);
    CHECK(strstr(msg, "JOB_MAX_PROCS") != NULL);
    wd.max_procs = 100;
    CHECK(watchdog_check(&wd, msg, sizeof(msg)) == JOBERR_NONE);
    wd.max_cpu_s = 1;
    usleep(100 * 1000);
    enum joberr e = watchdog_check(&wd, msg, sizeof(msg));
    CHECK(e == JOBERR_CPU_LIMIT || wd.cpu_ms_max <= 1000);

    /* The sweep kills both, and nothing else. */
    pid_t mine = spawn_hog(0, 1, 0);
    CHECK(sandbox_kill_uid(uid) == 0);
    CHECK(waitpid(a, NULL, 0) == a && waitpid(b, NULL, 0) == b);
    CHECK(watchdog_scan("/proc", uid, &u) == 0 && u.procs == 0);
    CHECK(kill(mine, 0) == 0);
    kill(mine, SIGKILL);
    waitpid(mine, NULL, 0);
    CHECK(sandbox_kill_uid(0) == -EINVAL);
}

static void test_watchdog_disk(void)
{
    char ws[300], home[300];
    snprintf(ws, sizeof(ws), "%s/ws", root);
    snprintf(home, sizeof(home), "%s/home", root);
    mkdir(ws, 0700);
    mkdir(home, 0700);
    char big[400];
    snprintf(big, sizeof(big), "%s/big", ws);
    int fd = open(big, O_WRONLY | O_CREAT, 0600);
    CHECK(fd >= 0 && ftruncate(fd, 3L << 20) == 0);   /* sparse: counts whole */
    close(fd);
    char msg[256];
    struct watchdog wd = { .max_disk_mb = 4, .max_disk_files = 1000, .disk_every = 2,
                           .dirs = { ws, home }, .max_memory_mb = 1 };
    CHECK(watchdog_check(&wd, msg, sizeof(msg)) == JOBERR_NONE);
    put(home, "h", "0123456789");
    snprintf(big, sizeof(big), "%s/big2", home);
    fd = open(big, O_WRONLY | O_CREAT, 0600);
    CHECK(fd >= 0 && ftruncate(fd, 2L << 20) == 0);
    close(fd);
    /* Every second check walks the disk. */
    CHECK(watchdog_check(&wd, msg, sizeof(msg)) == JOBERR_NONE);
    CHECK(watchdog_check(&wd, msg, sizeof(msg)) == JOBERR_DISK_LIMIT);
    CHECK(strcmp(msg, "the job's workspace and HOME held more than 4 MiB (JOB_MAX_DISK_MB)") == 0);
}

static void test_cgroup_fake(void)
{
    char cgroot[300];
    snprintf(cgroot, sizeof(cgroot), "%s/cgroot", root);
    CHECK(mkdir(cgroot, 0755) == 0);
    struct cgroup_job cg;
    struct cgroup_limits l = { 512, 300, 2 };
    CHECK(cgroup_job_create(cgroot, "job-j1-t1", &l, &cg) == 0);
    CHECK(strstr(cg.dir, "/cgroot/job-j1-t1") != NULL);
    CHECK(strcmp(get(cg.dir, "memory.max"), "536870912\n") == 0);
    CHECK(strcmp(get(cg.dir, "pids.max"), "300\n") == 0);
    CHECK(strcmp(get(cg.dir, "cpu.max"), "200000 100000\n") == 0);
    CHECK(strcmp(get(cg.dir, "memory.oom.group"), "1\n") == 0);
    /* A second job of the same name is refused, nothing replaced. */
    struct cgroup_job dup;
    CHECK(cgroup_job_create(cgroot, "job-j1-t1", &l, &dup) == -EEXIST && dup.dir[0] == '\0');
    CHECK(cgroup_job_create(cgroot, "a/b", &l, &dup) != 0);

    /* The child's write goes to cgroup.procs. */
    put(cg.dir, "cgroup.procs", "");
    int fd = cgroup_job_procs_fd(&cg);
    CHECK(fd >= 0 && write(fd, "0\n", 2) == 2);
    close(fd);
    CHECK(strcmp(get(cg.dir, "cgroup.procs"), "0\n") == 0);

    CHECK(cgroup_job_outcome(&cg) == JOBERR_NONE);
    put(cg.dir, "memory.events", "low 0\nhigh 0\nmax 12\noom 1\noom_kill 0\n");
    put(cg.dir, "pids.events", "max 0\n");
    CHECK(cgroup_job_outcome(&cg) == JOBERR_NONE);
    put(cg.dir, "pids.events", "max 3\n");
    CHECK(cgroup_job_outcome(&cg) == JOBERR_PROCESS_LIMIT);
    put(cg.dir, "memory.events", "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n");
    CHECK(cgroup_job_outcome(&cg) == JOBERR_MEMORY_LIMIT);

    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", cg.dir);
    CHECK(cgroup_job_remove(&cg) == 0 && cg.dir[0] == '\0');
    struct stat st;
    CHECK(stat(dir, &st) != 0 && errno == ENOENT);
    CHECK(cgroup_job_remove(&cg) == 0);
    CHECK(cgroup_job_outcome(&cg) == JOBERR_NONE);
    /* A root that is not there: an error, nothing created. */
    char missing[320];
    snprintf(missing, sizeof(missing), "%s/nope", root);
    CHECK(cgroup_job_create(missing, "job-x", &l, &cg) == -ENOENT);
    CHECK(stat(missing, &st) != 0);
}

static void test_seccomp_export(void)
{
    int fd = sandbox_seccomp_fd();
    CHECK(fd >= SANDBOX_FD_FIRST_FREE);
    struct stat st;
    CHECK(fstat(fd, &st) == 0 && st.st_size > 0 && st.st_size % 8 == 0);
    CHECK(lseek(fd, 0, SEEK_CUR) == 0);
    CHECK((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
    close(fd);
}

int main(void)
{
    snprintf(root, sizeof(root), "/tmp/test_sandbox.XXXXXX");
    if (mkdtemp(root) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    test_uidlease();
    test_watchdog();
    test_watchdog_disk();
    test_cgroup_fake();
    test_seccomp_export();
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    return check_report();
}
