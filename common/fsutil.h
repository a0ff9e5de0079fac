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

/* Creates path's parent folders (mode 0755, as fs_mkdir_p) and then path
 * itself with mode, exclusively: -EEXIST when path already exists. */
int fs_mkdir_new(const char *path, mode_t mode);

/* Creates path with mode, exclusively (-EEXIST when it exists). Only when
 * that fails for a missing parent is parent (path's parent folder) made,
 * with mode, as fs_mkdir_p; so the usual case is one mkdir(2). */
int fs_mkdir_in(const char *parent, const char *path, mode_t mode);

/* rm -rf that never follows symlinks and has no depth limit (it keeps no
 * descriptor per level); a folder it cannot enter or empty (mode 000, say)
 * gets u+rwx first. It never enters another mount (-EXDEV) and goes on
 * past an entry that cannot go, returning the first error. A missing path
 * is success. */
int fs_rm_rf(const char *path);

/*
 * Every tree walk here (copy, manifest, usage, chown, reclaim, removal)
 * keeps one folder open at a time and no recursion, so any depth is
 * walked; copy and manifest, which name each file by its path from the
 * root, refuse a path longer than PATH_MAX with -ENAMETOOLONG.
 *
 * Bounds and a heartbeat for walks over trees an agent wrote (copy,
 * manifest, usage). Every count is of regular files, sizes are apparent
 * sizes (st_size: a sparse file counts whole). Over max_files a walk
 * stops with -EMFILE, over max_bytes with -EFBIG (0: no bound). progress,
 * when set, is called at least every 1024 files and every 64 MiB read or
 * written; a non-zero return stops the walk with -ECANCELED (the worker
 * renews its lease there and stops when it cannot).
 */
struct fs_walk {
    uint64_t max_files;
    uint64_t max_bytes;
    int    (*progress)(void *arg);
    void    *arg;
};

/*
 * Copies the tree at src into dst (created; must not exist): folders and
 * regular files only (symlinks, FIFOs, sockets and devices are skipped;
 * every file is opened O_NOFOLLOW|O_NONBLOCK and checked S_ISREG on the
 * fd). Holes of sparse files stay holes (SEEK_DATA/SEEK_HOLE). What is
 * created is private and never setuid: folders 0700, files 0700 when the
 * source had any execute bit, else 0600. walk may be NULL.
 */
int fs_copy_tree(const char *src, const char *dst, const struct fs_walk *walk);

/* Hands the tree at root to uid:gid (lchown, links not followed), for the
 * sandbox that runs as that uid. */
int fs_chown_tree(const char *root, uid_t uid, gid_t gid);

/*
 * Takes back a tree the agent wrote (after its processes are gone): every
 * entry becomes the caller's (lchown to geteuid/getegid), setuid, setgid
 * and sticky bits go, folders become 0700, regular files 0700 when they
 * had any execute bit, else 0600; links and special files are left (the
 * walks skip them). Continues past errors and returns the first.
 */
int fs_reclaim_tree(const char *root);

/* Sums the tree at root: regular files (apparent sizes) and the blocks
 * everything uses, without following links. */
struct fs_usage {
    uint64_t files;
    uint64_t bytes;           /* apparent sizes of regular files */
    uint64_t disk_bytes;      /* st_blocks * 512 of every entry */
};
int fs_usage(const char *root, struct fs_usage *out, const struct fs_walk *walk);

/* Opens rel below dirfd without following any symlink or leaving dirfd's
 * tree. flags as for open(2); O_NOFOLLOW, O_NONBLOCK and O_CLOEXEC are
 * added (a FIFO opens at once: check S_ISREG on the fd before reading).
 * Falls back to a component walk when openat2 answers ENOSYS or EPERM. */
int fs_open_beneath(int dirfd, const char *rel, int flags, mode_t mode);

/* Creates rel below dirfd (its folders too) with len bytes of data. Fails
 * with -EEXIST if it exists and never follows a symlink. */
int fs_write_beneath(int dirfd, const char *rel, const char *data, size_t len);

/* Streams fd to its end: SHA-256 as 64 hex digits plus NUL into hex, and
 * the byte count into *size. */
int fs_sha256_fd(int fd, char hex[FS_SHA256_HEX_LEN + 1], int64_t *size);

/* Called once per regular file by fs_manifest(), with its path relative
 * to the root and its git-style mode (0100755 when it had any execute bit,
 * else 0100644). A non-zero return stops the walk and is returned. */
typedef int (*fs_manifest_fn)(void *arg, const char *rel, int64_t size,
                              const char *sha256_hex, unsigned mode);

/*
 * Publishes the folder src as dst (same file system) with one atomic
 * rename that never replaces a folder already at dst:
 * renameat2(RENAME_NOREPLACE). dst's parent must exist.
 *
 * When dst exists: with trash_entry NULL, returns -EEXIST and changes
 * nothing. Otherwise the folder at dst is first moved to trash_entry (a
 * fresh name below trash_dir, which is created when missing) and the
 * rename is retried once; the displaced folder is the caller's to remove.
 * A caller passes a trash_entry only when it knows the folder at dst is
 * stale (the worker: after renewing its lease once more, having seen dst).
 *
 * File systems without RENAME_NOREPLACE (EINVAL, e.g. NFS): the rename
 * falls back to rename(2) after checking that dst is missing. rename(2)
 * refuses to replace a non-empty folder (ENOTEMPTY/EEXIST), so what can
 * still be lost there is only an empty folder created at dst between the
 * check and the rename.
 *
 * Returns 0 or a negative errno (-EEXIST, never -ENOTEMPTY, for "dst
 * exists").
 */
int fs_publish_dir(const char *src, const char *dst, const char *trash_dir,
                   const char *trash_entry);

/* Walks the regular files under root (symlinks and special files are left
 * out, folders are entered without following links, files are opened
 * O_NOFOLLOW|O_NONBLOCK and checked S_ISREG on the fd), hashing each.
 * walk (may be NULL) bounds the walk before anything is hashed past it. */
int fs_manifest(const char *root, fs_manifest_fn fn, void *arg, const struct fs_walk *walk);

#endif
