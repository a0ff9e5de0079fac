/*
 * store_files.c - a session's current files: input manifests with modes,
 * the manifest of what /download/archive streams, and the transaction of
 * PUT and DELETE /session/files (see store.h).
 *
 * Ownership: struct store_files and struct store_results filled here are
 * views (store_files_free, store_results_free). Threading: runs on the
 * caller's struct db; an edit holds the session row locked between
 * store_files_edit_begin() and store_files_edit_end() on that one db.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

#define FILES_SESSION_VISIBLE \
    "status = 'active' AND expires_at > now() AND api_key_id = $2"

/* As session.create (store_session.c), with the files' modes ($8). */
DB_STMT(st_files_session_create, "files.session_create", 8,
    "WITH s AS ("
    "  INSERT INTO sessions (id, api_key_id, ttl_seconds, expires_at,"
    "                        input_file_count, input_bytes)"
    "  VALUES ($1, $2, $3::int, now() + $3::int * interval '1 second', $4, $5)"
    "  RETURNING id, current_job_id, created_at, expires_at),"
    " f AS ("
    "  INSERT INTO session_files (session_id, path, size_bytes, mode)"
    "  SELECT $1, u.path, u.size_bytes, u.mode"
    "  FROM unnest($6::text[], $7::bigint[], $8::int[]) AS u(path, size_bytes, mode))"
    "SELECT id, current_job_id, " STORE_USEC("created_at") " AS created, "
    STORE_USEC("expires_at") " AS expires FROM s");
DB_STMT(st_files_input, "files.input", 1,
    "SELECT path, size_bytes, NULL::text AS sha256, mode FROM session_files "
    "WHERE session_id = $1 ORDER BY path");
/* Lock, then look for a queued or running job in a statement of its own
 * (a snapshot taken after the lock: see session.delete.lock). */
DB_STMT(st_files_edit_lock, "files.edit.lock", 2,
    "SELECT coalesce(current_job_id, '') AS current, input_bytes FROM sessions "
    "WHERE id = $1 AND " FILES_SESSION_VISIBLE " FOR UPDATE");
DB_STMT(st_files_edit_busy, "files.edit.busy", 1,
    "SELECT EXISTS (SELECT 1 FROM jobs WHERE session_id = $1"
    " AND status IN ('queued', 'running')) AS busy");
DB_STMT(st_files_edit_clear, "files.edit.clear", 1,
    "DELETE FROM session_files WHERE session_id = $1");
DB_STMT(st_files_edit_insert, "files.edit.insert", 4,
    "INSERT INTO session_files (session_id, path, size_bytes, mode)"
    " SELECT $1, u.path, u.size_bytes, u.mode"
    " FROM unnest($2::text[], $3::bigint[], $4::int[]) AS u(path, size_bytes, mode)");
DB_STMT(st_files_edit_session, "files.edit.session", 3,
    "UPDATE sessions SET input_file_count = $2, input_bytes = $3, current_job_id = NULL,"
    " files_edited_at = now() WHERE id = $1");
/* After an edit: the latest succeeded job (its result), if any. */
DB_STMT(st_files_edited_results, "files.edited_results", 2,
    "SELECT j.id AS job_id, j.result, j.result_json::text AS result_json FROM sessions s"
    " LEFT JOIN LATERAL (SELECT id, result, result_json FROM jobs"
    "   WHERE session_id = s.id AND status = 'succeeded' ORDER BY seq DESC LIMIT 1) j"
    " ON true "
    "WHERE s.id = $1 AND s." FILES_SESSION_VISIBLE
    " AND s.current_job_id IS NULL AND s.files_edited_at IS NOT NULL");

int store_files_session_create(struct db *db, const struct store_new_session *s,
                               struct store_session *out)
{
    char ttl[32], count[32], bytes[32];
    snprintf(ttl, sizeof(ttl), "%ld", s->ttl_s);
    snprintf(count, sizeof(count), "%zu", s->nfiles);
    snprintf(bytes, sizeof(bytes), "%lld", (long long)s->total_bytes);
    char *paths = store_text_array(s->files, s->nfiles, 0);
    char *sizes = store_bigint_array(s->files, s->nfiles);
    char *modes = store_mode_array(s->files, s->nfiles);
    const char *p[] = { s->id, s->key_id, ttl, count, bytes, paths, sizes, modes };
    int rc;
    struct pg_result *res = db_run(db, &st_files_session_create, p, &rc);
    free(paths);
    free(sizes);
    free(modes);
    if (res == NULL)
        return store_from_db(rc);
    int ok = db_rows(res) == 1;
    if (ok) {
        store_copy(out->id, sizeof(out->id), res, 0, "id");
        store_copy(out->current_job_id, sizeof(out->current_job_id), res, 0,
                   "current_job_id");
        out->created_usec = db_get_ll(res, 0, "created");
        out->expires_usec = db_get_ll(res, 0, "expires");
    }
    db_clear(res);
    return ok ? STORE_OK : STORE_ERROR;
}

