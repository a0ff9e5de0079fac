/*
 * test_attempt.c - two attempts of one job (worker/attempt.c over
 * common/layout.c and common/fsutil.c), no database: a stale attempt A
 * (its lease lost, its agent still writing) can never delete or overwrite
 * the folders of the live attempt B that replaced it.
 *
 * The lease is a variable here: the token that currently owns the job.
 *
 * Also: the agent HOME's model catalogue (attempt_seed_models) is written
 * where opencode reads its cached catalogue, and only when configured.
 */
#include "attempt.h"
#include "check.h"
#include "testfs.h"
#include "fsutil.h"
#include "ids.h"
#include "layout.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char data_dir[PATH_MAX];
static char session[ID_HEX_LEN + 1];
static char token_a[ID_HEX_LEN + 1], token_b[ID_HEX_LEN + 1];
/* The token that holds the job's lease now ("" = nobody). */
static const char *lease_owner = "";

/* dir + "/" + rel, in a rotating set of static buffers. */
static const char *J(const char *dir, const char *rel)
{
    return tfs_path(dir, rel);
}

static void put(const char *path, const char *text)
{
    tfs_put(path, text, strlen(text), 0644);
}

static int exists(const char *path)
{
    return tfs_exists(path);
}

/* 1 when the regular file at path holds exactly text. */
static int has(const char *path, const char *text)
{
    char buf[256];
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf));
    close(fd);
    return n == (ssize_t)strlen(text) && memcmp(buf, text, (size_t)n) == 0;
}

/* The lease check: is the attempt's token the one that owns the job? */
static int still_ours(void *arg)
{
    return strcmp((const char *)arg, lease_owner) == 0;
}

/* An attempt that renewed just before losing its lease and then stalled:
 * its first check passes, every later one sees the real owner. */
struct stalled {
    const char *token;
    int calls;
};

static int stalled_check(void *arg)
{
    struct stalled *s = arg;
    return s->calls++ == 0 ? 1 : still_ours((void *)s->token);
}

/* The session's input files: the base both attempts start from. */
static void make_input(void)
{
    char input[PATH_MAX];
    CHECK(layout_input_dir(data_dir, session, input, sizeof(input)) == 0);
    CHECK(fs_mkdir_p(J(input, "sub"), 0755) == 0);
    put(J(input, "a.txt"), "base");
    put(J(input, "sub/b.txt"), "base b");
}

static void attempts_for(const char *job, struct layout_attempt *a, struct layout_attempt *b)
{
    CHECK(layout_attempt(data_dir, session, job, token_a, "", a) == 0);
    CHECK(layout_attempt(data_dir, session, job, token_b, "", b) == 0);
    CHECK(strcmp(a->dir, b->dir) != 0);
    CHECK(strcmp(a->work, b->work) != 0);
    CHECK(strcmp(a->run, b->run) != 0);
    CHECK(strcmp(a->home, b->home) != 0);
    CHECK_STR(a->published, b->published);
    CHECK_STR(a->base, b->base);
}

static void prepare(const struct layout_attempt *x)
{
    int created = 0;
    CHECK(attempt_prepare(x, "do it", &created) == 0);
    CHECK(created == 1);
    CHECK(has(J(x->work, "a.txt"), "base"));
    CHECK(has(J(x->work, "sub/b.txt"), "base b"));
    CHECK(has(x->prompt, "do it"));
    CHECK(exists(x->home));
    /* The agent's HOME is seeded, so opencode finds its plugin package
     * "installed" and fetches nothing at start. */
    CHECK(exists(J(x->home, ".config/opencode/package.json")));
    CHECK(exists(J(x->home, ".config/opencode/package-lock.json")));
    CHECK(exists(J(x->home, ".config/opencode/node_modules")));
    /* The folder is the attempt's own: preparing it again is refused and
     * leaves it alone. */
    created = 0;
    CHECK(attempt_prepare(x, "again", &created) == -EEXIST);
    CHECK(created == 0);
    CHECK(has(x->prompt, "do it"));
}

/* B publishes while A is still writing; A's later publish fails. */
static void test_live_publishes_first(void)
{
    char job[ID_HEX_LEN + 1], trash[LAYOUT_PATH_MAX];
    struct layout_attempt a, b;
    CHECK(id_new(job) == 0);
    attempts_for(job, &a, &b);

    lease_owner = token_a;
    prepare(&a);
    put(J(a.work, "a-out.txt"), "from A");
    lease_owner = token_b;                  /* A's lease lost; B claims */
    prepare(&b);
    CHECK(!exists(J(b.work, "a-out.txt")));

    /* A's agent keeps writing after B started. */
    put(J(a.work, "a.txt"), "A overwrote");
    put(J(a.work, "late.txt"), "late A");
    CHECK(has(J(b.work, "a.txt"), "base"));
    CHECK(!exists(J(b.work, "late.txt")));

    put(J(b.work, "b-out.txt"), "from B");
    CHECK(attempt_publish(&b, job, still_ours, token_b, trash, sizeof(trash)) ==
          ATTEMPT_PUBLISHED);
    CHECK_STR(trash, "");
    CHECK(!exists(b.work));
    CHECK(has(J(b.published, "b-out.txt"), "from B"));

    /* A, still writing, then trying to publish: its lease is gone. */
    put(J(a.work, "later.txt"), "later A");
    CHECK(attempt_publish(&a, job, still_ours, token_a, trash, sizeof(trash)) ==
          ATTEMPT_LEASE_GONE);
    /* A that renewed just before losing the lease: the rename refuses
     * B's folder and the renewal before displacing it fails. */
    struct stalled st = { token_a, 0 };
    CHECK(attempt_publish(&a, job, stalled_check, &st, trash, sizeof(trash)) ==
          ATTEMPT_LEASE_GONE);
    CHECK(st.calls == 2);
    CHECK_STR(trash, "");
    /* And the bare rename never replaces it either. */
    CHECK(fs_publish_dir(a.work, a.published, NULL, NULL) == -EEXIST);

    CHECK(has(J(b.published, "b-out.txt"), "from B"));
    CHECK(has(J(b.published, "a.txt"), "base"));
    CHECK(!exists(J(b.published, "late.txt")) && !exists(J(b.published, "a-out.txt")));

    /* Removing A's attempt touches nothing of B's. */
    CHECK(attempt_remove(&a) == 0);
    CHECK(!exists(a.dir));
    CHECK(exists(b.dir) && exists(b.home) && has(b.prompt, "do it"));
    CHECK(has(J(b.published, "b-out.txt"), "from B"));
    CHECK(attempt_remove(&b) == 0);
    CHECK(!exists(b.dir));
    CHECK(has(J(b.published, "b-out.txt"), "from B"));
}

