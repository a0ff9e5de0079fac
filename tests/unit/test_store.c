/*
 * test_store.c - common/db.c and common/store*.c against a real
 * PostgreSQL: prepared statements across a reconnect, the pool's bound,
 * manifests passed as array literals (modes included), the races between
 * POST /job and a finishing job and between DELETE /session and a claim
 * (a raw libpq connection plays the other transaction, the store call
 * runs in a child process), and the janitor's removal backoff.
 *
 * Needs DATABASE_URL (skipped with a message otherwise). Creates a fresh
 * database oc_unit_store_<random> owned by the URL's role, migrates it and
 * drops it at the end. The role of the test stack may not create
 * databases; then the database is created as the cluster's superuser over
 * STACK_DIR/pg/run, as tests/e2e/harness.py does.
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "db.h"
#include "ids.h"
#include "migrate.h"
#include "store.h"

DB_STMT(st_echo, "test.echo", 1, "SELECT $1::int + 1 AS v");
DB_STMT(st_prepared, "test.prepared", 0,
        "SELECT count(*) AS n FROM pg_prepared_statements"
        " WHERE statement = 'SELECT $1::int + 1 AS v'");
DB_STMT(st_kill, "test.kill", 0, "SELECT pg_terminate_backend(pg_backend_pid())");
DB_STMT(st_plan_mode, "test.plan_mode", 0, "SELECT current_setting('plan_cache_mode') AS m");
DB_STMT(st_input_files, "test.input_files", 1,
        "SELECT path, size_bytes FROM session_files WHERE session_id = $1 ORDER BY path");

/* ---- Fresh database ----------------------------------------------------- */

/* The URL with its database name replaced by name (malloc'd). */
static char *url_with_db(const char *url, const char *name)
{
    const char *scheme = strstr(url, "://");
    const char *slash = strchr(scheme ? scheme + 3 : url, '/');
    const char *query = strchr(url, '?');
    size_t head = slash ? (size_t)(slash - url) : (query ? (size_t)(query - url) : strlen(url));
    const char *tail = query ? query : "";
    size_t len = head + 1 + strlen(name) + strlen(tail) + 1;
    char *out = malloc(len);
    snprintf(out, len, "%.*s/%s%s", (int)head, url, name, tail);
    return out;
}

/* Runs one command on url; 0 when it succeeded. */
static int sql_on(const char *url, const char *sql)
{
    PGconn *c = PQconnectdb(url);
    int ok = 0;
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *r = PQexec(c, sql);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
    }
    PQfinish(c);
    return ok ? 0 : -1;
}

