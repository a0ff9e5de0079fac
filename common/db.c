/*
 * db.c - see db.h.
 *
 * Owns: one PGconn per struct db, the list of statements prepared on it,
 * and the pool's idle list. Threading: a struct db is used by one thread
 * at a time; struct db_pool guards its lists with a mutex.
 */
#include "db.h"
#include "log.h"
#include "prog.h"
#include "xalloc.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct db {
    PGconn *conn;
    char   *url;
    char   *app_name;
    /* Statements prepared on conn: stmts[i] is named "s<i>". */
    const struct db_stmt *stmts[DB_MAX_STMTS];
    int     nstmts;
    int     down;          /* the last connection attempt failed (logged) */
    int     io_timeout_ms; /* db_set_io_timeout(); 0: libpq's defaults */
    int     generic_plans; /* db_set_generic_plans() */
    /* db_listen()'s channels, listened to again on every new connection. */
    char   *listen[DB_MAX_LISTEN];
    int     nlisten;
    unsigned long generation;   /* connections made (db_generation()) */
};

struct db *db_new(const char *url, const char *app_name)
{
    struct db *db = xcalloc(1, sizeof(*db));
    db->url = xstrdup(url);
    db->app_name = xstrdup(app_name);
    return db;
}

void db_set_io_timeout(struct db *db, int ms)
{
    db->io_timeout_ms = ms > 0 ? ms : 0;
}

void db_set_generic_plans(struct db *db)
{
    db->generic_plans = 1;
}

static void db_disconnect(struct db *db)
{
    if (db->conn != NULL)
        PQfinish(db->conn);
    db->conn = NULL;
    db->nstmts = 0;        /* the server forgot them with the session */
}

void db_free(struct db *db)
{
    if (db == NULL)
        return;
    db_disconnect(db);
    for (int i = 0; i < db->nlisten; i++)
        free(db->listen[i]);
    free(db->url);
    free(db->app_name);
    free(db);
}

static PGconn *db_connect(const char *url, const char *app_name, int io_timeout_ms,
                          char *err, size_t err_len)
{
    /* Keepalives find a dead peer while idle; tcp_user_timeout bounds how
     * long a statement sent to an unreachable server (a partition: its
     * packets are never acknowledged) may block, and connect_timeout a
     * connection attempt. */
    char user_timeout[16] = "0", connect_timeout[16] = "10";
    if (io_timeout_ms > 0) {
        snprintf(user_timeout, sizeof(user_timeout), "%d", io_timeout_ms);
        snprintf(connect_timeout, sizeof(connect_timeout), "%d",
                 io_timeout_ms / 1000 > 2 ? io_timeout_ms / 1000 : 2);
    }
    const char *keys[] = { "dbname", "application_name", "connect_timeout",
                           "keepalives", "keepalives_idle", "keepalives_interval",
                           "keepalives_count", "tcp_user_timeout", NULL };
    const char *vals[] = { url, app_name, connect_timeout, "1", "10", "5", "3",
                           user_timeout, NULL };
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (c == NULL) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        snprintf(err, err_len, "%s", PQerrorMessage(c));
        size_t n = strlen(err);
        while (n > 0 && (err[n - 1] == '\n' || err[n - 1] == ' '))
            err[--n] = '\0';
        PQfinish(c);
        return NULL;
    }
    return c;
}

/* An idle connection whose server went away still says CONNECTION_OK
 * until it is used, and its first query would fail. A connection that
 * does not LISTEN has nothing to say while idle: a readable socket means
 * the server sent its goodbye (FATAL 57P01 on shutdown) or closed it.
 * Such a connection is replaced before use. A listening one may just
 * hold notifications: its input is read (they stay queued for
 * db_notifies()) and the connection kept if that leaves it healthy. */
static int db_alive(const struct db *db)
{
    PGconn *conn = db->conn;
    if (PQstatus(conn) != CONNECTION_OK)
        return 0;
    struct pollfd p = { .fd = PQsocket(conn), .events = POLLIN };
    if (p.fd < 0)
        return 0;
    if (poll(&p, 1, 0) == 0)
        return 1;
    if (db->nlisten == 0)
        return 0;
    return PQconsumeInput(conn) == 1 && PQstatus(conn) == CONNECTION_OK;
}

