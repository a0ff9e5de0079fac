/*
 * store_internal.h - helpers shared by the store_*.c files only.
 *
 * Ownership: the array literals built here are malloc'd (xmalloc) and
 * freed by the caller with free(). Threading: none of this keeps state.
 */
#ifndef OC_STORE_INTERNAL_H
#define OC_STORE_INTERNAL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "store.h"
#include "xalloc.h"

/* Maps an enum db_rc (or a negative db_run_exec() result) to enum store_rc. */
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

/* Locks a session row ($1): the first step of the store.h locking rule. */
#define LOCK_SESSION_SQL "SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE"

/* Runs one statement inside a transaction. Returns 0, or -1 with the
 * error class in *rc (the caller then rolls back). */
static inline int store_step(struct db *db, const struct db_stmt *stmt,
                             const char *const *params, int *rc)
{
    long r = db_run_exec(db, stmt, params);
    if (r < 0) {
        *rc = (int)r;
        return -1;
    }
    return 0;
}

/* Runs stmt expecting exactly one row: returns that result (*rc =
 * STORE_OK; free with db_clear()), or NULL with *rc = STORE_NOT_FOUND (no
 * row: unknown, or not the caller's) or the failure's store_rc. */
static inline struct pg_result *store_row(struct db *db, const struct db_stmt *stmt,
                                          const char *const *params, int *rc)
{
    int drc;
    struct pg_result *res = db_run(db, stmt, params, &drc);
    if (res == NULL) {
        *rc = store_from_db(drc);
        return NULL;
    }
    if (db_rows(res) != 1) {
        db_clear(res);
        *rc = STORE_NOT_FOUND;
        return NULL;
    }
    *rc = STORE_OK;
    return res;
}

/* The head of a struct store_results (store.h): runs stmt ($1 the
 * session, $2 the key), expecting one row, and points *out's job id (the
 * column job_col), result and result_json into it; *out owns the row. */
static inline int store_results_head(struct db *db, const struct db_stmt *stmt,
                                     const char *session_id, const char *key_id,
                                     const char *job_col, struct store_results *out)
{
    memset(out, 0, sizeof(*out));
    const char *p[] = { session_id, key_id };
    int rc;
    struct pg_result *res = store_row(db, stmt, p, &rc);
    if (res == NULL)
        return rc;
    out->res = res;
    out->latest_job_id = db_get(res, 0, job_col);
    out->result = db_get(res, 0, "result");
    out->result_json = db_get(res, 0, "result_json");
    return STORE_OK;
}

/* Ends a transaction: commits when every step went well (rc == DB_OK),
 * else, or when the commit fails, rolls back. Returns the enum store_rc. */
static inline int store_tx_end(struct db *db, int rc)
{
    if (rc == DB_OK)
        rc = db_commit(db);
    if (rc != DB_OK)
        db_rollback(db);
    return store_from_db(rc);
}

/* SQL fragment: a timestamptz column as microseconds since the epoch. */
#define STORE_USEC(col) "(extract(epoch FROM " col ") * 1000000)::bigint"

/* Copies a column value into a fixed buffer ("" when NULL). */
static inline void store_copy(char *dst, size_t len, const struct pg_result *res, int row,
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

/* ---- PostgreSQL array literals (manifests go over as $n::text[]) -------- */

struct store_buf {
    char  *p;
    size_t len, cap;
};

static inline void store_buf_add(struct store_buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (b->len + n + 1 > cap)
            cap *= 2;
        char *q = xmalloc(cap);
        if (b->len > 0)
            memcpy(q, b->p, b->len);
        free(b->p);
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* Appends one element of a text[] literal: quoted with \ and " escaped,
 * so commas, braces, spaces and quotes survive; NULL becomes SQL NULL. */
static inline void store_array_add_text(struct store_buf *b, size_t i, const char *s)
{
    if (i > 0)
        store_buf_add(b, ",", 1);
    if (s == NULL) {
        store_buf_add(b, "NULL", 4);
        return;
    }
    store_buf_add(b, "\"", 1);
    for (const char *c = s; *c; c++) {
        if (*c == '\\' || *c == '"')
            store_buf_add(b, "\\", 1);
        store_buf_add(b, c, 1);
    }
    store_buf_add(b, "\"", 1);
}

/* A text[] literal of the strings f[i].path (which = 0) or f[i].sha256
 * (which = 1), i < n: {"a","b \"c\"",NULL}. Free with free(). */
static inline char *store_text_array(const struct store_file *f, size_t n, int which)
{
    struct store_buf b = { NULL, 0, 0 };
    store_buf_add(&b, "{", 1);
    for (size_t i = 0; i < n; i++)
        store_array_add_text(&b, i, which == 0 ? f[i].path : f[i].sha256);
    store_buf_add(&b, "}", 1);
    return b.p;
}

/* A bigint[] literal of f[i].size_bytes, i < n: {1,2,3}. Free with free(). */
static inline char *store_bigint_array(const struct store_file *f, size_t n)
{
    struct store_buf b = { NULL, 0, 0 };
    store_buf_add(&b, "{", 1);
    for (size_t i = 0; i < n; i++) {
        char num[32];
        int len = snprintf(num, sizeof(num), "%s%lld", i > 0 ? "," : "",
                           (long long)f[i].size_bytes);
        store_buf_add(&b, num, (size_t)len);
    }
    store_buf_add(&b, "}", 1);
    return b.p;
}

/* An int[] literal of f[i].mode, i < n, 0 read as 0100644 (33188). Free
 * with free(). */
static inline char *store_mode_array(const struct store_file *f, size_t n)
{
    struct store_buf b = { NULL, 0, 0 };
    store_buf_add(&b, "{", 1);
    for (size_t i = 0; i < n; i++) {
        char num[32];
        unsigned mode = f[i].mode == 0100755 ? 0100755u : 0100644u;
        int len = snprintf(num, sizeof(num), "%s%u", i > 0 ? "," : "", mode);
        store_buf_add(&b, num, (size_t)len);
    }
    store_buf_add(&b, "}", 1);
    return b.p;
}

/* Loads job_id's output manifest, ordered by path, into out (a view;
 * store_files_free()). Defined in store_job.c. */
int store_job_files(struct db *db, const char *job_id, struct store_files *out);

#endif
