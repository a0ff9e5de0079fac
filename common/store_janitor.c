/*
 * store_janitor.c - lease expiry, session expiry, folder removal and its
 * backoff, history, pruning of old job workspaces (see store.h). Every
 * statement here handles at most a batch of rows (its limit parameter);
 * the janitor repeats it until a batch comes back short.
 *
 * Ownership: nothing is kept; ids are copied into the caller's buffers.
 * Threading: runs on the caller's struct db (the janitor's connection).
 */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "store_internal.h"

/* Shared by every janitor; "ocjanitr" in ASCII. */
#define JANITOR_LOCK_KEY "7954884623930614898"

DB_STMT(st_janitor_lock, "janitor.lock", 0,
    "SELECT pg_try_advisory_lock(" JANITOR_LOCK_KEY ") AS ok");
DB_STMT(st_janitor_unlock, "janitor.unlock", 0,
    "SELECT pg_advisory_unlock(" JANITOR_LOCK_KEY ")");
DB_STMT(st_reap_lock, "reap.lock", 1, LOCK_SESSION_SQL);
/* Re-checked under the lock: the worker may have renewed or finished. */
DB_STMT(st_reap_update, "reap.update", 2,
    "UPDATE jobs SET"
    " status = CASE WHEN cancel_requested_at IS NOT NULL THEN 'cancelled'"
    "          WHEN attempt < $2::int THEN 'queued' ELSE 'failed' END,"
    " error = CASE WHEN cancel_requested_at IS NOT NULL THEN"
    "   format('cancelled: the job''s lease expired on %s before it recorded the cancel',"
    "          worker_id)"
    "   WHEN attempt < $2::int THEN NULL ELSE"
    "   format('worker lost: the job''s lease expired on %s after %s attempt(s)',"
    "          worker_id, attempt) END,"
    " error_code = CASE WHEN cancel_requested_at IS NOT NULL THEN 'cancelled'"
    "   WHEN attempt < $2::int THEN NULL ELSE 'worker_lost' END,"
    " finished_at = CASE WHEN cancel_requested_at IS NULL AND attempt < $2::int THEN NULL"
    "   ELSE now() END,"
    " lease_token = NULL, lease_expires_at = NULL "
    "WHERE id = $1 AND status = 'running' AND lease_expires_at < now() "
    "RETURNING status, worker_id, attempt");
DB_STMT(st_reap_next, "reap.next", 1, ENQUEUE_NEXT_SQL);
DB_STMT(st_reap_find, "reap.find", 1,
    "SELECT id, session_id FROM jobs WHERE status = 'running'"
    " AND lease_expires_at < now() ORDER BY lease_expires_at LIMIT $1::int");
DB_STMT(st_jobs_republish, "jobs.republish", 2,
    "INSERT INTO job_outbox (job_id) SELECT j.id FROM jobs j"
    " WHERE j.status = 'queued'"
    " AND coalesce(j.published_at, j.created_at) < now() - $1::bigint * interval '1 second'"
    " AND NOT EXISTS (SELECT 1 FROM job_outbox o WHERE o.job_id = j.id)"
    " AND NOT EXISTS (SELECT 1 FROM jobs e WHERE e.session_id = j.session_id"
    "                 AND e.seq < j.seq AND e.status IN ('queued', 'running'))"
    " ORDER BY j.seq LIMIT $2::int");
/* SKIP LOCKED: a session locked by an API request that is adding a job
 * right now is left for the next pass. */
DB_STMT(st_sessions_expire, "sessions.expire", 1,
    "UPDATE sessions SET status = 'expired', ended_at = now() WHERE id IN ("
    " SELECT s.id FROM sessions s WHERE s.status = 'active' AND s.expires_at <= now()"
    " AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.session_id = s.id"
    "                 AND j.status IN ('queued', 'running'))"
    " ORDER BY s.expires_at LIMIT $1::int FOR UPDATE SKIP LOCKED)");
DB_STMT(st_sessions_to_remove, "sessions.to_remove", 1,
    "SELECT id FROM sessions s WHERE status <> 'active' AND files_removed_at IS NULL"
    " AND (remove_after IS NULL OR remove_after <= now())"
    " AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.session_id = s.id"
    "                 AND j.status = 'running') "
    "ORDER BY ended_at LIMIT $1::int");
/* The wait doubles per failure (remove_failures is the count before this
 * one), capped at a day; the exponent is bounded so nothing overflows. */
DB_STMT(st_session_remove_failed, "session.remove_failed", 2,
    "UPDATE sessions SET remove_failures = remove_failures + 1,"
    " remove_after = now() + least($2::float8 * power(2, least(remove_failures, 20)),"
    "                              86400) * interval '1 second' "
    "WHERE id = $1 RETURNING remove_failures,"
    " round(extract(epoch FROM remove_after - now()))::bigint AS retry_in");
