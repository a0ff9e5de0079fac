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
/* The same insert, made only when the key's counters (key_usage_shards,
 * an upper bound: see store_quota.c) leave room for one more session of
 * $5 bytes; $8, $9: the KEY_MAX_* defaults for NULL limits. No row: the
 * counters say no, and store_session_create_fit asks the exact check. */
DB_STMT(st_session_create_fit, "session.create_fit", 9,
    "WITH q AS ("
    "  SELECT coalesce(k.max_active_sessions, $8::bigint) AS max_s,"
    "   coalesce(k.max_stored_bytes, $9::bigint) AS max_b,"
    "   coalesce(u.sessions, 0) AS used_s, coalesce(u.bytes, 0) AS used_b"
    "  FROM (SELECT $2::text AS id) x LEFT JOIN api_keys k ON k.id = x.id"
    "  CROSS JOIN (SELECT sum(active_sessions)::bigint AS sessions,"
    "   sum(stored_bytes)::bigint AS bytes FROM key_usage_shards WHERE key_id = $2) u),"
    " s AS ("
    "  INSERT INTO sessions (id, api_key_id, ttl_seconds, expires_at,"
    "                        input_file_count, input_bytes)"
    "  SELECT $1, $2, $3::int, now() + $3::int * interval '1 second', $4, $5 FROM q"
    "  WHERE q.used_s + 1 <= q.max_s AND q.used_b + $5::bigint <= q.max_b"
    "  RETURNING id, current_job_id, created_at, expires_at),"
    " f AS ("
    "  INSERT INTO session_files (session_id, path, size_bytes)"
    "  SELECT s.id, u.path, u.size_bytes"
    "  FROM s, unnest($6::text[], $7::bigint[]) AS u(path, size_bytes))"
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

/* Runs st_session_create (def NULL) or st_session_create_fit (def: the
 * defaults of NULL limits): STORE_OK with *out, STORE_NOT_FOUND when the
 * fit did not insert, or a failure. */
static int store_session_insert(struct db *db, const struct store_new_session *s,
                                const struct store_quota_limits *def, struct store_session *out)
{
    char ttl[32], count[32], bytes[32], max_s[32] = "", max_b[32] = "";
    snprintf(ttl, sizeof(ttl), "%ld", s->ttl_s);
    snprintf(count, sizeof(count), "%zu", s->nfiles);
    snprintf(bytes, sizeof(bytes), "%lld", (long long)s->total_bytes);
    if (def != NULL) {
        snprintf(max_s, sizeof(max_s), "%lld",
                 (long long)def->max[STORE_QUOTA_ACTIVE_SESSIONS]);
        snprintf(max_b, sizeof(max_b), "%lld", (long long)def->max[STORE_QUOTA_STORED_BYTES]);
    }
    char *paths = store_text_array(s->files, s->nfiles, 0);
    char *sizes = store_bigint_array(s->files, s->nfiles);

    const char *p[] = { s->id, s->key_id, ttl, count, bytes, paths, sizes, max_s, max_b };
    int rc;
    struct pg_result *res = db_run(db, def != NULL ? &st_session_create_fit : &st_session_create,
                                   p, &rc);
    free(paths);
    free(sizes);
    if (res == NULL)
        return store_from_db(rc);
    rc = db_rows(res) == 1 ? STORE_OK : def != NULL && db_rows(res) == 0 ? STORE_NOT_FOUND
                                                                         : STORE_ERROR;
    if (rc == STORE_OK)
        store_fill_session(res, out);
    db_clear(res);
    return rc;
}

int store_session_create(struct db *db, const struct store_new_session *s,
                         struct store_session *out)
{
    return store_session_insert(db, s, NULL, out);
}

int store_session_create_fit(struct db *db, const struct store_new_session *s,
                             const struct store_quota_limits *def, struct store_session *out,
                             struct store_quota_hit *hit)
{
    int rc = store_session_insert(db, s, def, out);
    if (rc != STORE_NOT_FOUND)
        return rc;
    /* The counters said no; they may still count expired sessions. */
    rc = store_quota_session(db, s->key_id, def, 1, s->total_bytes, hit);
    return rc == STORE_OK ? store_session_insert(db, s, NULL, out) : rc;
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