/* CREATE DATABASE as the stack's superuser (peer login on the socket). */
static int create_as_superuser(const char *url, const char *sql)
{
    const char *stack = getenv("STACK_DIR");
    if (stack == NULL)
        return -1;
    PQconninfoOption *opts = PQconninfoParse(url, NULL);
    const char *port = "5432";
    for (PQconninfoOption *o = opts; o && o->keyword; o++)
        if (strcmp(o->keyword, "port") == 0 && o->val)
            port = o->val;
    char sock[1024];
    snprintf(sock, sizeof(sock), "%s/pg/run", stack);
    pid_t pid = fork();
    if (pid == 0) {
        execlp("runuser", "runuser", "-u", "postgres", "--", "psql", "-X", "-q",
               "-v", "ON_ERROR_STOP=1", "-h", sock, "-p", port, "-d", "postgres",
               "-c", sql, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    PQconninfoFree(opts);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static char *make_database(const char *url, char *name, size_t name_len)
{
    char hex[17];
    if (id_random_hex(hex, sizeof(hex), 8) != 0)
        return NULL;
    snprintf(name, name_len, "oc_unit_store_%s", hex);
    char sql[256];
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
    if (sql_on(url, sql) != 0) {
        PQconninfoOption *opts = PQconninfoParse(url, NULL);
        const char *user = "opencode";
        for (PQconninfoOption *o = opts; o && o->keyword; o++)
            if (strcmp(o->keyword, "user") == 0 && o->val)
                user = o->val;
        snprintf(sql, sizeof(sql), "CREATE DATABASE %s OWNER %s", name, user);
        int rc = create_as_superuser(url, sql);
        PQconninfoFree(opts);
        if (rc != 0)
            return NULL;
    }
    return url_with_db(url, name);
}

/* ---- Checks ------------------------------------------------------------- */

static long long echo(struct db *db, const char *arg)
{
    const char *p[] = { arg };
    int rc;
    struct pg_result *res = db_run(db, &st_echo, p, &rc);
    long long v = res ? db_get_ll(res, 0, "v") : -1;
    db_clear(res);
    return v;
}

static long long prepared_count(struct db *db)
{
    int rc;
    struct pg_result *res = db_run(db, &st_prepared, NULL, &rc);
    long long v = res ? db_get_ll(res, 0, "n") : -1;
    db_clear(res);
    return v;
}

static void test_prepared(const char *url)
{
    struct db *db = db_new(url, "test_store");
    CHECK(db_ensure(db, NULL, 0) == DB_OK);
    CHECK(echo(db, "41") == 42);
    CHECK(echo(db, "41") == 42);
    CHECK(prepared_count(db) == 1);

    int rc = DB_OK;
    struct pg_result *res = db_run(db, &st_kill, NULL, &rc);
    CHECK(res == NULL);
    CHECK(rc == DB_UNAVAILABLE);
    db_clear(res);
    char err[256];
    CHECK(db_ensure(db, err, sizeof(err)) == DB_OK);
    CHECK(echo(db, "1") == 2);
    CHECK(prepared_count(db) == 1);
    db_free(db);
}

static long ms_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0->tv_sec) * 1000L + (t.tv_nsec - t0->tv_nsec) / 1000000L;
}

/* The connection's plan_cache_mode, into buf. */
static const char *plan_mode(struct db *db, char *buf, size_t len)
{
    int rc;
    struct pg_result *r = db_run(db, &st_plan_mode, NULL, &rc);
    snprintf(buf, len, "%s", r != NULL && db_rows(r) == 1 ? db_get(r, 0, "m") : "?");
    if (r != NULL)
        db_clear(r);
    return buf;
}

static void test_pool(const char *url)
{
    struct db_pool *pool = db_pool_new(url, "test_pool", 2);
    int rc;
    struct db *a = db_pool_get(pool, 200, &rc);
    CHECK(a != NULL && rc == DB_OK);
    struct db *b = db_pool_get(pool, 200, &rc);
    CHECK(b != NULL && rc == DB_OK);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct db *c = db_pool_get(pool, 200, &rc);
    CHECK(c == NULL && rc == DB_RETRY);
    CHECK(ms_since(&t0) >= 190);

    /* Returned inside a transaction: rolled back. */
    const unsigned char hash[32] = { 7 };
    char key_id[STORE_KEY_ID_MAX];
    CHECK(db_begin(a) == DB_OK);
    CHECK(store_key_create(a, "key_pool", "pool", hash) == STORE_OK);
    db_pool_put(pool, a);
    c = db_pool_get(pool, 200, &rc);
    CHECK(c == a && rc == DB_OK);
    CHECK(store_key_lookup(c, hash, key_id) == STORE_NOT_FOUND);
    CHECK(echo(c, "5") == 6);
    /* The pool's connections plan each statement once; others do not. */
    char mode[32];
    CHECK_STR(plan_mode(c, mode, sizeof(mode)), "force_generic_plan");
    struct db *plain = db_new(url, "test_plain");
    CHECK(db_ensure(plain, NULL, 0) == DB_OK);
    CHECK_STR(plan_mode(plain, mode, sizeof(mode)), "auto");
    db_free(plain);
    db_pool_put(pool, c);
    db_pool_put(pool, b);
    db_pool_free(pool);
}

static const char *const odd_paths[] = {
    "a \"quoted\" name.txt", "back\\slash\\", "comma,separated", "{braces}",
    " leading and trailing ", "NULL", "dir/\xc3\xa9t\xc3\xa9.md",
};
#define NODD (sizeof(odd_paths) / sizeof(odd_paths[0]))

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

static void test_arrays(struct db *db)
{
    struct store_file files[NODD];
    const char *sorted[NODD];
    for (size_t i = 0; i < NODD; i++) {
        files[i] = (struct store_file){ odd_paths[i], (int64_t)(i + 1) * 1000000000LL,
                                        "0123456789abcdef0123456789abcdef"
                                        "0123456789abcdef0123456789abcdef",
                                        i % 3 == 0 ? 0100755u : i % 3 == 1 ? 0100644u : 0 };
        sorted[i] = odd_paths[i];
    }
    qsort(sorted, NODD, sizeof(sorted[0]), cmp_str);   /* C collation */

    char sid[ID_HEX_LEN + 1], jid[ID_HEX_LEN + 1];
    CHECK(id_new(sid) == 0 && id_new(jid) == 0);
    struct store_new_session ns = { sid, "key_a", 600, files, NODD, 42 };
    struct store_session s;
    CHECK(store_session_create(db, &ns, &s) == STORE_OK);
    CHECK_STR(s.id, sid);
    CHECK_STR(s.current_job_id, "");

    const char *p[] = { sid };
    int rc;
    struct pg_result *res = db_run(db, &st_input_files, p, &rc);
    CHECK(res != NULL && db_rows(res) == (int)NODD);
    for (int i = 0; res && i < db_rows(res); i++) {
        const char *path = db_get(res, i, "path");
        int found = 0;
        for (size_t k = 0; k < NODD; k++)
            if (path && strcmp(path, odd_paths[k]) == 0 &&
                db_get_ll(res, i, "size_bytes") == (long long)(k + 1) * 1000000000LL)
                found = 1;
        CHECK(found);
    }
    db_clear(res);

    struct store_new_job nj = { .job_id = jid, .session_id = sid, .key_id = "key_a",
                                .prompt = "prompt", .model = "model", .timeout_s = 60 };
    int64_t created = 0;
    CHECK(store_job_create(db, &nj, &created) == STORE_OK);
    struct store_claim claim;
    CHECK(store_job_claim(db, jid, "w1", 30, &claim) == STORE_OK);
    struct store_outcome o = { .status = "succeeded", .result = "done",
                               .result_json = "{\"ok\": true}", .files = files,
                               .nfiles = NODD };
    CHECK(store_job_finish(db, &claim, &o) == STORE_OK);
    store_claim_free(&claim);

    struct store_results r;
    CHECK(store_session_results(db, sid, "key_a", &r) == STORE_OK);
    CHECK(r.latest_job_id && strcmp(r.latest_job_id, jid) == 0);
    CHECK(r.result && strcmp(r.result, "done") == 0);
    CHECK(r.files.n == NODD);
    for (size_t i = 0; i < r.files.n; i++) {
        int hit = 0;
        for (size_t k = 0; k < NODD; k++)
            hit |= strcmp(r.files.v[i].path, odd_paths[k]) == 0 &&
                   r.files.v[i].size_bytes == (int64_t)(k + 1) * 1000000000LL &&
                   r.files.v[i].sha256 != NULL && strlen(r.files.v[i].sha256) == 64;
        CHECK(hit);
    }
    store_results_free(&r);

    struct store_job j;
    CHECK(store_job_get(db, jid, "key_a", &j) == STORE_OK);
    CHECK_STR(j.status, "succeeded");
    CHECK(j.error_code == NULL);
    CHECK(j.has_outputs && j.outputs.n == NODD);
    int same = 1;
    for (size_t i = 0; i < NODD; i++) {
        int hit = 0;
        for (size_t k = 0; k < j.outputs.n; k++)
            hit |= strcmp(j.outputs.v[k].path, sorted[i]) == 0;
        same &= hit;
    }
    /* Modes come back as written, 0 as 0100644. */
    for (size_t k = 0; k < j.outputs.n; k++)
        for (size_t i = 0; i < NODD; i++)
            if (strcmp(j.outputs.v[k].path, odd_paths[i]) == 0)
                CHECK(j.outputs.v[k].mode == (i % 3 == 0 ? 0100755u : 0100644u));
    CHECK(same);
    store_job_free(&j);
    CHECK(store_job_get(db, jid, "key_b", &j) == STORE_NOT_FOUND);
    store_job_free(&j);
}

static void test_failure_code(struct db *db)
{
    char sid[ID_HEX_LEN + 1], jid[ID_HEX_LEN + 1], jid2[ID_HEX_LEN + 1];
    CHECK(id_new(sid) == 0 && id_new(jid) == 0 && id_new(jid2) == 0);
    struct store_new_session ns = { sid, "key_a", 600, NULL, 0, 0 };
    struct store_session s;
    CHECK(store_session_create(db, &ns, &s) == STORE_OK);
    struct store_new_job nj = { .job_id = jid, .session_id = sid, .key_id = "key_a",
                                .prompt = "p", .model = "m", .timeout_s = 60 };
    int64_t created;
    CHECK(store_job_create(db, &nj, &created) == STORE_OK);
    struct store_claim claim;
    CHECK(store_job_claim(db, jid, "w1", 30, &claim) == STORE_OK);
    struct store_outcome o = { .status = "timed_out", .error_code = JOBERR_TIMEOUT,
                               .error = "too slow" };
    CHECK(store_job_finish(db, &claim, &o) == STORE_OK);
    CHECK(store_job_finish(db, &claim, &o) == STORE_NOT_FOUND);   /* fenced */
    store_claim_free(&claim);

    struct store_job j;
    CHECK(store_job_get(db, jid, "key_a", &j) == STORE_OK);
    CHECK(j.error_code && strcmp(j.error_code, "timeout") == 0);
    CHECK(j.has_outputs && j.outputs.n == 0);
    store_job_free(&j);

    struct store_new_job nj2 = { .job_id = jid2, .session_id = sid, .key_id = "key_a",
                                 .prompt = "p", .model = "m", .timeout_s = 60 };
    CHECK(store_job_create(db, &nj2, &created) == STORE_OK);
    CHECK(store_session_delete(db, sid, "key_a", &(int){ 0 }) == STORE_OK);
    CHECK(store_job_get(db, jid2, "key_a", &j) == STORE_OK);
    CHECK(j.status && strcmp(j.status, "cancelled") == 0);
    CHECK(j.error_code && strcmp(j.error_code, "cancelled") == 0);
    CHECK(!j.has_outputs);
    store_job_free(&j);

    struct store_outbox ob;
    CHECK(store_outbox_take(db, 100, &ob) == STORE_OK);
    CHECK(ob.n >= 1);
    for (size_t i = 0; i < ob.n; i++)
        CHECK(store_outbox_done(db, &ob, i) == STORE_OK);
    CHECK(store_outbox_end(db, &ob, 1) == STORE_OK);
    CHECK(store_outbox_take(db, 100, &ob) == STORE_OK);
    CHECK(ob.n == 0);
    CHECK(store_outbox_end(db, &ob, 0) == STORE_OK);
}

static void test_janitor(struct db *db)
{
    char sid[ID_HEX_LEN + 1], j1[ID_HEX_LEN + 1], j2[ID_HEX_LEN + 1];
    CHECK(id_new(sid) == 0 && id_new(j1) == 0 && id_new(j2) == 0);
    struct store_new_session ns = { sid, "key_a", 600, NULL, 0, 0 };
    struct store_session s;
    CHECK(store_session_create(db, &ns, &s) == STORE_OK);
    int64_t created;
    struct store_new_job a = { .job_id = j1, .session_id = sid, .key_id = "key_a",
                               .prompt = "p", .model = "m", .timeout_s = 60 };
    struct store_new_job b = a;
    b.job_id = j2;
    CHECK(store_job_create(db, &a, &created) == STORE_OK);
    CHECK(store_job_create(db, &b, &created) == STORE_OK);
    struct store_claim c;
    CHECK(store_job_claim(db, j2, "w1", 30, &c) == STORE_NOT_FOUND);   /* j1 first */
    CHECK(store_job_claim(db, j1, "w1", 30, &c) == STORE_OK);
    int cancel = -1;
    CHECK(store_job_renew(db, j1, c.lease_token, 30, &cancel) == STORE_OK && cancel == 0);
    CHECK(store_job_release(db, &c) == STORE_OK);
    store_claim_free(&c);
    CHECK(store_job_claim(db, j1, "w1", 0, &c) == STORE_OK);
    CHECK(c.attempt == 1);
    store_claim_free(&c);
    usleep(20000);

    CHECK(store_janitor_lock(db) == STORE_OK);
    long requeued = -1, failed = -1, n = -1;
    long found = -1;
    CHECK(store_reap_expired_leases(db, 1, 100, &requeued, &failed, &found) == STORE_OK);
    CHECK(requeued == 0 && failed == 1 && found == 1);
    struct store_job j;
    CHECK(store_job_get(db, j1, "key_a", &j) == STORE_OK);
    CHECK(j.error_code && strcmp(j.error_code, "worker_lost") == 0);
    store_job_free(&j);
    CHECK(store_republish_stale(db, 3600, 100, &n) == STORE_OK && n == 0);
    CHECK(store_expire_sessions(db, 10, &n) == STORE_OK);
    char ids[4][ID_HEX_LEN + 1];
    CHECK(store_sessions_to_remove(db, 4, ids, &n) == STORE_OK && n >= 1);
    CHECK(store_sessions_files_removed(db, ids, n, &n) == STORE_OK && n >= 1);
    CHECK(store_sessions_to_remove(db, 4, ids, &n) == STORE_OK && n == 0);
    CHECK(store_prune_history(db, 3600, 100, &n) == STORE_OK && n == 0);
    char folder[ID_HEX_LEN + 1];
    CHECK(store_job_folder(db, sid, "key_a", NULL, folder) == STORE_OK);
    CHECK_STR(folder, "");
    /* The janitor ended j1: no worker published outputs for it. */
    CHECK(store_job_folder(db, sid, "key_a", j1, folder) == STORE_NOT_FOUND);
    store_janitor_unlock(db);

    struct store_keys keys;
    const unsigned char hash[32] = { 9 };
    CHECK(store_key_create(db, "key_z", "z", hash) == STORE_OK);
    CHECK(store_key_list(db, &keys) == STORE_OK && keys.n == 1);
    CHECK(keys.n == 1 && strcmp(keys.v[0].id, "key_z") == 0 && !keys.v[0].revoked);
    store_keys_free(&keys);
    CHECK(store_key_revoke(db, "key_z") == STORE_OK);
    CHECK(store_key_revoke(db, "key_z") == STORE_NOT_FOUND);
}

/* ---- Races (two connections) -------------------------------------------- */

static PGconn *raw;             /* the "other transaction" of the race tests */
static const char *test_url;

static int raw_exec(const char *sql, const char *p1)
{
    const char *params[] = { p1 };
    PGresult *r = PQexecParams(raw, sql, p1 ? 1 : 0, NULL, p1 ? params : NULL, NULL, NULL, 0);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "raw: %s: %s", sql, PQerrorMessage(raw));
    PQclear(r);
    return ok ? 0 : -1;
}

