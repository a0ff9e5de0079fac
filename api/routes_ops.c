/*
 * routes_ops.c - GET /ready: the readiness probe for load balancers and
 * orchestrators (GET /health, in routes_download.c, stays a liveness
 * check that touches nothing).
 *
 * Ready means both of what a request may need answer now: PostgreSQL (a
 * pooled connection runs SELECT 1) and RabbitMQ (the outbox relay's
 * connection is up: api->broker_up, set by relay.c). Public, like /health.
 */
#include <stdatomic.h>
#include <stdio.h>

#include "api.h"
#include "db.h"
#include "log.h"

/* How long the probe waits for a pooled connection: under a probe's
 * usual timeout (1 to 5 s), so it answers 503 rather than time out. */
#define API_READY_DB_WAIT_MS 1000

int api_ready(struct api_req *r)
{
    int rc = DB_OK;
    const char *db_down = NULL;
    r->db = db_pool_get(r->api->pool, API_READY_DB_WAIT_MS, &rc);
    if (r->db == NULL)
        db_down = rc == DB_RETRY ? "database: no pooled connection free" : "database unreachable";
    else if (store_ping(r->db) != STORE_OK)
        db_down = "database not answering";
    int broker_up = atomic_load(&r->api->broker_up);
    if (db_down == NULL && broker_up) {
        cJSON *body = cJSON_CreateObject();
        cJSON_AddStringToObject(body, "status", "ready");
        return api_send(r, 200, body);
    }
    log_debug("api.not_ready", "database=%s broker=%s", db_down ? "down" : "up",
              broker_up ? "up" : "down");
    return api_fail(r, ERR_NOT_READY, "not ready: %s%s%s", db_down ? db_down : "",
                    db_down && !broker_up ? "; " : "",
                    broker_up ? "" : "broker (RabbitMQ) unreachable");
}
