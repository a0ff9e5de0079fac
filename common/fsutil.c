/* fsutil.c - see fsutil.h. */
#include "fsutil.h"
#include "xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define FS_IO_CHUNK (64 * 1024)


/* ---- Creating and removing ---------------------------------------------- */

int fs_mkdir_p(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(buf))
        return -ENAMETOOLONG;
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(buf, mode) != 0) {
                struct stat st;
                if (errno != EEXIST)
                    return -errno;
                if (stat(buf, &st) != 0)
                    return -errno;
                if (!S_ISDIR(st.st_mode))
                    return -ENOTDIR;
            }
            *p = saved;
            if (saved == '\0')
                break;
        }
    }
    return 0;
}

int fs_mkdir_in(const char *parent, const char *path, mode_t mode)
{
    if (mkdir(path, mode) == 0)
        return 0;
    if (errno != ENOENT)
        return -errno;
    int rc = fs_mkdir_p(parent, mode);
    if (rc != 0)
        return rc;
    return mkdir(path, mode) == 0 ? 0 : -errno;
}

int fs_mkdir_new(const char *path, mode_t mode)
{
    if (mkdir(path, mode) == 0)         /* the parents are usually there */
        return 0;
    if (errno != ENOENT)
        return -errno;
    char parent[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(parent))
        return -ENAMETOOLONG;
    memcpy(parent, path, n + 1);
    char *slash = strrchr(parent, '/');
    if (slash != NULL && slash != parent) {
        *slash = '\0';
        int rc = fs_mkdir_p(parent, 0755);
        if (rc != 0)
            return rc;
    }
    return mkdir(path, mode) == 0 ? 0 : -errno;
}

/* ---- Walking a tree ------------------------------------------------------
 *
 * One walker serves every tree operation (copy, manifest, usage, chown,
 * reclaim, removal). It keeps no descriptor and no C stack frame per level:
 * a folder's entries are read whole when it is entered (its names go to a
 * heap buffer), only the current folder is open, and the walk comes back
 * up through ".." after checking that it is the same folder (device and
 * inode) it went down from. So any depth is walked; walks that report
 * paths refuse one longer than PATH_MAX with -ENAMETOOLONG.
 */

#define FS_BEAT_FILES 1024
#define FS_BEAT_BYTES (64ULL << 20)

/* One folder on the way down. */
struct fs_level {
    char  *names;               /* its entries, NUL-terminated, one after another */
    size_t len, pos;            /* bytes used; offset of the next entry */
    size_t cur;                 /* offset of the entry being visited */
    size_t rel_len;             /* length of rel for this folder */
    dev_t  dev, ddev;           /* this folder and its copy (copy walks) */
    ino_t  ino, dino;
};

struct fs_walker;
/* Called for an entry of the current folder w->src (st from lstat);
 * returns 0 or a negative errno (or a manifest callback's value). */
typedef int (*fs_visit_fn)(struct fs_walker *w, const char *name, const struct stat *st);

struct fs_walker {
    const struct fs_walk *walk;  /* bounds and heartbeat, may be NULL */
    fs_visit_fn file;            /* every entry that is not a folder */
    fs_visit_fn enter;           /* a folder, before it is entered (may be NULL) */
    fs_visit_fn leave;           /* a folder, after its entries (st NULL; may be NULL) */
    void  *ctx;
    int    keep_going;           /* record the first error and carry on */
    int    fix_modes;            /* give a folder u+rwx before entering it */
    int    one_fs;               /* refuse to enter another file system */
    int    need_rel;             /* maintain rel (refuse paths over PATH_MAX) */
    int    src, dst;             /* current folder, and its copy (or -1) */
    dev_t  root_dev;
    char   rel[PATH_MAX];        /* path of the current entry, from the root */
    struct fs_level *lv;
    size_t depth, cap;
    uint64_t files, bytes;       /* regular files counted against walk */
    uint64_t beat_files, beat_bytes;
    int    err;
};

/* Counts entries and bytes towards the heartbeat; -ECANCELED when the
 * progress callback asks to stop. */