/* The first column of the first row of sql ($1 = p1) as text, into buf. */
static const char *raw_value(const char *sql, const char *p1, char *buf, size_t len)
{
    const char *params[] = { p1 };
    PGresult *r = PQexecParams(raw, sql, p1 ? 1 : 0, NULL, p1 ? params : NULL, NULL, NULL, 0);
    snprintf(buf, len, "%s", PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "<none>");
    PQclear(r);
    return buf;
}

/* Waits until a backend of this database waits for a lock (5 s at most). */
static int wait_for_lock_waiter(void)
{
    PGconn *c = PQconnectdb(test_url);
    int found = 0;
    for (int i = 0; i < 500 && !found; i++) {
        PGresult *r = PQexec(c, "SELECT count(*) FROM pg_stat_activity"
                                " WHERE datname = current_database()"
                                " AND wait_event_type = 'Lock'");
        found = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "0") != 0;
        PQclear(r);
        if (!found)
            usleep(10000);
    }
    PQfinish(c);
    return found;
}

enum race_op { RACE_CREATE, RACE_CLAIM, RACE_DELETE };
/* Exit status of a RACE_DELETE child whose delete found a running job. */
#define RACE_DELETED_RUNNING 50

/* Runs one store call in a child process on a connection of its own;
 * returns its pid. The exit status is -store_rc. */
