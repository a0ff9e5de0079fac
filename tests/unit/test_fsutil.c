/*
 * test_fsutil.c - workspace file helpers (common/fsutil.h), in a temporary
 * folder under /tmp that is removed at the end.
 */
#include "check.h"
#include "testfs.h"
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define SHA_ABC   "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define SHA_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SHA_HELLO "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
#define SHA_1M_A  "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"

static char root[PATH_MAX];

/* root + "/" + rel, in a rotating set of static buffers. */
static const char *P(const char *rel)
{
    return tfs_path(root, rel);
}

static void put(const char *path, const char *text, mode_t mode)
{
    tfs_put(path, text, strlen(text), mode);
}

static int exists(const char *path)
{
    return tfs_exists(path);
}

static int is_dir(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* 1 when the regular file at path holds exactly text. */
static int has(const char *path, const char *text)
{
    struct stat st;
    if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return 0;
    char buf[4096];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    return n == strlen(text) && memcmp(buf, text, n) == 0;
}

static int count_entries(const char *dir)
{
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof(cmd), "ls -A '%s' | wc -l", dir);
    FILE *f = popen(cmd, "r");
    int n = -1;
    if (f != NULL) {
        if (fscanf(f, "%d", &n) != 1)
            n = -1;
        pclose(f);
    }
    return n;
}

static void test_mkdir_p(void)
{
    CHECK(fs_mkdir_p(P("m/a/b/c"), 0755) == 0);
    CHECK(is_dir(P("m/a/b/c")));
    CHECK(fs_mkdir_p(P("m/a/b/c"), 0755) == 0);          /* already there */
    CHECK(fs_mkdir_p(P("m/a/x/"), 0755) == 0);           /* trailing slash */
    CHECK(is_dir(P("m/a/x")));
    CHECK(fs_mkdir_p(P("m/p"), 0700) == 0);
    struct stat st;
    CHECK(lstat(P("m/p"), &st) == 0 && (st.st_mode & 0777) == 0700);
    CHECK(fs_mkdir_p("", 0755) < 0);

    /* A regular file in the way is an error, as with mkdir -p. */
    put(P("m/file"), "x", 0644);
    CHECK(fs_mkdir_p(P("m/file/sub"), 0755) == -ENOTDIR);
    int rc = fs_mkdir_p(P("m/file"), 0755);
    CHECK(rc < 0);
    if (rc == 0)
        fprintf(stderr, "  fs_mkdir_p on an existing regular file returned 0\n");
}

