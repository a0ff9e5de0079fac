/*
 * idempotency.c - Idempotency-Key (see idempotency.h).
 *
 * Which answers are kept: 2xx and 4xx answers sent through api_send() or
 * api_fail(), except 408 and 429 (a retry may well succeed later). A 5xx
 * (or an answer not captured) deletes the reservation, so the client may
 * retry with the same key. The same key with another body is 422
 * idempotency_key_reused (whether or not the first is done); while the
 * first request is in flight a duplicate gets 409 idempotency_in_flight.
 */
#include <civetweb.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idempotency.h"
#include "db.h"
#include "http.h"
#include "log.h"
#include "xalloc.h"

/* How long the answer's bookkeeping waits for a pooled connection. */
#define IDEM_DB_WAIT_MS 5000

int api_idem_key_valid(const char *key)
{
    size_t n = strlen(key);
    if (n == 0 || n > IDEM_KEY_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)key[i] < 0x20 || (unsigned char)key[i] > 0x7e)
            return 0;
    return 1;
}

/* SHA-256 of the body as 64 hex digits. Returns 0 or -1. */
static int idem_sha256_hex(const char *body, size_t len, char hex[STORE_SHA256_HEX + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(body, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
        return -1;
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/* The request's path and query string as the client sent them (malloc'd). */
static char *idem_scope_path(const struct mg_connection *conn)
{
    const char *path = http_path(conn);
    const char *q = mg_get_request_info(conn)->query_string;
    size_t n = strlen(path) + (q ? strlen(q) + 1 : 0) + 1;
    char *out = xmalloc(n);
    snprintf(out, n, "%s%s%s", path, q ? "?" : "", q ? q : "");
    return out;
}

/* The request's connection, borrowed without answering when none is free
 * (the handler has answered already). NULL when none. */
static struct db *idem_db(struct api_req *r)
{
    int rc;
    if (r->db == NULL)
        r->db = db_pool_get(r->api->pool, IDEM_DB_WAIT_MS, &rc);
    return r->db;
}

/* 1 when an answer with this status is stored and replayed. */
static int idem_keeps(int status)
{
    return (status >= 200 && status < 300) ||
           (status >= 400 && status < 500 && status != 408 && status != 429);
}

/* A reserved request while its handler runs: the capture first, so
 * r->capture leads back here. */
struct idem_run {
    struct api_capture          cap;
    const struct store_idem_req *q;
    int                          settled;
};

/* Stores the answer (kept) or frees the scope, once. */
static void idem_settle(struct api_req *r, struct idem_run *run, int status, int kept)
{
    if (run->settled)
        return;
    run->settled = 1;
    struct db *db = idem_db(r);
    int rc = STORE_UNAVAILABLE;
    int keep = kept && idem_keeps(status);
    if (db != NULL)
        rc = keep ? store_idem_complete(db, run->q, status, run->cap.body, run->cap.len)
                  : store_idem_release(db, run->q);
    if (rc != STORE_OK)   /* the row stays in flight until IDEM_ABANDON_S */
        log_warn("idempotency.store_failed", "key=%s status=%d kept=%d", r->key_id, status,
                 keep);
}

/* struct api_capture's kept: the answer is stored before it is sent, so
 * a client that retries as soon as it has it gets the replay. */
static void idem_kept(struct api_req *r)
{
    struct idem_run *run = (struct idem_run *)(void *)r->capture;
    idem_settle(r, run, run->cap.status, 1);
}

/* Runs the handler on a reserved scope; an answer not captured (sent
 * other than by api_send/api_fail: 429, 204) frees the scope afterwards.
 * Returns the handler's status. */
static int idem_run_reserved(struct api_req *r, const struct store_idem_req *q,
                             api_handler handler)
{
    struct idem_run run = { { 0, NULL, 0, idem_kept }, q, 0 };
    r->capture = &run.cap;
    int status = handler(r);
    r->capture = NULL;
    idem_settle(r, &run, status, 0);
    free(run.cap.body);
    return status;
}

/* Answers a request whose scope is taken: replay, 422 or 409. */
static int idem_answer_taken(struct api_req *r, const char *sha,
                             const struct store_idem_entry *e)
{
    if (strcmp(e->body_sha256, sha) != 0)
        return api_fail(r, ERR_IDEMPOTENCY_REUSED,
                        "this Idempotency-Key was used with a different request body");
    if (!e->completed)
        return api_fail(r, ERR_IDEMPOTENCY_IN_FLIGHT,
                        "a request with this Idempotency-Key is still being processed; "
                        "retry shortly");
    log_info("idempotency.replayed", "key=%s status=%d", r->key_id, e->status);
    return http_send(r->conn, e->status, "application/json", "Idempotent-Replayed: true\r\n",
                     e->body, e->body_len);
}

/* Hashes the body (read here, handed to the handler later) into sha.
 * Returns 0, or the status after answering. */
static int idem_read_body(struct api_req *r, char sha[STORE_SHA256_HEX + 1])
{
    char *body = NULL;
    size_t len = 0;
    int status = api_read_body(r, (size_t)r->cfg->max_body_bytes, &body, &len);
    if (status != 0)
        return status;
    r->body = body;
    r->body_len = len;
    r->body_read = 1;
    if (idem_sha256_hex(body, len, sha) != 0)
        return api_fail(r, ERR_INTERNAL, "could not hash the request body");
    return 0;
}

int api_idem_run(struct api_req *r, api_handler handler)
{
    const char *key = mg_get_header(r->conn, "Idempotency-Key");
    if (key == NULL)
        return handler(r);
    if (!api_idem_key_valid(key))
        return api_fail(r, ERR_BAD_REQUEST,
                        "Idempotency-Key: must be 1 to %d printable ASCII characters",
                        IDEM_KEY_MAX);
    char sha[STORE_SHA256_HEX + 1];
    int status = idem_read_body(r, sha);
    if (status != 0)
        return status;
    struct db *db = api_db(r);
    if (db == NULL)
        return 503;
    char *path = idem_scope_path(r->conn);
    struct store_idem_req q = { r->key_id, http_method(r->conn), path, key, sha };
    struct store_idem_entry e;
    int rc = store_idem_reserve(db, &q, r->cfg->idempotency_ttl_s, IDEM_ABANDON_S, &e);
    if (rc == STORE_OK)
        status = idem_run_reserved(r, &q, handler);
    else if (rc == STORE_CONFLICT)
        status = idem_answer_taken(r, sha, &e);
    else
        status = api_store_fail(r, rc, "Not found");
    free(e.body);
    free(path);
    return status;
}