static pid_t race_child(enum race_op op, const char *sid, const char *jid)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    struct db *d = db_new(test_url, "test_race");
    if (db_ensure(d, NULL, 0) != DB_OK)
        _exit(99);
    int rc;
    if (op == RACE_CREATE) {
        struct store_new_job nj = { .job_id = jid, .session_id = sid, .key_id = "key_a",
                                    .prompt = "p", .model = "m", .timeout_s = 60 };
        int64_t created;
        rc = store_job_create(d, &nj, &created);
    } else if (op == RACE_CLAIM) {
        struct store_claim c;
        rc = store_job_claim(d, jid, "w-race", 30, &c);
        store_claim_free(&c);
    } else {
        int running = 0;
        rc = store_session_delete(d, sid, "key_a", &running);
        if (rc == STORE_OK && running)
            _exit(RACE_DELETED_RUNNING);
    }
    _exit(-rc);
}

static int race_wait(pid_t pid)
{
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? -WEXITSTATUS(st) : -99;
}

static void new_session(struct db *db, char sid[ID_HEX_LEN + 1])
{
    CHECK(id_new(sid) == 0);
    struct store_new_session ns = { sid, "key_a", 600, NULL, 0, 0 };
    struct store_session s;
    CHECK(store_session_create(db, &ns, &s) == STORE_OK);
}

static void new_job(struct db *db, const char *sid, char jid[ID_HEX_LEN + 1])
{
    CHECK(id_new(jid) == 0);
    struct store_new_job nj = { .job_id = jid, .session_id = sid, .key_id = "key_a",
                                .prompt = "p", .model = "m", .timeout_s = 60 };
    int64_t created;
    CHECK(store_job_create(db, &nj, &created) == STORE_OK);
}

/* (a) POST /job while the previous job finishes: the finisher holds the
 * session lock and sees no queued job; the new job's busy check, made
 * after the lock is granted, must see the job finished and announce
 * itself. */