static void test_write_open(void)
{
    CHECK(fs_mkdir_p(P("ws"), 0755) == 0);
    CHECK(fs_mkdir_p(P("outside"), 0755) == 0);
    put(P("outside/secret"), "secret", 0644);
    int ws = open(P("ws"), O_RDONLY | O_DIRECTORY);
    CHECK(ws >= 0);
    if (ws < 0)
        return;

    /* Parents created, content written. */
    static const char body[] = "print('hi')\n";
    CHECK(fs_write_beneath(ws, "src/pkg/mod.py", body, strlen(body)) == 0);
    CHECK(is_dir(P("ws/src/pkg")));
    CHECK(has(P("ws/src/pkg/mod.py"), body));
    CHECK(fs_write_beneath(ws, "top.txt", "abc", 3) == 0);
    CHECK(has(P("ws/top.txt"), "abc"));
    CHECK(fs_write_beneath(ws, "empty", "", 0) == 0);
    CHECK(has(P("ws/empty"), ""));
    CHECK(fs_write_beneath(ws, "src/second.txt", "2", 1) == 0);   /* folder exists */
    CHECK(has(P("ws/src/second.txt"), "2"));
    /* Binary content with NULs, length from the caller. */
    CHECK(fs_write_beneath(ws, "bin", "a\0b", 3) == 0);
    {
        struct stat st;
        CHECK(lstat(P("ws/bin"), &st) == 0 && st.st_size == 3);
    }

    /* No overwrite. */
    CHECK(fs_write_beneath(ws, "top.txt", "zzz", 3) == -EEXIST);
    CHECK(has(P("ws/top.txt"), "abc"));

    /* A file where a folder is needed. */
    CHECK(fs_write_beneath(ws, "top.txt/x", "x", 1) < 0);

    /* Never through a symlinked folder. */
    CHECK(symlink(P("outside"), P("ws/link")) == 0);
    int rc = fs_write_beneath(ws, "link/x", "evil", 4);
    CHECK(rc < 0);
    CHECK(!exists(P("outside/x")));
    rc = fs_write_beneath(ws, "link/deep/x", "evil", 4);
    CHECK(rc < 0);
    CHECK(!exists(P("outside/deep")));
    /* ... nor a dangling one (it would create the folder outside). */
    CHECK(symlink(P("outside/newdir"), P("ws/dangling")) == 0);
    CHECK(fs_write_beneath(ws, "dangling/x", "evil", 4) < 0);
    CHECK(!exists(P("outside/newdir")));
    /* ... nor a symlink as the file itself. */
    CHECK(symlink(P("outside/target"), P("ws/flink")) == 0);
    CHECK(fs_write_beneath(ws, "flink", "evil", 4) < 0);
    CHECK(!exists(P("outside/target")));
    CHECK(symlink(P("outside/secret"), P("ws/slink")) == 0);
    CHECK(fs_write_beneath(ws, "slink", "evil", 4) < 0);
    CHECK(has(P("outside/secret"), "secret"));
    /* ... nor out of the tree by name. */
    CHECK(fs_write_beneath(ws, "../outside/y", "evil", 4) < 0);
    CHECK(!exists(P("outside/y")));
    CHECK(fs_write_beneath(ws, P("outside/z"), "evil", 4) < 0);    /* absolute */
    CHECK(!exists(P("outside/z")));
    CHECK(fs_write_beneath(ws, "", "x", 1) < 0);
    CHECK(count_entries(P("outside")) == 1);

    /* fs_open_beneath: ordinary files open, and read back. */
    int fd = fs_open_beneath(ws, "src/pkg/mod.py", O_RDONLY, 0);
    CHECK(fd >= 0);
    if (fd >= 0) {
        char buf[64] = "";
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        CHECK(n == (ssize_t)strlen(body) && memcmp(buf, body, strlen(body)) == 0);
        int fl = fcntl(fd, F_GETFD);
        CHECK(fl >= 0 && (fl & FD_CLOEXEC));
        close(fd);
    }
    fd = fs_open_beneath(ws, "src", O_RDONLY | O_DIRECTORY, 0);
    CHECK(fd >= 0);
    if (fd >= 0)
        close(fd);
    fd = fs_open_beneath(ws, "new.txt", O_WRONLY | O_CREAT | O_EXCL, 0600);
    CHECK(fd >= 0);
    if (fd >= 0)
        close(fd);
    CHECK(exists(P("ws/new.txt")));
    CHECK(fs_open_beneath(ws, "missing", O_RDONLY, 0) == -ENOENT);

    /* ... symlinks do not, wherever they are in the path. */
    CHECK(symlink("/etc/passwd", P("ws/passwd")) == 0);
    fd = fs_open_beneath(ws, "passwd", O_RDONLY, 0);
    CHECK(fd < 0 && fd != -ENOENT);
    if (fd >= 0)
        close(fd);
    CHECK(fs_mkdir_p(P("ws/sibling"), 0755) == 0);
    put(P("ws/sibling/f"), "sib", 0644);
    CHECK(symlink("sibling", P("ws/tosib")) == 0);           /* relative, stays inside */
    fd = fs_open_beneath(ws, "tosib/f", O_RDONLY, 0);
    CHECK(fd < 0 && fd != -ENOENT);
    if (fd >= 0)
        close(fd);
    fd = fs_open_beneath(ws, "link/secret", O_RDONLY, 0);
    CHECK(fd < 0 && fd != -ENOENT);
    if (fd >= 0)
        close(fd);
    CHECK(fs_mkdir_p(P("ws/d1"), 0755) == 0);
    CHECK(symlink("../sibling/f", P("ws/d1/up")) == 0);
    fd = fs_open_beneath(ws, "d1/up", O_RDONLY, 0);
    CHECK(fd < 0 && fd != -ENOENT);
    if (fd >= 0)
        close(fd);

    /* ... nor ".." or absolute paths out of the tree. */
    fd = fs_open_beneath(ws, "../outside/secret", O_RDONLY, 0);
    CHECK(fd < 0 && fd != -ENOENT);
    if (fd >= 0)
        close(fd);
    fd = fs_open_beneath(ws, "src/../../outside/secret", O_RDONLY, 0);
    CHECK(fd < 0 && fd != -ENOENT);
    if (fd >= 0)
        close(fd);
    fd = fs_open_beneath(ws, P("outside/secret"), O_RDONLY, 0);
    CHECK(fd < 0 && fd != -ENOENT);
    if (fd >= 0)
        close(fd);
    /* A create through a symlinked folder leaves nothing outside. */
    fd = fs_open_beneath(ws, "link/created", O_WRONLY | O_CREAT, 0644);
    CHECK(fd < 0);
    if (fd >= 0)
        close(fd);
    CHECK(!exists(P("outside/created")));
    CHECK(count_entries(P("outside")) == 1);
    close(ws);
}