static int db_classify(PGconn *conn, const PGresult *res);

/* Runs one statement of a new connection's set-up (LISTEN, SET). */
static int db_setup_exec(struct db *db, const char *sql)
{
    PGresult *res = PQexec(db->conn, sql);
    int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? DB_OK : db_classify(db->conn, res);
    PQclear(res);
    return rc;
}

static int db_listen_send(struct db *db, const char *channel)
{
    char *ident = PQescapeIdentifier(db->conn, channel, strlen(channel));
    if (ident == NULL)
        return DB_UNAVAILABLE;
    char sql[128];
    snprintf(sql, sizeof(sql), "LISTEN %s", ident);
    PQfreemem(ident);
    return db_setup_exec(db, sql);
}

int db_ensure(struct db *db, char *err, size_t err_len)
{
    if (db->conn != NULL && db_alive(db))
        return DB_OK;
    db_disconnect(db);
    char why[512];
    db->conn = db_connect(db->url, db->app_name, db->io_timeout_ms, why, sizeof(why));
    if (db->conn == NULL) {
        if (!db->down)
            log_warn("db.unavailable", "app=%s error=\"%s\"", db->app_name, why);
        db->down = 1;
        if (err != NULL && err_len > 0)
            snprintf(err, err_len, "%s", why);
        return DB_UNAVAILABLE;
    }
    db->generation++;
    int rc = db->generic_plans
             ? db_setup_exec(db, "SET plan_cache_mode = force_generic_plan") : DB_OK;
    for (int i = 0; rc == DB_OK && i < db->nlisten; i++)
        rc = db_listen_send(db, db->listen[i]);
    if (rc != DB_OK) {
        db_disconnect(db);
        return DB_UNAVAILABLE;
    }
    if (db->down)
        log_info("db.reconnected", "app=%s", db->app_name);
    db->down = 0;
    return DB_OK;
}

int db_listen(struct db *db, const char *channel)
{
    for (int i = 0; i < db->nlisten; i++)
        if (strcmp(db->listen[i], channel) == 0)
            return DB_OK;
    if (db->nlisten >= DB_MAX_LISTEN)
        return DB_ERROR;
    db->listen[db->nlisten++] = xstrdup(channel);
    if (db->conn == NULL)
        return db_ensure(db, NULL, 0);
    return db_listen_send(db, channel);
}

int db_notifies(struct db *db, db_notify_fn fn, void *arg)
{
    if (db->conn == NULL || PQstatus(db->conn) != CONNECTION_OK)
        return DB_UNAVAILABLE;
    if (PQconsumeInput(db->conn) != 1)
        return DB_UNAVAILABLE;
    int n = 0;
    PGnotify *note;
    while ((note = PQnotifies(db->conn)) != NULL) {
        fn(note->relname, note->extra, arg);
        PQfreemem(note);
        n++;
    }
    return n;
}

int db_socket(const struct db *db)
{
    return db->conn != NULL ? PQsocket(db->conn) : -1;
}

unsigned long db_generation(const struct db *db)
{
    return db->generation;
}

static int db_classify(PGconn *conn, const PGresult *res)
{
    if (conn == NULL || PQstatus(conn) != CONNECTION_OK)
        return DB_UNAVAILABLE;
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (state == NULL)
        return DB_UNAVAILABLE;   /* raised inside libpq: connection trouble */
    if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0)
        return DB_RETRY;
    if (strncmp(state, "23", 2) == 0)
        return DB_CONSTRAINT;
    /* 57P01 admin shutdown, 57P02/57P03, 08xxx connection exceptions */
    if (strncmp(state, "57P", 3) == 0 || strncmp(state, "08", 2) == 0)
        return DB_UNAVAILABLE;
    return DB_ERROR;
}

/* Checks a result: returns it with *rc = DB_OK, or clears it, logs the
 * error under name and returns NULL with the error class in *rc. */
