/*
 * store_session.c - sessions (see store.h).
 *
 * Ownership: struct store_results is a view into two results, the session
 * row and its current job's manifest (store_results_free). Threading: runs
 * on the caller's struct db.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

/* A session the API may show: active, unexpired, owned by the caller. */
#define SESSION_VISIBLE "status = 'active' AND expires_at > now() AND api_key_id = $2"

/* One statement: the session and its file rows commit together. The
 * manifest goes over as two arrays of equal length ($6 paths, $7 sizes). */
DB_STMT(st_session_create, "session.create", 7,
    "WITH s AS ("
    "  INSERT INTO sessions (id, api_key_id, ttl_seconds, expires_at,"
    "                        input_file_count, input_bytes)"
    "  VALUES ($1, $2, $3::int, now() + $3::int * interval '1 second', $4, $5)"
    "  RETURNING id, current_job_id, created_at, expires_at),"
    " f AS ("
    "  INSERT INTO session_files (session_id, path, size_bytes)"
    "  SELECT $1, u.path, u.size_bytes"
    "  FROM unnest($6::text[], $7::bigint[]) AS u(path, size_bytes))"
    "SELECT id, current_job_id, " STORE_USEC("created_at") " AS created, "
    STORE_USEC("expires_at") " AS expires FROM s");
DB_STMT(st_session_get, "session.get", 2,
    "SELECT id, current_job_id, " STORE_USEC("created_at") " AS created, "
    STORE_USEC("expires_at") " AS expires FROM sessions "
    "WHERE id = $1 AND " SESSION_VISIBLE);
/* Lock first, then look for a running job in a statement of its own: under
 * READ COMMITTED it gets a snapshot taken after the lock was granted, so a
 * claim that committed while we waited (claims lock the session too) is
 * seen and asked to stop, never left running unnoticed. */
DB_STMT(st_session_delete_lock, "session.delete.lock", 2,
    "SELECT 1 FROM sessions WHERE id = $1 AND " SESSION_VISIBLE " FOR UPDATE");
/* A running job is asked to stop (its worker hears it on channel
 * job_cancel); the folder goes once it has stopped (the janitor). */
DB_STMT(st_session_delete_stop, "session.delete.stop", 1,
    "UPDATE jobs SET cancel_requested_at = coalesce(cancel_requested_at, now())"
    " WHERE session_id = $1 AND status = 'running'");
DB_STMT(st_session_delete_cancel, "session.delete.cancel", 1,
    "UPDATE jobs SET status = 'cancelled', finished_at = now(),"
    " error = 'cancelled: the session was deleted before the job ran',"
    " error_code = 'cancelled' "
    "WHERE session_id = $1 AND status = 'queued'");
DB_STMT(st_session_delete_mark, "session.delete.mark", 1,
    "UPDATE sessions SET status = 'deleted', ended_at = now() WHERE id = $1");
DB_STMT(st_session_files_removed, "session.files_removed", 1,
    "UPDATE sessions SET files_removed_at = now() WHERE id = $1");
DB_STMT(st_session_results, "session.results", 2,
    "SELECT s.current_job_id, j.result, j.result_json::text AS result_json "
    "FROM sessions s LEFT JOIN jobs j ON j.id = s.current_job_id "
    "WHERE s.id = $1 AND s." SESSION_VISIBLE);

static void store_fill_session(const struct pg_result *res, struct store_session *out)
{
    store_copy(out->id, sizeof(out->id), res, 0, "id");
    store_copy(out->current_job_id, sizeof(out->current_job_id), res, 0, "current_job_id");
    out->created_usec = db_get_ll(res, 0, "created");
    out->expires_usec = db_get_ll(res, 0, "expires");
}

int store_session_create(struct db *db, const struct store_new_session *s,
                         struct store_session *out)
{
    char ttl[32], count[32], bytes[32];
    snprintf(ttl, sizeof(ttl), "%ld", s->ttl_s);
    snprintf(count, sizeof(count), "%zu", s->nfiles);
    snprintf(bytes, sizeof(bytes), "%lld", (long long)s->total_bytes);
    char *paths = store_text_array(s->files, s->nfiles, 0);
    char *sizes = store_bigint_array(s->files, s->nfiles);

    const char *p[] = { s->id, s->key_id, ttl, count, bytes, paths, sizes };
    int rc;
    struct pg_result *res = db_run(db, &st_session_create, p, &rc);
    free(paths);
    free(sizes);
    if (res == NULL)
        return store_from_db(rc);
    int ok = db_rows(res) == 1;
    if (ok)
        store_fill_session(res, out);
    db_clear(res);
    return ok ? STORE_OK : STORE_ERROR;
}

int store_session_get(struct db *db, const char *id, const char *key_id,
                      struct store_session *out)
{
    const char *p[] = { id, key_id };
    int rc;
    struct pg_result *res = db_run(db, &st_session_get, p, &rc);
    if (res == NULL)
        return store_from_db(rc);
    int found = db_rows(res) == 1;
    if (found)
        store_fill_session(res, out);
    db_clear(res);
    return found ? STORE_OK : STORE_NOT_FOUND;
}

int store_session_delete(struct db *db, const char *id, const char *key_id, int *running)
{
    *running = 0;
    const char *p[] = { id, key_id };
    int rc = db_begin(db);
    if (rc != DB_OK)
        return store_from_db(rc);

    struct pg_result *res = db_run(db, &st_session_delete_lock, p, &rc);
    if (res == NULL)
        goto end;
    if (db_rows(res) != 1) {
        db_clear(res);
        db_rollback(db);
        return STORE_NOT_FOUND;
    }
    db_clear(res);
    long stopping = db_run_exec(db, &st_session_delete_stop, p);
    if (stopping < 0) {
        rc = (int)stopping;
        goto end;
    }
    *running = stopping > 0;
    if (store_step(db, &st_session_delete_cancel, p, &rc))
        goto end;
    if (store_step(db, &st_session_delete_mark, p, &rc))
        goto end;
end:
    return store_tx_end(db, rc);
}

int store_session_files_removed(struct db *db, const char *id)
{
    const char *p[] = { id };
    return store_from_db(db_run_exec(db, &st_session_files_removed, p));
}

int store_session_results(struct db *db, const char *id, const char *key_id,
                          struct store_results *out)
{
    int rc = store_results_head(db, &st_session_results, id, key_id, "current_job_id", out);
    if (rc != STORE_OK)
        return rc;
    if (out->latest_job_id != NULL) {
        rc = store_job_files(db, out->latest_job_id, &out->files);
        if (rc != STORE_OK) {
            store_results_free(out);
            return rc;
        }
    }
    return STORE_OK;
}

void store_results_free(struct store_results *r)
{
    store_files_free(&r->files);
    db_clear(r->res);
    memset(r, 0, sizeof(*r));
}
