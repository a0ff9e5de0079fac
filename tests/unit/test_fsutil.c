/*
 * test_fsutil.c - workspace file helpers (common/fsutil.h), in a temporary
 * folder under /tmp that is removed at the end.
 */
#include "check.h"
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHA_ABC   "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define SHA_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SHA_HELLO "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
#define SHA_1M_A  "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"

static char root[PATH_MAX];

/* root + "/" + rel, in a rotating set of static buffers. */
static const char *P(const char *rel)
{
    static char bufs[8][PATH_MAX + 256];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof(bufs[0]), "%s/%s", root, rel);
    return b;
}

static void put(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0) {
        perror(path);
        exit(2);
    }
    size_t n = strlen(text);
    if (write(fd, text, n) != (ssize_t)n)
        exit(2);
    close(fd);
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
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

    CHECK(fs_copy_tree(P("src"), P("dst")) == 0);
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
    CHECK(lstat(P("dst/a/b/deep.txt"), &st) == 0 && (st.st_mode & 0777) == 0640);
    /* The source is untouched. */
    CHECK(has(P("src/top.txt"), "top\n"));
    CHECK(has(P("other/o.txt"), "other"));

    /* The copy is independent of the source. */
    put(P("dst/top.txt"), "changed", 0644);
    CHECK(has(P("src/top.txt"), "top\n"));

    /* dst must not exist; src must be a real folder. */
    CHECK(fs_copy_tree(P("src"), P("dst")) == -EEXIST);
    CHECK(fs_copy_tree(P("nosuch"), P("dst2")) == -ENOENT);
    CHECK(!exists(P("dst2")));
    CHECK(symlink(P("src"), P("srclink")) == 0);
    CHECK(fs_copy_tree(P("srclink"), P("dst3")) < 0);
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
        CHECK(fs_copy_tree(P("bigsrc"), P("bigdst")) == 0);
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
};

struct entries {
    struct entry e[16];
    int n;
    int stop_after;   /* return 42 after this many calls (0: never) */
};

static int collect(void *arg, const char *rel, int64_t size, const char *sha)
{
    struct entries *es = arg;
    if (es->n < 16) {
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
    CHECK(fs_manifest(P("man"), collect, &es) == 0);
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
    CHECK(fs_manifest(P("man"), collect, &es) == 42);
    CHECK(es.n == 1);

    /* An empty folder has no files; a missing root or a symlinked root is
     * an error. */
    memset(&es, 0, sizeof(es));
    CHECK(fs_manifest(P("man/emptydir"), collect, &es) == 0);
    CHECK(es.n == 0);
    CHECK(fs_manifest(P("man/nosuch"), collect, &es) == -ENOENT);
    CHECK(fs_manifest(P("man/sd"), collect, &es) < 0);
    CHECK(es.n == 0);
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

    CHECK(fs_rm_rf(root) == 0);
    CHECK(!exists(root));
    return check_report();
}
