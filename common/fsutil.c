/* fsutil.c - see fsutil.h. */
#include "fsutil.h"

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

/* Deepest folder nesting walked; deeper trees are refused rather than
 * risking the stack on a hostile workspace. */
#define FS_MAX_DEPTH 64

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

/* Starts reading the folder dfd (taking it over: closedir() closes it).
 * Refuses trees deeper than FS_MAX_DEPTH. On failure dfd is closed. */
static int fs_dir_begin(int dfd, int depth, DIR **out)
{
    if (depth > FS_MAX_DEPTH) {
        close(dfd);
        return -ELOOP;
    }
    *out = fdopendir(dfd);
    if (*out == NULL) {
        int e = -errno;
        close(dfd);
        return e;
    }
    return 0;
}

/* Removes every entry of the open folder dfd, then closes it. */
static int fs_rm_contents(int dfd, int depth)
{
    DIR *d;
    int orc = fs_dir_begin(dfd, depth, &d);
    if (orc != 0)
        return orc;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (unlinkat(dirfd(d), de->d_name, 0) == 0)
            continue;
        if (errno != EISDIR && errno != EPERM) {
            rc = -errno;
            continue;
        }
        int sub = openat(dirfd(d), de->d_name,
                         O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0) {
            rc = -errno;
            continue;
        }
        int r = fs_rm_contents(sub, depth + 1);
        if (r != 0)
            rc = r;
        else if (unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) != 0)
            rc = -errno;
    }
    closedir(d);
    return rc;
}

int fs_rm_rf(const char *path)
{
    if (unlink(path) == 0)
        return 0;
    if (errno == ENOENT)
        return 0;
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return errno == ENOENT ? 0 : -errno;
    int rc = fs_rm_contents(dfd, 0);
    if (rc == 0 && rmdir(path) != 0 && errno != ENOENT)
        rc = -errno;
    return rc;
}

/* ---- Copying ------------------------------------------------------------ */

static int fs_copy_fd(int in, int out)
{
    /* copy_file_range lets the file system share extents where it can. */
    for (;;) {
        ssize_t n = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);
        if (n == 0)
            return 0;
        if (n > 0)
            continue;
        if (errno == EINTR)
            continue;
        if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
            return -errno;
        break;
    }
    char buf[FS_IO_CHUNK];
    for (;;) {
        ssize_t n = read(in, buf, sizeof(buf));
        if (n == 0)
            return 0;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                return -errno;
            }
            off += w;
        }
    }
}

static int fs_copy_dir(int src, int dst, int depth)
{
    DIR *d;
    int orc = fs_dir_begin(src, depth, &d);
    if (orc != 0)
        return orc;
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            rc = -errno;
            break;
        }
        if (S_ISDIR(st.st_mode)) {
            int in = openat(dirfd(d), de->d_name,
                            O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (in < 0 || mkdirat(dst, de->d_name, 0755) != 0) {
                rc = -errno;
                if (in >= 0)
                    close(in);
                break;
            }
            int out = openat(dst, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (out < 0) {
                rc = -errno;
                close(in);
                break;
            }
            rc = fs_copy_dir(in, out, depth + 1);
            close(out);
        } else if (S_ISREG(st.st_mode)) {
            int in = openat(dirfd(d), de->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
            if (in < 0) {
                rc = -errno;
                break;
            }
            int out = openat(dst, de->d_name,
                             O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                             st.st_mode & 0777);
            if (out < 0) {
                rc = -errno;
                close(in);
                break;
            }
            rc = fs_copy_fd(in, out);
            close(in);
            if (close(out) != 0 && rc == 0)
                rc = -errno;
        }
        /* symlinks, fifos, sockets, devices: not part of a workspace */
    }
    closedir(d);
    return rc;
}

int fs_copy_tree(const char *src, const char *dst)
{
    int in = open(src, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (in < 0)
        return -errno;
    if (mkdir(dst, 0755) != 0) {
        int e = -errno;
        close(in);
        return e;
    }
    int out = open(dst, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (out < 0) {
        int e = -errno;
        close(in);
        return e;
    }
    int rc = fs_copy_dir(in, out, 0);
    close(out);
    return rc;
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
    struct open_how how;
    memset(&how, 0, sizeof(how));
    how.flags = (unsigned long long)(flags | O_NOFOLLOW | O_CLOEXEC);
    how.mode = (flags & O_CREAT) ? mode : 0;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    long fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
    if (fd >= 0)
        return (int)fd;
    if (errno != ENOSYS)
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
    int fd = fs_open_beneath(dirfd, buf, O_WRONLY | O_CREAT | O_EXCL, 0644);
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

int fs_sha256_fd(int fd, char hex[FS_SHA256_HEX_LEN + 1], int64_t *size)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        return -ENOMEM;
    }
    int rc = 0;
    int64_t total = 0;
    char buf[FS_IO_CHUNK];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n == 0)
            break;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            break;
        }
        EVP_DigestUpdate(ctx, buf, (size_t)n);
        total += n;
    }
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (rc == 0 && EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 32) {
        for (int i = 0; i < 32; i++)
            snprintf(hex + 2 * i, 3, "%02x", md[i]);
        *size = total;
    } else if (rc == 0) {
        rc = -EIO;
    }
    EVP_MD_CTX_free(ctx);
    return rc;
}

static int fs_manifest_dir(int dfd, char *rel, size_t rel_len, int depth,
                           fs_manifest_fn fn, void *arg)
{
    DIR *d;
    int orc = fs_dir_begin(dfd, depth, &d);
    if (orc != 0)
        return orc;
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        size_t nl = strlen(de->d_name);
        if (rel_len + nl + 2 >= PATH_MAX)
            continue;                    /* unreachable through the API */
        size_t len = rel_len;
        if (len > 0)
            rel[len++] = '/';
        memcpy(rel + len, de->d_name, nl + 1);
        len += nl;

        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            rc = -errno;
        } else if (S_ISDIR(st.st_mode)) {
            int sub = openat(dirfd(d), de->d_name,
                             O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            rc = sub < 0 ? -errno : fs_manifest_dir(sub, rel, len, depth + 1, fn, arg);
        } else if (S_ISREG(st.st_mode)) {
            int fd = openat(dirfd(d), de->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0) {
                rc = -errno;
            } else {
                char hex[FS_SHA256_HEX_LEN + 1];
                int64_t size;
                rc = fs_sha256_fd(fd, hex, &size);
                close(fd);
                if (rc == 0)
                    rc = fn(arg, rel, size, hex);
            }
        }
        rel[rel_len] = '\0';
    }
    closedir(d);
    return rc;
}

int fs_manifest(const char *root, fs_manifest_fn fn, void *arg)
{
    int dfd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    char rel[PATH_MAX];
    rel[0] = '\0';
    return fs_manifest_dir(dfd, rel, 0, 0, fn, arg);
}
