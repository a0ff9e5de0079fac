/* store_janitor.c - lease expiry, session expiry, history (see store.h). */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "store_internal.h"

/* Shared by every janitor; "ocjanitr" in ASCII. */
#define JANITOR_LOCK_KEY "7954884623930614898"

int store_janitor_lock(PGconn *db)
{
    int rc;
    PGresult *res = db_query(db, "janitor.lock",
                             "SELECT pg_try_advisory_lock(" JANITOR_LOCK_KEY ") AS ok",
                             0, NULL, &rc);
    if (res == NULL)
        return store_from_db(rc);
    int ok = strcmp(db_get(res, 0, "ok"), "t") == 0;
    PQclear(res);
    return ok ? STORE_OK : STORE_CONFLICT;
}

void store_janitor_unlock(PGconn *db)
{
    db_exec(db, "janitor.unlock", "SELECT pg_advisory_unlock(" JANITOR_LOCK_KEY ")", 0, NULL);
}

/* Takes one expired job back, in the session-then-job lock order. */
static int store_reap_one(PGconn *db, const char *job_id, const char *session_id,
                          const char *max_attempts, int *outcome)
{
    const char *ps[] = { session_id };
    const char *pj[] = { job_id, max_attempts };
    *outcome = 0;
    int rc = db_begin(db);
    if (rc != DB_OK)
        return store_from_db(rc);
    if (store_step(db, "reap.lock", "SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE",
                   1, ps, &rc))
        goto fail;
    /* Re-checked under the lock: the worker may have renewed or finished. */
    PGresult *res = db_query(db, "reap.update",
        "UPDATE jobs SET"
        " status = CASE WHEN attempt < $2::int THEN 'queued' ELSE 'failed' END,"
        " error = CASE WHEN attempt < $2::int THEN NULL ELSE"
        "   format('worker lost: the job''s lease expired on %s after %s attempt(s)',"
        "          worker_id, attempt) END,"
        " finished_at = CASE WHEN attempt < $2::int THEN NULL ELSE now() END,"
        " lease_token = NULL, lease_expires_at = NULL "
        "WHERE id = $1 AND status = 'running' AND lease_expires_at < now() "
        "RETURNING status, worker_id, attempt", 2, pj, &rc);
    if (res == NULL)
        goto fail;
    if (PQntuples(res) == 1) {
        int requeued = strcmp(db_get(res, 0, "status"), "queued") == 0;
        log_warn(requeued ? "janitor.job_requeued" : "janitor.job_failed",
                 "job=%s session=%s worker=%s attempt=%s", job_id, session_id,
                 db_get(res, 0, "worker_id") ? db_get(res, 0, "worker_id") : "-",
                 db_get(res, 0, "attempt"));
        *outcome = requeued ? 1 : 2;
    }
    PQclear(res);
    if (*outcome != 0) {
        /* Requeued: the job itself is the session's head. Failed: the next
         * queued job is. Either way the oldest queued job goes out. */
        if (store_step(db, "reap.next", ENQUEUE_NEXT_SQL, 1, ps, &rc))
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

int store_reap_expired_leases(PGconn *db, long max_attempts, long *requeued, long *failed)
{
    char max[32];
    snprintf(max, sizeof(max), "%ld", max_attempts);
    *requeued = *failed = 0;
    int rc;
    PGresult *res = db_query(db, "reap.find",
        "SELECT id, session_id FROM jobs WHERE status = 'running'"
        " AND lease_expires_at < now() ORDER BY lease_expires_at LIMIT 100", 0, NULL, &rc);
    if (res == NULL)
        return store_from_db(rc);
    int result = STORE_OK;
    for (int i = 0; i < PQntuples(res); i++) {
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
    PQclear(res);
    return result;
}

int store_republish_stale(PGconn *db, long republish_s, long *count)
{
    char age[32];
    snprintf(age, sizeof(age), "%ld", republish_s);
    const char *p[] = { age };
    long n = db_exec(db, "jobs.republish",
        "INSERT INTO job_outbox (job_id) SELECT j.id FROM jobs j"
        " WHERE j.status = 'queued'"
        " AND coalesce(j.published_at, j.created_at) < now() - $1::bigint * interval '1 second'"
        " AND NOT EXISTS (SELECT 1 FROM job_outbox o WHERE o.job_id = j.id)"
        " AND NOT EXISTS (SELECT 1 FROM jobs e WHERE e.session_id = j.session_id"
        "                 AND e.seq < j.seq AND e.status IN ('queued', 'running'))"
        " ORDER BY j.seq LIMIT 100", 1, p);
    if (n < 0)
        return store_from_db(n);
    *count = n;
    return STORE_OK;
}

int store_expire_sessions(PGconn *db, long limit, long *count)
{
    char lim[32];
    snprintf(lim, sizeof(lim), "%ld", limit);
    const char *p[] = { lim };
    /* SKIP LOCKED: a session locked by an API request that is adding a
     * job right now is left for the next pass. */
    long n = db_exec(db, "sessions.expire",
        "UPDATE sessions SET status = 'expired', ended_at = now() WHERE id IN ("
        " SELECT s.id FROM sessions s WHERE s.status = 'active' AND s.expires_at <= now()"
        " AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.session_id = s.id"
        "                 AND j.status IN ('queued', 'running'))"
        " ORDER BY s.expires_at LIMIT $1::int FOR UPDATE SKIP LOCKED)", 1, p);
    if (n < 0)
        return store_from_db(n);
    *count = n;
    return STORE_OK;
}

int store_sessions_to_remove(PGconn *db, long limit, char (*ids)[ID_HEX_LEN + 1], long *n)
{
    char lim[32];
    snprintf(lim, sizeof(lim), "%ld", limit);
    const char *p[] = { lim };
    int rc;
    PGresult *res = db_query(db, "sessions.to_remove",
        "SELECT id FROM sessions WHERE status <> 'active' AND files_removed_at IS NULL "
        "ORDER BY ended_at LIMIT $1::int", 1, p, &rc);
    if (res == NULL)
        return store_from_db(rc);
    *n = 0;
    for (int i = 0; i < PQntuples(res) && *n < limit; i++)
        store_copy(ids[(*n)++], ID_HEX_LEN + 1, res, i, "id");
    PQclear(res);
    return STORE_OK;
}

int store_prune_history(PGconn *db, long retention_s, long *count)
{
    char ret[32];
    snprintf(ret, sizeof(ret), "%ld", retention_s);
    const char *p[] = { ret };
    long n = db_exec(db, "history.prune",
        "DELETE FROM sessions WHERE status <> 'active' AND files_removed_at IS NOT NULL"
        " AND ended_at < now() - $1::bigint * interval '1 second'", 1, p);
    if (n < 0)
        return store_from_db(n);
    *count = n;
    return STORE_OK;
}
