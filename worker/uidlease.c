/* uidlease.c - see uidlease.h. */
#include "uidlease.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"

/* Spreads the first guess of concurrent slots over the range. */
static atomic_ulong uidlease_next;

/* Locks <dir>/<uid>.lock: 0 (fd in *fd), -EWOULDBLOCK when taken, or a
 * negative errno. */
static int uidlease_try(int dirfd, long uid, int *fd)
{
    char name[32];
    snprintf(name, sizeof(name), "%ld.lock", uid);
    int f = openat(dirfd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (f < 0)
        return -errno;
    if (flock(f, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(f);
        return e == EWOULDBLOCK ? -EWOULDBLOCK : -e;
    }
    *fd = f;
    return 0;
}

int uidlease_acquire(const char *dir, long min, long max, struct uid_lease *out)
{
    out->fd = -1;
    out->uid = 0;
    if (dir == NULL || min <= 0 || max < min)
        return -EINVAL;
    int rc = fs_mkdir_p(dir, 0700);
    if (rc != 0)
        return rc;
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        return -errno;
    unsigned long span = (unsigned long)(max - min) + 1;
    unsigned long start = (atomic_fetch_add(&uidlease_next, 1) + (unsigned long)getpid()) % span;
    rc = -EAGAIN;
    for (unsigned long i = 0; i < span; i++) {
        long uid = min + (long)((start + i) % span);
        int fd = -1;
        int r = uidlease_try(dirfd, uid, &fd);
        if (r == -EWOULDBLOCK)
            continue;
        if (r != 0) {
            rc = r;
            break;
        }
        out->fd = fd;
        out->uid = (uid_t)uid;
        rc = 0;
        break;
    }
    close(dirfd);
    return rc;
}

void uidlease_release(struct uid_lease *l)
{
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
}