/* One statement for a whole batch of removed folders. */
DB_STMT(st_sessions_files_removed, "sessions.files_removed", 1,
    "UPDATE sessions SET files_removed_at = now()"
    " WHERE id = ANY($1::text[]) AND files_removed_at IS NULL");
/* Deletes cascade to jobs, job_files, session_files and job_outbox. */
DB_STMT(st_history_prune, "history.prune", 2,
    "DELETE FROM sessions WHERE id IN ("
    " SELECT id FROM sessions WHERE status <> 'active' AND files_removed_at IS NOT NULL"
    " AND ended_at < now() - $1::bigint * interval '1 second'"
    " ORDER BY ended_at LIMIT $2::int FOR UPDATE SKIP LOCKED)");
/* Ended jobs of live sessions ranked newest first among those whose
 * outputs are still on disk (the newest $1 are always among them, so the
 * rank is the rank among all ended jobs); beyond $1, and never the
 * session's current job, they are marked pruned. Queued and running jobs
 * have no finished_at; jobs no worker recorded never had a workspace. */
DB_STMT(st_outputs_prune, "jobs.outputs_prune", 2,
    "UPDATE jobs SET outputs_pruned_at = now() WHERE id IN ("
    " SELECT r.id FROM (SELECT j.id, j.session_id, row_number() OVER"
    "   (PARTITION BY j.session_id ORDER BY j.seq DESC) AS rank"
    "   FROM jobs j JOIN sessions s ON s.id = j.session_id"
    "   WHERE s.status = 'active' AND j.finished_at IS NOT NULL"
    "   AND j.outputs_pruned_at IS NULL AND j.has_outputs) r"
    " JOIN sessions s ON s.id = r.session_id"
    " WHERE r.rank > $1::int AND r.id IS DISTINCT FROM s.current_job_id"
    " LIMIT $2::int)"
    " AND outputs_pruned_at IS NULL AND finished_at IS NOT NULL"
    " AND has_outputs "
    "RETURNING id, session_id");

int store_janitor_lock(struct db *db)
{
    int rc;
    struct pg_result *res = db_run(db, &st_janitor_lock, NULL, &rc);
    if (res == NULL)
        return store_from_db(rc);
    int ok = db_get_bool(res, 0, "ok");
    db_clear(res);
    return ok ? STORE_OK : STORE_CONFLICT;
}

void store_janitor_unlock(struct db *db)
{
    db_run_exec(db, &st_janitor_unlock, NULL);
}

/* Takes one expired job back, in the session-then-job lock order. */
static int store_reap_one(struct db *db, const char *job_id, const char *session_id,
                          const char *max_attempts, int *outcome)
{
    const char *ps[] = { session_id };
    const char *pj[] = { job_id, max_attempts };
    *outcome = 0;
    int rc = db_begin(db);
    if (rc != DB_OK)
        return store_from_db(rc);
    if (store_step(db, &st_reap_lock, ps, &rc))
        goto fail;
    struct pg_result *res = db_run(db, &st_reap_update, pj, &rc);
    if (res == NULL)
        goto fail;
    if (db_rows(res) == 1) {
        const char *st = db_get(res, 0, "status");
        int requeued = st != NULL && strcmp(st, "queued") == 0;
        const char *worker = db_get(res, 0, "worker_id");
        const char *attempt = db_get(res, 0, "attempt");
        int cancelled = st != NULL && strcmp(st, "cancelled") == 0;
        log_warn(requeued ? "janitor.job_requeued"
                 : cancelled ? "janitor.job_cancelled" : "janitor.job_failed",
                 "job=%s session=%s worker=%s attempt=%s", job_id, session_id,
                 worker ? worker : "-", attempt ? attempt : "-");
        *outcome = requeued ? 1 : 2;
    }
    db_clear(res);
    if (*outcome != 0) {
        /* Requeued: the job itself is the session's head. Failed: the next
         * queued job is. Either way the oldest queued job goes out. */
        if (store_step(db, &st_reap_next, ps, &rc))
            goto fail;
    }
    rc = db_commit(db);
    if (rc != DB_OK)
        goto fail;
    return STORE_OK;

fail:
    db_rollback(db);
    *outcome = 0;
    return store_from_db(rc);
}

