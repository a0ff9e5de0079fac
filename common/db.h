/*
 * db.h - PostgreSQL connections shared by the api, workers and janitor.
 *
 * A PGconn belongs to one thread. db_ensure() is called before each use:
 * it reconnects a connection that broke (database restarted) so every
 * program recovers from an outage without a restart. Queries always pass
 * parameters apart from the SQL text.
 */
#ifndef OC_DB_H
#define OC_DB_H

#include <libpq-fe.h>
#include <stddef.h>

/* Result of a statement, sorted the way callers need to react. */
enum db_rc {
    DB_OK          = 0,
    DB_UNAVAILABLE = -1,   /* connection lost or database down: retry later */
    DB_RETRY       = -2,   /* serialization failure or deadlock: retry now */
    DB_CONSTRAINT  = -3,   /* unique or check violation */
    DB_ERROR       = -4,   /* anything else: a bug or a bad schema */
};

/* Connects (application_name set, TCP keepalives on, a 10 s connect
 * timeout). Returns the connection, or NULL with a reason in err. */
PGconn *db_connect(const char *url, const char *app_name, char *err, size_t err_len);

/* Makes *conn usable: connects when NULL, resets it when broken. Returns
 * DB_OK or DB_UNAVAILABLE. */
int db_ensure(PGconn **conn, const char *url, const char *app_name);

/* Runs sql with n text parameters. Returns the result (caller PQclear()s)
 * with *rc set to DB_OK, or NULL with *rc set to the error class. The
 * error is logged under event. */
PGresult *db_query(PGconn *conn, const char *event, const char *sql, int n,
                   const char *const *params, int *rc);

/* Like db_query() for statements whose rows are not needed: returns the
 * number of rows affected (>= 0) or a negative enum db_rc. */
long db_exec(PGconn *conn, const char *event, const char *sql, int n,
             const char *const *params);

/* BEGIN / COMMIT / ROLLBACK. Return DB_OK or an error class. ROLLBACK on
 * a broken connection is harmless. */
int db_begin(PGconn *conn);
int db_commit(PGconn *conn);
void db_rollback(PGconn *conn);

/* Value of column name in row, or NULL when SQL NULL. Never NULL-deref:
 * an unknown column is a bug and returns NULL too. */
const char *db_get(const PGresult *res, int row, const char *name);

/* Integer value of column name (0 when NULL or unparsable). */
long long db_get_ll(const PGresult *res, int row, const char *name);

#endif