static void test_race_create_finish(struct db *db)
{
    char sid[ID_HEX_LEN + 1], j1[ID_HEX_LEN + 1], j2[ID_HEX_LEN + 1], buf[64];
    new_session(db, sid);
    new_job(db, sid, j1);
    struct store_claim c;
    CHECK(store_job_claim(db, j1, "w1", 30, &c) == STORE_OK);
    store_claim_free(&c);
    CHECK(raw_exec("DELETE FROM job_outbox", NULL) == 0);

    CHECK(raw_exec("BEGIN", NULL) == 0);
    CHECK(raw_exec("SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE", sid) == 0);
    CHECK(raw_exec("UPDATE jobs SET status = 'succeeded', finished_at = now(),"
                   " lease_token = NULL, lease_expires_at = NULL WHERE id = $1", j1) == 0);
    CHECK(raw_exec("INSERT INTO job_outbox (job_id) SELECT id FROM jobs WHERE session_id = $1"
                   " AND status = 'queued' ORDER BY seq LIMIT 1", sid) == 0);
    CHECK(id_new(j2) == 0);
    pid_t pid = race_child(RACE_CREATE, sid, j2);
    CHECK(wait_for_lock_waiter());
    CHECK(raw_exec("COMMIT", NULL) == 0);
    CHECK(race_wait(pid) == STORE_OK);
    CHECK_STR(raw_value("SELECT count(*) FROM job_outbox WHERE job_id = $1", j2, buf,
                        sizeof(buf)), "1");
}

/* (b) DELETE /session against a claim, both orders. */
static void test_race_claim_delete(struct db *db)
{
    char sid[ID_HEX_LEN + 1], jid[ID_HEX_LEN + 1], buf[64];
    /* The delete holds the session: the claim waits, then finds it gone. */
    new_session(db, sid);
    new_job(db, sid, jid);
    CHECK(raw_exec("BEGIN", NULL) == 0);
    CHECK(raw_exec("SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE", sid) == 0);
    pid_t pid = race_child(RACE_CLAIM, sid, jid);
    CHECK(wait_for_lock_waiter());
    CHECK(raw_exec("UPDATE jobs SET status = 'cancelled', finished_at = now()"
                   " WHERE session_id = $1 AND status = 'queued'", sid) == 0);
    CHECK(raw_exec("UPDATE sessions SET status = 'deleted', ended_at = now() WHERE id = $1",
                   sid) == 0);
    CHECK(raw_exec("COMMIT", NULL) == 0);
    CHECK(race_wait(pid) == STORE_NOT_FOUND);
    CHECK_STR(raw_value("SELECT status FROM jobs WHERE id = $1", jid, buf, sizeof(buf)),
              "cancelled");

    /* The claim holds the session and commits a run: the delete waits,
     * then sees the job running and asks it to stop. */
    new_session(db, sid);
    new_job(db, sid, jid);
    CHECK(raw_exec("BEGIN", NULL) == 0);
    CHECK(raw_exec("SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE", sid) == 0);
    pid = race_child(RACE_DELETE, sid, jid);
    CHECK(wait_for_lock_waiter());
    CHECK(raw_exec("UPDATE jobs SET status = 'running', attempt = 1, lease_token = 'x',"
                   " lease_expires_at = now() + interval '30 seconds' WHERE id = $1", jid) == 0);
    CHECK(raw_exec("COMMIT", NULL) == 0);
    CHECK(race_wait(pid) == -RACE_DELETED_RUNNING);
    CHECK_STR(raw_value("SELECT status FROM sessions WHERE id = $1", sid, buf, sizeof(buf)),
              "deleted");
    CHECK_STR(raw_value("SELECT (cancel_requested_at IS NOT NULL)::text FROM jobs"
                        " WHERE id = $1", jid, buf, sizeof(buf)), "true");

    /* A job whose session expired while it waited is not claimed; its
     * session's waiting jobs are cancelled so the janitor can expire it. */
    char j2[ID_HEX_LEN + 1];
    new_session(db, sid);
    new_job(db, sid, jid);
    new_job(db, sid, j2);
    CHECK(raw_exec("UPDATE sessions SET expires_at = now() - interval '1 second'"
                   " WHERE id = $1", sid) == 0);
    struct store_claim c;
    CHECK(store_job_claim(db, jid, "w1", 30, &c) == STORE_NOT_FOUND);
    store_claim_free(&c);
    CHECK_STR(raw_value("SELECT count(*) FROM jobs WHERE session_id = $1"
                        " AND status = 'cancelled'", sid, buf, sizeof(buf)), "2");
}

/* A folder that failed to go waits JANITOR_RETRY_S, doubled per failure,
 * at most a day, and is left out of the batch meanwhile. */
static void test_remove_backoff(struct db *db)
{
    char sid[ID_HEX_LEN + 1], other[ID_HEX_LEN + 1], buf[64];
    new_session(db, sid);
    new_session(db, other);
    CHECK(store_session_delete(db, sid, "key_a", &(int){ 0 }) == STORE_OK);
    CHECK(store_session_delete(db, other, "key_a", &(int){ 0 }) == STORE_OK);
    long failures = 0, retry_in = 0, n = 0;
    CHECK(store_session_remove_failed(db, sid, 300, &failures, &retry_in) == STORE_OK);
    CHECK(failures == 1 && retry_in >= 299 && retry_in <= 300);
    CHECK(store_session_remove_failed(db, sid, 300, &failures, &retry_in) == STORE_OK);
    CHECK(failures == 2 && retry_in >= 599 && retry_in <= 600);
    char ids[200][ID_HEX_LEN + 1];
    CHECK(store_sessions_to_remove(db, 200, ids, &n) == STORE_OK);
    int has_sid = 0, has_other = 0;
    for (long i = 0; i < n; i++) {
        has_sid |= strcmp(ids[i], sid) == 0;
        has_other |= strcmp(ids[i], other) == 0;
    }
    CHECK(!has_sid && has_other);
    CHECK(raw_exec("UPDATE sessions SET remove_failures = 40 WHERE id = $1", sid) == 0);
    CHECK(store_session_remove_failed(db, sid, 300, &failures, &retry_in) == STORE_OK);
    CHECK(failures == 41 && retry_in >= 86399 && retry_in <= 86400);
    CHECK(raw_exec("UPDATE sessions SET remove_after = now() - interval '1 second'"
                   " WHERE id = $1", sid) == 0);
    CHECK(store_sessions_to_remove(db, 200, ids, &n) == STORE_OK);
    has_sid = 0;
    for (long i = 0; i < n; i++)
        has_sid |= strcmp(ids[i], sid) == 0;
    CHECK(has_sid);
    CHECK(store_session_remove_failed(db, "nosuch", 300, &failures, &retry_in) ==
          STORE_NOT_FOUND);
    CHECK_STR(raw_value("SELECT remove_failures FROM sessions WHERE id = $1", other, buf,
                        sizeof(buf)), "0");
}

