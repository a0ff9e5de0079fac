/*
 * store_cache.c - the one query behind opencode-api's cache of ended
 * jobs' status documents (api/cache.h): is this job still visible to this
 * key, and in which version. Same visibility as store_job_get (the job's
 * session is owned by the key; a deleted or expired session's jobs stay
 * readable until the janitor deletes them), by primary keys only.
 */
#include "store_internal.h"

DB_STMT(st_job_check, "job.check", 2,
    "SELECT j.status, " STORE_USEC("j.finished_at") " AS finished,"
    " (j.outputs_pruned_at IS NOT NULL) AS pruned "
    "FROM jobs j JOIN sessions s ON s.id = j.session_id "
    "WHERE j.id = $1 AND s.api_key_id = $2");

int store_job_check(struct db *db, const char *job_id, const char *key_id,
                    struct store_job_version *out)
{
    memset(out, 0, sizeof(*out));
    const char *p[] = { job_id, key_id };
    int rc;
    struct pg_result *res = store_row(db, &st_job_check, p, &rc);
    if (res == NULL)
        return rc;
    store_copy(out->status, sizeof(out->status), res, 0, "status");
    out->finished_usec = db_get_ll(res, 0, "finished");   /* 0 when NULL */
    out->pruned = db_get_bool(res, 0, "pruned");
    db_clear(res);
    return STORE_OK;
}
