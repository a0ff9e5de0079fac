/*
 * fsutil.h - workspace files on the shared volume.
 *
 * Everything that touches a session's files goes through here. The agent
 * is untrusted and can leave symlinks, fifos or device nodes in its
 * workspace, so nothing here follows a symlink: lookups below a workspace
 * use openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) (or a walk with
 * O_NOFOLLOW on kernels without it), copies and manifests take regular
 * files and folders only.
 *
 * All functions return 0 (or a file descriptor) on success and a negative
 * errno value on failure.
 */
#ifndef OC_FSUTIL_H
#define OC_FSUTIL_H

#include <stdint.h>
#include <sys/types.h>

#define FS_SHA256_HEX_LEN 64

/* mkdir -p with mode for the folders it creates. */
int fs_mkdir_p(const char *path, mode_t mode);

/* rm -rf that never follows symlinks; a missing path is success. */
int fs_rm_rf(const char *path);

/* Copies the tree at src into dst (created; must not exist): folders and
 * regular files only, symlinks and special files are skipped. */
int fs_copy_tree(const char *src, const char *dst);

/* Opens rel below dirfd without following any symlink or leaving dirfd's
 * tree. flags as for open(2); O_NOFOLLOW and O_CLOEXEC are added. */
int fs_open_beneath(int dirfd, const char *rel, int flags, mode_t mode);

/* Creates rel below dirfd (its folders too) with len bytes of data. Fails
 * with -EEXIST if it exists and never follows a symlink. */
int fs_write_beneath(int dirfd, const char *rel, const char *data, size_t len);

/* Streams fd to its end: SHA-256 as 64 hex digits plus NUL into hex, and
 * the byte count into *size. */
int fs_sha256_fd(int fd, char hex[FS_SHA256_HEX_LEN + 1], int64_t *size);

/* Called once per regular file by fs_manifest(), with its path relative
 * to the root. A non-zero return stops the walk and is returned. */
typedef int (*fs_manifest_fn)(void *arg, const char *rel, int64_t size,
                              const char *sha256_hex);

/* Walks the regular files under root (symlinks and special files are left
 * out, folders are entered without following links), hashing each. */
int fs_manifest(const char *root, fs_manifest_fn fn, void *arg);

#endif
