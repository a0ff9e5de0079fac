/*
 * api.h - opencode-api: one route table, one dispatcher, handlers that hold
 * only what is specific to their endpoint.
 *
 * A request's path through the code: CivetWeb calls api_dispatch()
 * (dispatch.c) for every request on one of its server threads; the
 * dispatcher refuses ambiguous framing and duplicate query parameters
 * (400), sets the CORS headers every response carries and answers a CORS
 * preflight (OPTIONS, 204, no key needed), finds the route (404), checks
 * the method (405), checks the key when the route needs one (401),
 * calls the route's handler with a
 * struct api_req, and returns the database connection the handler
 * borrowed, if any, to the pool. Handlers read parameters and bodies with
 * the api_* helpers below, call store_*() (common/store.h), build the
 * response body with render_*() (render.h) and send it with api_send();
 * every error goes out through api_fail() or api_store_fail(), which own
 * the mapping to HTTP statuses and error codes.
 *
 * Threading: struct api is shared by every server thread and read-only
 * after start-up (the pool, the caches and the relay's wake-up have their
 * own locks; broker_up is atomic).
 * A struct api_req lives on one server thread for one request.
 */
#ifndef OC_API_H
#define OC_API_H

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "apikey.h"
#include "config.h"
#include "errcode.h"
#include "store.h"

struct mg_connection;
struct db;
struct db_pool;
struct api_cache;
struct api_live;

struct api {
    const struct cfg *cfg;
    unsigned char bootstrap_hash[APIKEY_HASH_LEN];  /* SHA-256(API_KEY) */
    struct db_pool *pool;                           /* API_DB_POOL connections */

    /* The outbox relay thread sleeps on this until a job is queued. */
    pthread_mutex_t relay_mu;
    pthread_cond_t  relay_cv;
    int             relay_wake;
    int             relay_stop;

    /* 1 while the relay's broker connection is up (set by relay.c: after
     * connecting, and back to 0 when connecting or publishing fails);
     * GET /ready reads it. An idle relay notices a broker that went away
     * at its next publish. */
    atomic_int      broker_up;

    /* Ended jobs' status documents and recently seen keys (cache.h; NULL:
     * no caching). Thread-safe on its own. */
    struct api_cache *cache;
    /* Wake-ups and admission of event streams and long-polls (live.h). */
    struct api_live *live;
};

/* One request, as the dispatcher hands it to a handler. */
struct api_req {
    struct mg_connection *conn;
    struct api           *api;
    const struct cfg     *cfg;
    char                  key_id[STORE_KEY_ID_MAX];  /* the caller's key */
    struct db            *db;                        /* borrowed by api_db() */

    /* Idempotency-Key (idempotency.c): when capture is set, api_send()
     * and api_fail() keep a copy of the answer there (other senders are
     * not captured: such answers are not stored). */
    struct api_capture   *capture;
    /* A body the dispatcher already read (to hash it): api_read_body()
     * and api_read_json() hand it over instead of reading the connection.
     * Freed by the dispatcher when still here. */
    char                 *body;
    size_t                body_len;
    int                   body_read;
};

/* An answer kept for Idempotency-Key: status and body (malloc'd). kept,
 * when set, runs once the copy is made and before the answer is sent (so
 * it is stored before the client can retry). */
struct api_capture {
    int    status;
    char  *body;
    size_t len;
    void (*kept)(struct api_req *r);
};

/* A handler answers the request and returns the HTTP status it sent. */
typedef int (*api_handler)(struct api_req *r);

/* CivetWeb's request handler for every path (cbdata is struct api *). */
int api_dispatch(struct mg_connection *conn, void *cbdata);

/* ---- Helpers for handlers (dispatch.c) ---------------------------------- */

/* The request's database connection, borrowed from the pool on first use
 * and returned by the dispatcher; NULL after answering 503. */
struct db *api_db(struct api_req *r);

/* Returns the request's connection to the pool early, before a long
 * stream to the client. */
void api_db_release(struct api_req *r);

/* Sends status with body (freed here) as JSON. Returns status. */
int api_send(struct api_req *r, int status, cJSON *body);

/*
 * Sends a 200 JSON body with its strong ETag, or 304 Not Modified (no
 * body) when the request's If-None-Match names that ETag or is "*".
 * Returns the status sent.
 */
int api_send_etag(struct api_req *r, const char *body, size_t len, const char *etag);

/* Sends the error e ({"detail": ..., "code": ...}) with its status.
 * Returns the status. */
