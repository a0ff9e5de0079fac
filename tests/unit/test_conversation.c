/*
 * test_conversation.c - worker/conversation.c without a database or an
 * agent: what is copied out of an agent's HOME (only opencode's database
 * and its journal, regular files reached without a link, an SQLite
 * header, a checked session id), what a next attempt's HOME gets, and the
 * lease-fenced publish with the pruning of older conversations.
 */
#include "check.h"
#include "testfs.h"
#include "conversation.h"
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
static int lease_ours = 1;

static const char EVENTS[] =
    "{\"type\":\"step_start\",\"sessionID\":\"ses_abcDEF123\",\"part\":{}}\n";
static const char DB[] = "SQLite format 3\0rest of the database";

static const char *J(const char *dir, const char *rel)
{
    return tfs_path(dir, rel);
}

static void put(const char *path, const char *data, size_t n)
{
    tfs_put(path, data, n, 0644);
}

static int exists(const char *path)
{
    return tfs_exists(path);
}

static int still_ours(void *arg)
{
    (void)arg;
    return lease_ours;
}

/* A fresh attempt of job whose agent HOME holds a database (and more). */
static void new_attempt(const char *job, struct layout_attempt *a)
{
    char token[ID_HEX_LEN + 1];
    if (id_new(token) != 0 || layout_attempt(data_dir, session, job, token, "", a) != 0 ||
        fs_mkdir_p(J(a->home, ".local/share/opencode"), 0700) != 0 ||
        fs_mkdir_p(J(a->home, ".config/opencode/plugin"), 0700) != 0)
        exit(2);
    put(J(a->home, ".local/share/opencode/opencode.db"), DB, sizeof(DB));
    put(J(a->home, ".local/share/opencode/opencode.db-wal"), "wal", 3);
    put(J(a->home, ".local/share/opencode/planted.txt"), "x", 1);
    put(J(a->home, ".config/opencode/opencode.json"), "{}", 2);
    put(J(a->home, ".config/opencode/plugin/evil.js"), "x", 1);
}

static void test_ids(void)
{
    CHECK(conversation_id_valid("ses_abc123", 10));
    CHECK(!conversation_id_valid("ses_", 4));
    CHECK(!conversation_id_valid("abc_123", 7));
    CHECK(!conversation_id_valid("ses_a b", 7));
    CHECK(!conversation_id_valid("ses_--help", 10));
}

