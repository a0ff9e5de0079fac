/* conversation.c - see conversation.h. */
#include "conversation.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "log.h"

/* opencode's data folder below HOME, one component at a time. */
static const char *const conv_data_path[] = { ".local", "share", "opencode" };
/* The files carried; the first one is required. */
static const char *const conv_files[] = { "opencode.db", "opencode.db-wal" };
#define CONV_NFILES (sizeof(conv_files) / sizeof(conv_files[0]))
static const char conv_sqlite_magic[16] = "SQLite format 3";   /* with its NUL */

int conversation_id_valid(const char *id, size_t len)
{
    if (len <= 4 || len > CONVERSATION_ID_MAX || strncmp(id, "ses_", 4) != 0)
        return 0;
    for (size_t i = 4; i < len; i++) {
        char ch = id[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')))
            return 0;
    }
    return 1;
}

/* Reads dir/session_id (written by the worker) into buf; "" when missing
 * or not valid. */
static void conv_read_session(const char *dir, char *buf, size_t len)
{
    char path[LAYOUT_PATH_MAX + 32];
    buf[0] = '\0';
    if (snprintf(path, sizeof(path), "%s/session_id", dir) >= (int)sizeof(path))
        return;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return;
    char tmp[CONVERSATION_ID_MAX + 2];
    struct stat st;
    ssize_t n = -1;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
        n = read(fd, tmp, sizeof(tmp) - 1);
    close(fd);
    if (n <= 0 || (size_t)n >= len || !conversation_id_valid(tmp, (size_t)n))
        return;
    memcpy(buf, tmp, (size_t)n);
    buf[n] = '\0';
}

int conversation_from(struct layout_attempt *a, const char *data_dir,
                      const struct store_claim *c, char *session, size_t len)
{
    session[0] = '\0';
    int rc = layout_attempt_conversation(data_dir, c->session_id,
                                         c->fresh ? "" : c->conv_job_id, a);
    if (rc == 0 && a->conv_from[0] != '\0')
        conv_read_session(a->conv_from, session, len);
    return rc;
}

/* Copies at most *budget bytes from the regular file open as in to a new
 * file name below dirfd (0600, never an existing name or a link). With
 * magic, the file must start with those 16 bytes. */
static int conv_copy_fd(int in, int dirfd, const char *name, int64_t *budget, int magic)
{
    struct stat st;
    if (fstat(in, &st) != 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return -EINVAL;
    if (st.st_size > *budget)
        return -EFBIG;
    int out = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out < 0)
        return -errno;
    char buf[65536];
    int rc = 0;
    int64_t total = 0;
    for (;;) {
        ssize_t n = read(in, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? -errno : 0;
            break;
        }
        if (magic && total == 0 && (n < 16 || memcmp(buf, conv_sqlite_magic, 16) != 0)) {
            rc = -EINVAL;
            break;
        }
        total += n;
        if (total > *budget) {
            rc = -EFBIG;
            break;
        }
        if (write(out, buf, (size_t)n) != n) {
            rc = -EIO;
            break;
        }
    }
    if (rc == 0 && magic && total == 0)
        rc = -EINVAL;
    if (close(out) != 0 && rc == 0)
        rc = -EIO;
    if (rc == 0)
        *budget -= total;
    return rc;
}

/* Opens (creating with mkdir when create) HOME's opencode data folder
 * without following a link. Returns an fd or a negative errno. */
static int conv_open_data(const char *home, int create)
{
    int fd = open(home, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    for (size_t i = 0; i < sizeof(conv_data_path) / sizeof(conv_data_path[0]); i++) {
        if (create && mkdirat(fd, conv_data_path[i], 0700) != 0 && errno != EEXIST) {
            int e = -errno;
            close(fd);
            return e;
        }
        int next = openat(fd, conv_data_path[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int e = -errno;
        close(fd);
        if (next < 0)
            return e;
        fd = next;
    }
    return fd;
}

/* Copies the carried files from the folder open as from to the one open
 * as to. The first must be there; the others may be missing. */
static int conv_copy_files(int from, int to)
{
    int64_t budget = CONVERSATION_MAX_BYTES;
    for (size_t i = 0; i < CONV_NFILES; i++) {
        int in = fs_open_beneath(from, conv_files[i], O_RDONLY, 0);
        if (in < 0) {
            if (in == -ENOENT && i > 0)
                continue;
            return in;
        }
        int rc = conv_copy_fd(in, to, conv_files[i], &budget, i == 0);
        close(in);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int conversation_seed(const struct layout_attempt *a)
{
    if (a->conv_from[0] == '\0')
        return 0;
    int from = open(a->conv_from, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (from < 0)
        return errno == ENOENT ? 0 : -errno;
    int to = conv_open_data(a->home, 1);
    int rc = to < 0 ? to : conv_copy_files(from, to);
    if (to >= 0)
        close(to);
    close(from);
    return rc;
}

/* The first opencode session id in the event stream, into id. */
static int conv_events_session(const char *events, size_t len, char *id, size_t idlen)
{
    static const char key[] = "\"sessionID\":\"";
    const char *p = events, *end = events + len;
    while (p != NULL && p < end) {
        p = memmem(p, (size_t)(end - p), key, sizeof(key) - 1);
        if (p == NULL)
            break;
        p += sizeof(key) - 1;
        const char *q = memchr(p, '"', (size_t)(end - p));
        if (q == NULL)
            break;
        size_t n = (size_t)(q - p);
        if (n < idlen && conversation_id_valid(p, n)) {
            memcpy(id, p, n);
            id[n] = '\0';
            return 0;
        }
        p = q;
    }
    return -ENOENT;
}

int conversation_capture(const struct layout_attempt *a, const char *events, size_t len)
{
    char id[CONVERSATION_ID_MAX + 1];
    if (events == NULL || conv_events_session(events, len, id, sizeof(id)) != 0)
        return -ENOENT;
    int rc = fs_mkdir_new(a->conv_stage, 0700);
    if (rc != 0)
        return rc;
    int from = conv_open_data(a->home, 0);
    if (from < 0)
        return from;
    int to = open(a->conv_stage, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    rc = to < 0 ? -errno : conv_copy_files(from, to);
    close(from);
    if (rc == 0)
        rc = fs_write_beneath(to, "session_id", id, strlen(id));
    if (to >= 0)
        close(to);
    return rc;
}

/* Removes every conversation but the two named ("" names none). */
static void conv_prune(const struct layout_attempt *a, const char *own, const char *keep)
{
    DIR *d = opendir(a->conversations);
    if (d == NULL)
        return;
    struct dirent *e;
    char path[LAYOUT_PATH_MAX + 300];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
            strcmp(e->d_name, own) == 0 || strcmp(e->d_name, keep) == 0)
            continue;
        if (snprintf(path, sizeof(path), "%s/%s", a->conversations, e->d_name) <
                (int)sizeof(path) && fs_rm_rf(path) != 0)
            log_warn("conversation.prune_failed", "name=%s", e->d_name);
    }
    closedir(d);
}

int conversation_publish(const struct layout_attempt *a, const char *job, const char *keep,
                         attempt_lease_fn still_ours, void *arg)
{
    int rc = fs_mkdir_p(a->conversations, 0700);
    if (rc != 0)
        return rc;
    if (!still_ours(arg))
        return ATTEMPT_LEASE_GONE;
    rc = fs_publish_dir(a->conv_stage, a->conv_published, NULL, NULL);
    if (rc == -EEXIST) {
        /* A stale attempt's: the lease renewed after seeing it proves it. */
        char trash[LAYOUT_PATH_MAX];
        if (!still_ours(arg))
            return ATTEMPT_LEASE_GONE;
        rc = layout_trash_entry(a, job, trash, sizeof(trash));
        if (rc == 0)
            rc = fs_publish_dir(a->conv_stage, a->conv_published, a->trash, trash);
        if (rc == 0 && fs_rm_rf(trash) != 0)
            log_warn("conversation.cleanup_failed", "job=%s", job);
    }
    if (rc == 0)
        conv_prune(a, job, keep);
    return rc;
}
