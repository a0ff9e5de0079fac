/*
 * render.h - the API's wire format: every response body's field names,
 * types and null rules live here, built from the plain structs the store
 * returns. Each function returns a new cJSON tree (the caller sends and
 * frees it, see api_send()); allocation failure aborts (xalloc.h).
 */
#ifndef OC_RENDER_H
#define OC_RENDER_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "errcode.h"
#include "store.h"

/* {"detail": detail, "code": "<errcode name>"} */
cJSON *render_error(enum errcode e, const char *detail);

/* GET /health: {"status": "healthy"} */
cJSON *render_health(void);

/* POST /session: {session_id, created_at, expires_at, input_files}. */
cJSON *render_session_created(const struct store_session *s, const struct store_file *files,
                              size_t nfiles);

/* POST /job: {job_id, session_id, status: "queued", created_at}. */
cJSON *render_job_created(const char *job_id, const char *session_id, int64_t created_usec);

/* GET /job/status: the whole job document (see README). */
cJSON *render_job(const struct store_job *j);

/* GET /session/results: {session_id, latest_job_id, output_files, result,
 * result_json}. */
cJSON *render_results(const char *session_id, const struct store_results *r);

/* One Server-Sent Events frame of GET /job/events ("id: <seq>\nevent:
 * <kind>\ndata: <json>\n\n"; the data object gains seq, attempt and time).
 * *final is set for the status event that ends a job. Malloc'd; NULL when
 * out of memory. */
char *render_event(const struct store_event *e, int *final);

/* `opencode-api keys list`: [{id, name, created_at, revoked_at}]. */
cJSON *render_keys(const struct store_keys *k);

/* GET /session: {session_id, status, created_at, expires_at, ttl_seconds,
 * input_files, jobs: [{job_id, status, model, created_at, started_at,
 * finished_at}]}. */
cJSON *render_session_view(const struct store_session_view *v);

/* GET /session/jobs: {session_id, jobs: [...as above], next_after}. */
cJSON *render_job_page(const char *session_id, const struct store_job_rows *r);

/* GET /sessions: {sessions: [{session_id, status, created_at, expires_at,
 * ttl_seconds, input_file_count, input_bytes}], next_after}. */
cJSON *render_session_page(const struct store_session_rows *r);

#endif
