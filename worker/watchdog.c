/* watchdog.c - see watchdog.h. */
#include "watchdog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsutil.h"

/* Reads a small /proc file into buf (NUL-terminated). -1 when gone. */
static ssize_t wd_read(int dirfd, const char *name, char *buf, size_t len)
{
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, len - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return n;
}

/* The number after "Key:" in a status text, or -1. */
static long long wd_status_field(const char *text, const char *key)
{
    const char *p = strstr(text, key);
    if (p == NULL)
        return -1;
    return strtoll(p + strlen(key), NULL, 10);
}

/* utime+stime+cutime+cstime (clock ticks) from a stat line, or -1. */
static long long wd_stat_ticks(const char *stat)
{
    /* The command name may hold anything, ')' included: fields start
     * after the last ')'. Field 3 is the state; 14..17 the times. */
    const char *p = strrchr(stat, ')');
    if (p == NULL)
        return -1;
    p++;
    long long sum = 0;
    for (int field = 3; field <= 17; field++) {
        while (*p == ' ')
            p++;
        char *end;
        long long v = strtoll(p, &end, 10);
        if (field >= 14)
            sum += v;
        if (field == 3)
            end = (char *)p + 1;
        if (end == p)
            return -1;
        p = end;
    }
    return sum;
}

/* Adds one /proc/<pid> to out when its real uid is uid. */
static void wd_scan_one(int procfd, const char *pid, uid_t uid, long hz, struct wd_usage *out)
{
    int dirfd = openat(procfd, pid, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        return;
    char buf[4096];
    if (wd_read(dirfd, "status", buf, sizeof(buf)) > 0 &&
        wd_status_field(buf, "\nUid:") == (long long)uid) {
        const char *state = strstr(buf, "\nState:");
        int zombie = 0;
        if (state != NULL) {
            state += strlen("\nState:");
            state += strspn(state, " \t");
            zombie = *state == 'Z' || *state == 'X';
        }
        long long rss = wd_status_field(buf, "\nVmRSS:");
        long long threads = wd_status_field(buf, "\nThreads:");
        if (rss > 0)
            out->rss_kb += (uint64_t)rss;
        if (!zombie) {
            out->procs++;
            out->tasks += threads > 0 ? (uint64_t)threads : 1;
        }
        long long ticks = wd_read(dirfd, "stat", buf, sizeof(buf)) > 0 ? wd_stat_ticks(buf) : -1;
        if (ticks > 0)
            out->cpu_ms += (uint64_t)(ticks * 1000 / hz);
    }
    close(dirfd);
}

int watchdog_scan(const char *proc_root, uid_t uid, struct wd_usage *out)
{
    memset(out, 0, sizeof(*out));
    DIR *d = opendir(proc_root);
    if (d == NULL)
        return -errno;
    long hz = sysconf(_SC_CLK_TCK);
    if (hz <= 0)
        hz = 100;
    int procfd = dirfd(d);
    for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        wd_scan_one(procfd, e->d_name, uid, hz, out);
    }
    closedir(d);
    return 0;
}

/* Apparent bytes (or blocks, when more) of the watched folders. Returns
 * JOBERR_DISK_LIMIT with msg when over. */
static enum joberr wd_check_disk(struct watchdog *wd, char *msg, size_t len)
{
    uint64_t limit = (uint64_t)wd->max_disk_mb << 20;
    struct fs_walk walk = { .max_files = wd->max_disk_files, .max_bytes = limit };
    uint64_t used = 0;
    for (size_t i = 0; i < 2; i++) {
        if (wd->dirs[i] == NULL)
            continue;
        struct fs_usage u = { 0, 0, 0 };
        int rc = fs_usage(wd->dirs[i], &u, &walk);
        if (rc == -EMFILE) {
            snprintf(msg, len, "the job's workspace and HOME held more than %llu files "
                     "(JOB_MAX_DISK_MB's file bound)", (unsigned long long)wd->max_disk_files);
            return JOBERR_DISK_LIMIT;
        }
        if (rc != 0 && rc != -EFBIG)
            continue;          /* a folder the agent made unreadable: next time */
        used += rc == -EFBIG ? limit + 1 : (u.bytes > u.disk_bytes ? u.bytes : u.disk_bytes);
    }
    if (used > wd->disk_max)
        wd->disk_max = used;
    if (used > limit) {
        snprintf(msg, len, "the job's workspace and HOME held more than %ld MiB "
                 "(JOB_MAX_DISK_MB)", wd->max_disk_mb);
        return JOBERR_DISK_LIMIT;
    }
    return JOBERR_NONE;
}

/* Processes, memory and CPU of the uid against their limits. */
static enum joberr wd_check_uid(struct watchdog *wd, char *msg, size_t len)
{
    struct wd_usage u;
    if (watchdog_scan("/proc", wd->uid, &u) != 0)
        return JOBERR_NONE;
    wd->last = u;
    if (u.cpu_ms > wd->cpu_ms_max)
        wd->cpu_ms_max = u.cpu_ms;
    if (u.rss_kb > wd->rss_kb_max)
        wd->rss_kb_max = u.rss_kb;
    if (u.tasks > wd->tasks_max)
        wd->tasks_max = u.tasks;
    if (wd->max_procs > 0 && u.tasks >= (uint64_t)wd->max_procs) {
        snprintf(msg, len, "the job reached %ld processes and threads (JOB_MAX_PROCS)",
                 wd->max_procs);
        return JOBERR_PROCESS_LIMIT;
    }
    if (u.rss_kb > (uint64_t)wd->max_memory_mb * 1024) {
        snprintf(msg, len, "the job used more than %ld MiB of memory (JOB_MAX_MEMORY_MB)",
                 wd->max_memory_mb);
        return JOBERR_MEMORY_LIMIT;
    }
    if (wd->cpu_ms_max > (uint64_t)wd->max_cpu_s * 1000) {
        snprintf(msg, len, "the job used more than %ld seconds of CPU time (JOB_MAX_CPU_S)",
                 wd->max_cpu_s);
        return JOBERR_CPU_LIMIT;
    }
    return JOBERR_NONE;
}

enum joberr watchdog_check(struct watchdog *wd, char *msg, size_t len)
{
    enum joberr e = JOBERR_NONE;
    if (wd->by_uid)
        e = wd_check_uid(wd, msg, len);
    unsigned every = wd->disk_every ? wd->disk_every : 1;
    if (e == JOBERR_NONE && wd->max_disk_mb > 0 && wd->checks % every == 0)
        e = wd_check_disk(wd, msg, len);
    wd->checks++;
    return e;
}