/* Pruning old workspaces: beyond the newest keep ended jobs, never the
 * current one; a pruned job's folder answers STORE_GONE. */
static void test_prune_outputs(struct db *db)
{
    char sid[ID_HEX_LEN + 1], j[4][ID_HEX_LEN + 1], folder[ID_HEX_LEN + 1];
    new_session(db, sid);
    for (int i = 0; i < 4; i++)
        new_job(db, sid, j[i]);
    CHECK(raw_exec("UPDATE jobs SET status = 'succeeded', finished_at = now(),"
                   " has_outputs = true WHERE session_id = $1", sid) == 0);
    CHECK(raw_exec("UPDATE sessions SET current_job_id = (SELECT id FROM jobs"
                   " WHERE session_id = $1 ORDER BY seq LIMIT 1) WHERE id = $1", sid) == 0);
    struct store_job_ref refs[100];
    long n = 0, mine = 0;
    CHECK(store_prune_job_outputs(db, 1, 100, refs, &n) == STORE_OK);
    for (long i = 0; i < n; i++)
        if (strcmp(refs[i].session_id, sid) == 0)
            mine += strcmp(refs[i].job_id, j[1]) == 0 || strcmp(refs[i].job_id, j[2]) == 0;
    CHECK(mine == 2);
    CHECK(store_prune_job_outputs(db, 1, 100, refs, &n) == STORE_OK);
    for (long i = 0; i < n; i++)
        CHECK(strcmp(refs[i].session_id, sid) != 0);
    CHECK(store_job_folder(db, sid, "key_a", j[1], folder) == STORE_GONE);
    CHECK(store_job_folder(db, sid, "key_a", j[0], folder) == STORE_OK);
    CHECK(store_job_folder(db, sid, "key_a", j[3], folder) == STORE_OK);
    CHECK(store_job_folder(db, sid, "key_a", NULL, folder) == STORE_OK);
    CHECK_STR(folder, j[0]);
}

/* The kind and data of a job's event seq (from store_events_list). */
static int event_is(struct db *db, const char *jid, long long seq, const char *kind,
                    const char *needle)
{
    struct store_events ev;
    int ok = store_events_list(db, jid, seq - 1, 1, &ev) == STORE_OK && ev.n == 1 &&
             ev.v[0].seq == seq && strcmp(ev.v[0].kind, kind) == 0 &&
             strstr(ev.v[0].data, needle) != NULL;
    store_events_free(&ev);
    return ok;
}

static void note_payload(const char *channel, const char *payload, void *arg)
{
    if (strcmp(channel, "job_cancel") == 0)
        snprintf(arg, ID_HEX_LEN + 1, "%s", payload);
}

/* Live jobs: status events from the trigger, agent events fenced by the
 * lease and capped, cancel of a queued and of a running job, and the
 * cancel's notification. */
static void test_events_and_cancel(struct db *db, const char *url)
{
    char sid[ID_HEX_LEN + 1], j1[ID_HEX_LEN + 1], j2[ID_HEX_LEN + 1], st[16];
    char heard[ID_HEX_LEN + 1] = "";
    struct db *listener = db_new(url, "test_listen");
    CHECK(db_listen(listener, "job_cancel") == DB_OK);
    new_session(db, sid);
    new_job(db, sid, j1);
    CHECK(event_is(db, j1, 1, "status", "\"queued\""));
    struct store_claim c;
    CHECK(store_job_claim(db, j1, "w1", 30, &c) == STORE_OK);
    CHECK(event_is(db, j1, 2, "status", "\"running\""));

    const char *kinds[] = { "text", "tool", "step", "error", "text" };
    const char *data[] = { "{\"text\":\"hi \\\"there\\\"\"}", "{\"tool\":\"write\"}",
                           "{\"cost_usd\":0}", "{\"message\":\"m\"}", "{\"text\":\"x\"}" };
    long stored = -1;
    CHECK(store_events_add(db, j1, "not-the-token", kinds, data, 2, 100, &stored) ==
          STORE_NOT_FOUND && stored == 0);
    CHECK(store_events_add(db, j1, c.lease_token, kinds, data, 2, 100, &stored) == STORE_OK &&
          stored == 2);
    CHECK(event_is(db, j1, 3, "text", "hi \\\"there\\\""));
    CHECK(event_is(db, j1, 4, "tool", "write"));
    /* JOB_MAX_EVENTS 6: two of the five fit. */
    CHECK(store_events_add(db, j1, c.lease_token, kinds, data, 5, 6, &stored) == STORE_OK &&
          stored == 2);

    new_job(db, sid, j2);                       /* waits behind j1 */
    CHECK(store_job_cancel(db, j2, "key_a", st) == STORE_OK);
    CHECK_STR(st, "cancelled");
    CHECK(event_is(db, j2, 2, "status", "\"cancelled\""));
    CHECK(store_job_cancel(db, j2, "key_a", st) == STORE_CONFLICT);
    CHECK_STR(st, "cancelled");
    CHECK(store_job_cancel(db, j1, "key_b", st) == STORE_NOT_FOUND);

    CHECK(store_job_cancel(db, j1, "key_a", st) == STORE_OK);
    CHECK_STR(st, "running");
    int cancel = 0;
    CHECK(store_job_renew(db, j1, c.lease_token, 30, &cancel) == STORE_OK && cancel == 1);
    for (int i = 0; i < 50 && heard[0] == '\0'; i++) {
        db_notifies(listener, note_payload, heard);
        usleep(20000);
    }
    CHECK_STR(heard, j1);

    struct store_outcome o = { .status = "cancelled", .error_code = JOBERR_CANCELLED,
                               .error = "cancelled by the client while it ran" };
    CHECK(store_job_finish(db, &c, &o) == STORE_OK);
    CHECK(event_is(db, j1, 7, "status", "\"cancelled\""));
    struct store_job j;
    CHECK(store_job_get(db, j1, "key_a", &j) == STORE_OK);
    CHECK(j.has_outputs && j.cancel_requested_usec > 0);
    store_job_free(&j);
    store_claim_free(&c);
    db_free(listener);
}

