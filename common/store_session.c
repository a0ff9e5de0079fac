/* store_session.c - sessions (see store.h). */
#include <stdio.h>
#include <string.h>

#include "jsonutil.h"
#include "store_internal.h"

/* A session the API may show: active, unexpired, owned by the caller. */
#define SESSION_VISIBLE "status = 'active' AND expires_at > now() AND api_key_id = $2"

static void store_fill_session(const PGresult *res, struct store_session *out)
{
    store_copy(out->id, sizeof(out->id), res, 0, "id");
    store_copy(out->current_job_id, sizeof(out->current_job_id), res, 0, "current_job_id");
    out->created_usec = db_get_ll(res, 0, "created");
    out->expires_usec = db_get_ll(res, 0, "expires");
}

int store_session_create(PGconn *db, const char *id, const char *key_id, long ttl_s,
                         const char *files_json, long file_count, int64_t total_bytes,
                         struct store_session *out)
{
    char ttl[32], count[32], bytes[32];
    snprintf(ttl, sizeof(ttl), "%ld", ttl_s);
    snprintf(count, sizeof(count), "%ld", file_count);
    snprintf(bytes, sizeof(bytes), "%lld", (long long)total_bytes);

    /* One statement: the session and its file rows commit together. */
    const char *p[] = { id, key_id, ttl, count, bytes, files_json };
    int rc;
    PGresult *res = db_query(db, "session.create",
        "WITH s AS ("
        "  INSERT INTO sessions (id, api_key_id, ttl_seconds, expires_at,"
        "                        input_file_count, input_bytes)"
        "  VALUES ($1, $2, $3::int, now() + $3::int * interval '1 second', $4, $5)"
        "  RETURNING id, current_job_id, created_at, expires_at),"
        " f AS ("
        "  INSERT INTO session_files (session_id, path, size_bytes)"
        "  SELECT $1, e->>'path', (e->>'size_bytes')::bigint"
        "  FROM jsonb_array_elements($6::jsonb) e)"
        "SELECT id, current_job_id, " STORE_USEC("created_at") " AS created, "
        STORE_USEC("expires_at") " AS expires FROM s",
        6, p, &rc);
    if (res == NULL)
        return store_from_db(rc);
    store_fill_session(res, out);
    PQclear(res);
    return STORE_OK;
}

int store_session_get(PGconn *db, const char *id, const char *key_id,
                      struct store_session *out)
{
    const char *p[] = { id, key_id };
    int rc;
    PGresult *res = db_query(db, "session.get",
        "SELECT id, current_job_id, " STORE_USEC("created_at") " AS created, "
        STORE_USEC("expires_at") " AS expires FROM sessions "
        "WHERE id = $1 AND " SESSION_VISIBLE, 2, p, &rc);
    if (res == NULL)
        return store_from_db(rc);
    int found = PQntuples(res) == 1;
    if (found)
        store_fill_session(res, out);
    PQclear(res);
    return found ? STORE_OK : STORE_NOT_FOUND;
}

int store_session_delete(PGconn *db, const char *id, const char *key_id)
{
    const char *p[] = { id, key_id };
    int rc = db_begin(db);
    if (rc != DB_OK)
        return store_from_db(rc);

    PGresult *res = db_query(db, "session.delete.lock",
        "SELECT EXISTS (SELECT 1 FROM jobs WHERE session_id = $1 AND status = 'running') "
        "AS running FROM sessions WHERE id = $1 AND " SESSION_VISIBLE " FOR UPDATE",
        2, p, &rc);
    if (res == NULL)
        goto fail;
    if (PQntuples(res) != 1) {
        PQclear(res);
        db_rollback(db);
        return STORE_NOT_FOUND;
    }
    int running = strcmp(db_get(res, 0, "running"), "t") == 0;
    PQclear(res);
    if (running) {
        db_rollback(db);
        return STORE_CONFLICT;
    }

    if (store_step(db, "session.delete.cancel",
                   "UPDATE jobs SET status = 'cancelled', finished_at = now(),"
                   " error = 'cancelled: the session was deleted before the job ran' "
                   "WHERE session_id = $1 AND status = 'queued'", 1, p, &rc))
        goto fail;
    if (store_step(db, "session.delete.mark",
                   "UPDATE sessions SET status = 'deleted', ended_at = now() WHERE id = $1",
                   1, p, &rc))
        goto fail;
    rc = db_commit(db);
    if (rc != DB_OK)
        goto fail;
    return STORE_OK;

fail:
    db_rollback(db);
    return store_from_db(rc);
}

int store_session_files_removed(PGconn *db, const char *id)
{
    const char *p[] = { id };
    return store_from_db(db_exec(db, "session.files_removed",
        "UPDATE sessions SET files_removed_at = now() WHERE id = $1", 1, p));
}

cJSON *store_session_results(PGconn *db, const char *id, const char *key_id, int *rc)
{
    const char *p[] = { id, key_id };
    PGresult *res = db_query(db, "session.results",
        "SELECT s.current_job_id, j.result, j.result_json::text AS result_json,"
        " (SELECT coalesce(json_agg(json_build_object('path', f.path,"
        "    'size_bytes', f.size_bytes, 'sha256', f.sha256) ORDER BY f.path), '[]')"
        "  FROM job_files f WHERE f.job_id = s.current_job_id)::text AS files "
        "FROM sessions s LEFT JOIN jobs j ON j.id = s.current_job_id "
        "WHERE s.id = $1 AND s." SESSION_VISIBLE, 2, p, rc);
    if (res == NULL) {
        *rc = store_from_db(*rc);
        return NULL;
    }
    if (PQntuples(res) != 1) {
        PQclear(res);
        *rc = STORE_NOT_FOUND;
        return NULL;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "session_id", id);
    json_add_str_or_null(o, "latest_job_id", db_get(res, 0, "current_job_id"));
    const char *files = db_get(res, 0, "files");
    cJSON_AddItemToObject(o, "output_files", cJSON_Parse(files ? files : "[]"));
    json_add_str_or_null(o, "result", db_get(res, 0, "result"));
    const char *rj = db_get(res, 0, "result_json");
    cJSON_AddItemToObject(o, "result_json", rj ? cJSON_Parse(rj) : cJSON_CreateNull());
    PQclear(res);
    *rc = STORE_OK;
    return o;
}
