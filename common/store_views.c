/*
 * store_views.c - read-only views of sessions and their jobs: GET
 * /session, GET /session/jobs, GET /sessions (see store.h).
 *
 * Paging is keyset paging, never OFFSET: a page of jobs starts after the
 * seq of the job named by `after`, a page of sessions after the
 * (created_at, id) of the session named by it; both walk an index
 * (jobs_session_idx, sessions_key_page_idx of migration 010). One row
 * more than asked is read to know whether a next page exists.
 *
 * Ownership: every struct filled here is a view into its result(s); free
 * it with its *_free() function. Threading: runs on the caller's struct db.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

#define VIEW_JOB_COLS \
    "id, status, model, " STORE_USEC("created_at") " AS created, " \
    "coalesce(" STORE_USEC("started_at") ", 0) AS started, " \
    "coalesce(" STORE_USEC("finished_at") ", 0) AS finished"
#define VIEW_SESSION_COLS \
    "id, status, ttl_seconds, input_file_count, input_bytes, " \
    STORE_USEC("created_at") " AS created, " STORE_USEC("expires_at") " AS expires"
/* A session the API may show: active, unexpired, owned by the caller. */
#define VIEW_VISIBLE "status = 'active' AND expires_at > now() AND api_key_id = $2"

DB_STMT(st_view_session, "view.session", 2,
    "SELECT " VIEW_SESSION_COLS " FROM sessions WHERE id = $1 AND " VIEW_VISIBLE);
DB_STMT(st_view_input_files, "view.input_files", 1,
    "SELECT path, size_bytes FROM session_files WHERE session_id = $1 ORDER BY path");
DB_STMT(st_view_all_jobs, "view.all_jobs", 1,
    "SELECT " VIEW_JOB_COLS " FROM jobs WHERE session_id = $1 ORDER BY seq");
/* The cursor: any job of the session (a job keeps its place even after it
 * ended). */
DB_STMT(st_view_job_seq, "view.job_seq", 2,
    "SELECT seq FROM jobs WHERE id = $1 AND session_id = $2");
DB_STMT(st_view_jobs_page, "view.jobs_page", 3,
    "SELECT " VIEW_JOB_COLS " FROM jobs WHERE session_id = $1 AND seq > $2::bigint "
    "ORDER BY seq LIMIT $3::int");
/* The cursor: any session of this key, whatever its status now (one that
 * expired between two pages still marks a place in the order). */
DB_STMT(st_view_session_cursor, "view.session_cursor", 2,
    "SELECT 1 FROM sessions WHERE id = $1 AND api_key_id = $2");
DB_STMT(st_view_sessions_page, "view.sessions_page", 3,
    "SELECT " VIEW_SESSION_COLS " FROM sessions s "
    "WHERE api_key_id = $1 AND status = 'active' AND expires_at > now()"
    " AND ($2::text IS NULL OR (created_at, id) >"
    "      (SELECT a.created_at, a.id FROM sessions a WHERE a.id = $2 AND a.api_key_id = $1))"
    " ORDER BY created_at, id LIMIT $3::int");

void store_job_rows_free(struct store_job_rows *r)
{
    db_clear(r->res);
    free(r->v);
    memset(r, 0, sizeof(*r));
}

/* Fills out from res's first min(rows, limit) rows; next_after is set
 * when res holds more than limit rows (limit < 0: all rows, no next). */
static void view_fill_jobs(struct pg_result *res, long limit, struct store_job_rows *out)
{
    size_t rows = (size_t)db_rows(res);
    out->res = res;
    out->n = (limit >= 0 && rows > (size_t)limit) ? (size_t)limit : rows;
    out->v = xcalloc(out->n + 1, sizeof(*out->v));
    for (size_t i = 0; i < out->n; i++) {
        int row = (int)i;
        out->v[i].id = db_get(res, row, "id");
        out->v[i].status = db_get(res, row, "status");
        out->v[i].model = db_get(res, row, "model");
        out->v[i].created_usec = db_get_ll(res, row, "created");
        out->v[i].started_usec = db_get_ll(res, row, "started");
        out->v[i].finished_usec = db_get_ll(res, row, "finished");
    }
    out->next_after = (out->n < rows && out->n > 0) ? out->v[out->n - 1].id : NULL;
}

/* The session's input files, by path (a view; mode is not recorded for
 * input files: 0, rendered as 100644). */
static int view_input_files(struct db *db, const char *id, struct store_files *out)
{
    const char *p[] = { id };
    int rc;
    struct pg_result *res = db_run(db, &st_view_input_files, p, &rc);
    if (res == NULL)
        return store_from_db(rc);
    out->res = res;
    out->n = (size_t)db_rows(res);
    out->v = xcalloc(out->n + 1, sizeof(*out->v));
    for (int i = 0; i < (int)out->n; i++) {
        out->v[i].path = db_get(res, i, "path");
        out->v[i].size_bytes = db_get_ll(res, i, "size_bytes");
    }
    return STORE_OK;
}