/* Quotas read key_usage, which triggers keep in step with sessions and
 * jobs; an active session past its expiry no longer counts. */
static void test_key_usage(struct db *db)
{
    struct store_quota_limits def = { { 2, 2, 100 } };
    struct store_quota_hit hit;
    char s1[ID_HEX_LEN + 1], s2[ID_HEX_LEN + 1], j1[ID_HEX_LEN + 1];
    struct store_file f = { "a.txt", 60, NULL, 0 };
    struct store_session out;
    CHECK(id_new(s1) == 0 && id_new(s2) == 0 && id_new(j1) == 0);
    struct store_new_session n1 = { s1, "key_u", 600, &f, 1, 60 };
    struct store_new_session n2 = { s2, "key_u", 600, &f, 1, 60 };
    CHECK(store_quota_session(db, "key_u", &def, 1, 60, &hit) == STORE_OK);
    CHECK(store_session_create(db, &n1, &out) == STORE_OK);
    /* 60 + 60 bytes > 100 */
    CHECK(store_quota_session(db, "key_u", &def, 1, 60, &hit) == STORE_LIMIT);
    CHECK(hit.quota == STORE_QUOTA_STORED_BYTES && hit.used == 60);
    CHECK(store_quota_session(db, "key_u", &def, 1, 10, &hit) == STORE_OK);
    CHECK(store_session_create(db, &n2, &out) == STORE_OK);
    CHECK(store_quota_session(db, "key_u", &def, 1, 0, &hit) == STORE_LIMIT);
    CHECK(hit.quota == STORE_QUOTA_ACTIVE_SESSIONS && hit.used == 2);
    /* An edit adds no session: only the bytes it adds count (n2 went in
     * unchecked, so the key already holds 120 of its 100). */
    CHECK(store_quota_session(db, "key_u", &def, 0, 0, &hit) == STORE_OK);
    CHECK(store_quota_session(db, "key_u", &def, 0, 1, &hit) == STORE_LIMIT);
    CHECK(hit.quota == STORE_QUOTA_STORED_BYTES && hit.used == 120);

    struct store_new_job nj = { .job_id = j1, .session_id = s1, .key_id = "key_u",
                                .prompt = "p", .model = "m", .timeout_s = 60 };
    int64_t created;
    CHECK(store_quota_job(db, "key_u", &def, &hit) == STORE_OK);
    CHECK(store_job_create(db, &nj, &created) == STORE_OK);
    def.max[STORE_QUOTA_QUEUED_JOBS] = 1;
    CHECK(store_quota_job(db, "key_u", &def, &hit) == STORE_LIMIT && hit.used == 1);
    char st[16];
    CHECK(store_job_cancel(db, j1, "key_u", st) == STORE_OK);
    CHECK(store_quota_job(db, "key_u", &def, &hit) == STORE_OK);

    /* Deleting one and letting the other's expiry pass frees both. */
    CHECK(store_session_delete(db, s1, "key_u", &(int){ 0 }) == STORE_OK);
    CHECK(raw_exec("UPDATE sessions SET expires_at = now() - interval '1 second'"
                   " WHERE id = $1", s2) == 0);
    def.max[STORE_QUOTA_ACTIVE_SESSIONS] = 1;
    CHECK(store_quota_session(db, "key_u", &def, 1, 100, &hit) == STORE_OK);
    char buf[64];
    CHECK_STR(raw_value("SELECT active_sessions || '/' || stored_bytes || '/' || open_jobs"
                        " FROM key_usage WHERE key_id = $1", "key_u", buf, sizeof(buf)),
              "1/60/0");
}

/* store_session_create_fit: inserts at once while the counters leave
 * room; over them, inserts only if the exact count (without expired
 * sessions) does, else STORE_LIMIT with the quota, and nothing recorded. */
static void test_session_create_fit(struct db *db)
{
    struct store_quota_limits def = { { 2, 2, 100 } };
    struct store_quota_hit hit;
    struct store_file f = { "a.txt", 60, NULL, 0 };
    struct store_session out;
    char s[4][ID_HEX_LEN + 1], buf[64];
    for (int i = 0; i < 4; i++)
        CHECK(id_new(s[i]) == 0);
    struct store_new_session n = { s[0], "key_f", 600, &f, 1, 60 };
    CHECK(store_session_create_fit(db, &n, &def, &out, &hit) == STORE_OK);
    CHECK_STR(out.id, s[0]);
    n.id = s[1];   /* 60 + 60 > 100 */
    CHECK(store_session_create_fit(db, &n, &def, &out, &hit) == STORE_LIMIT);
    CHECK(hit.quota == STORE_QUOTA_STORED_BYTES && hit.limit == 100 && hit.used == 60);
    CHECK_STR(raw_value("SELECT count(*) FROM sessions WHERE id = $1", s[1], buf, sizeof(buf)),
              "0");
    CHECK_STR(raw_value("SELECT count(*) FROM session_files WHERE session_id = $1", s[1], buf,
                        sizeof(buf)), "0");
    n.total_bytes = 40;
    CHECK(store_session_create_fit(db, &n, &def, &out, &hit) == STORE_OK);
    n.id = s[2];
    n.total_bytes = 0;
    CHECK(store_session_create_fit(db, &n, &def, &out, &hit) == STORE_LIMIT);
    CHECK(hit.quota == STORE_QUOTA_ACTIVE_SESSIONS && hit.used == 2);
    /* Expired but still counted: the exact check makes room. */
    CHECK(raw_exec("UPDATE sessions SET expires_at = now() - interval '1 second'"
                   " WHERE id = $1", s[0]) == 0);
    CHECK(store_session_create_fit(db, &n, &def, &out, &hit) == STORE_OK);
    CHECK_STR(raw_value("SELECT count(*) FROM session_files WHERE session_id = $1", s[2], buf,
                        sizeof(buf)), "1");
    /* A limit of the key's own row beats the default. */
    CHECK(raw_exec("INSERT INTO api_keys (id, name, key_sha256, max_active_sessions)"
                   " VALUES ($1, 'fit', sha256('fit'::bytea), 9)", "key_f") == 0);
    n.id = s[3];
    CHECK(store_session_create_fit(db, &n, &def, &out, &hit) == STORE_OK);
}

