/*
 * routes_views.c - GET /session, GET /session/jobs, GET /sessions: what a
 * client can read back about its sessions and their jobs.
 *
 * Paged lists take limit (1..100, default 20) and after (the id of the
 * last item of the previous page; the answer's next_after, null on the
 * last page). A limit out of range or not a number, and an after that is
 * not an item of this list (malformed, unknown, or of another session or
 * key), answer 422 validation_error: the list exists, the cursor does not
 * (an unknown or foreign session still answers 404). Read-only: nothing
 * is changed by any of them.
 *
 * Threading: one request on one server thread; no state of its own.
 */
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "http.h"
#include "render.h"

#define VIEW_LIMIT_DEFAULT 20
#define VIEW_LIMIT_MAX 100

/* Reads limit and after. Returns 0 (after[0] == '\0' when absent), or the
 * status after answering 422. */
static int view_page_params(struct api_req *r, long *limit, char after[ID_HEX_LEN + 1])
{
    char buf[64];
    *limit = VIEW_LIMIT_DEFAULT;
    after[0] = '\0';
    int found = http_query(r->conn, "limit", buf, sizeof(buf));
    if (found != 0 && (found < 0 || cfg_parse_long(buf, 1, VIEW_LIMIT_MAX, limit) != 0))
        return api_fail(r, ERR_VALIDATION, "limit: must be an integer from 1 to %d",
                        VIEW_LIMIT_MAX);
    found = http_query(r->conn, "after", buf, sizeof(buf));
    if (found == 0)
        return 0;
    if (found < 0 || !id_valid(buf))
        return api_fail(r, ERR_VALIDATION, "after: must be an id from this list");
    memcpy(after, buf, ID_HEX_LEN + 1);
    return 0;
}

int api_session_get(struct api_req *r)
{
    char id[ID_HEX_LEN + 1];
    struct db *db;
    int status = api_session_param(r, id, &db);
    if (status != 0)
        return status;
    struct store_session_view v;
    int rc = store_session_view(db, id, r->key_id, &v);
    if (rc != STORE_OK)
        return api_store_fail(r, rc, "Session not found");
    status = api_send(r, 200, render_session_view(&v));
    store_session_view_free(&v);
    return status;
}

int api_session_jobs(struct api_req *r)
{
    char id[ID_HEX_LEN + 1], after[ID_HEX_LEN + 1];
    long limit;
    int status = api_id_param(r, "session_id", id, "Session not found");
    if (status == 0)
        status = view_page_params(r, &limit, after);
    if (status != 0)
        return status;
    struct db *db = api_db(r);
    if (db == NULL)
        return 503;
    struct store_job_rows rows;
    int rc = store_session_jobs_page(db, id, r->key_id, limit, after[0] ? after : NULL,
                                     &rows);
    if (rc == STORE_CONFLICT)
        return api_fail(r, ERR_VALIDATION, "after: not a job of this session");
    if (rc != STORE_OK)
        return api_store_fail(r, rc, "Session not found");
    status = api_send(r, 200, render_job_page(id, &rows));
    store_job_rows_free(&rows);
    return status;
}

int api_sessions_list(struct api_req *r)
{
    char after[ID_HEX_LEN + 1];
    long limit;
    int status = view_page_params(r, &limit, after);
    if (status != 0)
        return status;
    struct db *db = api_db(r);
    if (db == NULL)
        return 503;
    struct store_session_rows rows;
    int rc = store_sessions_page(db, r->key_id, limit, after[0] ? after : NULL, &rows);
    if (rc == STORE_CONFLICT)
        return api_fail(r, ERR_VALIDATION, "after: not a session of this key");
    if (rc != STORE_OK)
        return api_store_fail(r, rc, "Session not found");
    status = api_send(r, 200, render_session_page(&rows));
    store_session_rows_free(&rows);
    return status;
}
