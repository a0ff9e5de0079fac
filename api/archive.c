/* archive.c - see archive_io.h. */
#include "archive_io.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "log.h"
#include "path.h"
#include "xalloc.h"

#define ARCHIVE_BLOCK (64 * 1024)

void archive_files_free(struct archive_files *f)
{
    for (size_t i = 0; i < f->n; i++)
        free((void *)f->v[i].path);
    free(f->v);
    memset(f, 0, sizeof(*f));
}

static enum archive_rc arc_fail(enum archive_rc rc, char *detail, size_t len, const char *fmt,
                                ...) __attribute__((format(printf, 4, 5)));

static enum archive_rc arc_fail(enum archive_rc rc, char *detail, size_t len, const char *fmt,
                                ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, len, fmt, ap);
    va_end(ap);
    return rc;
}

/* ---- Reading ------------------------------------------------------------ */

struct arc_in {
    archive_in_fn fn;
    void         *arg;
    char         *buf;
    int64_t       total, max;
    int           over;        /* max passed */
    int           failed;      /* fn failed */
};

static la_ssize_t arc_read_cb(struct archive *a, void *client, const void **buff)
{
    struct arc_in *in = client;
    ssize_t n = in->fn(in->arg, in->buf, ARCHIVE_BLOCK);
    if (n < 0) {
        in->failed = 1;
        archive_set_error(a, EIO, "reading the request body failed");
        return -1;
    }
    in->total += n;
    if (in->total > in->max) {
        in->over = 1;
        archive_set_error(a, EFBIG, "body over the limit");
        return -1;
    }
    *buff = in->buf;
    return n;
}

/* The member's name as a session path: a leading "./" (tar -C dir .) goes;
 * "." alone becomes "". */
static const char *arc_member_name(const char *name)
{
    while (name[0] == '.' && name[1] == '/') {
        name += 2;
        while (*name == '/')
            name++;
    }
    return strcmp(name, ".") == 0 ? "" : name;
}

/* Why a member of this type is refused, or NULL for a regular file. */
static const char *arc_type_refused(struct archive_entry *e)
{
    if (archive_entry_hardlink(e) != NULL)
        return "is a hard link";
    switch (archive_entry_filetype(e)) {
    case AE_IFREG:
        return NULL;
    case AE_IFLNK:
        return "is a symbolic link";
    case AE_IFCHR:
    case AE_IFBLK:
        return "is a device";
    case AE_IFIFO:
        return "is a FIFO";
    case AE_IFSOCK:
        return "is a socket";
    default:
        return "is not a regular file";
    }
}

/* Creates rel's parent folders below dirfd (never through a link: only
 * this unpacking wrote there) and rel itself, exclusively. */
static int arc_create(int dirfd, const char *rel, mode_t mode)
{
    char buf[PATH_MAX_BYTES + 1];
    size_t n = strlen(rel);
    if (n >= sizeof(buf))
        return -ENAMETOOLONG;
    memcpy(buf, rel, n + 1);
    for (char *s = strchr(buf, '/'); s != NULL; s = strchr(s + 1, '/')) {
        *s = '\0';
        if (mkdirat(dirfd, buf, 0700) != 0 && errno != EEXIST)
            return -errno;
        *s = '/';
    }
    return fs_open_beneath(dirfd, buf, O_WRONLY | O_CREAT | O_EXCL, mode);
}

static int arc_write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

struct arc_ctx {
    struct archive              *a;
    struct arc_in               *in;
    int                          dirfd;
    const struct archive_limits *lim;
    struct archive_files        *out;
    char                        *buf;
    char                        *detail;
    size_t                       len;
};

/* Maps a failed libarchive call to the refusal it stands for. */
static enum archive_rc arc_read_error(struct arc_ctx *c, const char *member)
{
    if (c->in->over)
        return arc_fail(ARCHIVE_X_BODY_TOO_LARGE, c->detail, c->len,
                        "request body is larger than the limit of %lld bytes",
                        (long long)c->lim->max_in);
    if (c->in->failed)
        return arc_fail(ARCHIVE_X_READ_FAILED, c->detail, c->len,
                        "could not read the request body");
    const char *why = archive_error_string(c->a);
    if (member != NULL)
        return arc_fail(ARCHIVE_X_INVALID, c->detail, c->len,
                        "Invalid archive: member %.200s: %s", member, why ? why : "corrupt");
    return arc_fail(ARCHIVE_X_INVALID, c->detail, c->len,
                    "Invalid archive: not a gzip-compressed tar archive (%s)",
                    why ? why : "corrupt");
}

/* Copies the current member's data into fd, counting against the limit
 * as it streams. */