int store_session_input_files(struct db *db, const char *session_id, struct store_files *out)
{
    memset(out, 0, sizeof(*out));
    const char *p[] = { session_id };
    int rc;
    struct pg_result *res = db_run(db, &st_files_input, p, &rc);
    if (res == NULL)
        return store_from_db(rc);
    out->res = res;
    out->n = (size_t)db_rows(res);
    out->v = xcalloc(out->n + 1, sizeof(*out->v));
    for (int i = 0; i < (int)out->n; i++) {
        out->v[i].path = db_get(res, i, "path");
        out->v[i].size_bytes = db_get_ll(res, i, "size_bytes");
        out->v[i].sha256 = NULL;
        out->v[i].mode = (unsigned)db_get_ll(res, i, "mode");
    }
    return STORE_OK;
}

int store_files_current(struct db *db, const char *session_id, const char *key_id,
                        const char *job_id, char folder_job[ID_HEX_LEN + 1],
                        struct store_files *out)
{
    memset(out, 0, sizeof(*out));
    int rc = store_job_folder(db, session_id, key_id, job_id, folder_job);
    if (rc != STORE_OK)
        return rc;
    if (folder_job[0] == '\0')
        return store_session_input_files(db, session_id, out);
    return store_job_files(db, folder_job, out);
}

int store_files_edit_begin(struct db *db, const char *session_id, const char *key_id,
                           char current_job[ID_HEX_LEN + 1], int64_t *input_bytes)
{
    const char *p[] = { session_id, key_id };
    int rc = db_begin(db);
    if (rc != DB_OK)
        return store_from_db(rc);
    struct pg_result *res = db_run(db, &st_files_edit_lock, p, &rc);
    if (res == NULL) {
        db_rollback(db);
        return store_from_db(rc);
    }
    if (db_rows(res) != 1) {
        db_clear(res);
        db_rollback(db);
        return STORE_NOT_FOUND;
    }
    store_copy(current_job, ID_HEX_LEN + 1, res, 0, "current");
    *input_bytes = db_get_ll(res, 0, "input_bytes");
    db_clear(res);
    res = db_run(db, &st_files_edit_busy, p, &rc);
    if (res == NULL) {
        db_rollback(db);
        return store_from_db(rc);
    }
    int busy = db_get_bool(res, 0, "busy");
    db_clear(res);
    if (busy) {
        db_rollback(db);
        return STORE_CONFLICT;
    }
    return STORE_OK;
}

int store_files_edit_record(struct db *db, const char *session_id,
                            const struct store_file *files, size_t n, int64_t total_bytes)
{
    char count[32], bytes[32];
    snprintf(count, sizeof(count), "%zu", n);
    snprintf(bytes, sizeof(bytes), "%lld", (long long)total_bytes);
    char *paths = store_text_array(files, n, 0);
    char *sizes = store_bigint_array(files, n);
    char *modes = store_mode_array(files, n);
    const char *p1[] = { session_id };
    const char *p2[] = { session_id, paths, sizes, modes };
    const char *p3[] = { session_id, count, bytes };
    int rc = DB_OK;
    if (store_step(db, &st_files_edit_clear, p1, &rc) == 0 &&
        store_step(db, &st_files_edit_insert, p2, &rc) == 0)
        store_step(db, &st_files_edit_session, p3, &rc);
    free(paths);
    free(sizes);
    free(modes);
    return store_from_db(rc);
}

int store_files_edit_end(struct db *db, int commit)
{
    if (!commit) {
        db_rollback(db);
        return STORE_OK;
    }
    return store_tx_end(db, DB_OK);
}

int store_files_edited_results(struct db *db, const char *session_id, const char *key_id,
                               struct store_results *out)
{
    int rc = store_results_head(db, &st_files_edited_results, session_id, key_id, "job_id",
                                out);
    if (rc != STORE_OK)
        return rc;
    rc = store_session_input_files(db, session_id, &out->files);
    if (rc != STORE_OK) {
        store_results_free(out);
        return rc;
    }
    return STORE_OK;
}
