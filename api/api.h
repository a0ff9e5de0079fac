/*
 * api.h - state shared by the HTTP handlers of opencode-api.
 */
#ifndef OC_API_H
#define OC_API_H

#include <cjson/cJSON.h>
#include <pthread.h>

#include "apikey.h"
#include "config.h"
#include "store.h"

struct mg_connection;
struct pg_conn;

struct api {
    const struct cfg *cfg;
    unsigned char bootstrap_hash[APIKEY_HASH_LEN];  /* SHA-256(API_KEY) */

    /* The outbox relay thread sleeps on this until a job is queued. */
    pthread_mutex_t relay_mu;
    pthread_cond_t  relay_cv;
    int             relay_wake;
    int             relay_stop;
};

/* Per CivetWeb worker thread: its own database connection. */
struct api_thread {
    struct pg_conn *db;
};

/* The caller's database connection, (re)connected; NULL after answering
 * 503 when the database is unreachable. */
struct pg_conn *api_db(struct mg_connection *conn, const struct api *api);

/*
 * Checks X-API-Key. Returns 0 with the key's id in key_id ("bootstrap"
 * for API_KEY), or -1 after answering 401 (or 503 when the key table is
 * unreachable).
 */
int api_authenticate(struct mg_connection *conn, const struct api *api,
                     char key_id[STORE_KEY_ID_MAX]);

/*
 * Reads the required query parameter name as an id (32 hex digits) into
 * id. Returns 0, or the status after answering 422 (absent) or 404 with
 * not_found (malformed: no such id can exist).
 */
int api_id_param(struct mg_connection *conn, const char *name, char id[ID_HEX_LEN + 1],
                 const char *not_found);

/* Answers the HTTP error for a failed store call (404 with not_found,
 * 409, 503 or 500). Returns the status. */
int api_store_fail(struct mg_connection *conn, int rc, const char *not_found);

/* Adds download_url to each {path, ...} of files (job_id NULL: the
 * session's current files). Returns 0 or -1. */
int api_add_download_urls(cJSON *files, const char *session_id, const char *job_id);

/* Wakes the outbox relay (a job was queued). */
void api_relay_wake(struct api *api);

/* Relay thread body: publishes job_outbox rows until relay_stop. */
void *api_relay_main(void *arg);

/* Route handlers (CivetWeb mg_request_handler; cbdata is struct api *). */
int api_route_health(struct mg_connection *conn, void *cbdata);
int api_route_session(struct mg_connection *conn, void *cbdata);
int api_route_session_results(struct mg_connection *conn, void *cbdata);
int api_route_job(struct mg_connection *conn, void *cbdata);
int api_route_job_status(struct mg_connection *conn, void *cbdata);
int api_route_download(struct mg_connection *conn, void *cbdata);
int api_route_not_found(struct mg_connection *conn, void *cbdata);

/* Admin commands (admin.c): "migrate" and "keys ...". Return an exit code. */
int api_admin_main(int argc, char **argv);

#endif