static enum archive_rc arc_copy_data(struct arc_ctx *c, int fd, const char *name,
                                     int64_t *size)
{
    for (;;) {
        la_ssize_t n = archive_read_data(c->a, c->buf, ARCHIVE_BLOCK);
        if (n == 0)
            return ARCHIVE_X_OK;
        if (n < 0)
            return arc_read_error(c, name);
        *size += n;
        if (c->out->bytes + *size > c->lim->max_bytes)
            return arc_fail(ARCHIVE_X_TOO_LARGE, c->detail, c->len,
                            "Exceeded max session size of %lld bytes (decompressed, at "
                            "member %.200s)", (long long)c->lim->max_bytes, name);
        if (arc_write_all(fd, c->buf, (size_t)n) != 0)
            return arc_fail(ARCHIVE_X_IO, c->detail, c->len, "could not write %.200s", name);
    }
}

static void arc_add_file(struct archive_files *out, const char *name, int64_t size,
                         unsigned mode)
{
    if (out->n == out->cap) {
        out->cap = out->cap ? out->cap * 2 : 16;
        struct store_file *v = xcalloc(out->cap, sizeof(*v));
        if (out->n > 0)
            memcpy(v, out->v, out->n * sizeof(*v));
        free(out->v);
        out->v = v;
    }
    out->v[out->n++] = (struct store_file){ xstrdup(name), size, NULL, mode };
    out->bytes += size;
}

/* Checks one member and unpacks it when it is a regular file. */
static enum archive_rc arc_member(struct arc_ctx *c, struct archive_entry *e)
{
    const char *raw = archive_entry_pathname(e);
    if (raw == NULL)
        return arc_fail(ARCHIVE_X_INVALID, c->detail, c->len,
                        "Invalid archive: a member has no readable name");
    const char *name = arc_member_name(raw);
    const char *why = arc_type_refused(e);
    if (archive_entry_filetype(e) == AE_IFDIR && archive_entry_hardlink(e) == NULL) {
        size_t n = strlen(name);
        while (n > 0 && name[n - 1] == '/')
            n--;
        if (n == 0)
            return ARCHIVE_X_OK;          /* "./": the root itself */
        if (n > PATH_MAX_BYTES || path_validate(name, n, &why) != 0)
            return arc_fail(ARCHIVE_X_INVALID, c->detail, c->len,
                            "Invalid archive: member %.200s: folder name %s", raw,
                            n > PATH_MAX_BYTES ? "is too long" : why);
        return ARCHIVE_X_OK;              /* folders come with their files */
    }
    if (why != NULL)
        return arc_fail(ARCHIVE_X_INVALID, c->detail, c->len,
                        "Invalid archive: member %.200s %s (only regular files and folders "
                        "are accepted)", raw, why);
    if (path_validate(name, strlen(name), &why) != 0)
        return arc_fail(ARCHIVE_X_INVALID, c->detail, c->len,
                        "Invalid archive: member %.200s: path %s", raw, why);
    if ((long)c->out->n >= c->lim->max_files)
        return arc_fail(ARCHIVE_X_TOO_MANY, c->detail, c->len,
                        "Exceeded max file count of %ld (archive member %.200s)",
                        c->lim->max_files, raw);
    if (archive_entry_size_is_set(e) &&
        archive_entry_size(e) > c->lim->max_bytes - c->out->bytes)
        return arc_fail(ARCHIVE_X_TOO_LARGE, c->detail, c->len,
                        "Exceeded max session size of %lld bytes (decompressed, at member "
                        "%.200s)", (long long)c->lim->max_bytes, raw);
    int exec = (archive_entry_perm(e) & 0111) != 0;
    int fd = arc_create(c->dirfd, name, exec ? 0700 : 0600);
    if (fd < 0)
        return arc_fail(ARCHIVE_X_INVALID, c->detail, c->len,
                        "Invalid archive: member %.200s clashes with another member (%s)",
                        raw, strerror(-fd));
    int64_t size = 0;
    enum archive_rc rc = arc_copy_data(c, fd, raw, &size);
    if (close(fd) != 0 && rc == ARCHIVE_X_OK)
        rc = arc_fail(ARCHIVE_X_IO, c->detail, c->len, "could not write %.200s", raw);
    if (rc == ARCHIVE_X_OK)
        arc_add_file(c->out, name, size, exec ? 0100755u : 0100644u);
    return rc;
}

/* The member loop, on an opened archive. */
static enum archive_rc arc_members(struct arc_ctx *c)
{
    struct archive_entry *e;
    for (;;) {
        int r = archive_read_next_header(c->a, &e);
        if (r == ARCHIVE_EOF)
            break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
            return arc_read_error(c, c->out->n > 0 ? "after the last good one" : NULL);
        enum archive_rc rc = arc_member(c, e);
        if (rc != ARCHIVE_X_OK)
            return rc;
    }
    const char **paths = xcalloc(c->out->n + 1, sizeof(*paths));
    for (size_t i = 0; i < c->out->n; i++)
        paths[i] = c->out->v[i].path;
    size_t bad = 0;
    const char *why = NULL;
    int rc = path_list_check(paths, c->out->n, &bad, &why);
    free(paths);
    if (rc != 0)
        return arc_fail(ARCHIVE_X_INVALID, c->detail, c->len,
                        "Invalid archive: member %.200s: %s",
                        rc == -2 ? "?" : c->out->v[bad].path, rc == -2 ? "out of memory" : why);
    return ARCHIVE_X_OK;
}