int api_fail(struct api_req *r, enum errcode e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Answers a failed store call: STORE_NOT_FOUND as 404 with not_found as
 * the detail, the others as 409 / 503 / 500. Returns the status. */
int api_store_fail(struct api_req *r, int store_rc, const char *not_found);

/*
 * Reads the required query parameter name as an id (32 hex digits) into
 * id. Returns 0, or the status after answering 422 (absent) or 404 with
 * not_found (malformed: no such id can exist).
 */
int api_id_param(struct api_req *r, const char *name, char id[ID_HEX_LEN + 1],
                 const char *not_found);

/*
 * The start of a handler of one session or one job: ?session_id= or
 * ?job_id= into id (as api_id_param: "Session not found", "Job not
 * found") and a pooled connection into *db. Returns 0, or the status
 * after answering (422, 404 or 503).
 */
int api_session_param(struct api_req *r, char id[ID_HEX_LEN + 1], struct db **db);
int api_job_param(struct api_req *r, char id[ID_HEX_LEN + 1], struct db **db);

/* Reads and parses a JSON body of at most max bytes into *out (caller
 * cJSON_Delete()s). Returns 0, or the status after answering 400/413/503. */
int api_read_json(struct api_req *r, size_t max, cJSON **out);

/* Reads the whole body, at most max bytes, into *out (malloc'd,
 * NUL-terminated, *len bytes; caller frees), or takes the body the
 * dispatcher already read (r->body). Returns 0, or the status after
 * answering 400/413/503. */
int api_read_body(struct api_req *r, size_t max, char **out, size_t *len);

/*
 * Checks the caller's quotas before it holds new_sessions (0 or 1) more
 * sessions and new_bytes more input bytes (a new session, or an edit that
 * grows one), or a job. Returns 0, or the status after answering 429
 * quota_exceeded (with Retry-After and the quota's name) or 503.
 */
int api_quota_session(struct api_req *r, int new_sessions, int64_t new_bytes);
int api_quota_job(struct api_req *r);

/* The KEY_MAX_* defaults, for keys whose limit is NULL. */
struct store_quota_limits api_quota_defaults(const struct cfg *cfg);

/* Answers a quota check's result rc (a store_rc; STORE_OK: nothing sent,
 * returns 0): 429 quota_exceeded with Retry-After and the quota's name and
 * limit in the body, or the store failure. Returns the status. */
int api_quota_answer(struct api_req *r, int rc, const struct store_quota_hit *hit);

/* Wakes the outbox relay (a job was queued). */
void api_relay_wake(struct api *api);

/* Relay thread body: publishes job_outbox rows until relay_stop. */
void *api_relay_main(void *arg);

/* ---- Handlers (routes_*.c), one per route row --------------------------- */

int api_health(struct api_req *r);
int api_ready(struct api_req *r);
int api_openapi(struct api_req *r);
int api_docs(struct api_req *r);
int api_session_create(struct api_req *r);
int api_session_delete(struct api_req *r);
int api_session_results(struct api_req *r);
int api_job_create(struct api_req *r);
int api_job_status(struct api_req *r);
int api_download(struct api_req *r);
int api_job_events(struct api_req *r);             /* routes_live.c */
int api_job_cancel(struct api_req *r);             /* routes_live.c */
/* GET /job/status?wait=N (routes_live.c): returns once job_id is no longer
 * queued or running, or after wait_s; 0 to go on answering its status, or
 * the status of an answer already sent (404, 429, 503). */
int api_job_wait(struct api_req *r, const char *job_id, long wait_s);
/* Reads ?wait= (seconds, 0..60; 0 when absent) for GET /job/status.
 * Returns 0, or the status after answering 422. */
int api_wait_param(struct api_req *r, long *wait_s);
int api_session_get(struct api_req *r);            /* routes_views.c */
int api_session_jobs(struct api_req *r);           /* routes_views.c */
int api_sessions_list(struct api_req *r);          /* routes_views.c */
int api_download_archive(struct api_req *r);       /* routes_files.c */
int api_session_files_put(struct api_req *r);      /* routes_files.c */
int api_session_files_delete(struct api_req *r);   /* routes_files.c */
int api_job_diff(struct api_req *r);               /* routes_diff.c */

/* POST /session with a .tar.gz body (routes_files.c; called by
 * api_session_create when Content-Type is application/gzip). */
int api_session_create_archive(struct api_req *r);

/* Answers what session_req_check() found wrong (rc: an enum
 * session_req_rc, routes_session.c). Returns the status. */
int api_session_refuse(struct api_req *r, int rc, const char *detail);

/* Admin commands (admin.c): "migrate" and "keys ...". Return an exit code. */
int api_admin_main(int argc, char **argv);

/* Gives the bootstrap key its api_keys row when missing (admin.c; run at
 * start and by "keys set bootstrap ..."). Returns 0 or -1. */
int api_bootstrap_row(struct db *db);

#endif