/* A published, then lost its lease before recording: B displaces A's
 * folder into trash and B's files are what is published. */
static void test_stale_published_first(void)
{
    char job[ID_HEX_LEN + 1], trash[LAYOUT_PATH_MAX];
    struct layout_attempt a, b;
    CHECK(id_new(job) == 0);
    attempts_for(job, &a, &b);

    lease_owner = token_a;
    prepare(&a);
    put(J(a.work, "a-out.txt"), "from A");
    CHECK(attempt_publish(&a, job, still_ours, token_a, trash, sizeof(trash)) ==
          ATTEMPT_PUBLISHED);
    CHECK(has(J(a.published, "a-out.txt"), "from A"));

    lease_owner = token_b;                  /* A's outcome never recorded */
    prepare(&b);
    CHECK(!exists(J(b.work, "a-out.txt")));
    put(J(b.work, "b-out.txt"), "from B");
    CHECK(attempt_publish(&b, job, still_ours, token_b, trash, sizeof(trash)) ==
          ATTEMPT_PUBLISHED);
    CHECK(trash[0] != '\0');
    CHECK(strncmp(trash, b.trash, strlen(b.trash)) == 0);
    CHECK(has(J(trash, "a-out.txt"), "from A"));
    CHECK(has(J(b.published, "b-out.txt"), "from B"));
    CHECK(!exists(J(b.published, "a-out.txt")));

    /* A cannot publish again (its work is gone) nor displace B's. */
    CHECK(attempt_publish(&a, job, still_ours, token_a, trash, sizeof(trash)) ==
          ATTEMPT_LEASE_GONE);
    CHECK(attempt_remove(&a) == 0);
    CHECK(exists(b.dir));
    CHECK(has(J(b.published, "b-out.txt"), "from B"));
    CHECK(attempt_remove(&b) == 0);
    CHECK(has(J(b.published, "b-out.txt"), "from B"));
}

/* A publish that finds nothing to publish fails without touching jobs/. */
static void test_publish_failure(void)
{
    char job[ID_HEX_LEN + 1], trash[LAYOUT_PATH_MAX];
    struct layout_attempt a, b;
    CHECK(id_new(job) == 0);
    attempts_for(job, &a, &b);
    lease_owner = token_a;
    prepare(&a);
    CHECK(fs_rm_rf(a.work) == 0);
    CHECK(attempt_publish(&a, job, still_ours, token_a, trash, sizeof(trash)) == -ENOENT);
    CHECK(!exists(a.published));
    CHECK(attempt_remove(&a) == 0);
}

static void test_seed_models(void)
{
    char home[PATH_MAX + 16];
    snprintf(home, sizeof(home), "%s/models-home", data_dir);
    CHECK(mkdir(home, 0700) == 0);
    CHECK(attempt_seed_models(home, NULL) == 0);          /* not configured */
    CHECK(!tfs_exists(J(home, ".cache")));
    const char *cat = "{\"openai\":{\"id\":\"openai\",\"models\":{}}}";
    CHECK(attempt_seed_models(home, cat) == 0);
    CHECK(strcmp(tfs_read(J(home, ".cache/opencode/models.json")), cat) == 0);
    struct stat st;
    CHECK(stat(J(home, ".cache/opencode/models.json"), &st) == 0 && (st.st_mode & 0777) == 0600);
    /* An existing .cache (a seeded conversation's HOME) is fine. */
    CHECK(attempt_seed_models(home, "{}") == 0);
    CHECK(strcmp(tfs_read(J(home, ".cache/opencode/models.json")), "{}") == 0);
}

int main(void)
{
    umask(022);
    char tmpl[] = "/tmp/oc-test-attempt-XXXXXX";
    if (mkdtemp(tmpl) == NULL)
        return 2;
    snprintf(data_dir, sizeof(data_dir), "%s", tmpl);
    if (id_new(session) != 0 || id_new(token_a) != 0 || id_new(token_b) != 0)
        return 2;
    make_input();

    test_live_publishes_first();
    test_stale_published_first();
    test_publish_failure();
    test_seed_models();

    CHECK(fs_rm_rf(data_dir) == 0);
    return check_report();
}
