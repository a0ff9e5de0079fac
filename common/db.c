/* db.c - see db.h. */
#include "db.h"
#include "log.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

PGconn *db_connect(const char *url, const char *app_name, char *err, size_t err_len)
{
    /* The URL comes first so its own settings win over nothing; the extra
     * keywords only fill what it leaves unset. */
    const char *keys[] = { "dbname", "application_name", "connect_timeout",
                           "keepalives", "keepalives_idle", "keepalives_interval",
                           "keepalives_count", NULL };
    const char *vals[] = { url, app_name, "10", "1", "10", "5", "3", NULL };
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
 * until it is used, and its first query would fail. This service never
 * LISTENs, so an idle connection has nothing to say: a readable socket
 * means the server sent its goodbye (FATAL 57P01 on shutdown) or closed
 * it. Such a connection is replaced before use. */
static int db_alive(PGconn *conn)
{
    if (PQstatus(conn) != CONNECTION_OK)
        return 0;
    struct pollfd p = { .fd = PQsocket(conn), .events = POLLIN };
    if (p.fd < 0)
        return 0;
    return poll(&p, 1, 0) == 0;
}

int db_ensure(PGconn **conn, const char *url, const char *app_name)
{
    if (*conn != NULL && db_alive(*conn))
        return DB_OK;
    if (*conn != NULL) {
        PQfinish(*conn);
        *conn = NULL;
    }
    char err[512];
    *conn = db_connect(url, app_name, err, sizeof(err));
    if (*conn == NULL) {
        log_warn("db.unavailable", "error=\"%s\"", err);
        return DB_UNAVAILABLE;
    }
    return DB_OK;
}

static int db_classify(PGconn *conn, const PGresult *res)
{
    if (PQstatus(conn) != CONNECTION_OK)
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

PGresult *db_query(PGconn *conn, const char *event, const char *sql, int n,
                   const char *const *params, int *rc)
{
    PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
        *rc = DB_OK;
        return res;
    }
    *rc = db_classify(conn, res);
    const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(conn);
    char line[400];
    snprintf(line, sizeof(line), "%s", msg ? msg : "");
    for (char *p = line; *p; p++)
        if (*p == '\n' || *p == '"')
            *p = ' ';
    if (*rc == DB_CONSTRAINT)
        log_debug("db.constraint", "query=%s error=\"%s\"", event, line);
    else
        log_warn("db.error", "query=%s class=%d error=\"%s\"", event, *rc, line);
    PQclear(res);
    return NULL;
}

long db_exec(PGconn *conn, const char *event, const char *sql, int n,
             const char *const *params)
{
    int rc;
    PGresult *res = db_query(conn, event, sql, n, params, &rc);
    if (res == NULL)
        return rc;
    const char *t = PQcmdTuples(res);
    long rows = (t && *t) ? strtol(t, NULL, 10) : 0;
    PQclear(res);
    return rows;
}

int db_begin(PGconn *conn)
{
    long r = db_exec(conn, "begin", "BEGIN", 0, NULL);
    return r < 0 ? (int)r : DB_OK;
}

int db_commit(PGconn *conn)
{
    long r = db_exec(conn, "commit", "COMMIT", 0, NULL);
    return r < 0 ? (int)r : DB_OK;
}

void db_rollback(PGconn *conn)
{
    if (PQstatus(conn) != CONNECTION_OK)
        return;
    PGresult *res = PQexec(conn, "ROLLBACK");
    PQclear(res);
}

const char *db_get(const PGresult *res, int row, const char *name)
{
    int col = PQfnumber(res, name);
    if (col < 0 || row >= PQntuples(res) || PQgetisnull(res, row, col))
        return NULL;
    return PQgetvalue(res, row, col);
}

long long db_get_ll(const PGresult *res, int row, const char *name)
{
    const char *v = db_get(res, row, name);
    return v ? strtoll(v, NULL, 10) : 0;
}