enum archive_rc archive_extract(archive_in_fn in, void *in_arg, int dirfd,
                                const struct archive_limits *lim,
                                struct archive_files *out, char *detail, size_t detail_len)
{
    memset(out, 0, sizeof(*out));
    struct arc_in src = { in, in_arg, xmalloc(ARCHIVE_BLOCK), 0, lim->max_in, 0, 0 };
    struct arc_ctx c = { archive_read_new(), &src, dirfd, lim, out, xmalloc(ARCHIVE_BLOCK),
                         detail, detail_len };
    enum archive_rc rc;
    if (c.a == NULL) {
        rc = arc_fail(ARCHIVE_X_IO, detail, detail_len, "out of memory");
    } else {
        archive_read_support_filter_gzip(c.a);
        archive_read_support_format_tar(c.a);
        if (archive_read_open(c.a, &src, NULL, arc_read_cb, NULL) != ARCHIVE_OK)
            rc = arc_read_error(&c, NULL);
        else
            rc = arc_members(&c);
        archive_read_free(c.a);
    }
    free(src.buf);
    free(c.buf);
    return rc;
}

/* ---- Writing ------------------------------------------------------------ */

struct arc_out {
    archive_out_fn fn;
    void          *arg;
};

static la_ssize_t arc_write_cb(struct archive *a, void *client, const void *buff, size_t n)
{
    struct arc_out *o = client;
    if (o->fn(o->arg, buff, n) != 0) {
        archive_set_error(a, EPIPE, "the client went away");
        return -1;
    }
    return (la_ssize_t)n;
}

/* Opens files[i] below dirfd as a regular file, or logs why it is
 * skipped. Returns the fd or -1. */
static int arc_open_member(int dirfd, const char *path, struct stat *st, const char *log_ctx)
{
    int fd = fs_open_beneath(dirfd, path, O_RDONLY | O_NONBLOCK, 0);
    if (fd >= 0 && (fstat(fd, st) != 0 || !S_ISREG(st->st_mode))) {
        close(fd);
        fd = -EINVAL;
    }
    if (fd >= 0 && fcntl(fd, F_SETFL, 0) != 0) {
        close(fd);
        fd = -EIO;
    }
    if (fd < 0) {
        log_warn("archive.member_skipped", "%s reason=\"%s\"", log_ctx,
                 fd == -EINVAL ? "not a regular file" : strerror(-fd));
        return -1;
    }
    return fd;
}

/* Writes one member: header (declared size st_size), then up to that
 * many bytes; libarchive pads a file that shrank meanwhile with zeros. */
static int arc_write_member(struct archive *a, int fd, const struct store_file *f,
                            const struct stat *st, char *buf)
{
    struct archive_entry *e = archive_entry_new();
    if (e == NULL)
        return -1;
    archive_entry_set_pathname_utf8(e, f->path);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, f->mode == 0100755 ? 0755 : 0644);
    archive_entry_set_size(e, st->st_size);
    archive_entry_set_mtime(e, st->st_mtime, 0);
    int rc = archive_write_header(a, e) >= ARCHIVE_WARN ? 0 : -1;
    archive_entry_free(e);
    off_t left = st->st_size;
    while (rc == 0 && left > 0) {
        ssize_t n = read(fd, buf, left < ARCHIVE_BLOCK ? (size_t)left : ARCHIVE_BLOCK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (archive_write_data(a, buf, (size_t)n) < 0)
            rc = -1;
        left -= n;
    }
    if (rc == 0 && archive_write_finish_entry(a) < ARCHIVE_WARN)
        rc = -1;
    return rc;
}

int archive_stream(int dirfd, const struct store_file *files, size_t n, archive_out_fn out,
                   void *out_arg, const char *log_ctx)
{
    struct archive *a = archive_write_new();
    if (a == NULL)
        return -1;
    struct arc_out o = { out, out_arg };
    int rc = -1;
    char *buf = xmalloc(ARCHIVE_BLOCK);
    if (archive_write_add_filter_gzip(a) == ARCHIVE_OK &&
        archive_write_set_format_pax_restricted(a) == ARCHIVE_OK &&
        archive_write_set_bytes_in_last_block(a, 1) == ARCHIVE_OK &&
        archive_write_open(a, &o, NULL, arc_write_cb, NULL) == ARCHIVE_OK) {
        rc = 0;
        for (size_t i = 0; rc == 0 && i < n; i++) {
            struct stat st;
            int fd = arc_open_member(dirfd, files[i].path, &st, log_ctx);
            if (fd < 0)
                continue;
            rc = arc_write_member(a, fd, &files[i], &st, buf);
            close(fd);
        }
        if (archive_write_close(a) != ARCHIVE_OK)
            rc = -1;
    }
    if (rc != 0)
        log_warn("archive.stream_failed", "%s error=\"%s\"", log_ctx,
                 archive_error_string(a) ? archive_error_string(a) : "?");
    archive_write_free(a);
    free(buf);
    return rc;
}
