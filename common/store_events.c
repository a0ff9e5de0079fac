/*
 * store_events.c - live jobs (see store.h): a job's event log (workers
 * append the agent's events, fenced by their lease; the API replays them)
 * and cancelling a job.
 *
 * Status events are written by a trigger on jobs (migration 008), so every
 * program that changes a status adds its event in the same transaction;
 * the trigger on job_events notifies channel "job_events" with the job id.
 *
 * Ownership: struct store_events is a view into its result
 * (store_events_free). Threading: runs on the caller's struct db.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"
#include "xalloc.h"

/*
 * Appends a batch under the lease: k locks the job row (so status events
 * written by the trigger never take the same numbers), the batch gets the
 * numbers after last_event_seq, and what would pass max_events ($5) is
 * dropped. held = 0 means the lease is gone and nothing was written.
 */
DB_STMT(st_events_add, "events.add", 5,
    "WITH k AS ("
    "  SELECT id, last_event_seq AS base, attempt,"
    "   least(cardinality($3::text[]), greatest($5::bigint - last_event_seq, 0)) AS n"
    "  FROM jobs WHERE id = $1 AND lease_token = $2 AND status = 'running' FOR UPDATE),"
    " u AS (UPDATE jobs j SET last_event_seq = k.base + k.n FROM k WHERE j.id = k.id"
    "  RETURNING j.id),"
    " i AS (INSERT INTO job_events (job_id, seq, attempt, kind, data)"
    "  SELECT k.id, k.base + e.ord, k.attempt, e.kind, e.data::jsonb"
    "  FROM k, unnest($3::text[], $4::text[]) WITH ORDINALITY AS e(kind, data, ord)"
    "  WHERE e.ord <= k.n RETURNING 1)"
    "SELECT (SELECT count(*) FROM u) AS held, (SELECT count(*) FROM i) AS stored");
DB_STMT(st_events_list, "events.list", 3,
    "SELECT seq, attempt, kind, data::text AS data, " STORE_USEC("created_at") " AS time"
    " FROM job_events WHERE job_id = $1 AND seq > $2::bigint ORDER BY seq LIMIT $3::int");
DB_STMT(st_cancel_find, "job.cancel.find", 2,
    "SELECT j.session_id FROM jobs j JOIN sessions s ON s.id = j.session_id"
    " WHERE j.id = $1 AND s.api_key_id = $2");
DB_STMT(st_cancel_lock, "job.cancel.lock", 1, LOCK_SESSION_SQL);
/* A queued job ends at once; a running one is asked to stop (its worker
 * hears it on channel job_cancel, through the trigger). */
DB_STMT(st_cancel_update, "job.cancel.update", 1,
    "UPDATE jobs SET"
    " status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,"
    " finished_at = CASE WHEN status = 'queued' THEN now() ELSE finished_at END,"
    " error = CASE WHEN status = 'queued' THEN 'cancelled by the client before it ran'"
    "         ELSE error END,"
    " error_code = CASE WHEN status = 'queued' THEN 'cancelled' ELSE error_code END,"
    " cancel_requested_at = coalesce(cancel_requested_at, now()) "
    "WHERE id = $1 AND status IN ('queued', 'running') RETURNING status");
DB_STMT(st_cancel_status, "job.cancel.status", 1, "SELECT status FROM jobs WHERE id = $1");
/* The session's next job, unless one of it still runs (it publishes the
 * next one when it ends). */
DB_STMT(st_cancel_next, "job.cancel.next", 1,
    "INSERT INTO job_outbox (job_id) SELECT id FROM jobs "
    "WHERE session_id = $1 AND status = 'queued' AND NOT EXISTS"
    " (SELECT 1 FROM jobs r WHERE r.session_id = $1 AND r.status = 'running') "
    "ORDER BY seq LIMIT 1");

/* A text[] literal of the n strings v. Free with free(). */
static char *store_strings_array(const char *const *v, size_t n)
{
    struct store_buf b = { NULL, 0, 0 };
    store_buf_add(&b, "{", 1);
    for (size_t i = 0; i < n; i++)
        store_array_add_text(&b, i, v[i]);
    store_buf_add(&b, "}", 1);
    return b.p;
}