static int fs_beat(struct fs_walker *w, uint64_t entries, uint64_t bytes)
{
    w->beat_files += entries;
    w->beat_bytes += bytes;
    if (w->beat_files < FS_BEAT_FILES && w->beat_bytes < FS_BEAT_BYTES)
        return 0;
    w->beat_files = 0;
    w->beat_bytes = 0;
    if (w->walk != NULL && w->walk->progress != NULL && w->walk->progress(w->walk->arg) != 0)
        return -ECANCELED;
    return 0;
}

/* Counts one regular file of size bytes against the bounds, before it is
 * read: -EMFILE over max_files, -EFBIG over max_bytes. */
static int fs_count(struct fs_walker *w, off_t size)
{
    uint64_t sz = size > 0 ? (uint64_t)size : 0;
    const struct fs_walk *b = w->walk;
    if (b != NULL && b->max_files != 0 && w->files + 1 > b->max_files)
        return -EMFILE;
    if (b != NULL && b->max_bytes != 0 &&
        (sz > b->max_bytes || w->bytes > b->max_bytes - sz))
        return -EFBIG;
    w->files++;
    w->bytes += sz;
    return 0;
}

/* chmod through a descriptor that may be O_PATH (fchmod refuses those):
 * the /proc/self/fd link names the very file, never a path's new owner. */
static int fs_fchmod_any(int fd, mode_t mode)
{
    if (fchmod(fd, mode) == 0)
        return 0;
    if (errno != EBADF)
        return -errno;
    char link[64];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    return chmod(link, mode) == 0 ? 0 : -errno;
}

/* Opens the folder name below dfd for reading, never through a link. With
 * fix, a folder missing any of u+rwx gets them first (mode 000 folders). */
static int fs_open_dir(int dfd, const char *name, const struct stat *st, int fix)
{
    const int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    if (fix && (st->st_mode & S_IRWXU) != S_IRWXU) {
        int pfd = openat(dfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (pfd < 0)
            return -errno;
        (void)fs_fchmod_any(pfd, (st->st_mode & 0777) | S_IRWXU);   /* try: open decides */
        close(pfd);
    }
    int fd = openat(dfd, name, flags);
    return fd < 0 ? -errno : fd;
}

/* Reads every entry name of the open folder dfd into l->names. */
static int fs_read_names(int dfd, struct fs_level *l)
{
    int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        int e = -errno;
        close(fd);
        return e;
    }
    size_t cap = 0;
    l->names = NULL;
    l->len = l->pos = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        size_t n = strlen(de->d_name) + 1;
        if (l->len + n > cap) {
            cap = (l->len + n) * 2 + 256;
            l->names = xrealloc(l->names, cap);
        }
        memcpy(l->names + l->len, de->d_name, n);
        l->len += n;
        errno = 0;
    }
    int rc = errno != 0 ? -errno : 0;
    closedir(d);
    return rc;
}

/* Pushes the folder open at src (and its copy at dst, or -1) as the new
 * current level. Takes both descriptors (closed on failure). */
static int fs_push(struct fs_walker *w, int src, int dst, size_t rel_len)
{
    struct stat st, dst_st;
    int rc = fstat(src, &st) == 0 ? 0 : -errno;
    if (rc == 0 && dst >= 0 && fstat(dst, &dst_st) != 0)
        rc = -errno;
    if (w->depth == w->cap) {
        w->cap = w->cap * 2 + 16;
        w->lv = xrealloc(w->lv, w->cap * sizeof(*w->lv));
    }
    struct fs_level *l = &w->lv[w->depth];
    memset(l, 0, sizeof(*l));
    if (rc == 0)
        rc = fs_read_names(src, l);
    if (rc != 0) {
        free(l->names);
        close(src);
        if (dst >= 0)
            close(dst);
        return rc;
    }
    l->dev = st.st_dev;
    l->ino = st.st_ino;
    if (dst >= 0) {
        l->ddev = dst_st.st_dev;
        l->dino = dst_st.st_ino;
    }
    l->rel_len = rel_len;
    w->depth++;
    if (w->src >= 0)
        close(w->src);
    if (w->dst >= 0)
        close(w->dst);
    w->src = src;
    w->dst = dst;
    return 0;
}

