/*
 * routes_diff.c - GET /job/diff: a job's unified diff, git style, of its
 * outputs against the files it started from (README, "What changed").
 *
 * The worker that recorded the job made the diff with git and stored it
 * (job_diffs, common/store_diff.c); this only serves it, as
 * text/x-diff; charset=utf-8 (the bytes are git's: a file that is not
 * UTF-8 shows as it is). Answers:
 *   200  the diff ("" when nothing changed); a diff cut at
 *        JOB_MAX_DIFF_BYTES ends with a trailer line "# diff truncated: ..."
 *        and the response has X-Diff-Truncated: true;
 *   404  not_found: unknown job or another key's, and an ended job that
 *        kept no diff (it ended without outputs, e.g. cancelled before it
 *        ran, or was recorded before diffs existed);
 *   409  conflict: the job is queued or running (retry once it ended).
 *
 * Threading: runs on CivetWeb threads; nothing here is shared.
 */
#include <civetweb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "http.h"

static int diff_job_ended(const char *status)
{
    return status != NULL && strcmp(status, "queued") != 0 && strcmp(status, "running") != 0;
}

static int diff_send(struct api_req *r, const struct store_diff *d)
{
    char trailer[160] = "";
    if (d->truncated)
        snprintf(trailer, sizeof(trailer),
                 "# diff truncated: %zu of %lld bytes shown (JOB_MAX_DIFF_BYTES)\n", d->len,
                 (long long)d->size_bytes);
    size_t tlen = strlen(trailer);
    mg_printf(r->conn,
              "HTTP/1.1 200 OK\r\nContent-Type: text/x-diff; charset=utf-8\r\n"
              "X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n"
              "X-Diff-Truncated: %s\r\nContent-Length: %zu\r\n%s\r\n",
              d->truncated ? "true" : "false", d->len + tlen,
              http_common_headers(r->conn));
    if (d->len > 0)
        mg_write(r->conn, d->data, d->len);
    if (tlen > 0)
        mg_write(r->conn, trailer, tlen);
    return 200;
}

int api_job_diff(struct api_req *r)
{
    char job_id[ID_HEX_LEN + 1];
    struct db *db;
    int status = api_job_param(r, job_id, &db);
    if (status != 0)
        return status;
    struct store_diff d;
    int rc = store_diff_get(db, job_id, r->key_id, &d);
    if (rc != STORE_OK)
        return api_store_fail(r, rc, "Job not found");
    if (!diff_job_ended(d.status))
        status = api_fail(r, ERR_CONFLICT, "the job is %s: its diff exists once it has ended",
                          d.status);
    else if (!d.found)
        status = api_fail(r, ERR_NOT_FOUND,
                          "this job has no diff: it ended without outputs (for example "
                          "cancelled before it ran) or was recorded before diffs existed");
    else
        status = diff_send(r, &d);
    store_diff_free(&d);
    return status;
}