static void test_copy_tree(void)
{
    CHECK(fs_mkdir_p(P("src/a/b"), 0755) == 0);
    CHECK(fs_mkdir_p(P("src/emptydir"), 0755) == 0);
    CHECK(fs_mkdir_p(P("other"), 0755) == 0);
    put(P("other/o.txt"), "other", 0644);
    put(P("src/top.txt"), "top\n", 0644);
    put(P("src/a/b/deep.txt"), "deep", 0640);
    put(P("src/a/mid.bin"), "", 0644);
    CHECK(symlink("/etc/passwd", P("src/passwd")) == 0);
    CHECK(symlink(P("other"), P("src/a/dirlink")) == 0);
    CHECK(symlink("top.txt", P("src/rel")) == 0);
    CHECK(mkfifo(P("src/fifo"), 0644) == 0);

    CHECK(fs_copy_tree(P("src"), P("dst"), NULL) == 0);
    CHECK(has(P("dst/top.txt"), "top\n"));
    CHECK(has(P("dst/a/b/deep.txt"), "deep"));
    CHECK(has(P("dst/a/mid.bin"), ""));
    CHECK(is_dir(P("dst/emptydir")));
    CHECK(!exists(P("dst/passwd")));
    CHECK(!exists(P("dst/a/dirlink")));
    CHECK(!exists(P("dst/rel")));
    CHECK(!exists(P("dst/fifo")));
    CHECK(count_entries(P("dst")) == 3);           /* top.txt a emptydir */
    CHECK(count_entries(P("dst/a")) == 2);         /* b mid.bin */
    struct stat st;
    CHECK(lstat(P("dst/a/b/deep.txt"), &st) == 0 && (st.st_mode & 07777) == 0600);
    CHECK(lstat(P("dst/a/b"), &st) == 0 && (st.st_mode & 07777) == 0700);
    CHECK(lstat(P("dst"), &st) == 0 && (st.st_mode & 07777) == 0700);
    /* The source is untouched. */
    CHECK(has(P("src/top.txt"), "top\n"));
    CHECK(has(P("other/o.txt"), "other"));

    /* The copy is independent of the source. */
    put(P("dst/top.txt"), "changed", 0644);
    CHECK(has(P("src/top.txt"), "top\n"));

    /* dst must not exist; src must be a real folder. */
    CHECK(fs_copy_tree(P("src"), P("dst"), NULL) == -EEXIST);
    CHECK(fs_copy_tree(P("nosuch"), P("dst2"), NULL) == -ENOENT);
    CHECK(!exists(P("dst2")));
    CHECK(symlink(P("src"), P("srclink")) == 0);
    CHECK(fs_copy_tree(P("srclink"), P("dst3"), NULL) < 0);
    CHECK(!exists(P("dst3")));

    /* A larger file (more than one read chunk) arrives whole. */
    {
        static char big[300 * 1024];
        for (size_t i = 0; i < sizeof(big); i++)
            big[i] = (char)('a' + i % 26);
        CHECK(fs_mkdir_p(P("bigsrc"), 0755) == 0);
        int fd = open(P("bigsrc/big"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        CHECK(fd >= 0 && write(fd, big, sizeof(big)) == (ssize_t)sizeof(big));
        if (fd >= 0)
            close(fd);
        CHECK(fs_copy_tree(P("bigsrc"), P("bigdst"), NULL) == 0);
        fd = open(P("bigdst/big"), O_RDONLY);
        CHECK(fd >= 0);
        if (fd >= 0) {
            static char back[sizeof(big) + 1];
            size_t got = 0;
            ssize_t n;
            while ((n = read(fd, back + got, sizeof(back) - got)) > 0)
                got += (size_t)n;
            CHECK(got == sizeof(big) && memcmp(back, big, sizeof(big)) == 0);
            close(fd);
        }
    }
}

static void test_rm_rf(void)
{
    CHECK(fs_mkdir_p(P("keep"), 0755) == 0);
    put(P("keep/precious"), "precious", 0644);
    CHECK(fs_mkdir_p(P("keep/sub"), 0755) == 0);
    put(P("keep/sub/also"), "also", 0644);

    CHECK(fs_mkdir_p(P("rm/a/b/c"), 0755) == 0);
    put(P("rm/a/b/c/f"), "f", 0644);
    put(P("rm/top"), "t", 0444);
    CHECK(symlink(P("keep"), P("rm/a/tokeep")) == 0);
    CHECK(symlink(P("keep/precious"), P("rm/a/b/toprecious")) == 0);
    CHECK(symlink(P("nowhere"), P("rm/dangling")) == 0);
    CHECK(mkfifo(P("rm/a/fifo"), 0644) == 0);

    CHECK(fs_rm_rf(P("rm")) == 0);
    CHECK(!exists(P("rm")));
    CHECK(has(P("keep/precious"), "precious"));
    CHECK(has(P("keep/sub/also"), "also"));
    CHECK(count_entries(P("keep")) == 2);

    /* Missing is success; a file and a symlink are removed themselves. */
    CHECK(fs_rm_rf(P("rm")) == 0);
    CHECK(fs_rm_rf(P("no/such/path")) == 0);
    put(P("lonely"), "x", 0644);
    CHECK(fs_rm_rf(P("lonely")) == 0);
    CHECK(!exists(P("lonely")));
    CHECK(symlink(P("keep"), P("keeplink")) == 0);
    CHECK(fs_rm_rf(P("keeplink")) == 0);
    CHECK(!exists(P("keeplink")));
    CHECK(has(P("keep/precious"), "precious"));
    CHECK(has(P("keep/sub/also"), "also"));
}

static void test_sha256(void)
{
    char hex[FS_SHA256_HEX_LEN + 1];
    int64_t size = -1;

    put(P("h_abc"), "abc", 0644);
    int fd = open(P("h_abc"), O_RDONLY);
    CHECK(fd >= 0 && fs_sha256_fd(fd, hex, &size) == 0);
    CHECK_STR(hex, SHA_ABC);
    CHECK(size == 3);
    if (fd >= 0)
        close(fd);

    put(P("h_empty"), "", 0644);
    fd = open(P("h_empty"), O_RDONLY);
    size = -1;
    CHECK(fd >= 0 && fs_sha256_fd(fd, hex, &size) == 0);
    CHECK_STR(hex, SHA_EMPTY);
    CHECK(size == 0);
    if (fd >= 0)
        close(fd);

    /* One million 'a': many read chunks. */
    fd = open(P("h_1m"), O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    if (fd >= 0) {
        static char a[1000000];
        memset(a, 'a', sizeof(a));
        CHECK(write(fd, a, sizeof(a)) == (ssize_t)sizeof(a));
        CHECK(lseek(fd, 0, SEEK_SET) == 0);
        size = -1;
        CHECK(fs_sha256_fd(fd, hex, &size) == 0);
        CHECK_STR(hex, SHA_1M_A);
        CHECK(size == 1000000);
        close(fd);
    }

    /* A pipe: streamed to its end. */
    int p[2];
    CHECK(pipe(p) == 0);
    CHECK(write(p[1], "hello\n", 6) == 6);
    close(p[1]);
    size = -1;
    CHECK(fs_sha256_fd(p[0], hex, &size) == 0);
    CHECK_STR(hex, SHA_HELLO);
    CHECK(size == 6);
    close(p[0]);

    /* A bad descriptor is an error. */
    CHECK(fs_sha256_fd(-1, hex, &size) == -EBADF);
}

struct entry {
    char rel[256];
    int64_t size;
    char sha[FS_SHA256_HEX_LEN + 1];
    unsigned mode;
};

struct entries {
    struct entry e[16];
    int n;
    int stop_after;   /* return 42 after this many calls (0: never) */
};

static int collect(void *arg, const char *rel, int64_t size, const char *sha, unsigned mode)
{
    struct entries *es = arg;
    if (es->n < 16) {
        es->e[es->n].mode = mode;
        snprintf(es->e[es->n].rel, sizeof(es->e[0].rel), "%s", rel);
        es->e[es->n].size = size;
        snprintf(es->e[es->n].sha, sizeof(es->e[0].sha), "%s", sha);
    }
    es->n++;
    return es->stop_after > 0 && es->n >= es->stop_after ? 42 : 0;
}

static const struct entry *find(const struct entries *es, const char *rel)
{
    for (int i = 0; i < es->n && i < 16; i++)
        if (strcmp(es->e[i].rel, rel) == 0)
            return &es->e[i];
    return NULL;
}

static void test_manifest(void)
{
    CHECK(fs_mkdir_p(P("man/d/e"), 0755) == 0);
    CHECK(fs_mkdir_p(P("man/emptydir"), 0755) == 0);
    put(P("man/a.txt"), "abc", 0644);
    put(P("man/d/e/f.txt"), "", 0644);
    put(P("man/d/g.txt"), "hello\n", 0644);
    CHECK(symlink("a.txt", P("man/s")) == 0);
    CHECK(symlink("d", P("man/sd")) == 0);
    CHECK(symlink("/etc/passwd", P("man/d/pw")) == 0);
    CHECK(mkfifo(P("man/p"), 0644) == 0);

    struct entries es;
    memset(&es, 0, sizeof(es));
    CHECK(fs_manifest(P("man"), collect, &es, NULL) == 0);
    CHECK(es.n == 3);
    const struct entry *e = find(&es, "a.txt");
    CHECK(e != NULL && e->size == 3 && strcmp(e->sha, SHA_ABC) == 0);
    e = find(&es, "d/e/f.txt");
    CHECK(e != NULL && e->size == 0 && strcmp(e->sha, SHA_EMPTY) == 0);
    e = find(&es, "d/g.txt");
    CHECK(e != NULL && e->size == 6 && strcmp(e->sha, SHA_HELLO) == 0);
    CHECK(find(&es, "s") == NULL && find(&es, "sd/g.txt") == NULL &&
          find(&es, "d/pw") == NULL && find(&es, "p") == NULL);

    /* A non-zero return stops the walk and is returned. */
    memset(&es, 0, sizeof(es));
    es.stop_after = 1;
    CHECK(fs_manifest(P("man"), collect, &es, NULL) == 42);
    CHECK(es.n == 1);

    /* An empty folder has no files; a missing root or a symlinked root is
     * an error. */
    memset(&es, 0, sizeof(es));
    CHECK(fs_manifest(P("man/emptydir"), collect, &es, NULL) == 0);
    CHECK(es.n == 0);
    CHECK(fs_manifest(P("man/nosuch"), collect, &es, NULL) == -ENOENT);
    CHECK(fs_manifest(P("man/sd"), collect, &es, NULL) < 0);
    CHECK(es.n == 0);
}

/* fs_mkdir_new: parents as needed, the folder itself exclusively. */
static void test_mkdir_new(void)
{
    CHECK(fs_mkdir_new(P("new/a/b"), 0700) == 0);
    CHECK(is_dir(P("new/a")) && is_dir(P("new/a/b")));
    struct stat st;
    CHECK(stat(P("new/a/b"), &st) == 0 && (st.st_mode & 0777) == 0700);
    CHECK(fs_mkdir_new(P("new/a/b"), 0700) == -EEXIST);
    put(P("new/file"), "x", 0644);
    CHECK(fs_mkdir_new(P("new/file"), 0700) == -EEXIST);
    CHECK(fs_mkdir_new(P("new/file/sub"), 0700) == -ENOTDIR);
}

/* fs_mkdir_in: one mkdir when the parent is there, the parent made (with
 * the same mode) only when it is missing, the folder itself exclusively. */
static void test_mkdir_in(void)
{
    CHECK(fs_mkdir_in(P("in/root"), P("in/root/s1"), 0700) == 0);
    struct stat st;
    CHECK(stat(P("in/root"), &st) == 0 && (st.st_mode & 0777) == 0700);
    CHECK(stat(P("in/root/s1"), &st) == 0 && (st.st_mode & 0777) == 0700);
    CHECK(fs_mkdir_in(P("in/root"), P("in/root/s2"), 0700) == 0 && is_dir(P("in/root/s2")));
    CHECK(fs_mkdir_in(P("in/root"), P("in/root/s1"), 0700) == -EEXIST);
    put(P("in/file"), "x", 0644);
    CHECK(fs_mkdir_in(P("in/file"), P("in/file/s"), 0700) == -ENOTDIR);
}

/* fs_publish_dir: an atomic rename that never replaces what is there;
 * with a trash entry it displaces the folder at dst first. */
static void test_publish_dir(void)
{
    CHECK(fs_mkdir_p(P("pub/src1"), 0755) == 0);
    put(P("pub/src1/one"), "1", 0644);
    CHECK(fs_mkdir_p(P("pub/jobs"), 0755) == 0);
    CHECK(fs_publish_dir(P("pub/src1"), P("pub/jobs/j"), NULL, NULL) == 0);
    CHECK(!exists(P("pub/src1")));
    CHECK(has(P("pub/jobs/j/one"), "1"));

    /* Something there: refused without a trash entry, nothing moves. */
    CHECK(fs_mkdir_p(P("pub/src2"), 0755) == 0);
    put(P("pub/src2/two"), "2", 0644);
    CHECK(fs_publish_dir(P("pub/src2"), P("pub/jobs/j"), NULL, NULL) == -EEXIST);
    CHECK(has(P("pub/jobs/j/one"), "1") && !exists(P("pub/jobs/j/two")));
    CHECK(has(P("pub/src2/two"), "2"));
    /* Even an empty folder is not replaced (rename(2) would). */
    CHECK(fs_mkdir_p(P("pub/jobs/e"), 0755) == 0);
    CHECK(fs_publish_dir(P("pub/src2"), P("pub/jobs/e"), NULL, NULL) == -EEXIST);
    CHECK(count_entries(P("pub/jobs/e")) == 0);

    /* With a trash entry: the old folder moves there (trash created). */
    CHECK(fs_publish_dir(P("pub/src2"), P("pub/jobs/j"), P("pub/trash"),
                         P("pub/trash/j-1")) == 0);
    CHECK(has(P("pub/jobs/j/two"), "2") && !exists(P("pub/jobs/j/one")));
    CHECK(has(P("pub/trash/j-1/one"), "1"));
    CHECK(!exists(P("pub/src2")));

    /* A missing source changes nothing. */
    CHECK(fs_publish_dir(P("pub/nosuch"), P("pub/jobs/k"), NULL, NULL) == -ENOENT);
    CHECK(!exists(P("pub/jobs/k")));
    CHECK(fs_publish_dir(P("pub/nosuch"), P("pub/jobs/j"), P("pub/trash"),
                         P("pub/trash/j-2")) == -ENOENT);
}

/* ---- Hostile trees: special files, sparse files, bounds, modes, depth --- */

static int count_ent(const struct entries *es, const char *rel)
{
    return find(es, rel) != NULL;
}

/* Builds depth folders named "d" below path, a file "f" at the bottom;
 * every folder at a multiple of mode0_every (0: none) gets mode 000. */
static void make_deep(const char *path, int depth, int mode0_every)
{
    CHECK(mkdir(path, 0755) == 0);
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    for (int i = 0; fd >= 0 && i < depth; i++) {
        CHECK(mkdirat(fd, "d", 0755) == 0);
        int next = openat(fd, "d", O_RDONLY | O_DIRECTORY);
        if (next < 0)
            fprintf(stderr, "make_deep %s level %d: %s\n", path, i, strerror(errno));
        CHECK(next >= 0);
        if (next >= 0 && mode0_every > 0 && i % mode0_every == mode0_every - 1)
            CHECK(fchmod(next, 0) == 0);
        close(fd);
        fd = next;
    }
    if (fd >= 0) {
        int f = openat(fd, "f", O_WRONLY | O_CREAT, 0644);
        CHECK(f >= 0 && write(f, "x", 1) == 1);
        close(f);
        close(fd);
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* FIFOs and sockets never block a walk or a lookup, and are left out. */
static void test_special_files(void)
{
    alarm(20);                       /* a blocking open fails the test, not hangs it */
    CHECK(fs_mkdir_p(P("sp/src"), 0755) == 0);
    put(P("sp/src/ok"), "ok", 0644);
    CHECK(mkfifo(P("sp/src/fifo"), 0666) == 0);
    int sock = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", P("sp/src/sock"));
    CHECK(sock >= 0 && bind(sock, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    CHECK(symlink("ok", P("sp/src/link")) == 0);

    CHECK(fs_copy_tree(P("sp/src"), P("sp/dst"), NULL) == 0);
    CHECK(has(P("sp/dst/ok"), "ok"));
    CHECK(count_entries(P("sp/dst")) == 1);
    struct entries es;
    memset(&es, 0, sizeof(es));
    CHECK(fs_manifest(P("sp/src"), collect, &es, NULL) == 0);
    CHECK(es.n == 1 && count_ent(&es, "ok"));
    struct fs_usage u;
    CHECK(fs_usage(P("sp/src"), &u, NULL) == 0 && u.files == 1 && u.bytes == 2);

    /* fs_open_beneath opens the FIFO at once (no writer): not regular. */
    int dfd = open(P("sp/src"), O_RDONLY | O_DIRECTORY);
    int fd = fs_open_beneath(dfd, "fifo", O_RDONLY, 0);
    struct stat st;
    CHECK(fd >= 0 && fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode));
    if (fd >= 0)
        close(fd);
    CHECK(fs_open_beneath(dfd, "sock", O_RDONLY, 0) < 0);
    CHECK(fs_open_beneath(dfd, "link", O_RDONLY, 0) == -ELOOP);
    close(dfd);
    close(sock);
    CHECK(fs_rm_rf(P("sp")) == 0 && !exists(P("sp")));
    alarm(0);
}

/* A 1 TiB sparse file copies in well under a second, holes kept, counted
 * whole against max_bytes; data between holes arrives intact. */
static void test_sparse(void)
{
    const off_t tib = (off_t)1 << 40;
    CHECK(fs_mkdir_p(P("sparse/src"), 0755) == 0);
    int fd = open(P("sparse/src/big"), O_WRONLY | O_CREAT, 0644);
    CHECK(fd >= 0 && ftruncate(fd, tib) == 0);
    close(fd);
    fd = open(P("sparse/src/mixed"), O_WRONLY | O_CREAT, 0644);
    CHECK(fd >= 0 && ftruncate(fd, 8 << 20) == 0);
    CHECK(pwrite(fd, "middle", 6, 3 << 20) == 6 && pwrite(fd, "end", 3, (8 << 20) - 3) == 3);
    close(fd);

    double t0 = now_s();
    CHECK(fs_copy_tree(P("sparse/src"), P("sparse/dst"), NULL) == 0);
    CHECK(now_s() - t0 < 1.0);
    struct stat st;
    CHECK(stat(P("sparse/dst/big"), &st) == 0 && st.st_size == tib);
    CHECK(st.st_blocks * 512 < (1 << 20));
    CHECK(stat(P("sparse/dst/mixed"), &st) == 0 && st.st_size == (8 << 20));
    char buf[8] = {0};
    fd = open(P("sparse/dst/mixed"), O_RDONLY);
    CHECK(fd >= 0 && pread(fd, buf, 6, 3 << 20) == 6 && memcmp(buf, "middle", 6) == 0);
    CHECK(fd >= 0 && pread(fd, buf, 3, (8 << 20) - 3) == 3 && memcmp(buf, "end", 3) == 0);
    CHECK(fd >= 0 && pread(fd, buf, 4, 1 << 20) == 4 && memcmp(buf, "\0\0\0\0", 4) == 0);
    if (fd >= 0)
        close(fd);

    /* Counted whole: over max_bytes before a byte is read or hashed. */
    struct fs_walk b = { .max_bytes = (uint64_t)1 << 30 };
    t0 = now_s();
    CHECK(fs_copy_tree(P("sparse/src"), P("sparse/dst2"), &b) == -EFBIG);
    struct entries es;
    memset(&es, 0, sizeof(es));
    CHECK(fs_manifest(P("sparse/src"), collect, &es, &b) == -EFBIG);
    CHECK(!count_ent(&es, "big"));
    CHECK(now_s() - t0 < 2.0);
    struct fs_usage u;
    CHECK(fs_usage(P("sparse/src"), &u, NULL) == 0);
    CHECK(u.files == 2 && u.bytes == (uint64_t)tib + (8 << 20));
    CHECK(u.disk_bytes < (64 << 20));
    CHECK(fs_usage(P("sparse/src"), &u, &b) == -EFBIG);
    CHECK(fs_rm_rf(P("sparse")) == 0);
}

static int beats;
static int beat_stop_at;
static int beat(void *arg)
{
    (void)arg;
    beats++;
    return beat_stop_at > 0 && beats >= beat_stop_at;
}

/* max_files and max_bytes stop every walk; progress beats and cancels. */
static void test_bounds(void)
{
    CHECK(fs_mkdir_p(P("bd/src/sub"), 0755) == 0);
    for (int i = 0; i < 3000; i++) {
        char rel[64];
        snprintf(rel, sizeof(rel), "bd/src/%s%d", i % 2 ? "sub/" : "", i);
        put(P(rel), "0123456789", 0644);
    }
    struct fs_walk b = { .max_files = 100 };
    struct entries es;
    memset(&es, 0, sizeof(es));
    CHECK(fs_copy_tree(P("bd/src"), P("bd/d1"), &b) == -EMFILE);
    CHECK(fs_manifest(P("bd/src"), collect, &es, &b) == -EMFILE);
    CHECK(es.n == 100);
    struct fs_usage u;
    CHECK(fs_usage(P("bd/src"), &u, &b) == -EMFILE);
    b.max_files = 3000;
    CHECK(fs_usage(P("bd/src"), &u, &b) == 0 && u.files == 3000 && u.bytes == 30000);
    b.max_files = 0;
    b.max_bytes = 29999;
    CHECK(fs_copy_tree(P("bd/src"), P("bd/d2"), &b) == -EFBIG);
    b.max_bytes = 30000;
    CHECK(fs_copy_tree(P("bd/src"), P("bd/d3"), &b) == 0);

    /* Heartbeat: at least every 1024 files; a non-zero return cancels. */
    struct fs_walk hb = { .progress = beat };
    beats = 0;
    beat_stop_at = 0;
    memset(&es, 0, sizeof(es));
    CHECK(fs_manifest(P("bd/src"), collect, &es, &hb) == 0 && es.n == 3000);
    CHECK(beats >= 2);
    beats = 0;
    beat_stop_at = 1;
    CHECK(fs_copy_tree(P("bd/src"), P("bd/d4"), &hb) == -ECANCELED);
    beats = 0;
    CHECK(fs_usage(P("bd/src"), &u, &hb) == -ECANCELED);
    CHECK(fs_rm_rf(P("bd")) == 0 && !exists(P("bd")));
}

static mode_t mode_of(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 ? st.st_mode & 07777 : (mode_t)-1;
}

static uid_t uid_of(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 ? st.st_uid : (uid_t)-1;
}

/* Copies and reclaims are private and never setuid; the manifest gives
 * git's mode; chown_tree hands a tree over without following links. */
static void test_modes_owners(void)
{
    CHECK(fs_mkdir_p(P("md/src/sg"), 0755) == 0);
    CHECK(chmod(P("md/src/sg"), 02775) == 0);
    CHECK(fs_mkdir_p(P("md/src/sticky"), 0755) == 0);
    CHECK(chmod(P("md/src/sticky"), 01777) == 0);
    put(P("md/src/suid"), "#!/bin/sh\n", 0644);
    CHECK(chmod(P("md/src/suid"), 04755) == 0);
    put(P("md/src/sg/plain"), "p", 0644);
    CHECK(chmod(P("md/src/sg/plain"), 02644) == 0);
    put(P("md/src/gx"), "g", 0610);
    CHECK(symlink("/etc/passwd", P("md/src/pw")) == 0);

    CHECK(fs_copy_tree(P("md/src"), P("md/dst"), NULL) == 0);
    CHECK(mode_of(P("md/dst")) == 0700 && mode_of(P("md/dst/sg")) == 0700);
    CHECK(mode_of(P("md/dst/sticky")) == 0700);
    CHECK(mode_of(P("md/dst/suid")) == 0700 && mode_of(P("md/dst/gx")) == 0700);
    CHECK(mode_of(P("md/dst/sg/plain")) == 0600);

    struct entries es;
    memset(&es, 0, sizeof(es));
    CHECK(fs_manifest(P("md/src"), collect, &es, NULL) == 0 && es.n == 3);
    CHECK(find(&es, "suid") && find(&es, "suid")->mode == 0100755);
    CHECK(find(&es, "gx") && find(&es, "gx")->mode == 0100755);
    CHECK(find(&es, "sg/plain") && find(&es, "sg/plain")->mode == 0100644);

    /* Hand over to a sandbox uid, then take back. */
    struct stat pw;
    CHECK(stat("/etc/passwd", &pw) == 0);
    if (geteuid() == 0) {
        CHECK(fs_chown_tree(P("md/src"), 54321, 54322) == 0);
        CHECK(uid_of(P("md/src")) == 54321 && uid_of(P("md/src/sg/plain")) == 54321);
        CHECK(uid_of(P("md/src/pw")) == 54321 && uid_of(P("md/src/sticky")) == 54321);
        struct stat now;
        CHECK(stat("/etc/passwd", &now) == 0 && now.st_uid == pw.st_uid);
        CHECK(chmod(P("md/src/suid"), 06755) == 0);       /* the agent's doing */
        CHECK(chmod(P("md/src/sg"), 0) == 0);
    }
    CHECK(fs_reclaim_tree(P("md/src")) == 0);
    CHECK(uid_of(P("md/src")) == geteuid() && uid_of(P("md/src/sg/plain")) == geteuid());
    CHECK(uid_of(P("md/src/pw")) == geteuid());
    CHECK(mode_of(P("md/src")) == 0700 && mode_of(P("md/src/sg")) == 0700);
    CHECK(mode_of(P("md/src/sticky")) == 0700);
    CHECK(mode_of(P("md/src/suid")) == 0700 && mode_of(P("md/src/sg/plain")) == 0600);
    CHECK(mode_of(P("md/src/gx")) == 0700);
    struct stat now;
    CHECK(stat("/etc/passwd", &now) == 0 && (now.st_mode & 07777) == (pw.st_mode & 07777));
    CHECK(fs_rm_rf(P("md")) == 0 && !exists(P("md")));
}

/* Depth: removal has no limit (10 000 levels, mode-000 folders); copy and
 * manifest walk a 70-deep tree and refuse a path longer than PATH_MAX. */
static void test_deep(void)
{
    make_deep(P("deep1000"), 1000, 7);
    CHECK(chmod(P("deep1000"), 0) == 0);
    CHECK(fs_rm_rf(P("deep1000")) == 0 && !exists(P("deep1000")));
    make_deep(P("deep10k"), 10000, 0);
    CHECK(fs_rm_rf(P("deep10k")) == 0 && !exists(P("deep10k")));

    make_deep(P("deep70"), 70, 10);
    CHECK(fs_copy_tree(P("deep70"), P("deep70c"), NULL) == 0);
    char rel[512];
    size_t used = 0;
    for (int i = 0; i < 70; i++)
        used += (size_t)snprintf(rel + used, sizeof(rel) - used, "d/");
    snprintf(rel + used, sizeof(rel) - used, "f");
    struct entries es;
    memset(&es, 0, sizeof(es));
    CHECK(fs_manifest(P("deep70c"), collect, &es, NULL) == 0);
    CHECK(es.n == 1 && strcmp(es.e[0].rel, rel) == 0);
    struct fs_usage u;
    CHECK(fs_usage(P("deep70"), &u, NULL) == 0 && u.files == 1);
    CHECK(fs_reclaim_tree(P("deep70")) == 0);
    CHECK(fs_rm_rf(P("deep70")) == 0 && fs_rm_rf(P("deep70c")) == 0);

    make_deep(P("deep3k"), 3000, 0);
    memset(&es, 0, sizeof(es));
    CHECK(fs_manifest(P("deep3k"), collect, &es, NULL) == -ENAMETOOLONG);
    CHECK(fs_copy_tree(P("deep3k"), P("deep3kc"), NULL) == -ENAMETOOLONG);
    CHECK(fs_usage(P("deep3k"), &u, NULL) == 0 && u.files == 1);
    CHECK(fs_rm_rf(P("deep3k")) == 0 && fs_rm_rf(P("deep3kc")) == 0);
    CHECK(!exists(P("deep3k")) && !exists(P("deep3kc")));
}

/* Removal never goes into a mount (a bind mount has the same st_dev):
 * -EXDEV, everything else goes, the mounted files are untouched. */
static void test_rm_mount(void)
{
    CHECK(fs_mkdir_p(P("mnt/src"), 0755) == 0);
    put(P("mnt/src/keep"), "keep", 0644);
    CHECK(fs_mkdir_p(P("mnt/tree/sub/point"), 0755) == 0);
    put(P("mnt/tree/sub/other"), "o", 0644);
    if (mount(P("mnt/src"), P("mnt/tree/sub/point"), NULL, MS_BIND, NULL) != 0) {
        printf("test_rm_mount: mount: %s, skipped\n", strerror(errno));
        CHECK(fs_rm_rf(P("mnt")) == 0);
        return;
    }
    CHECK(fs_rm_rf(P("mnt/tree")) == -EXDEV);
    CHECK(has(P("mnt/src/keep"), "keep"));
    CHECK(!exists(P("mnt/tree/sub/other")) && is_dir(P("mnt/tree/sub/point")));
    CHECK(umount2(P("mnt/tree/sub/point"), MNT_DETACH) == 0);
    CHECK(fs_rm_rf(P("mnt")) == 0 && !exists(P("mnt")));
}

int main(void)
{
    umask(022);
    char tmpl[] = "/tmp/oc-test-fsutil-XXXXXX";
    if (mkdtemp(tmpl) == NULL)
        return 2;
    snprintf(root, sizeof(root), "%s", tmpl);

    test_mkdir_p();
    test_write_open();
    test_copy_tree();
    test_rm_rf();
    test_sha256();
    test_manifest();
    test_mkdir_new();
    test_mkdir_in();
    test_publish_dir();
    test_special_files();
    test_sparse();
    test_bounds();
    test_modes_owners();
    test_deep();
    test_rm_mount();

    CHECK(fs_rm_rf(root) == 0);
    CHECK(!exists(root));
    return check_report();
}
