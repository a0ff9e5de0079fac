/*
 * store_internal.h - helpers shared by the store_*.c files only.
 */
#ifndef OC_STORE_INTERNAL_H
#define OC_STORE_INTERNAL_H

#include "db.h"
#include "store.h"

/* Maps an enum db_rc (or a negative db_exec() result) to enum store_rc. */
static inline int store_from_db(long rc)
{
    if (rc >= 0)
        return STORE_OK;
    if (rc == DB_UNAVAILABLE)
        return STORE_UNAVAILABLE;
    if (rc == DB_CONSTRAINT)
        return STORE_CONFLICT;
    return STORE_ERROR;
}

/* Queues the session ($1)'s next job, its oldest queued one, for
 * publishing. Run with the session row locked. */
#define ENQUEUE_NEXT_SQL \
    "INSERT INTO job_outbox (job_id) SELECT id FROM jobs " \
    "WHERE session_id = $1 AND status = 'queued' ORDER BY seq LIMIT 1"

/* Runs one statement inside a transaction. Returns 0, or -1 with the
 * error class in *rc (the caller then rolls back). */
static inline int store_step(PGconn *db, const char *event, const char *sql, int n,
                             const char *const *params, int *rc)
{
    long r = db_exec(db, event, sql, n, params);
    if (r < 0) {
        *rc = (int)r;
        return -1;
    }
    return 0;
}

/* SQL fragment: a timestamptz column as microseconds since the epoch. */
#define STORE_USEC(col) "(extract(epoch FROM " col ") * 1000000)::bigint"

/* Copies a column value into a fixed buffer ("" when NULL). */
static inline void store_copy(char *dst, size_t len, const PGresult *res, int row,
                              const char *name)
{
    const char *v = db_get(res, row, name);
    size_t n = v ? strlen(v) : 0;
    if (n >= len)
        n = len - 1;
    if (n > 0)
        memcpy(dst, v, n);
    dst[n] = '\0';
}

#endif