static void test_capture_publish_seed(void)
{
    struct layout_attempt a, b;
    new_attempt("job1", &a);
    CHECK(conversation_capture(&a, EVENTS, strlen(EVENTS)) == 0);
    CHECK(conversation_publish(&a, "job1", "", still_ours, NULL) == ATTEMPT_PUBLISHED);
    const char *pub = a.conv_published;
    CHECK(exists(J(pub, "opencode.db")) && exists(J(pub, "opencode.db-wal")));
    CHECK(!exists(J(pub, "planted.txt")));

    /* The next attempt continues it: only the two files land in its HOME. */
    struct store_claim c = { .fresh = 0 };
    snprintf(c.session_id, sizeof(c.session_id), "%s", session);
    snprintf(c.conv_job_id, sizeof(c.conv_job_id), "job1");
    char id[CONVERSATION_ID_MAX + 1];
    char token[ID_HEX_LEN + 1];
    CHECK(id_new(token) == 0);
    CHECK(layout_attempt(data_dir, session, "job2", token, "", &b) == 0);
    CHECK(conversation_from(&b, data_dir, &c, id, sizeof(id)) == 0);
    CHECK_STR(id, "ses_abcDEF123");
    CHECK(fs_mkdir_p(b.home, 0700) == 0);
    CHECK(conversation_seed(&b) == 0);
    CHECK(exists(J(b.home, ".local/share/opencode/opencode.db")));
    CHECK(exists(J(b.home, ".local/share/opencode/opencode.db-wal")));
    CHECK(!exists(J(b.home, ".local/share/opencode/planted.txt")));
    CHECK(!exists(J(b.home, ".config/opencode/opencode.json")));
    CHECK(!exists(J(b.home, ".config/opencode/plugin")));

    /* fresh: nothing. */
    c.fresh = 1;
    CHECK(conversation_from(&b, data_dir, &c, id, sizeof(id)) == 0);
    CHECK_STR(b.conv_from, "");
    CHECK_STR(id, "");

    /* job2 publishes; job1's is kept (keep), a third prunes job1's. */
    CHECK(conversation_capture(&b, EVENTS, strlen(EVENTS)) == 0);
    CHECK(conversation_publish(&b, "job2", "job1", still_ours, NULL) == ATTEMPT_PUBLISHED);
    CHECK(exists(J(a.conversations, "job1")) && exists(J(a.conversations, "job2")));
    struct layout_attempt d;
    new_attempt("job3", &d);
    CHECK(conversation_capture(&d, EVENTS, strlen(EVENTS)) == 0);
    lease_ours = 0;
    CHECK(conversation_publish(&d, "job3", "job2", still_ours, NULL) == ATTEMPT_LEASE_GONE);
    CHECK(!exists(J(a.conversations, "job3")) && exists(J(a.conversations, "job1")));
    lease_ours = 1;
    CHECK(conversation_publish(&d, "job3", "job2", still_ours, NULL) == ATTEMPT_PUBLISHED);
    CHECK(!exists(J(a.conversations, "job1")) && exists(J(a.conversations, "job2")));
}

static void test_capture_refuses(void)
{
    struct layout_attempt a;
    /* No session id in the events. */
    new_attempt("jobx1", &a);
    CHECK(conversation_capture(&a, "{\"type\":\"text\"}\n", 16) == -ENOENT);
    CHECK(conversation_capture(&a, NULL, 0) == -ENOENT);
    /* Not SQLite. */
    new_attempt("jobx2", &a);
    put(J(a.home, ".local/share/opencode/opencode.db"), "#!/bin/sh\n", 10);
    CHECK(conversation_capture(&a, EVENTS, strlen(EVENTS)) == -EINVAL);
    /* The database a link to a file the worker can read. */
    new_attempt("jobx3", &a);
    CHECK(unlink(J(a.home, ".local/share/opencode/opencode.db")) == 0);
    CHECK(symlink("/etc/passwd", J(a.home, ".local/share/opencode/opencode.db")) == 0);
    CHECK(conversation_capture(&a, EVENTS, strlen(EVENTS)) != 0);
    /* A folder on the way a link. */
    new_attempt("jobx4", &a);
    char real[PATH_MAX + 64];
    snprintf(real, sizeof(real), "%s-elsewhere", a.dir);
    CHECK(rename(J(a.home, ".local"), real) == 0);
    CHECK(symlink(real, J(a.home, ".local")) == 0);
    CHECK(conversation_capture(&a, EVENTS, strlen(EVENTS)) != 0);
    /* A journal that is a FIFO. */
    new_attempt("jobx5", &a);
    CHECK(unlink(J(a.home, ".local/share/opencode/opencode.db-wal")) == 0);
    CHECK(mkfifo(J(a.home, ".local/share/opencode/opencode.db-wal"), 0600) == 0);
    CHECK(conversation_capture(&a, EVENTS, strlen(EVENTS)) == -EINVAL);
}

int main(void)
{
    umask(022);
    char tmpl[] = "/tmp/oc-test-conversation-XXXXXX";
    if (mkdtemp(tmpl) == NULL)
        return 2;
    snprintf(data_dir, sizeof(data_dir), "%s", tmpl);
    if (id_new(session) != 0)
        return 2;
    test_ids();
    test_capture_publish_seed();
    test_capture_refuses();
    CHECK(fs_rm_rf(data_dir) == 0);
    return check_report();
}