int store_events_add(struct db *db, const char *job_id, const char *token,
                     const char *const *kinds, const char *const *data, size_t n,
                     long max_events, long *stored)
{
    *stored = 0;
    char max[32];
    snprintf(max, sizeof(max), "%ld", max_events);
    char *k = store_strings_array(kinds, n), *d = store_strings_array(data, n);
    int rc = DB_ERROR;
    struct pg_result *res = NULL;
    if (k != NULL && d != NULL) {
        const char *p[] = { job_id, token, k, d, max };
        res = db_run(db, &st_events_add, p, &rc);
    }
    free(k);
    free(d);
    if (res == NULL)
        return store_from_db(rc);
    int held = db_get_ll(res, 0, "held") > 0;
    *stored = (long)db_get_ll(res, 0, "stored");
    db_clear(res);
    return held ? STORE_OK : STORE_NOT_FOUND;
}

int store_events_list(struct db *db, const char *job_id, long long after, int limit,
                      struct store_events *out)
{
    memset(out, 0, sizeof(*out));
    char a[32], l[16];
    snprintf(a, sizeof(a), "%lld", after);
    snprintf(l, sizeof(l), "%d", limit);
    const char *p[] = { job_id, a, l };
    int rc;
    struct pg_result *res = db_run(db, &st_events_list, p, &rc);
    if (res == NULL)
        return store_from_db(rc);
    out->res = res;
    out->n = (size_t)db_rows(res);
    out->v = xcalloc(out->n ? out->n : 1, sizeof(*out->v));
    for (int i = 0; i < (int)out->n; i++) {
        struct store_event *e = &out->v[i];
        e->seq = db_get_ll(res, i, "seq");
        e->attempt = (int)db_get_ll(res, i, "attempt");
        e->kind = db_get(res, i, "kind");
        e->data = db_get(res, i, "data");
        e->time_usec = db_get_ll(res, i, "time");
    }
    return STORE_OK;
}

void store_events_free(struct store_events *e)
{
    db_clear(e->res);
    free(e->v);
    memset(e, 0, sizeof(*e));
}

/* Under the session lock: cancels or asks to stop; the status it leaves
 * goes to status. STORE_CONFLICT when the job had already ended. */
static int store_cancel_locked(struct db *db, const char *job_id, const char *session_id,
                               char status[16], int *rc)
{
    const char *p[] = { job_id };
    struct pg_result *res = db_run(db, &st_cancel_update, p, rc);
    if (res == NULL)
        return -1;
    int changed = db_rows(res) == 1;
    if (changed)
        store_copy(status, 16, res, 0, "status");
    db_clear(res);
    if (!changed) {
        res = db_run(db, &st_cancel_status, p, rc);
        if (res == NULL)
            return -1;
        store_copy(status, 16, res, 0, "status");
        db_clear(res);
        return STORE_CONFLICT;
    }
    const char *ps[] = { session_id };
    if (strcmp(status, "cancelled") == 0 && store_step(db, &st_cancel_next, ps, rc))
        return -1;
    return STORE_OK;
}

int store_job_cancel(struct db *db, const char *job_id, const char *key_id, char status[16])
{
    status[0] = '\0';
    const char *p[] = { job_id, key_id };
    int rc;
    struct pg_result *res = db_run(db, &st_cancel_find, p, &rc);
    if (res == NULL)
        return store_from_db(rc);
    char session_id[ID_HEX_LEN + 1] = "";
    if (db_rows(res) == 1)
        store_copy(session_id, sizeof(session_id), res, 0, "session_id");
    db_clear(res);
    if (session_id[0] == '\0')
        return STORE_NOT_FOUND;

    if ((rc = db_begin(db)) != DB_OK)
        return store_from_db(rc);
    const char *ps[] = { session_id };
    int out = -1;
    if (!store_step(db, &st_cancel_lock, ps, &rc))
        out = store_cancel_locked(db, job_id, session_id, status, &rc);
    if (out == STORE_CONFLICT) {
        db_rollback(db);
        return STORE_CONFLICT;
    }
    return store_tx_end(db, out == STORE_OK ? DB_OK : rc);
}