/* Creations of one key on two connections never wait for each other:
 * each adds to the key_usage_shards row of its own backend (migration
 * 016), while an open one on the same row would hold the other until its
 * commit. statement_timeout turns such a wait into a failure. */
static void test_key_usage_shards(void)
{
    static const char ins[] =
        "INSERT INTO sessions (id, api_key_id, ttl_seconds, expires_at, input_file_count,"
        " input_bytes) VALUES ($1, 'key_s', 600, now() + interval '600 s', 1, 7)";
    PGconn *other = NULL;
    for (int i = 0; i < 64 && other == NULL; i++) {
        other = PQconnectdb(test_url);
        if (PQbackendPID(other) % 16 == PQbackendPID(raw) % 16) {
            PQfinish(other);
            other = NULL;
        }
    }
    CHECK(other != NULL);
    if (other == NULL)
        return;
    char s1[ID_HEX_LEN + 1], s2[ID_HEX_LEN + 1], buf[64];
    CHECK(id_new(s1) == 0 && id_new(s2) == 0);
    CHECK(raw_exec("BEGIN", NULL) == 0 && raw_exec(ins, s1) == 0);
    const char *p2[] = { s2 };
    PQclear(PQexec(other, "SET statement_timeout = '5s'"));
    PGresult *r = PQexecParams(other, ins, 1, NULL, p2, NULL, NULL, 0);
    CHECK(PQresultStatus(r) == PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(other);
    CHECK(raw_exec("COMMIT", NULL) == 0);
    CHECK_STR(raw_value("SELECT count(*) || '/' || sum(active_sessions) || '/' ||"
                        " sum(stored_bytes) FROM key_usage_shards WHERE key_id = $1",
                        "key_s", buf, sizeof(buf)), "2/2/14");
    CHECK_STR(raw_value("SELECT active_sessions || '/' || stored_bytes FROM key_usage"
                        " WHERE key_id = $1", "key_s", buf, sizeof(buf)), "2/14");
}

/* A running job asked to stop whose worker went away: the janitor records
 * it cancelled when the lease runs out (not re-queued). */
static void test_reap_cancelled(struct db *db)
{
    char sid[ID_HEX_LEN + 1], jid[ID_HEX_LEN + 1], st[16], buf[64];
    new_session(db, sid);
    new_job(db, sid, jid);
    struct store_claim c;
    CHECK(store_job_claim(db, jid, "w-gone", 30, &c) == STORE_OK);
    CHECK(store_job_cancel(db, jid, "key_a", st) == STORE_OK);
    CHECK(raw_exec("UPDATE jobs SET lease_expires_at = now() - interval '1 second'"
                   " WHERE id = $1", jid) == 0);
    long requeued = -1, failed = -1, found = -1;
    CHECK(store_reap_expired_leases(db, 3, 100, &requeued, &failed, &found) == STORE_OK);
    CHECK(requeued == 0 && found >= 1);
    CHECK_STR(raw_value("SELECT status || '/' || error_code FROM jobs WHERE id = $1", jid, buf,
                        sizeof(buf)), "cancelled/cancelled");
    CHECK(store_job_finish(db, &c, &(struct store_outcome){ .status = "succeeded" }) ==
          STORE_NOT_FOUND);
    store_claim_free(&c);
}

int main(void)
{
    const char *base = getenv("DATABASE_URL");
    if (base == NULL || *base == '\0') {
        printf("test_store: DATABASE_URL not set, skipped\n");
        return 0;
    }
    char name[64];
    char *url = make_database(base, name, sizeof(name));
    CHECK(url != NULL);
    if (url == NULL)
        return check_report();

    struct db *db = db_new(url, "test_store");
    char err[512];
    int applied = migrate_run(db, err, sizeof(err));
    CHECK(applied == (int)migrations_count);
    if (applied < 0)
        fprintf(stderr, "migrate: %s\n", err);
    CHECK(migrate_run(db, err, sizeof(err)) == 0);

    test_prepared(url);
    test_pool(url);
    test_arrays(db);
    test_failure_code(db);
    test_janitor(db);
    test_url = url;
    raw = PQconnectdb(url);
    CHECK(PQstatus(raw) == CONNECTION_OK);
    test_race_create_finish(db);
    test_race_claim_delete(db);
    test_remove_backoff(db);
    test_prune_outputs(db);
    test_events_and_cancel(db, url);
    test_key_usage(db);
    test_session_create_fit(db);
    test_key_usage_shards();
    test_reap_cancelled(db);
    PQfinish(raw);
    db_free(db);

    char sql[128];
    snprintf(sql, sizeof(sql), "DROP DATABASE %s WITH (FORCE)", name);
    CHECK(sql_on(base, sql) == 0);
    free(url);
    return check_report();
}