int store_session_view(struct db *db, const char *id, const char *key_id,
                       struct store_session_view *out)
{
    memset(out, 0, sizeof(*out));
    const char *p[] = { id, key_id };
    int rc;
    struct pg_result *res = store_row(db, &st_view_session, p, &rc);
    if (res == NULL)
        return rc;
    out->res = res;
    store_copy(out->id, sizeof(out->id), res, 0, "id");
    out->status = db_get(res, 0, "status");
    out->created_usec = db_get_ll(res, 0, "created");
    out->expires_usec = db_get_ll(res, 0, "expires");
    out->ttl_s = (long)db_get_ll(res, 0, "ttl_seconds");
    rc = view_input_files(db, id, &out->files);
    if (rc == STORE_OK) {
        const char *pj[] = { id };
        int drc;
        struct pg_result *jr = db_run(db, &st_view_all_jobs, pj, &drc);
        if (jr == NULL)
            rc = store_from_db(drc);
        else
            view_fill_jobs(jr, -1, &out->jobs);
    }
    if (rc != STORE_OK)
        store_session_view_free(out);
    return rc;
}

void store_session_view_free(struct store_session_view *v)
{
    store_files_free(&v->files);
    store_job_rows_free(&v->jobs);
    db_clear(v->res);
    memset(v, 0, sizeof(*v));
}

int store_session_jobs_page(struct db *db, const char *id, const char *key_id, long limit,
                            const char *after, struct store_job_rows *out)
{
    memset(out, 0, sizeof(*out));
    struct store_session s;
    int rc = store_session_get(db, id, key_id, &s);
    if (rc != STORE_OK)
        return rc;
    char seq[32] = "0", lim[32];
    if (after != NULL) {
        const char *pa[] = { after, id };
        struct pg_result *res = db_run(db, &st_view_job_seq, pa, &rc);
        if (res == NULL)
            return store_from_db(rc);
        int found = db_rows(res) == 1;
        if (found)
            store_copy(seq, sizeof(seq), res, 0, "seq");
        db_clear(res);
        if (!found)
            return STORE_CONFLICT;
    }
    snprintf(lim, sizeof(lim), "%ld", limit + 1);
    const char *p[] = { id, seq, lim };
    struct pg_result *res = db_run(db, &st_view_jobs_page, p, &rc);
    if (res == NULL)
        return store_from_db(rc);
    view_fill_jobs(res, limit, out);
    return STORE_OK;
}

void store_session_rows_free(struct store_session_rows *r)
{
    db_clear(r->res);
    free(r->v);
    memset(r, 0, sizeof(*r));
}

/* Fills out from res's first min(rows, limit) rows (see view_fill_jobs). */
static void view_fill_sessions(struct pg_result *res, long limit,
                               struct store_session_rows *out)
{
    size_t rows = (size_t)db_rows(res);
    out->res = res;
    out->n = rows > (size_t)limit ? (size_t)limit : rows;
    out->v = xcalloc(out->n + 1, sizeof(*out->v));
    for (size_t i = 0; i < out->n; i++) {
        int row = (int)i;
        out->v[i].id = db_get(res, row, "id");
        out->v[i].status = db_get(res, row, "status");
        out->v[i].created_usec = db_get_ll(res, row, "created");
        out->v[i].expires_usec = db_get_ll(res, row, "expires");
        out->v[i].ttl_s = (long)db_get_ll(res, row, "ttl_seconds");
        out->v[i].input_file_count = (long)db_get_ll(res, row, "input_file_count");
        out->v[i].input_bytes = db_get_ll(res, row, "input_bytes");
    }
    out->next_after = (out->n < rows && out->n > 0) ? out->v[out->n - 1].id : NULL;
}

int store_sessions_page(struct db *db, const char *key_id, long limit, const char *after,
                        struct store_session_rows *out)
{
    memset(out, 0, sizeof(*out));
    int rc;
    if (after != NULL) {
        const char *pa[] = { after, key_id };
        struct pg_result *res = db_run(db, &st_view_session_cursor, pa, &rc);
        if (res == NULL)
            return store_from_db(rc);
        int found = db_rows(res) == 1;
        db_clear(res);
        if (!found)
            return STORE_CONFLICT;
    }
    char lim[32];
    snprintf(lim, sizeof(lim), "%ld", limit + 1);
    const char *p[] = { key_id, after, lim };
    struct pg_result *res = db_run(db, &st_view_sessions_page, p, &rc);
    if (res == NULL)
        return store_from_db(rc);
    view_fill_sessions(res, limit, out);
    return STORE_OK;
}