/* Enters the folder name of the current level (st: its lstat). */
static int fs_down(struct fs_walker *w, const char *name, const struct stat *st, size_t rel_len)
{
    if (w->one_fs && st->st_dev != w->root_dev)
        return -EXDEV;
    /* A mount on the same file system (a bind mount) has the same st_dev:
     * statx tells its root apart, and removal never goes into it. */
    struct statx sx;
    if (w->one_fs && statx(w->src, name, AT_SYMLINK_NOFOLLOW, 0, &sx) == 0 &&
        (sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
        (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT))
        return -EXDEV;
    int src = fs_open_dir(w->src, name, st, w->fix_modes);
    if (src < 0)
        return src;
    int dst = -1;
    if (w->dst >= 0) {
        if (mkdirat(w->dst, name, 0700) != 0 ||
            (dst = openat(w->dst, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0 ||
            fchmod(dst, 0700) != 0) {
            int e = -errno;
            if (dst >= 0)
                close(dst);
            close(src);
            return e;
        }
    }
    return fs_push(w, src, dst, rel_len);
}

/* Opens ".." of fd and checks it is the folder (dev, ino). */
static int fs_up_fd(int fd, dev_t dev, ino_t ino)
{
    int up = openat(fd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (up < 0)
        return -errno;
    struct stat st;
    if (fstat(up, &st) != 0 || st.st_dev != dev || st.st_ino != ino) {
        close(up);
        return -ESTALE;           /* the tree was moved while walked */
    }
    return up;
}

/* Leaves the current level for its parent, then calls leave for the
 * folder just finished (its error is only recorded when keep_going).
 * -ESTALE when the way back is not the way down: that always stops. */
static int fs_up(struct fs_walker *w)
{
    free(w->lv[--w->depth].names);
    if (w->depth == 0)
        return 0;
    struct fs_level *p = &w->lv[w->depth - 1];
    int src = fs_up_fd(w->src, p->dev, p->ino);
    if (src < 0)
        return src;
    int dst = -1;
    if (w->dst >= 0 && (dst = fs_up_fd(w->dst, p->ddev, p->dino)) < 0) {
        close(src);
        return dst;
    }
    close(w->src);
    w->src = src;
    if (w->dst >= 0)
        close(w->dst);
    w->dst = dst;
    w->rel[p->rel_len] = '\0';
    int rc = w->leave != NULL ? w->leave(w, p->names + p->cur, NULL) : 0;
    if (rc != 0 && w->keep_going) {
        if (w->err == 0)
            w->err = rc;
        rc = 0;
    }
    return rc;
}

/* Visits one entry of the current level, whose path from the root is
 * base bytes of rel long. */
static int fs_entry(struct fs_walker *w, size_t base, const char *name)
{
    size_t rel_len = base;
    if (w->need_rel) {
        size_t nl = strlen(name);
        if (rel_len + nl + 2 > sizeof(w->rel))
            return -ENAMETOOLONG;
        if (rel_len > 0)
            w->rel[rel_len++] = '/';
        memcpy(w->rel + rel_len, name, nl + 1);
        rel_len += nl;
    }
    int rc = fs_beat(w, 1, 0);
    struct stat st;
    if (rc != 0)
        return rc;
    if (fstatat(w->src, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        rc = errno == ENOENT ? 0 : -errno;          /* gone meanwhile: skip */
    } else if (!S_ISDIR(st.st_mode)) {
        rc = w->file != NULL ? w->file(w, name, &st) : 0;
    } else {
        rc = w->enter != NULL ? w->enter(w, name, &st) : 0;
        if (rc == 0 && (rc = fs_down(w, name, &st, rel_len)) == 0)
            return 0;
    }
    if (w->need_rel)
        w->rel[base] = '\0';
    return rc;
}

/* Walks the tree of the open folder root (taken), copying folders into
 * dst (taken; -1: no copy). Returns the first error, or 0. */
static int fs_walk_tree(struct fs_walker *w, int root, int dst)
{
    struct stat st;
    w->src = w->dst = -1;
    w->rel[0] = '\0';
    if (fstat(root, &st) != 0) {
        int e = -errno;
        close(root);
        if (dst >= 0)
            close(dst);
        return e;
    }
    w->root_dev = st.st_dev;
    int rc = fs_push(w, root, dst, 0);
    while (rc == 0 && w->depth > 0) {
        struct fs_level *l = &w->lv[w->depth - 1];
        if (l->pos >= l->len) {
            rc = fs_up(w);
            continue;
        }
        l->cur = l->pos;
        l->pos += strlen(l->names + l->cur) + 1;
        rc = fs_entry(w, l->rel_len, l->names + l->cur);
        if (rc != 0 && w->keep_going && rc != -ECANCELED) {
            if (w->err == 0)
                w->err = rc;
            rc = 0;
        }
    }
    while (w->depth > 0)
        free(w->lv[--w->depth].names);
    free(w->lv);
    if (w->src >= 0)
        close(w->src);
    if (w->dst >= 0)
        close(w->dst);
    return rc != 0 ? rc : w->err;
}

/* ---- Removing ----------------------------------------------------------- */

static int fs_rm_file(struct fs_walker *w, const char *name, const struct stat *st)
{
    (void)st;
    return unlinkat(w->src, name, 0) == 0 || errno == ENOENT ? 0 : -errno;
}

static int fs_rm_dir(struct fs_walker *w, const char *name, const struct stat *st)
{
    (void)st;
    return unlinkat(w->src, name, AT_REMOVEDIR) == 0 || errno == ENOENT ? 0 : -errno;
}

int fs_rm_rf(const char *path)
{
    if (unlink(path) == 0 || errno == ENOENT)
        return 0;
    int e = errno;
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISDIR(st.st_mode))
        return -e;
    int root = fs_open_dir(AT_FDCWD, path, &st, 1);
    if (root < 0)
        return root == -ENOENT ? 0 : root;
    struct fs_walker w = { .file = fs_rm_file, .leave = fs_rm_dir, .keep_going = 1,
                           .fix_modes = 1, .one_fs = 1 };
    int rc = fs_walk_tree(&w, root, -1);
    if (rc == 0 && rmdir(path) != 0 && errno != ENOENT)
        rc = -errno;
    return rc;
}

/* ---- Copying ------------------------------------------------------------ */

/* Copies bytes [from, to) of in to the same offsets of out. A file that
 * shrank meanwhile ends the copy early (the size is set afterwards). */
static int fs_copy_range(struct fs_walker *w, int in, int out, off_t from, off_t to)
{
    int use_cfr = 1;
    char buf[FS_IO_CHUNK];
    while (from < to) {
        size_t want = (size_t)(to - from);
        ssize_t n;
        if (use_cfr) {
            loff_t oi = from, oo = from;
            n = copy_file_range(in, &oi, out, &oo, want > (1u << 26) ? (1u << 26) : want, 0);
            if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
                          errno == EOPNOTSUPP)) {
                use_cfr = 0;
                continue;
            }
        } else {
            n = pread(in, buf, want > sizeof(buf) ? sizeof(buf) : want, from);
            for (ssize_t off = 0; n > 0 && off < n;) {
                ssize_t k = pwrite(out, buf + off, (size_t)(n - off), from + off);
                if (k < 0 && errno != EINTR)
                    return -errno;
                off += k > 0 ? k : 0;
            }
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return 0;
        from += n;
        int rc = fs_beat(w, 0, (uint64_t)n);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Copies the data of in (size bytes) to out, leaving holes as holes. */
static int fs_copy_sparse(struct fs_walker *w, int in, int out, off_t size)
{
    off_t off = 0;
    while (off < size) {
        off_t data = lseek(in, off, SEEK_DATA);
        off_t end = size;
        if (data < 0 && errno == ENXIO)
            break;                               /* only a hole is left */
        if (data < 0 && errno != EINVAL && errno != EOPNOTSUPP)
            return -errno;
        if (data < 0)
            data = off;                          /* no hole support: all data */
        else if ((end = lseek(in, data, SEEK_HOLE)) < 0 || end > size)
            end = size;
        if (data >= size)
            break;
        int rc = fs_copy_range(w, in, out, data, end);
        if (rc != 0)
            return rc;
        off = end;
    }
    return ftruncate(out, size) == 0 ? 0 : -errno;
}

/* Opens the regular file name below dfd for reading without blocking or
 * following a link: 0 and *fd, 1 when it is not a regular file (skip), or
 * a negative errno. */
static int fs_open_reg(int dfd, const char *name, int *fd, struct stat *st)
{
    *fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (*fd < 0)
        return errno == ELOOP || errno == ENXIO || errno == ENOENT ? 1 : -errno;
    if (fstat(*fd, st) != 0 || !S_ISREG(st->st_mode)) {
        int e = S_ISREG(st->st_mode) ? -errno : 1;
        close(*fd);
        *fd = -1;
        return e;
    }
    return 0;
}

static int fs_copy_file(struct fs_walker *w, const char *name, const struct stat *lst)
{
    if (!S_ISREG(lst->st_mode))
        return 0;                 /* links, FIFOs, sockets, devices: skipped */
    struct stat st;
    int in;
    int rc = fs_open_reg(w->src, name, &in, &st);
    if (rc != 0)
        return rc > 0 ? 0 : rc;
    rc = fs_count(w, st.st_size);
    mode_t mode = (st.st_mode & 0111) ? 0700 : 0600;
    int out = -1;
    if (rc == 0) {
        out = openat(w->dst, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        if (out < 0 || fchmod(out, mode) != 0)
            rc = -errno;
    }
    if (rc == 0)
        rc = fs_copy_sparse(w, in, out, st.st_size);
    close(in);
    if (out >= 0 && close(out) != 0 && rc == 0)
        rc = -errno;
    return rc;
}

int fs_copy_tree(const char *src, const char *dst, const struct fs_walk *walk)
{
    int in = open(src, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (in < 0)
        return -errno;
    int out = -1;
    if (mkdir(dst, 0700) != 0 ||
        (out = open(dst, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0 ||
        fchmod(out, 0700) != 0) {
        int e = -errno;
        if (out >= 0)
            close(out);
        close(in);
        return e;
    }
    struct fs_walker w = { .walk = walk, .file = fs_copy_file, .need_rel = 1 };
    return fs_walk_tree(&w, in, out);
}

/* ---- Owners and modes --------------------------------------------------- */

struct fs_owner {
    uid_t uid;
    gid_t gid;
    int   reclaim;           /* also set private modes, no setuid/setgid/sticky */
};

/* Sets the owner of name below the current folder (never through a link)
 * and, when reclaiming, its private mode: folders 0700, regular files
 * 0700 or 0600 by their execute bits; links and special files keep theirs. */
static int fs_own(struct fs_walker *w, const char *name, const struct stat *st)
{
    const struct fs_owner *o = w->ctx;
    int fd = openat(w->src, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    int rc = fchownat(fd, "", o->uid, o->gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0
             ? 0 : -errno;
    struct stat now;
    if (rc == 0 && o->reclaim && fstat(fd, &now) == 0 && now.st_ino == st->st_ino) {
        if (S_ISDIR(now.st_mode))
            rc = fs_fchmod_any(fd, 0700);
        else if (S_ISREG(now.st_mode))
            rc = fs_fchmod_any(fd, (now.st_mode & 0111) ? 0700 : 0600);
    }
    close(fd);
    return rc;
}

static int fs_own_tree(const char *root, const struct fs_owner *o)
{
    int fd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fchown(fd, o->uid, o->gid) == 0 ? 0 : -errno;
    if (rc == 0 && o->reclaim && fchmod(fd, 0700) != 0)
        rc = -errno;
    struct fs_walker w = { .file = fs_own, .enter = fs_own, .ctx = (void *)o,
                           .keep_going = 1 };
    int wrc = fs_walk_tree(&w, fd, -1);
    return rc != 0 ? rc : wrc;
}

int fs_chown_tree(const char *root, uid_t uid, gid_t gid)
{
    struct fs_owner o = { uid, gid, 0 };
    return fs_own_tree(root, &o);
}

int fs_reclaim_tree(const char *root)
{
    struct fs_owner o = { geteuid(), getegid(), 1 };
    return fs_own_tree(root, &o);
}

/* ---- Usage -------------------------------------------------------------- */

static int fs_usage_entry(struct fs_walker *w, const char *name, const struct stat *st)
{
    (void)name;
    struct fs_usage *u = w->ctx;
    u->disk_bytes += (uint64_t)st->st_blocks * 512;
    if (!S_ISREG(st->st_mode))
        return 0;
    int rc = fs_count(w, st->st_size);
    u->files = w->files;
    u->bytes = w->bytes;
    return rc;
}

int fs_usage(const char *root, struct fs_usage *out, const struct fs_walk *walk)
{
    memset(out, 0, sizeof(*out));
    int fd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) == 0)
        out->disk_bytes = (uint64_t)st.st_blocks * 512;
    struct fs_walker w = { .walk = walk, .file = fs_usage_entry, .enter = fs_usage_entry,
                           .ctx = out };
    return fs_walk_tree(&w, fd, -1);
}

/* ---- Publishing --------------------------------------------------------- */

/* rename() that never replaces dst: -EEXIST when something is there. */
static int fs_rename_noreplace(const char *src, const char *dst)
{
    if (renameat2(AT_FDCWD, src, AT_FDCWD, dst, RENAME_NOREPLACE) == 0)
        return 0;
    int e = errno;
    if (e != EINVAL && e != ENOSYS)
        return e == ENOTEMPTY ? -EEXIST : -e;
    /* No RENAME_NOREPLACE here (NFS...): rename(2) still refuses a
     * non-empty target; the check keeps it off an empty one too, short
     * of a folder created between the two calls. */
    struct stat st;
    if (lstat(src, &st) != 0)
        return -errno;
    if (lstat(dst, &st) == 0)
        return -EEXIST;
    if (errno != ENOENT)
        return -errno;
    if (rename(src, dst) == 0)
        return 0;
    return errno == ENOTEMPTY ? -EEXIST : -errno;
}

int fs_publish_dir(const char *src, const char *dst, const char *trash_dir,
                   const char *trash_entry)
{
    int rc = fs_rename_noreplace(src, dst);
    if (rc != -EEXIST || trash_entry == NULL)
        return rc;
    rc = fs_mkdir_p(trash_dir, 0755);
    if (rc != 0)
        return rc;
    /* ENOENT: it went away meanwhile; publish all the same. */
    rc = fs_rename_noreplace(dst, trash_entry);
    if (rc != 0 && rc != -ENOENT)
        return rc;
    return fs_rename_noreplace(src, dst);
}

/* ---- Lookups below a folder --------------------------------------------- */

/* Fallback for kernels before 5.6: one component at a time, none of them
 * a symlink. Paths given here have passed path_validate() or come from a
 * walk, so "." and ".." never appear; refuse them anyway. */
static int fs_walk_open(int dirfd, const char *rel, int flags, mode_t mode)
{
    char buf[PATH_MAX];
    size_t n = strlen(rel);
    if (n == 0 || n >= sizeof(buf))
        return -ENAMETOOLONG;
    memcpy(buf, rel, n + 1);

    int cur = dup(dirfd);
    if (cur < 0)
        return -errno;
    char *comp = buf;
    for (;;) {
        char *slash = strchr(comp, '/');
        if (slash != NULL)
            *slash = '\0';
        if (strcmp(comp, "..") == 0 || strcmp(comp, ".") == 0 || *comp == '\0') {
            close(cur);
            return -EXDEV;
        }
        int next;
        if (slash == NULL)
            next = openat(cur, comp, flags | O_NOFOLLOW | O_CLOEXEC, mode);
        else
            next = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int e = errno;
        close(cur);
        if (next < 0)
            return e == ELOOP ? -ELOOP : -e;
        if (slash == NULL)
            return next;
        cur = next;
        comp = slash + 1;
    }
}

int fs_open_beneath(int dirfd, const char *rel, int flags, mode_t mode)
{
    /* O_NONBLOCK: opening a FIFO or device the agent left never blocks
     * (the caller checks S_ISREG on the descriptor). */
    flags |= O_NONBLOCK;
    struct open_how how;
    memset(&how, 0, sizeof(how));
    how.flags = (unsigned long long)(flags | O_NOFOLLOW | O_CLOEXEC);
    how.mode = (flags & O_CREAT) ? mode : 0;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    long fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
    if (fd >= 0)
        return (int)fd;
    /* ENOSYS: kernel before 5.6; EPERM: a seccomp filter (containers)
     * refusing the unknown call. */
    if (errno != ENOSYS && errno != EPERM)
        return -errno;
    return fs_walk_open(dirfd, rel, flags, mode);
}

int fs_write_beneath(int dirfd, const char *rel, const char *data, size_t len)
{
    char buf[PATH_MAX];
    size_t n = strlen(rel);
    if (n == 0 || n >= sizeof(buf))
        return -ENAMETOOLONG;
    memcpy(buf, rel, n + 1);

    /* Create each parent folder, then the file, never through a link. */
    for (char *s = strchr(buf, '/'); s != NULL; s = strchr(s + 1, '/')) {
        *s = '\0';
        int fd = fs_open_beneath(dirfd, buf, O_RDONLY | O_DIRECTORY, 0);
        if (fd == -ENOENT) {
            int r = mkdirat(dirfd, buf, 0755);
            if (r != 0 && errno != EEXIST)
                return -errno;
            fd = fs_open_beneath(dirfd, buf, O_RDONLY | O_DIRECTORY, 0);
        }
        if (fd < 0)
            return fd;
        close(fd);
        *s = '/';
    }
    int fd = fs_open_beneath(dirfd, buf, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return fd;
    int rc = 0;
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            break;
        }
        off += (size_t)w;
    }
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    return rc;
}


/* ---- Hashing and manifests ---------------------------------------------- */

/* SHA-256 of fd to its end; w (may be NULL) gets a heartbeat every 64 MiB
 * and bounds what is read: past limit bytes, -EFBIG (0: no bound). */
static int fs_hash(int fd, char hex[FS_SHA256_HEX_LEN + 1], int64_t *size,
                   struct fs_walker *w, uint64_t limit)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        return -ENOMEM;
    }
    int rc = 0;
    uint64_t total = 0;
    char buf[FS_IO_CHUNK];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n == 0)
            break;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            break;
        }
        EVP_DigestUpdate(ctx, buf, (size_t)n);
        total += (uint64_t)n;
        if (limit != 0 && total > limit)
            rc = -EFBIG;                    /* it grew past what was counted */
        if (rc == 0 && w != NULL)
            rc = fs_beat(w, 0, (uint64_t)n);
        if (rc != 0)
            break;
    }
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (rc == 0 && EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 32) {
        for (int i = 0; i < 32; i++)
            snprintf(hex + 2 * i, 3, "%02x", md[i]);
        *size = (int64_t)total;
    } else if (rc == 0) {
        rc = -EIO;
    }
    EVP_MD_CTX_free(ctx);
    return rc;
}

int fs_sha256_fd(int fd, char hex[FS_SHA256_HEX_LEN + 1], int64_t *size)
{
    return fs_hash(fd, hex, size, NULL, 0);
}

struct fs_manifest_ctx {
    fs_manifest_fn fn;
    void          *arg;
};

static int fs_manifest_file(struct fs_walker *w, const char *name, const struct stat *lst)
{
    if (!S_ISREG(lst->st_mode))
        return 0;                 /* links, FIFOs, sockets, devices: left out */
    const struct fs_manifest_ctx *m = w->ctx;
    struct stat st;
    int fd;
    int rc = fs_open_reg(w->src, name, &fd, &st);
    if (rc != 0)
        return rc > 0 ? 0 : rc;
    rc = fs_count(w, st.st_size);   /* bounds first: nothing hashed past them */
    char hex[FS_SHA256_HEX_LEN + 1];
    int64_t size = 0;
    if (rc == 0) {
        uint64_t limit = 0;
        if (w->walk != NULL && w->walk->max_bytes != 0)
            limit = w->walk->max_bytes - (w->bytes - (uint64_t)st.st_size);
        rc = fs_hash(fd, hex, &size, w, limit);
    }
    close(fd);
    if (rc == 0)
        rc = m->fn(m->arg, w->rel, size, hex, (st.st_mode & 0111) ? 0100755u : 0100644u);
    return rc;
}

int fs_manifest(const char *root, fs_manifest_fn fn, void *arg, const struct fs_walk *walk)
{
    int dfd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    struct fs_manifest_ctx m = { fn, arg };
    struct fs_walker w = { .walk = walk, .file = fs_manifest_file, .ctx = &m, .need_rel = 1 };
    return fs_walk_tree(&w, dfd, -1);
}