int store_reap_expired_leases(struct db *db, long max_attempts, long limit,
                              long *requeued, long *failed, long *found)
{
    char max[32], lim[32];
    snprintf(max, sizeof(max), "%ld", max_attempts);
    snprintf(lim, sizeof(lim), "%ld", limit);
    const char *p[] = { lim };
    *requeued = *failed = *found = 0;
    int rc;
    struct pg_result *res = db_run(db, &st_reap_find, p, &rc);
    if (res == NULL)
        return store_from_db(rc);
    *found = db_rows(res);
    int result = STORE_OK;
    for (int i = 0; i < db_rows(res); i++) {
        int outcome;
        int r = store_reap_one(db, db_get(res, i, "id"), db_get(res, i, "session_id"), max,
                               &outcome);
        if (r != STORE_OK) {
            result = r;
            break;
        }
        if (outcome == 1)
            (*requeued)++;
        else if (outcome == 2)
            (*failed)++;
    }
    db_clear(res);
    return result;
}

/* Runs a statement of one or two numeric parameters (nparams says) and
 * stores the rows changed. */
static int store_count(struct db *db, const struct db_stmt *stmt, long a, long b,
                       long *count)
{
    char na[32], nb[32];
    snprintf(na, sizeof(na), "%ld", a);
    snprintf(nb, sizeof(nb), "%ld", b);
    const char *p[] = { na, nb };
    *count = 0;
    long n = db_run_exec(db, stmt, p);
    if (n < 0)
        return store_from_db(n);
    *count = n;
    return STORE_OK;
}

int store_republish_stale(struct db *db, long republish_s, long limit, long *count)
{
    return store_count(db, &st_jobs_republish, republish_s, limit, count);
}

int store_expire_sessions(struct db *db, long limit, long *count)
{
    return store_count(db, &st_sessions_expire, limit, 0, count);
}

int store_sessions_to_remove(struct db *db, long limit, char (*ids)[ID_HEX_LEN + 1],
                             long *n)
{
    char lim[32];
    snprintf(lim, sizeof(lim), "%ld", limit);
    const char *p[] = { lim };
    int rc;
    *n = 0;
    struct pg_result *res = db_run(db, &st_sessions_to_remove, p, &rc);
    if (res == NULL)
        return store_from_db(rc);
    for (int i = 0; i < db_rows(res) && *n < limit; i++)
        store_copy(ids[(*n)++], ID_HEX_LEN + 1, res, i, "id");
    db_clear(res);
    return STORE_OK;
}

/* A text[] literal of ids[0..n): {"a","b"}. Free with free(). */
static char *store_id_array(char (*ids)[ID_HEX_LEN + 1], long n)
{
    struct store_buf b = { NULL, 0, 0 };
    store_buf_add(&b, "{", 1);
    for (long i = 0; i < n; i++)
        store_array_add_text(&b, (size_t)i, ids[i]);
    store_buf_add(&b, "}", 1);
    return b.p;
}

int store_sessions_files_removed(struct db *db, char (*ids)[ID_HEX_LEN + 1], long n,
                                 long *count)
{
    *count = 0;
    if (n <= 0)
        return STORE_OK;
    char *arr = store_id_array(ids, n);
    const char *p[] = { arr };
    long r = db_run_exec(db, &st_sessions_files_removed, p);
    free(arr);
    if (r < 0)
        return store_from_db(r);
    *count = r;
    return STORE_OK;
}

int store_prune_history(struct db *db, long retention_s, long limit, long *count)
{
    return store_count(db, &st_history_prune, retention_s, limit, count);
}

int store_prune_job_outputs(struct db *db, long keep, long limit,
                            struct store_job_ref *out, long *n)
{
    char k[32], lim[32];
    snprintf(k, sizeof(k), "%ld", keep);
    snprintf(lim, sizeof(lim), "%ld", limit);
    const char *p[] = { k, lim };
    int rc;
    *n = 0;
    struct pg_result *res = db_run(db, &st_outputs_prune, p, &rc);
    if (res == NULL)
        return store_from_db(rc);
    for (int i = 0; i < db_rows(res) && *n < limit; i++) {
        store_copy(out[*n].job_id, sizeof(out[*n].job_id), res, i, "id");
        store_copy(out[*n].session_id, sizeof(out[*n].session_id), res, i, "session_id");
        (*n)++;
    }
    db_clear(res);
    return STORE_OK;
}

int store_session_remove_failed(struct db *db, const char *id, long retry_s,
                                long *failures, long *retry_in_s)
{
    char retry[32];
    snprintf(retry, sizeof(retry), "%ld", retry_s);
    const char *p[] = { id, retry };
    int rc;
    *failures = *retry_in_s = 0;
    struct pg_result *res = db_run(db, &st_session_remove_failed, p, &rc);
    if (res == NULL)
        return store_from_db(rc);
    int found = db_rows(res) == 1;
    if (found) {
        *failures = (long)db_get_ll(res, 0, "remove_failures");
        *retry_in_s = (long)db_get_ll(res, 0, "retry_in");
    }
    db_clear(res);
    return found ? STORE_OK : STORE_NOT_FOUND;
}
