/* cgroup.c - see cgroup.h. */
#include "cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The files this module writes, in order; removed again in a fake
 * folder (a real cgroup's files go with rmdir). */
static const char *const cgroup_files[] = {
    "memory.max", "memory.oom.group", "pids.max", "cpu.max",
};

static int cgroup_path(const struct cgroup_job *cg, const char *file, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s/%s", cg->dir, file);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int cgroup_write(const struct cgroup_job *cg, const char *file, const char *value)
{
    char path[PATH_MAX];
    int rc = cgroup_path(cg, file, path, sizeof(path));
    if (rc != 0)
        return rc;
    /* O_CREAT: a cgroup's files exist already (the flag is then moot);
     * the fake folder of the unit test gets them. */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return -errno;
    size_t n = strlen(value);
    ssize_t w = write(fd, value, n);
    rc = w == (ssize_t)n ? 0 : (w < 0 ? -errno : -EIO);
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    return rc;
}

int cgroup_job_create(const char *root, const char *name, const struct cgroup_limits *l,
                      struct cgroup_job *cg)
{
    cg->dir[0] = '\0';
    int n = snprintf(cg->dir, sizeof(cg->dir), "%s/%s", root, name);
    if (n < 0 || (size_t)n >= sizeof(cg->dir) || strchr(name, '/') != NULL) {
        cg->dir[0] = '\0';
        return -ENAMETOOLONG;
    }
    if (mkdir(cg->dir, 0755) != 0) {
        int e = errno;
        cg->dir[0] = '\0';
        return -e;
    }
    char mem[32], pids[32], cpu[48];
    snprintf(mem, sizeof(mem), "%lld\n", (long long)l->memory_mb * 1024 * 1024);
    snprintf(pids, sizeof(pids), "%ld\n", l->procs);
    snprintf(cpu, sizeof(cpu), "%ld 100000\n", (l->cpus > 0 ? l->cpus : 1) * 100000);
    const char *values[] = { mem, "1\n", pids, cpu };
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof(values) / sizeof(values[0]); i++)
        rc = cgroup_write(cg, cgroup_files[i], values[i]);
    if (rc != 0)
        (void)cgroup_job_remove(cg);
    return rc;
}

int cgroup_job_procs_fd(const struct cgroup_job *cg)
{
    char path[PATH_MAX];
    int rc = cgroup_path(cg, "cgroup.procs", path, sizeof(path));
    if (rc != 0)
        return rc;
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    return fd < 0 ? -errno : fd;
}

/* The count after "key " in a flat-keyed cgroup file, or 0. */
static long long cgroup_event(const struct cgroup_job *cg, const char *file, const char *key)
{
    char path[PATH_MAX], buf[1024];
    if (cgroup_path(cg, file, path, sizeof(path)) != 0)
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    size_t kl = strlen(key);
    for (const char *p = buf; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p ? p + 1 : p)
        if (strncmp(p, key, kl) == 0 && p[kl] == ' ')
            return strtoll(p + kl + 1, NULL, 10);
    return 0;
}

enum joberr cgroup_job_outcome(const struct cgroup_job *cg)
{
    if (cg->dir[0] == '\0')
        return JOBERR_NONE;
    if (cgroup_event(cg, "memory.events", "oom_kill") > 0 ||
        cgroup_event(cg, "memory.events", "oom_group_kill") > 0)
        return JOBERR_MEMORY_LIMIT;
    if (cgroup_event(cg, "pids.events", "max") > 0)
        return JOBERR_PROCESS_LIMIT;
    return JOBERR_NONE;
}

int cgroup_job_remove(struct cgroup_job *cg)
{
    if (cg->dir[0] == '\0')
        return 0;
    int rc = 0;
    if (rmdir(cg->dir) != 0) {
        rc = -errno;
        if (rc == -ENOTEMPTY || rc == -EEXIST) {
            /* Plain files (not cgroupfs): those this module wrote, and the
             * kernel's read-outs when a test put them there. */
            static const char *const more[] = { "cgroup.procs", "memory.events", "pids.events" };
            char path[PATH_MAX];
            for (size_t i = 0; i < sizeof(cgroup_files) / sizeof(cgroup_files[0]); i++)
                if (cgroup_path(cg, cgroup_files[i], path, sizeof(path)) == 0)
                    (void)unlink(path);
            for (size_t i = 0; i < sizeof(more) / sizeof(more[0]); i++)
                if (cgroup_path(cg, more[i], path, sizeof(path)) == 0)
                    (void)unlink(path);
            rc = rmdir(cg->dir) == 0 ? 0 : -errno;
        }
    }
    if (rc == 0)
        cg->dir[0] = '\0';
    return rc;
}