static PGresult *db_check(struct db *db, const char *name, PGresult *res, int *rc)
{
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
        *rc = DB_OK;
        return res;
    }
    *rc = db_classify(db->conn, res);
    const char *msg = res ? PQresultErrorMessage(res)
                          : (db->conn ? PQerrorMessage(db->conn) : "not connected");
    /* The server's message can quote the data of a request: escaped. */
    if (*rc == DB_CONSTRAINT)
        log_debug("db.constraint", "query=%s error=\"%s\"", name, LOG_ESC(msg ? msg : ""));
    else
        log_warn("db.error", "query=%s class=%d error=\"%s\"", name, *rc,
                 LOG_ESC(msg ? msg : ""));
    PQclear(res);
    return NULL;
}

/* The index of stmt among the statements prepared on this connection,
 * preparing it first when needed; -1 with *rc set when preparing failed,
 * -2 when the table is full (the caller runs the statement unprepared). */
static int db_prepared(struct db *db, const struct db_stmt *stmt, int *rc)
{
    for (int i = 0; i < db->nstmts; i++)
        if (db->stmts[i] == stmt)
            return i;
    if (db->nstmts >= DB_MAX_STMTS)
        return -2;
    int i = db->nstmts;
    char name[16];
    snprintf(name, sizeof(name), "s%d", i);
    PGresult *res = db_check(db, stmt->name,
                             PQprepare(db->conn, name, stmt->sql, stmt->nparams, NULL), rc);
    if (res == NULL)
        return -1;
    PQclear(res);
    db->stmts[i] = stmt;
    db->nstmts++;
    return i;
}

PGresult *db_run(struct db *db, const struct db_stmt *stmt, const char *const *params,
                 int *rc)
{
    if (db->conn == NULL)
        return db_check(db, stmt->name, NULL, rc);
    int i = db_prepared(db, stmt, rc);
    if (i == -1)
        return NULL;
    PGresult *res;
    if (i == -2) {
        log_debug("db.unprepared", "query=%s", stmt->name);
        res = PQexecParams(db->conn, stmt->sql, stmt->nparams, NULL, params, NULL, NULL, 0);
    } else {
        char name[16];
        snprintf(name, sizeof(name), "s%d", i);
        res = PQexecPrepared(db->conn, name, stmt->nparams, params, NULL, NULL, 0);
    }
    return db_check(db, stmt->name, res, rc);
}

long db_run_exec(struct db *db, const struct db_stmt *stmt, const char *const *params)
{
    int rc;
    PGresult *res = db_run(db, stmt, params, &rc);
    if (res == NULL)
        return rc;
    const char *t = PQcmdTuples(res);
    long rows = (t && *t) ? strtol(t, NULL, 10) : 0;
    PQclear(res);
    return rows;
}

/* One parameterless command (BEGIN, COMMIT), logged under name. */
static int db_simple(struct db *db, const char *name, const char *sql)
{
    int rc;
    PGresult *res = db_check(db, name, db->conn ? PQexec(db->conn, sql) : NULL, &rc);
    PQclear(res);
    return rc;
}

int db_begin(struct db *db)
{
    return db_simple(db, "begin", "BEGIN");
}

int db_commit(struct db *db)
{
    return db_simple(db, "commit", "COMMIT");
}

void db_rollback(struct db *db)
{
    if (db->conn == NULL || PQstatus(db->conn) != CONNECTION_OK)
        return;
    PGresult *res = PQexec(db->conn, "ROLLBACK");
    PQclear(res);
}

int db_script(struct db *db, const char *sql, char *err, size_t err_len)
{
    if (db->conn == NULL) {
        if (err != NULL && err_len > 0)
            snprintf(err, err_len, "not connected");
        return DB_UNAVAILABLE;
    }
    PGresult *res = PQexec(db->conn, sql);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
        PQclear(res);
        return DB_OK;
    }
    int rc = db_classify(db->conn, res);
    if (err == NULL || err_len == 0) {
        PQclear(res);
        return rc;
    }
    snprintf(err, err_len, "%s", res ? PQresultErrorMessage(res) : PQerrorMessage(db->conn));
    size_t n = strlen(err);
    while (n > 0 && (err[n - 1] == '\n' || err[n - 1] == ' '))
        err[--n] = '\0';
    PQclear(res);
    return rc;
}

/* ---- Reading results ---------------------------------------------------- */

int db_rows(const PGresult *res)
{
    return res ? PQntuples(res) : 0;
}

