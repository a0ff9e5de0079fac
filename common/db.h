/*
 * db.h - the service's PostgreSQL handle, its prepared statements and the
 * API's bounded connection pool.
 *
 * A struct db is one connection plus what it needs to recover by itself:
 * the URL, the application name and which statements it has prepared.
 * Only common/db*.c and common/store*.c see libpq; everything else holds a
 * struct db and calls store_*() (store.h).
 *
 * Threading: a struct db belongs to one thread at a time. A struct
 * db_pool may be used from any thread.
 *
 * Statements: every statement that runs per request or per job is a
 * static struct db_stmt (DB_STMT below). db_run() prepares it on its
 * first use on a connection and runs the prepared form from then on; a
 * reconnect forgets what was prepared, so nothing goes stale.
 */
#ifndef OC_DB_H
#define OC_DB_H

#include <stddef.h>

struct db;
struct db_pool;
struct pg_result;

/* Result of a statement, sorted the way callers need to react. */
enum db_rc {
    DB_OK          = 0,
    DB_UNAVAILABLE = -1,   /* connection lost or database down: retry later */
    DB_RETRY       = -2,   /* serialization failure or deadlock: retry now */
    DB_CONSTRAINT  = -3,   /* unique or check violation */
    DB_ERROR       = -4,   /* anything else: a bug or a bad schema */
};

/* A statement with n text parameters ($1..$n), prepared once per
 * connection. name is for logs ("job.claim"). */
struct db_stmt {
    const char *name;
    const char *sql;
    int         nparams;
};
#define DB_STMT(var, name_, n_, sql_) \
    static const struct db_stmt var = { name_, sql_, n_ }

/* Most statements one connection prepares (bookkeeping is a fixed table). */
#define DB_MAX_STMTS 192

/* A handle for url, not yet connected (db_ensure() connects). Aborts when
 * out of memory. Free with db_free(), which accepts NULL. */
struct db *db_new(const char *url, const char *app_name);
void db_free(struct db *db);

/*
 * Bounds how long this handle may wait on a server that stopped answering
 * (a network partition): a statement whose data the server does not
 * acknowledge fails after ms (TCP_USER_TIMEOUT), and a connection attempt
 * after max(2 s, ms). Applies to connections made from then on; 0 (the
 * default) keeps 10 s for connecting and the kernel's retransmission
 * timeout for statements. The worker sets a third of its lease, so that
 * it notices a lost lease in time.
 */
void db_set_io_timeout(struct db *db, int ms);

/*
 * Every connection of this handle, from the next one on, plans each
 * prepared statement once (SET plan_cache_mode = force_generic_plan).
 * Without it PostgreSQL keeps re-planning a statement on every execution
 * whenever its plan for the given values looks cheaper than the generic
 * one, which for a lookup by key costs more than running it. For handles
 * whose statements all find rows by an indexed key, as the api's pool
 * does (its connections get this), never for ones with range or skewed
 * predicates where the values matter.
 */
void db_set_generic_plans(struct db *db);

/*
 * Makes the connection usable: connects when it is not, replaces it when
 * it broke (the server restarted) or when its socket has something to say
 * while idle. Returns DB_OK or DB_UNAVAILABLE (the reason is logged once
 * per outage, and copied to err when err is not NULL).
 */
int db_ensure(struct db *db, char *err, size_t err_len);

/* Runs stmt with its parameters (NULL entries are SQL NULL). Returns the
 * result (free with db_clear()) with *rc = DB_OK, or NULL with *rc set to
 * the error class, which is logged under stmt->name. */
struct pg_result *db_run(struct db *db, const struct db_stmt *stmt,
                         const char *const *params, int *rc);

/* db_run() for statements whose rows are not needed: the number of rows
 * affected (>= 0) or a negative enum db_rc. */
long db_run_exec(struct db *db, const struct db_stmt *stmt, const char *const *params);

/* BEGIN / COMMIT / ROLLBACK. Return DB_OK or an error class. ROLLBACK on
 * a broken connection is harmless. */
int db_begin(struct db *db);
int db_commit(struct db *db);
void db_rollback(struct db *db);

/* Runs a whole SQL script (no parameters; migrations). Returns DB_OK or an
 * error class with the server's message in err. */
int db_script(struct db *db, const char *sql, char *err, size_t err_len);

/* ---- LISTEN/NOTIFY ------------------------------------------------------ */

/* Most channels one handle listens on. */
#define DB_MAX_LISTEN 4

/*
 * Listens on channel (a fixed identifier of this program, not input) from
 * now on, and again after every reconnection db_ensure() makes (a
 * notification sent while disconnected is lost: callers re-check their
 * state after a reconnection, see db_generation()). Returns DB_OK or an
 * error class. A listening handle tells notifications apart from a dead
 * server when db_ensure() finds its socket readable.
 */
int db_listen(struct db *db, const char *channel);

/* Called for each notification received: channel and payload are valid
 * during the call only. */
typedef void (*db_notify_fn)(const char *channel, const char *payload, void *arg);

/*
 * Reads what the server sent without blocking and hands every queued
 * notification to fn. Returns how many there were (>= 0), or
 * DB_UNAVAILABLE when the connection broke (db_ensure() reconnects).
 */
int db_notifies(struct db *db, db_notify_fn fn, void *arg);

/* The connection's socket, to poll() for notifications; -1 when not
 * connected. */
int db_socket(const struct db *db);

/* Counts the connections db_ensure() has made on this handle: a change
 * means notifications may have been missed meanwhile. */
unsigned long db_generation(const struct db *db);

/* Reading results (rows are 0-based; columns by name). */
int db_rows(const struct pg_result *res);
void db_clear(struct pg_result *res);
/* Value of column name in row, or NULL when SQL NULL or no such column. */
const char *db_get(const struct pg_result *res, int row, const char *name);
/* Integer value of column name (0 when NULL or unparsable). */
long long db_get_ll(const struct pg_result *res, int row, const char *name);
/* 1 when the boolean column is true. */
int db_get_bool(const struct pg_result *res, int row, const char *name);

/* ---- Pool (the API's request threads) ----------------------------------- */

/* Up to size connections, opened on demand. Aborts when out of memory. */
struct db_pool *db_pool_new(const char *url, const char *app_name, int size);
void db_pool_free(struct db_pool *pool);

/*
 * Borrows a connection, waiting up to wait_ms for one to be returned when
 * all are lent. The connection is usable (db_ensure() ran). Returns NULL
 * when none became free in time (*rc = DB_RETRY) or the database is
 * unreachable (*rc = DB_UNAVAILABLE). A caller waiting here holds no
 * connection.
 */
struct db *db_pool_get(struct db_pool *pool, int wait_ms, int *rc);

/* Returns a borrowed connection. A connection left inside a transaction
 * is rolled back first. Accepts NULL. */
void db_pool_put(struct db_pool *pool, struct db *db);

#endif