void db_clear(PGresult *res)
{
    PQclear(res);
}

const char *db_get(const PGresult *res, int row, const char *name)
{
    if (res == NULL)
        return NULL;
    int col = PQfnumber(res, name);
    if (col < 0 || row < 0 || row >= PQntuples(res) || PQgetisnull(res, row, col))
        return NULL;
    return PQgetvalue(res, row, col);
}

long long db_get_ll(const PGresult *res, int row, const char *name)
{
    const char *v = db_get(res, row, name);
    return v ? strtoll(v, NULL, 10) : 0;
}

int db_get_bool(const PGresult *res, int row, const char *name)
{
    const char *v = db_get(res, row, name);
    return v != NULL && v[0] == 't';
}

/* ---- Pool --------------------------------------------------------------- */

struct db_pool {
    pthread_mutex_t mu;
    pthread_cond_t  cv;          /* signalled when a connection comes back */
    char           *url;
    char           *app_name;
    int             size;
    struct db     **idle;        /* size slots, nidle used */
    int             nidle;
    int             lent;
};

struct db_pool *db_pool_new(const char *url, const char *app_name, int size)
{
    struct db_pool *pool = xcalloc(1, sizeof(*pool));
    pthread_mutex_init(&pool->mu, NULL);
    prog_cond_init(&pool->cv);
    pool->url = xstrdup(url);
    pool->app_name = xstrdup(app_name);
    pool->size = size > 0 ? size : 1;
    pool->idle = xcalloc((size_t)pool->size, sizeof(*pool->idle));
    return pool;
}

void db_pool_free(struct db_pool *pool)
{
    if (pool == NULL)
        return;
    for (int i = 0; i < pool->nidle; i++)
        db_free(pool->idle[i]);
    free(pool->idle);
    free(pool->url);
    free(pool->app_name);
    pthread_cond_destroy(&pool->cv);
    pthread_mutex_destroy(&pool->mu);
    free(pool);
}

static long db_ms_left(const struct timespec *until)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (until->tv_sec - now.tv_sec) * 1000L + (until->tv_nsec - now.tv_nsec) / 1000000L;
}

/* Takes an idle connection or a slot for a new one (*fresh = 1), waiting
 * until until; NULL with *fresh = 0 when the time ran out. */
static struct db *db_pool_take(struct db_pool *pool, const struct timespec *until, int *fresh)
{
    struct db *db = NULL;
    *fresh = 0;
    pthread_mutex_lock(&pool->mu);
    for (;;) {
        if (pool->nidle > 0) {
            db = pool->idle[--pool->nidle];
            pool->lent++;
            break;
        }
        if (pool->nidle + pool->lent < pool->size) {
            pool->lent++;
            *fresh = 1;
            break;
        }
        long left = db_ms_left(until);
        if (left <= 0)
            break;
        prog_cond_wait_ms(&pool->cv, &pool->mu, left);
    }
    pthread_mutex_unlock(&pool->mu);
    return db;
}

static void db_pool_push(struct db_pool *pool, struct db *db)
{
    pthread_mutex_lock(&pool->mu);
    pool->idle[pool->nidle++] = db;
    pool->lent--;
    pthread_cond_signal(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
}

struct db *db_pool_get(struct db_pool *pool, int wait_ms, int *rc)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    long ms = wait_ms > 0 ? wait_ms : 0;
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    int fresh;
    struct db *db = db_pool_take(pool, &until, &fresh);
    if (db == NULL && !fresh) {
        *rc = DB_RETRY;
        return NULL;
    }
    if (fresh) {
        db = db_new(pool->url, pool->app_name);
        db_set_generic_plans(db);      /* the api's statements are key lookups */
    }
    /* Outside the mutex: connecting may take up to connect_timeout. */
    if (db_ensure(db, NULL, 0) != DB_OK) {
        db_pool_push(pool, db);
        *rc = DB_UNAVAILABLE;
        return NULL;
    }
    *rc = DB_OK;
    return db;
}

void db_pool_put(struct db_pool *pool, struct db *db)
{
    if (db == NULL)
        return;
    if (db->conn != NULL && PQtransactionStatus(db->conn) != PQTRANS_IDLE)
        db_rollback(db);
    db_pool_push(pool, db);
}
